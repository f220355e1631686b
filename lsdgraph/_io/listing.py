"""``lsdgraph ls``: what is under a prefix and how big, with totals per folder — check sizes before
you download (the bucket holds about 1.7 TB)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.progress import human_bytes
from lsdgraph._io.sources import S3Options, list_files


def folder_totals(rels_sizes: list[tuple[str, int]], depth: int) -> dict[str, list[int]]:
    """``{folder: [bytes, files]}`` for folders up to ``depth`` levels below the root ('' = root)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rel, size in rels_sizes:
        parts = rel.split("/")[:-1]
        for d in range(0, min(depth, len(parts)) + 1):
            t = totals["/".join(parts[:d])]
            t[0] += size
            t[1] += 1
    return dict(totals)


def listing(source: str, *, depth: int = 1, profile: str | None = None, endpoint_url: str | None = None,
            all_files: bool = False) -> Iterator[str]:
    """Lines describing ``source``: each folder (to ``depth``) with its total size and file count,
    the files directly at the shown levels (or every file with ``all_files``), and a grand total."""
    if depth < 0:
        raise LsdgraphError(f"depth={depth}: use 0 or more")
    files = list_files(source, suffix=None, s3=S3Options(profile=profile, endpoint_url=endpoint_url))
    if not files:
        raise LsdgraphError(f"{source}: nothing there (no files under this prefix)")
    pairs = [(f.rel, f.size) for f in files]
    totals = folder_totals(pairs, depth)
    # every file's URL is root + rel (a single-file source lists its own folder as the root)
    root = files[0].url[:len(files[0].url) - len(files[0].rel)]
    rows = []
    for folder, (size, count) in totals.items():
        if folder:
            rows.append((folder + "/", f"{human_bytes(size):>10}  {_files(count)}  {root}{folder}/"))
    for rel, size in pairs:
        level = rel.count("/")
        if all_files or level < depth or (level == 0):
            rows.append((rel, f"{human_bytes(size):>10}  {'':>14}  {root}{rel}"))
    for _, line in sorted(rows):
        yield line
    size, count = totals[""]
    yield f"{human_bytes(size):>10}  {_files(count)}  total under {source}"


def _files(count: int) -> str:
    return f"{count:>8,} {'file ' if count == 1 else 'files'}"

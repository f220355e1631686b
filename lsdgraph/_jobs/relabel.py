"""Apply a fragment→segment LUT to a zarr volume of fragment ids, chunk by chunk, into a new volume
with the same geometry (refusing an output that would overwrite the input), in this process or as
a blockwise map on a Dask cluster."""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import numpy as np

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex
from lsdgraph._core.paths import output_folder
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._io.sources import S3Options, is_s3
from lsdgraph._io.volumes import Volume, create_volume, open_volume, overlap, write_chunk


def _check_out(fragments: str, out: str) -> None:
    """Refuse an output that is, contains or lies inside the input volume: writing it would
    overwrite the chunks being read."""
    how = overlap(str(fragments), str(out))
    if how:
        raise LsdgraphError(f"out={out} {how} the input volume {fragments}; choose an out= outside "
                            "the input volume (a sibling array in the same zarr container is fine)")


class _Lut:
    """A LUT ready for lookups: the index of its fragments and their segments, aligned."""

    def __init__(self, lut: str):
        keys, values = agglomerate.read_lut(lut)
        self.index = IdIndex(keys, f"{lut}: fragments")
        if len(self.index.ids) != len(keys):
            raise LsdgraphError(f"{lut}: the LUT lists some fragments more than once; regenerate it")
        self.values = values[np.argsort(keys, kind="stable")]  # aligned with index.ids


_OPENED: dict[str, tuple[Volume, _Lut, Volume]] = {}  # this process's open run (a worker's too)


def _open(run: str, fragments: str, lut: str, out: str, s3: S3Options | None) -> tuple[Volume, _Lut, Volume]:
    """The input, LUT and output of run ``run``, opened once per process (a cluster worker keeps
    them for every chunk of that run it is given)."""
    if run not in _OPENED:
        _OPENED.clear()
        _OPENED[run] = (open_volume(fragments, s3=s3), _Lut(lut), open_volume(out))
    return _OPENED[run]


def _close(run: str) -> None:
    """Let go of a run's LUT (a worker outlives the run; a LUT of 10⁹ fragments is 16 GB)."""
    _OPENED.pop(run, None)


def _relabel_chunks(run: str, fragments: str, lut: str, out: str, s3: S3Options | None,
                    chunks: list[tuple[tuple[int, ...], tuple[slice, ...]]]) -> int:
    """Relabel these chunks of the input into the output; returns the voxels the LUT mapped."""
    src, table, dst = _open(run, fragments, lut, out, s3)
    mapped = 0
    for idx, slices in chunks:
        block = src.read([s.start for s in slices], [s.stop for s in slices]).astype(np.uint64, copy=False)
        flat = block.ravel()
        i = table.index.lookup(flat)
        hit = i >= 0
        flat = np.where(hit, table.values[i], flat)
        mapped += int(hit.sum())
        write_chunk(dst, idx, flat.reshape(block.shape))
    return mapped


def relabel(fragments: str, lut: str, out: str, *, s3=None, quiet: bool = False, client=None) -> dict:
    """Apply a fragment→segment LUT to a zarr volume of fragment ids, chunk by chunk, into a new
    zarr volume with the same geometry. Ids missing from the LUT (e.g. 0) are kept. ``client``: a
    ``dask.distributed`` Client to spread the chunks over (a blockwise map: each worker opens the
    volumes and the LUT once and writes whole chunks, so the output is the same; the workers must
    see ``lut`` and ``out`` on a shared file system)."""
    src = open_volume(fragments, s3=s3)  # reads metadata only: a bad input is named as such first
    _check_out(fragments, out)
    if not is_s3(str(out)):
        output_folder(out, create=False)
    if not np.issubdtype(src.dtype, np.integer):
        raise LsdgraphError(f"{fragments}: dtype {src.dtype} is not an integer fragment-id volume")
    table = _Lut(lut)  # a bad LUT, or a bad client, is refused before the output exists
    if client is not None:
        from lsdgraph._jobs.cluster import check_client, distributed

        n_workers = check_client(client)
    dst = create_volume(out, src.shape, src.chunks, np.uint64, src.offset.tolist(), src.resolution.tolist(),
                        attrs={"lsdgraph_lut": str(lut), "lsdgraph_fragments": str(fragments)})
    run = uuid.uuid4().hex
    _OPENED.clear()
    _OPENED[run] = (src, table, dst)  # this process reads the LUT once
    args = (run, str(fragments), str(Path(lut).resolve()), str(Path(str(out)).resolve()), s3)
    chunks = list(src.blocks())
    t0 = time.perf_counter()
    bar = Progress(f"relabelling {Path(str(out)).name}", len(chunks), enabled=False if quiet else None,
                   amount=count_of("chunks"), unit="voxels")
    mapped = 0
    try:
        if client is None:
            for c in chunks:
                mapped += _relabel_chunks(*args, [c])
                bar.update(1, _voxels(c))
        else:
            futures = {client.submit(_relabel_chunks, *args, g, pure=False): g for g in _groups(chunks, 8 * n_workers)}
            for f in distributed().as_completed(futures):
                mapped += f.result()
                bar.update(len(futures[f]), sum(_voxels(c) for c in futures[f]))
            client.run(_close, run)
    finally:
        bar.close()
        _close(run)
    if not quiet:
        print(f"relabelled {int(np.prod(src.shape)):,} voxels ({mapped:,} mapped) into {out} in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {"voxels": int(np.prod(src.shape)), "mapped": mapped, "out": str(out)}


def _voxels(chunk: tuple[tuple[int, ...], tuple[slice, ...]]) -> int:
    return int(np.prod([s.stop - s.start for s in chunk[1]]))


def _groups(chunks: list, n: int) -> list[list]:
    """``chunks`` in at most ``n`` runs of neighbours (a task per run keeps the scheduler's load
    small and each worker's reads contiguous)."""
    size = max(1, -(-len(chunks) // max(n, 1)))
    return [chunks[i:i + size] for i in range(0, len(chunks), size)]

"""Copy a database between stores: MongoDB → a local store (``lsdgraph export``) and a local store →
MongoDB (``lsdgraph ingest file:PATH/DB``), whole or the part inside an ROI, in batches (bounded
memory). Collections keep their names, fields and records; RAG and skeleton rows get the block key
the local store sorts by, and MongoDB gets every index the kind has."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lsdgraph._core import blocks, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._core.roi import Roi, as_roi, mongo_filter
from lsdgraph._stores.api import Backend
from lsdgraph._stores.local import block_key
from lsdgraph._stores.local_db import BLOCK_KEY

_BSON = {"int64": "int64", "float64": "double", "bool": "bool"}


def local_database(source: str) -> tuple[str, str] | None:
    """``(store folder, database)`` when ``source`` (``file:PATH/DB`` or a path) is a database of a
    local store, else None."""
    path = Path(source[5:] if source.startswith("file:") else source).expanduser()
    if path.is_dir() and ((path / ".meta").is_dir() or (path / ".versions").is_dir()):
        return str(path.resolve().parent), path.name
    return None


def index_kind(coll: str) -> str:
    """The ``schema.json`` index list a collection gets."""
    for prefix, kind in ((schema.LUT_PREFIX, "lut"), (schema.TREE_PREFIX, "merge_tree"),
                         (schema.SKELETON_FRAGMENTS_PREFIX, "skeleton_fragments")):
        if coll.startswith(prefix):
            return kind
    return schema.kind_of(coll).name


def _spec(src: Backend, db: str, coll: str, kind: schema.Kind) -> dict[str, str]:
    ids = "uint64" if kind.name in ("rag_nodes", "rag_edges") else "int64"
    keys = (BLOCK_KEY, blocks.NODE_FIELD, *blocks.EDGE_FIELDS.values())  # each store's own, made on the way
    spec = {f: "float64" if t == "float64" else t for f, t in src.field_types(db, coll).items() if f not in keys}
    for f in kind.integers:
        if f in spec or kind.name != "skeleton_edges":
            spec[f] = ids if f in ("id", "u", "v") else "int64"
    return spec


def _roi_filter(kind: schema.Kind, roi: Roi | None) -> dict | None:
    """Rows inside ``roi`` (nodes by position, edges by their u end, as ROI reads); None: the
    collection has no place in space (copied only without an ROI)."""
    if kind.name in ("rag_nodes", "skeleton_nodes"):
        return mongo_filter(roi, kind.position)
    if kind.name in ("rag_edges", "skeleton_edges"):
        return mongo_filter(roi, schema.EDGE_POSITIONS["u"])
    return {} if roi is None else None


def _chunks(src: Backend, db: str, coll: str, kind: schema.Kind, filt: dict, spec: dict[str, str],
            local: bool, bar: Progress) -> Iterator[dict[str, tuple[str, np.ndarray]]]:
    position = schema.EDGE_POSITIONS["u"] if kind.name in schema.EDGE_JOINS else kind.position
    for cols in src.batches(db, coll, filt, spec):
        rows = len(next(iter(cols.values()))) if cols else 0
        bar.update(rows, rows)
        out: dict[str, tuple[str, np.ndarray]] = {}
        for f, a in cols.items():
            if spec[f] == "uint64":
                out[f] = ("uint64", a) if local else ("int64", a.view(np.int64))
            else:
                out[f] = (_BSON[spec[f]], a)
        if local and position and all(p in cols for p in position):
            z, y, x = (cols[p] for p in position)
            out[BLOCK_KEY] = ("uint64", block_key(z, y, x, schema.LOCAL["block_size_nm"]))
        elif not local:
            out.update(_shard_keys(kind, cols))
        yield out


def _shard_keys(kind: schema.Kind, cols: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """The sharded layout's block keys, as ingest stores them on MongoDB (:mod:`lsdgraph._core.blocks`).
    A row without a position (an edge end that is no node) gets the key of the origin: no ROI read
    selects it, whatever its key."""
    if kind.name == "rag_nodes":
        ends = {blocks.NODE_FIELD: kind.position}
    elif kind.name == "rag_edges":
        ends = {blocks.EDGE_FIELDS[e]: schema.EDGE_POSITIONS[e] for e in ("u", "v")}
    else:
        return {}
    out = {}
    for field, position in ends.items():
        if all(p in cols for p in position):
            pos = np.stack([cols[p] for p in position], axis=1)
            out[field] = ("int64", blocks.encode(np.where(np.isfinite(pos), pos, 0.0)))
    return out


def copy_database(src: Backend, db: str, dst: Backend, to_db: str, *, roi=None,
                  say: Callable[[str], None] = lambda line: None, progress: bool | None = None) -> list[str]:
    """Copy database ``db`` of ``src`` into ``to_db`` of ``dst`` (replacing collections of the same
    names); with ``roi``, the nodes inside it and the edges whose u is inside. One line per
    collection; a progress bar per collection on a terminal (``progress``: None = when stderr is one)."""
    roi = as_roi(roi)
    names = [n for n in src.collections(db) if n not in (schema.META, schema.DAISY_META)]
    if not names:
        raise LsdgraphError(f"database {db!r} at {src.uri} holds no collections to copy")
    lines = []
    for coll in names:
        kind = schema.kind_of(coll)
        filt = _roi_filter(kind, roi)
        if filt is None:
            lines.append(f"{'left out':<15} {coll:<28} (not spatial: copied only without --roi)")
            say(lines[-1])
            continue
        spec = _spec(src, db, coll, kind)
        bar = Progress(f"copying {coll}", src.count(db, coll), enabled=progress, amount=count_of("docs"))
        try:
            n = dst.replace(to_db, coll, _chunks(src, db, coll, kind, filt, spec, dst.local, bar), index_kind(coll))
        finally:
            bar.close()
        rec = dict(src.record(db, coll) or {"kind": kind.name, "status": "complete"})
        rec.pop("_id", None)
        rec.pop("lease", None)
        rec.update({"copied_from": f"{src.uri} {db}.{coll}", "roi": str(roi), "loaded": n})
        if roi is not None:
            rec.update({"documents": n, "duplicates": 0, "stats": None})
        if kind.name in schema.EDGE_JOINS:
            rec["positions"] = True
        dst.put_record(to_db, coll, rec)
        lines.append(f"{'copied':<15} {coll:<28} {n:>12,} docs")
        say(lines[-1])
    return lines

"""The agglomeration batch job: a RAG (from MongoDB or straight from its dump files) → one merge
tree → per-threshold fragment→segment LUTs, written as lsd ``.npz`` files and into MongoDB, with a
per-threshold summary. A rerun with the same inputs reuses the saved tree."""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.progress import Progress
from lsdgraph._core.roi import as_roi
from lsdgraph._io import bsonio
from lsdgraph._stores.mongo import Store

LUT_DIR = Path("luts") / "fragment_segment"


@dataclass
class SegmentResult:
    """Where a segment run put things, and what it found."""

    tree: agglomerate.MergeTree
    tree_path: Path
    reused_tree: bool
    summary: pd.DataFrame
    lut_paths: list[Path]
    db_luts: int          # LUT documents written to MongoDB
    seconds: dict


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _db_inputs(rag) -> dict:
    """What identifies a database RAG's content: the ingest records (checksums) or, for databases
    lsdgraph did not load, the counts."""
    meta = rag.db[schema.META]
    out = {"db": rag.db.name, "edges": rag.edges_name}
    for coll in (rag.nodes_name, rag.edges_name):
        rec = meta.find_one({"_id": coll}) or {}
        out[coll] = (rec.get("checksum"), rec.get("loaded"), str(rec.get("finished")),
                     rag.db[coll].estimated_document_count())
    return out


def _file_inputs(folder: Path, edges: str) -> dict:
    out = {"folder": str(folder.resolve()), "edges": edges}
    for name in ("nodes.bson", f"{edges}.bson"):
        st = (folder / name).stat()
        out[name] = (st.st_size, st.st_mtime_ns)
    return out


def load_tree(out: Path, edges: str, key: str) -> agglomerate.MergeTree | None:
    """The tree a previous run saved for the same inputs, if any."""
    side = out / f"merge_tree_{edges}.json"
    path = out / f"merge_tree_{edges}.npz"
    if side.exists() and path.exists():
        try:
            if json.loads(side.read_text()).get("key") == key:
                return agglomerate.MergeTree.load(path)
        except (ValueError, LsdgraphError):
            return None
    return None


def save_tree(tree: agglomerate.MergeTree, out: Path, edges: str, key: str, inputs: dict) -> Path:
    path = tree.save(out / f"merge_tree_{edges}.npz")
    (out / f"merge_tree_{edges}.json").write_text(json.dumps(
        {"key": key, "inputs": inputs, "fragments": len(tree), "bytes": tree.nbytes,
         "report": tree.report.__dict__}, indent=1, default=str))
    return path


def build_tree(*, store: Store | None = None, db: str | None = None, name: str | None = None,
               edges: str = "edges_hist_quant_75", bson: str | None = None, roi=None, out: str | Path,
               log=None, progress: bool | None = False) -> tuple[agglomerate.MergeTree, Path, bool, dict]:
    """The merge tree for a RAG, reused from ``out`` when the inputs are unchanged.

    Returns (tree, path, reused, timings)."""
    from lsdgraph._io import dumps
    from lsdgraph._query.rag import open_rag

    log = log or (lambda *_: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    roi = as_roi(roi)
    t0 = time.perf_counter()
    if bson is not None:
        folder = Path(bson)
        if not folder.is_dir():
            raise LsdgraphError(f"--bson {bson}: not a folder; point it at a RAG folder (nodes.bson + edges_*.bson)")
        dumps.edges_file(folder, edges)
        inputs = {**_file_inputs(folder, edges), "roi": str(roi)}
        rag = None
    else:
        rag = open_rag(db, name, edges=edges, store=store)
        inputs = {**_db_inputs(rag), "roi": str(roi)}
    key = _digest(inputs)
    tree = load_tree(out, edges, key)
    if tree is not None:
        log(f"reusing the merge tree in {out} (same inputs)")
        return tree, out / f"merge_tree_{edges}.npz", True, {"read": 0.0, "tree": time.perf_counter() - t0}
    if rag is None:
        arrays = dumps.read_rag(folder, edges, roi)
        ids, u, v, s = arrays.ids, arrays.u, arrays.v, arrays.scores
    else:
        ids, _ = rag.node_arrays(roi)
        u, v, s = _read_edges(rag, roi, progress)
    t1 = time.perf_counter()
    log(f"read {len(ids):,} fragments and {len(u):,} edges in {t1 - t0:.1f} s")
    tree = agglomerate.build_merge_tree(ids, u, v, s)
    del u, v, s
    path = save_tree(tree, out, edges, key, inputs)
    t2 = time.perf_counter()
    r = tree.report
    log(f"merge tree of {len(tree):,} fragments in {t2 - t1:.2f} s ({r.n_unknown_endpoint:,} edges with an "
        f"unknown endpoint dropped, {r.n_null_scores:,} null scores, {r.n_self_loops:,} self loops)")
    if rag is not None:
        write_tree_documents(rag.store, rag.db, edges, tree)
    return tree, path, False, {"read": t1 - t0, "tree": t2 - t1}


def _read_edges(rag, roi, progress: bool | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All edges (or those whose u is in ``roi``) as arrays, with a progress bar on a terminal."""
    bar = Progress(f"reading {rag.edges_name}", rag.edges.estimated_document_count(), enabled=progress,
                   amount=lambda n: f"{n:,.0f}")
    parts = []
    for u, v, s in rag.iter_edge_batches(roi=roi):
        parts.append((u, v, s))
        bar.update(len(u), len(u))
    bar.close()
    if not parts:
        return np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def write_tree_documents(store: Store, db, edges: str, tree: agglomerate.MergeTree) -> int:
    """The tree in MongoDB (``lsdgraph_tree.<edges>``): one document per merged fragment,
    ``{fragment, parent, score}``; a fragment without a document is a root."""
    coll = db[schema.TREE_PREFIX + edges]
    coll.drop()
    merged = np.flatnonzero(tree.parent != np.arange(len(tree), dtype=tree.parent.dtype))
    n = _insert_columns(store, coll, {
        "fragment": ("int64", tree.fragments[merged].view(np.int64)),
        "parent": ("int64", tree.fragments[tree.parent[merged]].view(np.int64)),
        "score": ("double", tree.score[merged].astype(np.float64))})
    coll.create_index([("fragment", 1)], name="fragment", unique=True)
    return n


def _insert_columns(store: Store, coll, columns: dict, batch: int = 200_000) -> int:
    n = len(next(iter(columns.values()))[1])
    for i in range(0, n, batch):
        raw = bsonio.encode({k: (kind, a[i:i + batch]) for k, (kind, a) in columns.items()})
        docs, _, _ = bsonio.scan(raw, ["_id"])
        store.insert_docs(coll, docs, f"{coll.name}")
    return n


def segment(*, store: Store | None = None, db: str | None = None, name: str | None = None,
            edges: str = "edges_hist_quant_75", bson: str | None = None, thresholds="0:1:0.02", roi=None,
            out: str | Path, lut_files: bool = True, db_luts: str = "all", quiet: bool = False,
            stream=None) -> SegmentResult:
    """Run the batch job; see the module docstring. ``db_luts``: ``all``, ``none`` or a threshold
    spec choosing which LUTs go into MongoDB (only with a database source)."""
    stream = stream or sys.stderr
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=stream, flush=True))
    values, _ = agglomerate.parse_thresholds(thresholds)
    out = Path(out)
    tree, tree_path, reused, seconds = build_tree(store=store, db=db, name=name, edges=edges, bson=bson,
                                                  roi=roi, out=out, log=log, progress=False if quiet else None)
    t0 = time.perf_counter()
    paths = []
    if lut_files:
        lut_dir = out / LUT_DIR
        lut_dir.mkdir(parents=True, exist_ok=True)
        for cut in tree.iter_cuts(thresholds):
            paths.append(agglomerate.write_lut(lut_dir / f"seg_{edges}_{cut.name}.npz", tree.fragments, cut.segments))
    seconds["luts"] = time.perf_counter() - t0
    written = 0
    if bson is None and db_luts != "none":
        from lsdgraph._query.rag import open_rag

        rag = open_rag(db, name, edges=edges, store=store)
        chosen = values if db_luts == "all" else agglomerate.parse_thresholds(db_luts)[0]
        t1 = time.perf_counter()
        written = write_lut_documents(rag.store, rag.db, edges, tree, chosen, roi=roi)
        seconds["db_luts"] = time.perf_counter() - t1
        log(f"wrote {written:,} LUT documents to {rag.db.name}.{schema.LUT_PREFIX}{edges} "
            f"in {seconds['db_luts']:.1f} s")
    summary = agglomerate.summary(tree, thresholds)
    summary.to_csv(out / f"summary_{edges}.csv", index=False)
    (out / f"summary_{edges}.json").write_text(summary.to_json(orient="records", indent=1))
    return SegmentResult(tree, tree_path, reused, summary, paths, written, seconds)


def write_lut_documents(store: Store, db, edges: str, tree: agglomerate.MergeTree, thresholds,
                        roi=None) -> int:
    """LUTs in MongoDB (``lsdgraph_lut.<edges>``): ``{threshold, fragment, segment}`` for every
    fragment that is not its own segment at that threshold (a fragment without a document at t is a
    segment by itself), indexed by (threshold, fragment) and (threshold, segment). Replaces what a
    previous run wrote; the run's thresholds and ROI are recorded in ``lsdgraph_meta``."""
    coll = db[schema.LUT_PREFIX + edges]
    coll.drop()
    total = 0
    frag64 = tree.fragments.view(np.int64)
    for t in np.asarray(thresholds, float).tolist():
        seg = tree.cut(t)
        moved = np.flatnonzero(seg != tree.fragments)
        total += _insert_columns(store, coll, {
            "threshold": ("double", np.full(len(moved), t)),
            "fragment": ("int64", frag64[moved]),
            "segment": ("int64", seg[moved].view(np.int64))})
    for spec in schema.indexes("lut"):
        coll.create_index([tuple(k) for k in spec["key"]], name=spec["name"], unique=spec.get("unique", False))
    db[schema.META].replace_one({"_id": coll.name}, {
        "_id": coll.name, "kind": "lut", "edges": edges, "thresholds": list(map(float, thresholds)),
        "roi": str(as_roi(roi)), "fragments": len(tree), "documents": total, "status": "complete"}, upsert=True)
    return total


def segment_of(store: Store, db, edges: str, fragment: int, threshold: float) -> int:
    """Which segment holds ``fragment`` at ``threshold``, from the LUT documents."""
    doc = db[schema.LUT_PREFIX + edges].find_one({"threshold": float(threshold), "fragment": int(fragment)})
    return int(doc["segment"]) if doc else int(fragment)


def _check_out(fragments: str, out: str) -> None:
    """Refuse an output that is, contains or lies inside the input volume: writing it would
    overwrite the chunks being read."""
    from lsdgraph._io.volumes import overlap

    how = overlap(str(fragments), str(out))
    if how:
        raise LsdgraphError(f"--out {out} {how} the input volume {fragments}; choose an --out outside "
                            "the input volume (a sibling array in the same zarr container is fine)")


def relabel(fragments: str, lut: str, out: str, *, s3=None, quiet: bool = False) -> dict:
    """Apply a fragment→segment LUT to a zarr volume of fragment ids, chunk by chunk, into a new
    zarr volume with the same geometry. Ids missing from the LUT (e.g. 0) are kept."""
    from lsdgraph._io.volumes import create_volume, open_volume, write_chunk

    src = open_volume(fragments, s3=s3)  # reads metadata only: a bad input is named as such first
    _check_out(fragments, out)
    if not np.issubdtype(src.dtype, np.integer):
        raise LsdgraphError(f"{fragments}: dtype {src.dtype} is not an integer fragment-id volume")
    keys, values = agglomerate.read_lut(lut)
    index = agglomerate.IdIndex(keys)
    if len(index.ids) != len(keys):
        raise LsdgraphError(f"{lut}: the LUT lists some fragments more than once; regenerate it")
    values = values[np.argsort(keys, kind="stable")]  # aligned with index.ids
    dst = create_volume(out, src.shape, src.chunks, np.uint64, src.offset, src.resolution,
                        attrs={"lsdgraph_lut": str(lut), "lsdgraph_fragments": str(fragments)})
    mapped = 0
    t0 = time.perf_counter()
    for idx, slices in src.blocks():
        block = src.read([s.start for s in slices], [s.stop for s in slices]).astype(np.uint64, copy=False)
        flat = block.ravel()
        i = index.lookup(flat)
        hit = i >= 0
        flat = np.where(hit, values[i], flat)
        mapped += int(hit.sum())
        write_chunk(dst, idx, flat.reshape(block.shape))
    if not quiet:
        print(f"relabelled {int(np.prod(src.shape)):,} voxels ({mapped:,} mapped) into {out} in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {"voxels": int(np.prod(src.shape)), "mapped": mapped, "out": str(out)}

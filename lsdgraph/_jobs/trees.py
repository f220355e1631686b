"""The merge tree of a RAG for the jobs: read the RAG (from MongoDB or its dump files), build the
tree, save it next to the outputs and reuse it when a rerun has the same inputs (a digest of the
ingest records or the files' sizes and dates, the ROI and the mode). ``like_lab=True`` builds the
lab pipeline's tree (null scores merge at every threshold) under its own file name and key, so a
lab tree is never reused as a default one or the other way round, and writes no tree documents
(the store's always hold lsdgraph's default tree)."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from lsdgraph._algorithms import lab
from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.paths import output_folder
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._core.roi import as_roi
from lsdgraph._io import dumps
from lsdgraph._jobs.results import write_tree_documents
from lsdgraph._query.rag import open_rag
from lsdgraph._stores.api import Backend


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _db_inputs(rag) -> dict:
    """What identifies a database RAG's content: the ingest records (checksums) or, for databases
    lsdgraph did not load, the counts."""
    out = {"db": rag.db, "store": rag.store.uri, "edges": rag.edges_name}
    for coll in (rag.nodes_name, rag.edges_name):
        rec = rag.store.record(rag.db, coll) or {}
        out[coll] = (rec.get("checksum"), rec.get("loaded"), str(rec.get("finished")), rag.store.count(rag.db, coll))
    return out


def _file_inputs(folder: Path, edges: str) -> dict:
    out: dict[str, object] = {"folder": str(folder.resolve()), "edges": edges}
    for name in ("nodes.bson", f"{edges}.bson"):
        st = (folder / name).stat()
        out[name] = (st.st_size, st.st_mtime_ns)
    return out


def tree_stem(edges: str, like_lab: bool = False) -> str:
    """The tree's file name without suffix: ``merge_tree_<edges>`` (``…_like_lab`` for the lab's)."""
    return f"merge_tree_{edges}_like_lab" if like_lab else f"merge_tree_{edges}"


def load_tree(out: Path, edges: str, key: str, like_lab: bool = False) -> agglomerate.MergeTree | None:
    """The tree a previous run saved for the same inputs, if any."""
    side = out / f"{tree_stem(edges, like_lab)}.json"
    path = out / f"{tree_stem(edges, like_lab)}.npz"
    if side.exists() and path.exists():
        try:
            if json.loads(side.read_text()).get("key") == key:
                return agglomerate.MergeTree.load(path)
        except (ValueError, LsdgraphError):
            return None
    return None


def save_tree(tree: agglomerate.MergeTree, out: Path, edges: str, key: str, inputs: dict,
              like_lab: bool = False) -> Path:
    path = tree.save(out / f"{tree_stem(edges, like_lab)}.npz")
    (out / f"{tree_stem(edges, like_lab)}.json").write_text(json.dumps(
        {"key": key, "inputs": inputs, "fragments": len(tree), "bytes": tree.nbytes,
         "report": tree.report.__dict__}, indent=1, default=str))
    return path


def edges_name(*, store: Backend | None = None, db: str | None = None, name: str | None = None,
               edges: str | None = None, bson: str | None = None) -> str:
    """The edges a job reads: ``edges``, else the one rule (:func:`schema.choose_edges`) over the
    database's edges collections or the folder's edges files."""
    if bson is not None:
        folder = Path(bson)
        if not folder.is_dir():
            raise LsdgraphError(f"bson={bson!r}: not a folder; point it at a RAG folder (nodes.bson + edges_*.bson)")
        return dumps.edges_file(folder, edges).stem
    return open_rag(db, name, edges=edges, store=store).edges_name


def build_tree(*, store: Backend | None = None, db: str | None = None, name: str | None = None,
               edges: str | None = None, bson: str | None = None, roi=None, out: str | Path,
               log=None, progress: bool | None = False,
               like_lab: bool = False, client=None) -> tuple[agglomerate.MergeTree, Path, bool, dict]:
    """The merge tree for a RAG, reused from ``out`` when the inputs are unchanged.
    ``like_lab``: null scores merge at every threshold, as in the lab's pipeline. ``client``: a
    ``dask.distributed`` Client to build it on, block by block (the same tree; see
    :mod:`lsdgraph._jobs.cluster`).

    Returns (tree, path, reused, timings)."""
    log = log or (lambda *_: None)
    out = output_folder(out, create=False)  # made once the inputs are known to be good
    roi = as_roi(roi)
    t0 = time.perf_counter()
    edges = edges_name(store=store, db=db, name=name, edges=edges, bson=bson)
    if bson is not None:
        folder = Path(bson)
        inputs = {**_file_inputs(folder, edges), "roi": str(roi)}
        rag = None
    else:
        rag = open_rag(db, name, edges=edges, store=store)
        why = rag.why_empty(roi) if roi is not None else None
        if why:
            raise LsdgraphError(f"nothing to agglomerate: {why}")
        inputs = {**_db_inputs(rag), "roi": str(roi)}
    if like_lab:  # only then: the default key stays what earlier runs saved
        inputs["nulls"] = "merge at every threshold (like_lab)"
    key = _digest(inputs)
    tree = load_tree(out, edges, key, like_lab)
    if tree is not None:
        log(f"reusing the {'lab ' if like_lab else ''}merge tree in {out} (same inputs)")
        return (tree, out / f"{tree_stem(edges, like_lab)}.npz", True,
                {"read": 0.0, "tree": time.perf_counter() - t0})
    source = Path(bson) if bson is not None else None
    if client is not None:
        tree, n_null, t1 = _cluster_tree(client, rag, source, edges, db, roi, like_lab, progress, log)
    else:
        tree, n_null, t1 = _local_tree(rag, source, edges, roi, like_lab, progress, log, t0)
    path = save_tree(tree, output_folder(out), edges, key, inputs, like_lab)
    t2 = time.perf_counter()
    r = tree.report
    nulls = (f"{n_null:,} null scores merged at every threshold (like_lab)" if like_lab
             else f"{r.n_null_scores:,} null scores")
    log(f"merge tree of {len(tree):,} fragments in {t2 - t1:.2f} s ({r.n_unknown_endpoint:,} edges with an "
        f"unknown endpoint dropped, {nulls}, {r.n_self_loops:,} self loops)")
    if rag is not None and not like_lab:
        write_tree_documents(rag.store, rag.db, edges, tree)
    return tree, path, False, {"read": t1 - t0, "tree": t2 - t1}


def _local_tree(rag, folder, edges: str, roi, like_lab: bool, progress: bool | None, log, t0: float
                ) -> tuple[agglomerate.MergeTree, int, float]:
    """The tree built in this process: (tree, null scores read, time the read ended)."""
    if rag is None:
        arrays = dumps.read_rag(folder, edges, roi)
        ids, u, v, s = arrays.ids, arrays.u, arrays.v, arrays.scores
    else:
        ids, _ = rag.node_arrays(roi)
        u, v, s = _read_edges(rag, roi, progress)
    t1 = time.perf_counter()
    if not len(ids):
        raise _no_fragments(roi)
    log(f"read {len(ids):,} fragments and {len(u):,} edges in {t1 - t0:.1f} s")
    n_null = int(np.count_nonzero(np.isnan(s)))
    tree = lab.build_lab_merge_tree(ids, u, v, s) if like_lab else agglomerate.build_merge_tree(ids, u, v, s)
    return tree, n_null, t1


def _cluster_tree(client, rag, folder, edges: str, db: str | None, roi, like_lab: bool,
                  progress: bool | None, log) -> tuple[agglomerate.MergeTree, int, float]:
    """The tree built on a Dask cluster: (tree, null scores read, time the work ended)."""
    from lsdgraph._jobs import cluster

    if rag is None:
        if roi is not None:
            raise LsdgraphError("roi= with bson= on a cluster: byte ranges of dump files cannot be cut by ROI; "
                                "load the folder into a store first (`lsdgraph ingest DIR --db ./lsdgraph-data`) "
                                "or drop roi=")
        tree, run = cluster.dump_tree(client, folder, edges, like_lab=like_lab, progress=progress, log=log)
    else:
        tree, run = cluster.cluster_tree(client, rag, cluster.worker_uri(db, rag.store), roi, like_lab=like_lab,
                                         progress=progress, log=log)
    if not len(tree):
        raise _no_fragments(roi)
    log(f"read and reduced {len(tree):,} fragments and {tree.report.n_edges:,} edges on the cluster in "
        f"{run.seconds:.1f} s ({run.part_bytes / 2**20:,.1f} MiB of forests moved)")
    return tree, run.n_nan, time.perf_counter()


def _no_fragments(roi) -> LsdgraphError:
    where = f"in roi {roi}" if roi is not None else "in the RAG"
    return LsdgraphError(f"no fragments {where}: nothing to agglomerate")


def _read_edges(rag, roi, progress: bool | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All edges (or those whose u is in ``roi``) as arrays, with a progress bar on a terminal."""
    bar = Progress(f"reading {rag.edges_name}", rag.store.count(rag.db, rag.edges_name), enabled=progress,
                   amount=count_of("edges"), unit="edges")
    parts = []
    for u, v, s in rag.iter_edge_batches(roi=roi):
        parts.append((u, v, s))
        bar.update(len(u), len(u))
    bar.close()
    if not parts:
        return np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0)
    u, v, s = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return u, v, s

"""The agglomeration batch job: a RAG (from MongoDB or straight from its dump files) → one merge
tree → per-threshold fragment→segment LUTs, written as lsd ``.npz`` files and into MongoDB, with a
per-threshold summary. A rerun with the same inputs reuses the saved tree.

``like_lab=True`` reproduces the lab's ``04_find_segments`` (see docs/semantics.md): null scores
merge at every threshold, segment ids are fragment indices (0 can be a segment), LUT files are
named ``seg_<edges>_<int(t*100)>.npz`` in the same folder as the lab's (a default run's ``t = 0``
file has the same name: give the two modes different ``out`` folders). Its tree and summary are
kept apart from the default ones (``…_like_lab``), and it writes no documents to the store, whose
tree and LUTs always hold lsdgraph's default semantics."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lsdgraph._algorithms import lab
from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.paths import output_folder
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._jobs.results import write_lut_documents
from lsdgraph._jobs.trees import build_tree, edges_name
from lsdgraph._query.rag import open_rag
from lsdgraph._stores.api import Backend, connect

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


def segment(*, store: Backend | None = None, db: str | None = None, name: str | None = None,
            edges: str | None = None, bson: str | None = None, thresholds="0:1:0.02", roi=None,
            out: str | Path, lut_files: bool = True, db_luts: str = "none", quiet: bool = False,
            stream=None, like_lab: bool = False, client=None) -> SegmentResult:
    """Run the batch job; see the module docstring. ``db_luts``: ``none`` (default), ``all`` or a
    threshold spec choosing which LUTs also go into the store as documents (only with a database
    source; with ``like_lab`` only ``all`` or ``none``, and nothing is written): one document per
    fragment not alone in its segment per threshold, so ``all`` on a large RAG is millions.
    ``like_lab``: the lab pipeline's semantics. ``client``: a ``dask.distributed`` Client to build
    the merge tree on, block by block (the same tree and LUTs as in this process); the workers
    connect to ``db`` themselves."""
    stream = stream or sys.stderr
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=stream, flush=True))
    values, names = agglomerate.parse_thresholds(thresholds)
    if like_lab:
        if db_luts not in ("all", "none"):
            raise LsdgraphError(f"db_luts={db_luts!r} with like_lab=True: the store's LUT documents hold "
                                "lsdgraph's default semantics, so a lab run writes LUT files only; "
                                "pass db_luts='none'")
        names = lab.lab_lut_names(values.tolist())  # checked before the tree is built
    # which LUTs also go into the store, parsed now: a bad spec stops before any work
    lut_values = values if db_luts in ("all", "none") else agglomerate.parse_thresholds(db_luts, param="db_luts")[0]
    out = output_folder(out, create=False)  # made once the inputs are known to be good
    if bson is None:
        store = store or connect(db)
    edges = edges_name(store=store, db=db, name=name, edges=edges, bson=bson)
    tree, tree_path, reused, seconds = build_tree(store=store, db=db, name=name, edges=edges, bson=bson,
                                                  roi=roi, out=out, log=log, progress=False if quiet else None,
                                                  like_lab=like_lab, client=client)
    t0 = time.perf_counter()
    paths = []
    if lut_files:
        lut_dir = out / LUT_DIR
        lut_dir.mkdir(parents=True, exist_ok=True)
        bar = Progress(f"writing {LUT_DIR}", len(values), enabled=False if quiet else None,
                       amount=count_of("LUT files"), unit="fragments")
        for t, name_t in zip(values.tolist(), names, strict=True):
            segments = lab.lab_segment_ids(tree, t) if like_lab else tree.cut(t)
            paths.append(agglomerate.write_lut(lut_dir / f"seg_{edges}_{name_t}.npz", tree.fragments, segments))
            bar.update(1, len(segments))
        bar.close()
    seconds["luts"] = time.perf_counter() - t0
    written = 0
    if like_lab and bson is None and db_luts != "none":
        log("like_lab: no LUT documents written (the store's hold lsdgraph's default semantics)")
    elif bson is None and db_luts != "none":
        rag = open_rag(db, name, edges=edges, store=store)
        t1 = time.perf_counter()
        written = write_lut_documents(rag.store, rag.db, edges, tree, lut_values, roi=roi,
                                      progress=False if quiet else None)
        seconds["db_luts"] = time.perf_counter() - t1
        log(f"wrote {written:,} LUT documents to {rag.db}.{schema.LUT_PREFIX}{edges} "
            f"in {seconds['db_luts']:.1f} s")
    summary = agglomerate.summary(tree, thresholds)
    stem = f"summary_{edges}"
    if like_lab:
        summary["name"] = names  # the LUT files' names
        stem += "_like_lab"
    summary.to_csv(out / f"{stem}.csv", index=False)
    (out / f"{stem}.json").write_text(summary.to_json(orient="records", indent=1))
    return SegmentResult(tree, tree_path, reused, summary, paths, written, seconds)

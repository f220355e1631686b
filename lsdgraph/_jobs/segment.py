"""The agglomeration batch job: a RAG (from MongoDB or straight from its dump files) → one merge
tree → per-threshold fragment→segment LUTs, written as lsd ``.npz`` files and into MongoDB, with a
per-threshold summary. A rerun with the same inputs reuses the saved tree."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
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
            out: str | Path, lut_files: bool = True, db_luts: str = "all", quiet: bool = False,
            stream=None) -> SegmentResult:
    """Run the batch job; see the module docstring. ``db_luts``: ``all``, ``none`` or a threshold
    spec choosing which LUTs go into MongoDB (only with a database source)."""
    stream = stream or sys.stderr
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=stream, flush=True))
    values, _ = agglomerate.parse_thresholds(thresholds)
    if bson is None:
        store = store or connect(db)
    edges = edges_name(store=store, db=db, name=name, edges=edges, bson=bson)
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
        rag = open_rag(db, name, edges=edges, store=store)
        chosen = values if db_luts == "all" else agglomerate.parse_thresholds(db_luts)[0]
        t1 = time.perf_counter()
        written = write_lut_documents(rag.store, rag.db, edges, tree, chosen, roi=roi)
        seconds["db_luts"] = time.perf_counter() - t1
        log(f"wrote {written:,} LUT documents to {rag.db}.{schema.LUT_PREFIX}{edges} "
            f"in {seconds['db_luts']:.1f} s")
    summary = agglomerate.summary(tree, thresholds)
    summary.to_csv(out / f"summary_{edges}.csv", index=False)
    (out / f"summary_{edges}.json").write_text(summary.to_json(orient="records", indent=1))
    return SegmentResult(tree, tree_path, reused, summary, paths, written, seconds)

"""Agglomeration results in the store: the merge tree (``lsdgraph_tree.<edges>``) and per-threshold
LUTs (``lsdgraph_lut.<edges>``) as documents (rows, in the local store) that the mongo shell scripts
and :func:`segment_of` read, with their records in ``lsdgraph_meta``."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._core.roi import as_roi
from lsdgraph._stores.api import Backend


def write_tree_documents(store: Backend, db: str, edges: str, tree: agglomerate.MergeTree) -> int:
    """The tree: one document per merged fragment, ``{fragment, parent, score}``; a fragment
    without a document is a root."""
    merged = np.flatnonzero(tree.parent != np.arange(len(tree), dtype=tree.parent.dtype))
    columns = {"fragment": ("int64", tree.fragments[merged].view(np.int64)),
               "parent": ("int64", tree.fragments[tree.parent[merged]].view(np.int64)),
               "score": ("double", tree.score[merged].astype(np.float64))}
    return store.replace(db, schema.TREE_PREFIX + edges, [columns], "merge_tree")


def write_lut_documents(store: Backend, db: str, edges: str, tree: agglomerate.MergeTree, thresholds,
                        roi=None, progress: bool | None = None) -> int:
    """LUTs: ``{threshold, fragment, segment}`` for every fragment that is not its own segment at
    that threshold (a fragment without a document at t is a segment by itself), indexed by
    (threshold, fragment) and (threshold, segment). Replaces what a previous run wrote; the run's
    thresholds and ROI are recorded in ``lsdgraph_meta``."""
    name = schema.LUT_PREFIX + edges
    frag64 = tree.fragments.view(np.int64)
    values = np.asarray(thresholds, float).tolist()
    bar = Progress(f"writing {name}", len(values), enabled=progress, amount=count_of("thresholds"))

    def chunks() -> Iterator[dict]:
        for t in values:  # by threshold, then fragment: the index order
            seg = tree.cut(t)
            moved = np.flatnonzero(seg != tree.fragments)
            yield {"threshold": ("double", np.full(len(moved), t)), "fragment": ("int64", frag64[moved]),
                   "segment": ("int64", seg[moved].view(np.int64))}
            bar.update(1, len(moved))

    try:
        total = store.replace(db, name, chunks(), "lut")
    finally:
        bar.close()
    store.put_record(db, name, {"kind": "lut", "edges": edges, "thresholds": list(map(float, thresholds)),
                                "roi": str(as_roi(roi)), "fragments": len(tree), "documents": total,
                                "status": "complete"})
    return total


def segment_of(store: Backend, db: str, edges: str, fragment: int, threshold: float) -> int:
    """Which segment holds ``fragment`` at ``threshold``, from the LUT documents."""
    got = store.find_value(db, schema.LUT_PREFIX + edges, {"threshold": float(threshold), "fragment": int(fragment)},
                           "segment", role=("lut", "fragment"))
    return int(fragment) if got is None else int(got)

"""Agglomeration results in MongoDB: the merge tree (``lsdgraph_tree.<edges>``) and per-threshold
LUTs (``lsdgraph_lut.<edges>``) as documents the mongo shell scripts read, with their records in
``lsdgraph_meta``."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.roi import as_roi
from lsdgraph._stores.mongo import Store

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Db


def write_tree_documents(store: Store, db: Db, edges: str, tree: agglomerate.MergeTree) -> int:
    """The tree in MongoDB (``lsdgraph_tree.<edges>``): one document per merged fragment,
    ``{fragment, parent, score}``; a fragment without a document is a root."""
    coll = db[schema.TREE_PREFIX + edges]
    coll.drop()
    merged = np.flatnonzero(tree.parent != np.arange(len(tree), dtype=tree.parent.dtype))
    n = store.insert_columns(coll, {
        "fragment": ("int64", tree.fragments[merged].view(np.int64)),
        "parent": ("int64", tree.fragments[tree.parent[merged]].view(np.int64)),
        "score": ("double", tree.score[merged].astype(np.float64))}, coll.name)
    store.create_indexes(coll, "merge_tree")
    return n


def write_lut_documents(store: Store, db: Db, edges: str, tree: agglomerate.MergeTree, thresholds,
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
        total += store.insert_columns(coll, {
            "threshold": ("double", np.full(len(moved), t)),
            "fragment": ("int64", frag64[moved]),
            "segment": ("int64", seg[moved].view(np.int64))}, coll.name)
    store.create_indexes(coll, "lut")
    db[schema.META].replace_one({"_id": coll.name}, {
        "_id": coll.name, "kind": "lut", "edges": edges, "thresholds": list(map(float, thresholds)),
        "roi": str(as_roi(roi)), "fragments": len(tree), "documents": total, "status": "complete"}, upsert=True)
    return total


def segment_of(store: Store, db: Db, edges: str, fragment: int, threshold: float) -> int:
    """Which segment holds ``fragment`` at ``threshold``, from the LUT documents."""
    doc = db[schema.LUT_PREFIX + edges].find_one({"threshold": float(threshold), "fragment": int(fragment)})
    return int(doc["segment"]) if doc else int(fragment)

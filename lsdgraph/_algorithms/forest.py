"""Agglomeration in parts: the minimum spanning forest of each part of a RAG, merged part by part.

Thresholds on stored scores are single linkage, so the components at every threshold are those of
the minimum spanning forest: an edge that closes a cycle of edges scored no higher never joins
anything new. A :class:`Part` holds one region's fragments, the forest of the edges between them
and the edges still *pending* (an end outside the region, or not a fragment at all). Merging parts
joins their fragments, resolves the pending edges whose ends are now both known and keeps only the
forest of the union. The last part's forest builds the same merge tree as all edges at once (see
:func:`merge_tree.build_merge_tree`); edges still pending there name no fragment, and are counted
as the single-machine path counts them.

An edge is only pruned once both its ends are known fragments: an edge to an id that is no
fragment is dropped by the single-machine path, so it must not make another edge look redundant.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._algorithms import unionfind as uf
from lsdgraph._core.ids import IdIndex, as_ids, sorted_unique

_COUNTS = ("n_edges", "n_self_loops", "n_null_scores", "n_used", "n_nan", "n_duplicate_fragments")


@dataclass
class Part:
    """One region of a RAG, reduced: what a worker returns and a merge takes."""

    ids: np.ndarray        # uint64 sorted distinct fragments of the region
    u: np.ndarray          # uint64 forest edges (both ends in ids), ascending score
    v: np.ndarray
    s: np.ndarray          # float32
    pu: np.ndarray         # uint64 pending edges: an end not (yet) among ids
    pv: np.ndarray
    ps: np.ndarray         # float32
    n_edges: int = 0       # edges read into this part
    n_self_loops: int = 0  # resolved edges dropped as in build_merge_tree
    n_null_scores: int = 0
    n_used: int = 0        # resolved edges that entered a forest computation
    n_nan: int = 0         # null scores read (before like_lab turned them into -inf)
    n_duplicate_fragments: int = 0  # repeated ids in the fragments read (ignored)
    merged_bytes: int = 0  # bytes of the parts merged into this one, all the way down: what a
    #                        cluster ships between workers at most

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays: what moving this part between workers ships."""
        return sum(int(a.nbytes) for a in (self.ids, self.u, self.v, self.s, self.pu, self.pv, self.ps))


def _lookup(index: IdIndex, ids: np.ndarray) -> np.ndarray:
    return index.lookup(ids, out=np.empty(ids.size, agglomerate.index_dtype(len(index))))


def _classify(index: IdIndex, u: np.ndarray, v: np.ndarray, s: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """(u indices, v indices, pending, usable, counts): an edge is pending while an end is not among
    the index's fragments; a resolved one is usable unless it is a self loop or its score is null
    (counted as :func:`merge_tree.build_merge_tree` counts them)."""
    ui, vi = _lookup(index, u), _lookup(index, v)
    known = (ui >= 0) & (vi >= 0)
    self_loop = known & (ui == vi)
    null = known & ~self_loop & np.isnan(s)
    usable = known & ~self_loop & ~null
    counts = {"n_self_loops": int(self_loop.sum()), "n_null_scores": int(null.sum()), "n_used": int(usable.sum())}
    return ui, vi, ~known, usable, counts


def _forest(ids: np.ndarray, ui: np.ndarray, vi: np.ndarray, s: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The minimum spanning forest of usable edges given as indices into ``ids``, as (u ids, v ids,
    float32 scores) in ascending score."""
    scores, ab, *_ = uf.sort_edges(ui, vi, np.ascontiguousarray(s, np.float32))
    keep = np.zeros(ab.size, bool)
    uf.union_pass(scores, ab, np.empty(ids.size, agglomerate.index_dtype(ids.size)), np.empty(ids.size, np.float32),
                  keep)
    ab, scores = ab[keep], scores[keep]
    return ids[(ab >> np.uint64(32)).astype(np.int64)], ids[(ab & np.uint64(0xFFFFFFFF)).astype(np.int64)], scores


def block_part(ids, u, v, scores, like_lab: bool = False) -> Part:
    """A part from one region's fragments and the edges read for it (each edge read by exactly one
    part); ``like_lab``: null scores merge at every threshold (see :func:`lab.lab_scores`)."""
    from lsdgraph._algorithms.lab import lab_scores

    given = as_ids(ids, "fragments")
    ids = sorted_unique(given)
    u, v = as_ids(u, "edge column u"), as_ids(v, "edge column v")
    raw = np.asarray(scores)
    n_nan = int(np.count_nonzero(np.isnan(raw))) if raw.dtype.kind == "f" else 0
    with np.errstate(over="ignore"):  # beyond float32's range: +-inf, as build_merge_tree casts
        s = lab_scores(raw) if like_lab else raw.astype(np.float32)
    ui, vi, pending, usable, counts = _classify(IdIndex(ids, sort=False), u, v, s)
    fu, fv, fs = _forest(ids, ui[usable], vi[usable], s[usable])
    return Part(ids, fu, fv, fs, u[pending], v[pending], s[pending], n_edges=int(u.size), n_nan=n_nan,
                n_duplicate_fragments=int(given.size - ids.size), **counts)


def _join(parts: Sequence[Part]) -> tuple[Part, np.ndarray, np.ndarray]:
    """The parts' fragments, their forests and the pending edges now resolved, with everything
    counted (a fragment two parts both read counts as a repeated id, as in
    :func:`merge_tree.build_merge_tree`); the candidate edges come as indices into the fragments,
    and the part's forest holds their scores."""
    given = np.concatenate([p.ids for p in parts])
    ids = sorted_unique(given)
    index = IdIndex(ids, sort=False)
    pu, pv, ps = (np.concatenate([getattr(p, k) for p in parts]) for k in ("pu", "pv", "ps"))
    pui, pvi, pending, usable, counts = _classify(index, pu, pv, ps)
    fu, fv = np.concatenate([p.u for p in parts]), np.concatenate([p.v for p in parts])
    ui = np.concatenate([_lookup(index, fu), pui[usable]])
    vi = np.concatenate([_lookup(index, fv), pvi[usable]])
    s = np.concatenate([*(p.s for p in parts), ps[usable]])
    counts["n_duplicate_fragments"] = int(given.size - ids.size)
    totals = {k: sum(getattr(p, k) for p in parts) + counts.get(k, 0) for k in _COUNTS}
    joined = Part(ids, np.empty(0, np.uint64), np.empty(0, np.uint64), s, pu[pending], pv[pending], ps[pending],
                  **totals, merged_bytes=parts_bytes(parts))
    return joined, ui, vi


def merge_parts(parts: Sequence[Part]) -> Part:
    """One part from several: the forest of their forests and of the pending edges both of whose
    ends are now known."""
    joined, ui, vi = _join(parts)
    u, v, s = _forest(joined.ids, ui, vi, joined.s)
    return replace(joined, u=u, v=v, s=s)


def tree_of(parts: Sequence[Part], unread_edges: int = 0) -> agglomerate.MergeTree:
    """The merge tree of the whole RAG from its last parts (joined here, their forest never built:
    the tree's own union-find does that); ``unread_edges``: edges no part read because no
    fragment holds their ``u`` (counted, as the single-machine path does, as naming an unknown
    fragment)."""
    part, ui, vi = _join(parts)
    n = part.ids.size
    indexed = agglomerate.IndexedEdges(part.ids, ui, vi, np.ones(ui.size, bool), 0)
    tree = agglomerate.merge_tree_from_indices(indexed, part.s)
    report = replace(tree.report, n_fragments=n, n_edges=part.n_edges + unread_edges,
                     n_duplicate_fragments=part.n_duplicate_fragments,
                     n_unknown_endpoint=int(part.pu.size) + unread_edges, n_self_loops=part.n_self_loops,
                     n_null_scores=part.n_null_scores, n_used=part.n_used)
    return replace(tree, report=report)


def parts_bytes(parts: Sequence[Part]) -> int:
    """What reaching these parts shipped at most: their bytes and those merged into them."""
    return sum(p.nbytes + p.merged_bytes for p in parts)

"""Score a segmentation against ground-truth skeletons: ERL, VOI and split/merge counts.

Everything works on flat arrays aligned with the skeleton nodes; ``node_segments[i]`` is the segment
id of node ``i`` at one merge threshold (0 = no fragment, masked or outside the volume).

Conventions:

- Skeleton edges are given as pairs of node **ids** (what the ``u``/``v`` fields of the ground-truth
  edge documents hold). :class:`Skeletons` converts them once to node **indices**
  (``Skeletons.edge_index``); :func:`edge_ids_to_indices` does the same for any array of id pairs.
- A *skeleton* is one distinct ``neuron_id`` value (the lab's ``component_id``); all its nodes and
  edges belong to it, whether or not they are connected.
- Lengths are world units (nm), like the positions.
- Entropies (VOI) are in bits (log base 2), as funlib.evaluate's ``rand_voi`` reports them.

Per merge threshold, :func:`evaluate_thresholds` does one stable sort of the skeleton nodes by
segment id and a handful of linear numpy passes; everything that does not depend on the threshold
(edge lengths, skeleton totals, node order by skeleton) is computed once in :class:`Skeletons`.
:func:`skeleton_scores` breaks one segmentation's scores down per skeleton (they add up to the
global ones).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex, dense_ids

MergeRule = Literal["segment", "skeleton"]

__all__ = [
    "ERLResult",
    "Skeletons",
    "best_threshold",
    "edge_ids_to_indices",
    "evaluate_thresholds",
    "expected_run_length",
    "max_erl",
    "skeleton_scores",
    "split_merge_counts",
    "variation_of_information",
]


# --------------------------------------------------------------------------------------------
# inputs


def edge_ids_to_indices(node_ids: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Map an ``(m, 2)`` array of node ids to indices into ``node_ids`` (int64, same shape).

    Raises :class:`LsdgraphError` if an edge names a node id that is not in ``node_ids``.
    """
    edges = np.asarray(edges)
    flat = edges.reshape(-1)
    pos = IdIndex(np.asarray(node_ids), "node_ids", sort=False).lookup(flat, "edges")
    found = pos >= 0
    if not found.all():
        missing = flat[~found]
        raise LsdgraphError(
            f"skeleton edges: {len(missing)} edge end(s) name node ids that are not among the "
            f"skeleton nodes (first: {int(missing[0])}); drop edges leaving the node set "
            "(e.g. nodes cropped by the ROI or mask) before scoring"
        )
    return pos.reshape(edges.shape)


@dataclass(frozen=True, eq=False)
class Skeletons:
    """Ground-truth skeletons as validated arrays, with threshold-independent precomputations.

    Args:
        node_ids: int64 ``(n,)`` unique node ids.
        neuron_ids: int64 ``(n,)`` skeleton (neuron / component) id of each node.
        positions: float ``(n, 3)`` node positions, zyx, world units (nm).
        edges: int64 ``(m, 2)`` pairs of node **ids**. Edges are undirected: ``(u, v)`` and
            ``(v, u)`` are one edge and duplicates are dropped (as in the networkx ``Graph``
            funlib.evaluate works on). Both ends must belong to the same skeleton.

    Derived (read-only) attributes: ``edge_index`` (``(m', 2)`` node indices of the deduplicated
    edges, ``edges`` holds their ids), ``edge_lengths`` (float64, Euclidean distance of the
    float32 positions, as funlib), ``skeleton_ids`` (sorted distinct neuron ids, ``(K,)``),
    ``node_skeleton`` / ``edge_skeleton`` (index into ``skeleton_ids``), ``skeleton_lengths``
    (``(K,)``, sum of each skeleton's edge lengths) and ``total_length``.
    """

    node_ids: np.ndarray
    neuron_ids: np.ndarray
    positions: np.ndarray
    edges: np.ndarray
    edge_index: np.ndarray = field(init=False, repr=False)
    edge_lengths: np.ndarray = field(init=False, repr=False)
    skeleton_ids: np.ndarray = field(init=False, repr=False)
    node_skeleton: np.ndarray = field(init=False, repr=False)
    edge_skeleton: np.ndarray = field(init=False, repr=False)
    skeleton_lengths: np.ndarray = field(init=False, repr=False)
    total_length: float = field(init=False, repr=False)
    # nodes ordered by skeleton; a stable sort by segment of nodes in this order is then ordered
    # by (segment, skeleton), which is all the per-threshold grouping needs
    _order_by_skeleton: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        node_ids = _int_array(self.node_ids, "node_ids", 1)
        n = len(node_ids)
        neuron_ids = _int_array(self.neuron_ids, "neuron_ids", 1)
        if len(neuron_ids) != n:
            raise LsdgraphError(
                f"skeletons: neuron_ids has {len(neuron_ids)} entries but node_ids has {n}; "
                "give one neuron id per node"
            )
        positions = np.array(self.positions, dtype=np.float64)  # a copy: it is frozen below
        if positions.shape != (n, 3):
            raise LsdgraphError(
                f"skeletons: positions has shape {positions.shape}, expected ({n}, 3) "
                "(one zyx position per node)"
            )
        if not np.isfinite(positions).all():
            raise LsdgraphError("skeletons: positions contain NaN or infinite values; drop or fix those nodes")
        edges = _int_array(self.edges, "edges", 2) if np.size(self.edges) else np.empty((0, 2), np.int64)
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise LsdgraphError(f"skeletons: edges has shape {edges.shape}, expected (m, 2) node-id pairs")

        sorted_ids = np.sort(node_ids)
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
        if len(dup):
            raise LsdgraphError(
                f"skeletons: node_ids are not unique ({len(dup)} repeats, first: {int(dup[0])}); "
                "each skeleton node needs its own id"
            )

        index = edge_ids_to_indices(node_ids, edges)
        index = _dedupe_undirected(index)
        skeleton_ids, node_skeleton = dense_ids(neuron_ids)
        u, v = index[:, 0], index[:, 1]
        across = node_skeleton[u] != node_skeleton[v]
        if across.any():
            i = int(np.flatnonzero(across)[0])
            raise LsdgraphError(
                f"skeletons: {int(across.sum())} edge(s) join nodes of different neurons (first: "
                f"{int(node_ids[u[i]])} in neuron {int(neuron_ids[u[i]])} – {int(node_ids[v[i]])} in "
                f"neuron {int(neuron_ids[v[i]])}); relabel skeletons into connected components first"
            )
        p32 = positions.astype(np.float32)
        lengths = np.linalg.norm(p32[u] - p32[v], axis=1).astype(np.float64)
        edge_skeleton = node_skeleton[u]
        skeleton_lengths = np.bincount(edge_skeleton, weights=lengths, minlength=len(skeleton_ids))

        s = object.__setattr__
        s(self, "node_ids", node_ids)
        s(self, "neuron_ids", neuron_ids)
        s(self, "positions", positions)
        s(self, "edges", node_ids[index])
        s(self, "edge_index", index)
        s(self, "edge_lengths", lengths)
        s(self, "skeleton_ids", skeleton_ids)
        s(self, "node_skeleton", node_skeleton)
        s(self, "edge_skeleton", edge_skeleton)
        s(self, "skeleton_lengths", skeleton_lengths.astype(np.float64))
        s(self, "total_length", float(skeleton_lengths.sum()))
        s(self, "_order_by_skeleton", np.argsort(node_skeleton, kind="stable"))
        for a in (node_ids, neuron_ids, positions, index, lengths, skeleton_ids, node_skeleton,
                  edge_skeleton, skeleton_lengths):
            a.flags.writeable = False

    @classmethod
    def from_edge_indices(cls, node_ids, neuron_ids, positions, edge_index) -> Skeletons:
        """Build from edges given as node indices (``(m, 2)`` into ``node_ids``)."""
        node_ids = _int_array(node_ids, "node_ids", 1)
        edge_index = np.asarray(edge_index, dtype=np.int64).reshape(-1, 2)
        if len(edge_index) and (edge_index.min() < 0 or edge_index.max() >= len(node_ids)):
            raise LsdgraphError(
                f"skeletons: edge indices must lie in [0, {len(node_ids)}); "
                "pass node ids to Skeletons(...) instead if the edges hold ids"
            )
        return cls(node_ids, neuron_ids, positions, node_ids[edge_index])

    @classmethod
    def from_graph(cls, graph, neuron_attribute: str = "neuron_id",
                   position_attributes: Sequence[str] = ("z", "y", "x")) -> Skeletons:
        """Build from a networkx-like graph (integer node ids; funlib.evaluate's input form)."""
        nodes = list(graph.nodes(data=True))
        try:
            node_ids = np.array([n for n, _ in nodes], dtype=np.int64)
            neuron_ids = np.array([d[neuron_attribute] for _, d in nodes], dtype=np.int64)
            positions = np.array([[d[a] for a in position_attributes] for _, d in nodes],
                                 dtype=np.float64).reshape(-1, 3)
        except KeyError as e:
            raise LsdgraphError(
                f"skeleton graph: a node lacks attribute {e}; pass neuron_attribute= and "
                "position_attributes= naming the node fields"
            ) from None
        edges = np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
        return cls(node_ids, neuron_ids, positions, edges)

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def n_edges(self) -> int:
        return len(self.edge_index)


def _int_array(a, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu" or arr.ndim != ndim:
        raise LsdgraphError(
            f"skeletons: {name} must be a {ndim}-d integer array (got {arr.ndim}-d {arr.dtype})"
        )
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise LsdgraphError(f"skeletons: {name} has values beyond int64")
    return np.array(arr, dtype=np.int64)  # a copy: Skeletons freezes its arrays


def _dedupe_undirected(index: np.ndarray) -> np.ndarray:
    lo = np.minimum(index[:, 0], index[:, 1])
    hi = np.maximum(index[:, 0], index[:, 1])
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    keep = np.ones(len(lo), dtype=bool)
    keep[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return np.ascontiguousarray(np.stack([lo[keep], hi[keep]], axis=1))


def _segments(node_segments, n: int, where: str = "node_segments") -> np.ndarray:
    seg = np.asarray(node_segments)
    if seg.shape != (n,):
        raise LsdgraphError(
            f"{where}: shape {seg.shape} does not match the {n} skeleton nodes; give one segment "
            "id per node, in node order (0 = no segment)"
        )
    if seg.dtype.kind not in "iu":
        raise LsdgraphError(f"{where}: dtype {seg.dtype} is not an integer type; pass uint64 segment ids")
    if seg.dtype.kind == "i" and n and seg.min() < 0:
        raise LsdgraphError(f"{where}: negative segment ids; segment ids are uint64 (0 = no segment)")
    return seg.astype(np.uint64, copy=False)


# --------------------------------------------------------------------------------------------
# the per-threshold core: one stable sort of the nodes by (segment, skeleton)


@dataclass
class _Grouped:
    """Foreground nodes (segment != 0) sorted by (segment, skeleton), and their groups."""

    skel: np.ndarray  # skeleton index, sorted order
    seg_run: np.ndarray  # dense segment index, sorted order
    seg_starts: np.ndarray  # first position of each distinct segment
    pair_starts: np.ndarray  # first position of each distinct (segment, skeleton) pair
    seg_of_node: np.ndarray  # (n,) dense segment index, -1 for segment 0
    pair_counts: np.ndarray  # nodes per distinct (segment, skeleton) pair
    seg_counts: np.ndarray  # nodes per distinct segment
    skel_counts: np.ndarray  # foreground nodes per skeleton (K,)


def _group(seg: np.ndarray, node_skel: np.ndarray, order_by_skel: np.ndarray, n_skel: int,
           drop_zero: bool = True) -> _Grouped:
    s = seg[order_by_skel]
    o = np.argsort(s, kind="stable")
    ss = s[o]
    start = int(np.searchsorted(ss, np.uint64(1))) if drop_zero else 0  # segment 0 sorts first
    ss = ss[start:]
    nodes = order_by_skel[o[start:]]
    skel = node_skel[nodes]
    nf = len(ss)
    new_seg = np.ones(nf, dtype=bool)
    new_seg[1:] = ss[1:] != ss[:-1]
    new_pair = new_seg.copy()
    new_pair[1:] |= skel[1:] != skel[:-1]
    seg_starts = np.flatnonzero(new_seg)
    pair_starts = np.flatnonzero(new_pair)
    seg_run = np.cumsum(new_seg) - 1
    seg_of_node = np.full(len(seg), -1, dtype=np.int64)  # stays -1 for segment 0
    seg_of_node[nodes] = seg_run
    return _Grouped(
        skel=skel,
        seg_run=seg_run,
        seg_starts=seg_starts,
        pair_starts=pair_starts,
        seg_of_node=seg_of_node,
        pair_counts=np.diff(np.append(pair_starts, nf)),
        seg_counts=np.diff(np.append(seg_starts, nf)),
        skel_counts=np.bincount(skel, minlength=n_skel),
    )


def _xlog2x_sum(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    return float(np.dot(c, np.log2(c)))


def _voi(g: _Grouped) -> tuple[float, float]:
    total = float(g.seg_counts.sum())
    if total == 0:
        return 0.0, 0.0
    joint = _xlog2x_sum(g.pair_counts)
    # H(seg|neuron) = H(neuron, seg) - H(neuron) = (Σ n_i log n_i - Σ n_ij log n_ij) / N
    split = (_xlog2x_sum(g.skel_counts) - joint) / total
    merge = (_xlog2x_sum(g.seg_counts) - joint) / total
    return max(split, 0.0), max(merge, 0.0)


def _split_merge(g: _Grouped) -> tuple[int, int]:
    n_pairs = len(g.pair_counts)
    return n_pairs - int(np.count_nonzero(g.skel_counts)), n_pairs - len(g.seg_counts)


@dataclass(frozen=True)
class ERLResult:
    """Expected run length and its error counts for one segmentation.

    ``skeleton_ids``/``skeleton_lengths``/``skeleton_erl`` are per skeleton (sorted neuron ids);
    ``skeleton_erl[k]`` is Σ over segments of (correct length)² ÷ that skeleton's length (0 for a
    skeleton of length 0). ``merged_skeletons``: skeletons touching a merging segment;
    ``merging_segments``: non-zero segments touched by more than one skeleton;
    ``split_skeletons``: skeletons with at least one split edge; ``*_edges``: edges per class
    (every edge is exactly one of correct / omitted / split / merged).
    """

    erl: float
    max_erl: float
    total_length: float
    skeleton_ids: np.ndarray
    skeleton_lengths: np.ndarray
    skeleton_erl: np.ndarray
    merged_skeletons: int
    merging_segments: int
    split_skeletons: int
    correct_edges: int
    split_edges: int
    omitted_edges: int
    merged_edges: int

    @property
    def erl_fraction(self) -> float:
        """``erl / max_erl`` (NaN when the skeletons have no length)."""
        return self.erl / self.max_erl if self.max_erl > 0 else float("nan")


@dataclass
class _EdgeClasses:
    """Every edge's class and the segment/skeleton facts ERL is built from (one threshold)."""

    seg_skel: np.ndarray  # skeleton of each segment's first node (its only one unless it merges)
    seg_merging: np.ndarray  # per segment: more than one skeleton in it
    skel_merged: np.ndarray  # per skeleton: touches a merging segment
    omitted: np.ndarray  # per edge
    split: np.ndarray
    merged: np.ndarray
    correct: np.ndarray
    skel_sq: np.ndarray  # per skeleton: Σ over segments of (correct length)²


def _classify(skel: Skeletons, seg: np.ndarray, g: _Grouped, merge_rule: MergeRule) -> _EdgeClasses:
    if merge_rule not in ("segment", "skeleton"):
        raise LsdgraphError(f"expected_run_length: merge_rule={merge_rule!r}; use 'segment' or 'skeleton'")
    n_skel = len(skel.skeleton_ids)
    n_seg = len(g.seg_starts)
    # a segment merges when its first and last node (sorted by skeleton) differ in skeleton
    seg_ends = np.append(g.seg_starts[1:], len(g.skel)) - 1
    seg_skel = g.skel[g.seg_starts]
    seg_merging = seg_skel != g.skel[seg_ends] if n_seg else np.zeros(0, dtype=bool)
    skel_merged = np.zeros(n_skel, dtype=bool)
    skel_merged[g.skel[seg_merging[g.seg_run]]] = True

    u, v = skel.edge_index[:, 0], skel.edge_index[:, 1]
    su, sv = seg[u], seg[v]
    omitted = (su == 0) | (sv == 0)
    split = ~omitted & (su != sv)
    inseg = ~omitted & ~split
    gu = g.seg_of_node[u]
    if merge_rule == "segment":
        merged = inseg & seg_merging[np.where(inseg, gu, 0)] if n_seg else np.zeros_like(inseg)
    else:
        merged = inseg & skel_merged[skel.edge_skeleton]
    correct = inseg & ~merged

    # a correct edge's segment never merges, so it belongs to one skeleton and the segment alone
    # keys the (skeleton, segment) sum
    seg_len = np.bincount(gu[correct], weights=skel.edge_lengths[correct], minlength=n_seg)
    skel_sq = np.bincount(seg_skel, weights=seg_len * seg_len, minlength=n_skel)
    return _EdgeClasses(seg_skel, seg_merging, skel_merged, omitted, split, merged, correct, skel_sq)


def _erl(skel: Skeletons, seg: np.ndarray, g: _Grouped, merge_rule: MergeRule) -> ERLResult:
    c = _classify(skel, seg, g, merge_rule)
    n_skel = len(skel.skeleton_ids)
    total = skel.total_length
    lengths = skel.skeleton_lengths
    skel_erl = np.divide(c.skel_sq, lengths, out=np.zeros(n_skel), where=lengths > 0)
    split_skel = np.zeros(n_skel, dtype=bool)
    split_skel[skel.edge_skeleton[c.split]] = True
    return ERLResult(
        erl=float(c.skel_sq.sum() / total) if total > 0 else 0.0,
        max_erl=max_erl(skel),
        total_length=total,
        skeleton_ids=skel.skeleton_ids,
        skeleton_lengths=lengths,
        skeleton_erl=skel_erl,
        merged_skeletons=int(c.skel_merged.sum()),
        merging_segments=int(c.seg_merging.sum()),
        split_skeletons=int(split_skel.sum()),
        correct_edges=int(c.correct.sum()),
        split_edges=int(c.split.sum()),
        omitted_edges=int(c.omitted.sum()),
        merged_edges=int(c.merged.sum()),
    )


# --------------------------------------------------------------------------------------------
# public metrics


def expected_run_length(skel: Skeletons, node_segments: np.ndarray,
                        merge_rule: MergeRule = "segment") -> ERLResult:
    """Expected run length (ERL) of a segmentation on ground-truth skeletons, as funlib.evaluate.

    Definition (funlib.evaluate ``expected_run_length``, the LSD paper's ERL):

    - every skeleton edge ``(u, v)`` has length ``‖p_u − p_v‖``, the Euclidean distance of the
      float32 node positions (world units); a skeleton's length ``L_s`` is the sum of its edge
      lengths and ``L = Σ_s L_s``;
    - a segment *merges* when nodes of more than one skeleton lie in it (segment 0 never merges);
    - each edge is exactly one of: *omitted* (an end in segment 0: no fragment, masked, outside),
      *split* (ends in different segments), *merged* (both ends in one merging segment) or
      *correct* (both ends in one non-merging segment). Only correct edges count; the others count
      0 but their length stays in ``L_s`` and ``L``;
    - correct edge lengths are summed per (skeleton, segment) — per segment, not per contiguous
      run: a skeleton that leaves a segment and comes back scores the two stretches together;
    - ``ERL = Σ_s Σ_g c_{s,g}² / L`` with ``c_{s,g}`` the correct length of skeleton ``s`` in
      segment ``g``; equivalently the length-weighted mean over skeletons of
      ``ERL_s = Σ_g c_{s,g}² / L_s``, the expected length of correctly reconstructed skeleton
      around a point drawn uniformly along the skeletons.

    ``merge_rule="segment"`` (default) is funlib.evaluate's rule since 2019 (commit b533ea8,
    "Count only edges in merging segments as incorrect"): a merged skeleton loses only its edges
    inside merging segments. ``merge_rule="skeleton"`` is the stricter older rule: every edge of a
    skeleton that touches a merging segment counts 0 (``merged_edges`` then counts all of its
    in-segment edges). Differences from funlib: the total ERL is returned also alongside the
    statistics (funlib's ``return_merge_split_stats=True`` path returned the last skeleton's
    value); segment 0 is never counted as a merging segment; ERL is 0, not NaN, when ``L = 0``;
    lengths are summed in float64.

    Args:
        skel: the skeletons.
        node_segments: ``(n,)`` uint64 segment id per skeleton node, in ``skel.node_ids`` order.
        merge_rule: ``"segment"`` or ``"skeleton"``, see above.
    """
    seg = _segments(node_segments, skel.n_nodes)
    g = _group(seg, skel.node_skeleton, skel._order_by_skeleton, len(skel.skeleton_ids))
    return _erl(skel, seg, g, merge_rule)


def max_erl(skel: Skeletons) -> float:
    """ERL if every skeleton were exactly one correct segment: ``Σ_s L_s² / Σ_s L_s``.

    The lab's scripts compute this as the ERL of the "perfect" node → skeleton id LUT and report
    ``erl / max_erl`` as the normalised ERL. 0 when the skeletons have no length.
    """
    lengths = skel.skeleton_lengths
    total = skel.total_length
    return float(np.dot(lengths, lengths) / total) if total > 0 else 0.0


def _node_grouping(node_neurons, node_segments) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    neurons = np.asarray(node_neurons)
    if neurons.ndim != 1 or neurons.dtype.kind not in "iu":
        raise LsdgraphError(
            f"node_neurons: expected a 1-d integer array of neuron ids, got {neurons.ndim}-d {neurons.dtype}"
        )
    seg = _segments(node_segments, len(neurons))
    ids, node_skel = dense_ids(neurons)
    return seg, node_skel, np.argsort(node_skel, kind="stable"), len(ids)


def variation_of_information(node_neurons: np.ndarray, node_segments: np.ndarray,
                             ignore_background: bool = True) -> tuple[float, float]:
    """``(voi_split, voi_merge)`` in bits over the skeleton nodes.

    With neuron ``N`` and segment ``S`` of a node drawn uniformly from the nodes whose segment is
    not 0: ``voi_split = H(S | N)`` (how much one neuron is spread over segments) and
    ``voi_merge = H(N | S)`` (how much one segment mixes neurons), log base 2 as funlib.evaluate's
    ``rand_voi``. Both are 0 for a perfect segmentation; one neuron cut into two equal halves
    gives ``voi_split = 1``; two equally sized neurons in one segment give ``voi_merge = 1``.
    Relabelling neurons or segments does not change them. Nodes in segment 0 are left out
    (``ignore_background=True``); with ``False`` segment 0 is one ordinary segment, which is what
    the lab's script got by passing every skeleton site to ``rand_voi`` (that function drops only
    nodes whose *neuron* id is 0; here neuron id 0 is an ordinary neuron).
    """
    seg, node_skel, order, k = _node_grouping(node_neurons, node_segments)
    return _voi(_group(seg, node_skel, order, k, drop_zero=ignore_background))


def split_merge_counts(node_neurons: np.ndarray, node_segments: np.ndarray) -> tuple[int, int]:
    """``(n_splits, n_merges)`` counted on the skeleton nodes, ignoring segment 0.

    ``n_splits = Σ over neurons of (distinct non-zero segments holding its nodes − 1)`` (a neuron
    with all nodes in segment 0 adds 0): the merges a proofreader needs to join every neuron.
    ``n_merges = Σ over non-zero segments of (distinct neurons with nodes in it − 1)``: the
    splits needed to separate every segment. Both 0 for a perfect segmentation.
    """
    seg, node_skel, order, k = _node_grouping(node_neurons, node_segments)
    return _split_merge(_group(seg, node_skel, order, k))


def skeleton_scores(skel: Skeletons, node_segments: np.ndarray, merge_rule: MergeRule = "segment",
                    node_flags: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One segmentation scored per skeleton: one row per neuron id (sorted), whose columns add up
    to the global scores.

    Columns: ``neuron_id``; ``n_nodes``, ``n_edges``; ``cable_length`` (nm, ``Σ = total_length``);
    ``erl`` (the skeleton's own ERL, ``Σ_g c_g² / L_s``, nm); ``erl_contribution`` (nm,
    ``Σ_g c_g² / L``: its share of the global ERL, ``Σ = erl``); ``n_splits`` (distinct non-zero
    segments holding it − 1; ``Σ`` = :func:`split_merge_counts`' ``n_splits``); ``n_merges``
    (merging segments in which another skeleton holds more nodes, ties to the lower neuron id: each
    merging segment's ``k − 1`` merges go to all but its largest skeleton, so ``Σ = n_merges``);
    ``in_merging_segments`` (merging
    segments it has nodes in, whoever is largest); ``correct_edges``, ``split_edges``,
    ``omitted_edges``, ``merged_edges`` (each ``Σ`` = the :class:`ERLResult` count);
    ``background_nodes`` (nodes in segment 0); then one count column per entry of ``node_flags``
    (name → ``(n,)`` bool array in node order: nodes flagged per skeleton, e.g. why a node has no
    segment).
    """
    seg = _segments(node_segments, skel.n_nodes)
    k = len(skel.skeleton_ids)
    g = _group(seg, skel.node_skeleton, skel._order_by_skeleton, k)
    c = _classify(skel, seg, g, merge_rule)
    pair_skel = g.skel[g.pair_starts]
    pair_seg = g.seg_run[g.pair_starts]
    # the largest skeleton of each segment owns it; every other (segment, skeleton) pair is a merge
    order = np.lexsort((np.arange(len(pair_seg)), -g.pair_counts, pair_seg))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_seg[order][1:] != pair_seg[order][:-1]
    intruder = np.zeros(len(order), dtype=bool)
    intruder[order] = ~first
    total = skel.total_length
    lengths = skel.skeleton_lengths

    def per_edge(mask: np.ndarray) -> np.ndarray:
        return np.bincount(skel.edge_skeleton[mask], minlength=k)

    nodes = np.bincount(skel.node_skeleton, minlength=k)
    cols: dict[str, np.ndarray] = {
        "neuron_id": np.asarray(skel.skeleton_ids),
        "n_nodes": nodes,
        "n_edges": np.bincount(skel.edge_skeleton, minlength=k),
        "cable_length": np.asarray(lengths),
        "erl": np.divide(c.skel_sq, lengths, out=np.zeros(k), where=lengths > 0),
        "erl_contribution": c.skel_sq / total if total > 0 else np.zeros(k),
        "n_splits": np.bincount(pair_skel, minlength=k) - (g.skel_counts > 0),
        "n_merges": np.bincount(pair_skel[intruder], minlength=k),
        "in_merging_segments": np.bincount(pair_skel[c.seg_merging[pair_seg]], minlength=k),
        "correct_edges": per_edge(c.correct),
        "split_edges": per_edge(c.split),
        "omitted_edges": per_edge(c.omitted),
        "merged_edges": per_edge(c.merged),
        "background_nodes": nodes - g.skel_counts,
    }
    for name, flag in (node_flags or {}).items():
        f = np.asarray(flag)
        if f.shape != (skel.n_nodes,) or f.dtype != bool:
            raise LsdgraphError(
                f"skeleton_scores: node_flags[{name!r}] must be a bool array of one entry per skeleton node "
                f"({skel.n_nodes}), got {f.dtype} {f.shape}"
            )
        if name in cols:
            raise LsdgraphError(f"skeleton_scores: node_flags[{name!r}] would replace a score column; rename it")
        cols[name] = np.bincount(skel.node_skeleton[f], minlength=k)
    df = pd.DataFrame(cols)
    return df.astype({c: np.int64 for c in df.columns if c not in ("cable_length", "erl", "erl_contribution")})


def evaluate_thresholds(skel: Skeletons, node_segments_for: Callable[[float], np.ndarray],
                        thresholds: Sequence[float], names: Sequence[str] | None = None,
                        merge_rule: MergeRule = "segment") -> pd.DataFrame:
    """Score one segmentation per merge threshold; one DataFrame row per threshold.

    ``node_segments_for(t)`` returns the ``(n,)`` uint64 segment id of every skeleton node at
    threshold ``t`` (in ``skel.node_ids`` order, 0 = none); it is called once per threshold, in
    order. ``names`` labels the rows (default: the threshold formatted with ``g``).
    ``merge_rule`` is passed to :func:`expected_run_length`.

    Columns: ``threshold, name, erl, max_erl, erl_fraction`` (erl / max_erl), ``voi_split,
    voi_merge, voi_sum`` (bits), ``n_splits, n_merges`` (see :func:`split_merge_counts`),
    ``merged_skeletons, split_edges, omitted_edges`` (see :func:`expected_run_length`), then
    ``merging_segments, split_skeletons, merged_edges, correct_edges``.
    Each threshold costs one stable sort of the skeleton nodes plus linear passes.
    """
    n_skel = len(skel.skeleton_ids)

    def scores(t: float) -> tuple[ERLResult, tuple[float, float], tuple[int, int]]:
        seg = _segments(node_segments_for(t), skel.n_nodes, f"node_segments_for({t!r})")
        g = _group(seg, skel.node_skeleton, skel._order_by_skeleton, n_skel)
        return _erl(skel, seg, g, merge_rule), _voi(g), _split_merge(g)

    return threshold_table(thresholds, names, scores)


COLUMNS = [
    "threshold", "name", "erl", "max_erl", "erl_fraction", "voi_split", "voi_merge", "voi_sum",
    "n_splits", "n_merges", "merged_skeletons", "split_edges", "omitted_edges",
    "merging_segments", "split_skeletons", "merged_edges", "correct_edges",
]
_INT_COLUMNS = [
    "n_splits", "n_merges", "merged_skeletons", "split_edges", "omitted_edges",
    "merging_segments", "split_skeletons", "merged_edges", "correct_edges",
]


def threshold_table(thresholds: Sequence[float], names: Sequence[str] | None,
                    scores: Callable[[float], tuple[ERLResult, tuple[float, float], tuple[int, int]]]
                    ) -> pd.DataFrame:
    """The per-threshold table (:data:`COLUMNS`) from each threshold's ERL, (VOI split, merge) and
    (splits, merges); ``names`` label the rows (default: the threshold formatted with ``g``)."""
    thresholds = [float(t) for t in thresholds]
    names = [format(t, "g") for t in thresholds] if names is None else [str(x) for x in names]
    if len(names) != len(thresholds):
        raise LsdgraphError(f"names=: {len(names)} names for {len(thresholds)} thresholds; give one name per "
                            "threshold or none")
    rows = []
    for t, name in zip(thresholds, names, strict=True):
        erl, (voi_split, voi_merge), (n_splits, n_merges) = scores(t)
        rows.append({
            "threshold": t, "name": name,
            "erl": erl.erl, "max_erl": erl.max_erl, "erl_fraction": erl.erl_fraction,
            "voi_split": voi_split, "voi_merge": voi_merge, "voi_sum": voi_split + voi_merge,
            "n_splits": n_splits, "n_merges": n_merges,
            "merged_skeletons": erl.merged_skeletons, "split_edges": erl.split_edges,
            "omitted_edges": erl.omitted_edges, "merging_segments": erl.merging_segments,
            "split_skeletons": erl.split_skeletons, "merged_edges": erl.merged_edges,
            "correct_edges": erl.correct_edges,
        })
    return pd.DataFrame(rows, columns=COLUMNS).astype({c: np.int64 for c in _INT_COLUMNS})


# also the unit-named columns of the evaluate job's files, so a table read back from them ranks the same
_HIGHER_IS_BETTER = {"erl", "erl_fraction", "correct_edges", "erl_nm"}


def best_threshold(df: pd.DataFrame, by: str = "erl", maximize: bool | None = None) -> pd.Series:
    """The row of ``evaluate_thresholds``' table that scores best on column ``by``.

    ``erl``, ``erl_fraction`` and ``correct_edges`` (and ``erl_nm``, as the evaluate job's files
    name it) are maximised, every other column (VOI, counts) minimised, unless ``maximize`` says
    otherwise. Ties go to the first row; NaN never wins.
    """
    if by not in df.columns:
        raise LsdgraphError(
            f"best_threshold: no column {by!r}; choose one of {', '.join(map(str, df.columns))}"
        )
    col = pd.to_numeric(df[by], errors="coerce")
    if col.notna().sum() == 0:
        raise LsdgraphError(f"best_threshold: column {by!r} has no numeric values (empty table?)")
    if maximize is None:
        maximize = by in _HIGHER_IS_BETTER
    return df.loc[col.idxmax() if maximize else col.idxmin()]

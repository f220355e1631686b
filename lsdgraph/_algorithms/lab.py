"""Lab-faithful mode: the published LSD pipeline's semantics, for tables to set beside the paper's.

What the lab's code does (read in funkelab/lsd_experiments ``scripts/pipeline/04_find_segments.py``
and ``05_evaluate_annotations.py``, funkelab/funlib.segment ``graphs/impl/connected_components*``,
funkelab/funlib.evaluate ``rand_voi`` and ``run_length.py``) and lsdgraph's default does not:

- **null scores merge at every threshold**: ``merge_score.astype(np.float32)`` turns a null into
  NaN and the C++ skips an edge only when ``score > threshold``, which is false for NaN;
- **segment ids are node indices** (boost ``disjoint_sets::find_set``), so a segment can be
  numbered 0, the id that means "no fragment" to the scoring;
- **LUT files are named** ``seg_<edges>_<int(t*100)>``: 0.58 → ``_57`` (float error);
- **VOI** (``rand_voi``) drops only nodes whose *neuron* id is 0: segment 0 (background) is one
  more segment;
- **merging segments** (``merge_stats``) include segment 0 when two skeletons have nodes on
  background; the ERL rule before funlib.evaluate b533ea8 also took such skeletons as merged.

Everything else (float32 comparison, ERL's edge classes and formula, edge lengths) is lsdgraph's
default and is reused from :mod:`merge_tree` and :mod:`metrics`. docs/semantics.md has an example
per difference.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._algorithms import metrics
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex

__all__ = [
    "COLUMNS",
    "build_lab_merge_tree",
    "lab_evaluate_thresholds",
    "lab_expected_run_length",
    "lab_lut_name",
    "lab_lut_names",
    "lab_node_segments",
    "lab_scores",
    "lab_segment_ids",
    "lab_skeleton_scores",
    "lab_split_merge_counts",
    "lab_variation_of_information",
]

COLUMNS = metrics.COLUMNS  # the same table as metrics.evaluate_thresholds'


# --------------------------------------------------------------------------- agglomeration

def lab_scores(scores) -> np.ndarray:
    """Merge scores as the lab's C++ sees them: float32, null (NaN) → -inf.

    The C++ skips an edge when ``score > threshold``; NaN fails every comparison, so a null edge
    merges at every threshold, negative ones too. -inf is the float32 that behaves the same in
    lsdgraph's ``score <= t`` tree (a NaN would never merge there)."""
    s = np.asarray(scores)
    if s.ndim != 1 or not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise LsdgraphError(f"scores: expected a 1-d array of numbers (NaN for null), got {s.ndim}-d {s.dtype}")
    with np.errstate(over="ignore"):  # beyond float32's range → ±inf, as the lab's astype
        out = s.astype(np.float32)  # a copy, also when already float32
    out[np.isnan(out)] = -np.inf
    return out


def build_lab_merge_tree(fragments, u, v, scores) -> agglomerate.MergeTree:
    """:func:`merge_tree.build_merge_tree` with null scores merging at every threshold (tree
    score -inf); ``report.n_null_scores`` is then 0: count the NaNs before if you need them."""
    return agglomerate.build_merge_tree(fragments, u, v, lab_scores(scores))


def lab_segment_ids(tree: agglomerate.MergeTree, threshold: float) -> np.ndarray:
    """Segment id per fragment (``tree.fragments`` order) at ``threshold``, numbered like the
    lab's: the index of a member fragment in the node list (here ascending fragment id).

    funlib.segment returns boost's root index, which depends on the order daisy's parallel block
    reads delivered nodes and edges (not reproducible); only which segment is numbered 0 changes
    a score. With nodes in ascending order and every edge's ``u`` the smaller index, boost's union
    by rank hangs the ``u`` root under the ``v`` root on equal rank, so index 0 is a root — and 0
    a segment id — only while fragment index 0 is alone. lsdgraph names a segment by its smallest member
    index, and the segment holding index 0, once merged, by its second smallest: the same id-0
    segment as boost, at one O(N) pass more than a cut."""
    root = tree.cut_index(threshold)  # smallest member index of each segment
    ids = root.astype(np.uint64)
    if len(root) > 1:
        with_first = np.flatnonzero(root == 0)
        if len(with_first) > 1:  # fragment index 0 has merged: boost no longer roots it
            ids[with_first] = with_first[1]
    return ids


def lab_lut_name(threshold: float) -> str:
    """The lab's LUT file suffix: ``int(t*100)`` (``0.58`` → ``'57'``: 0.58*100 = 57.999…)."""
    return str(int(float(threshold) * 100))


def lab_lut_names(thresholds: Sequence[float]) -> list[str]:
    """:func:`lab_lut_name` per threshold; two thresholds with one name (the lab's script would
    overwrite the first file) are an error."""
    names = [lab_lut_name(t) for t in thresholds]
    seen: dict[str, float] = {}
    for t, name in zip(thresholds, names, strict=True):
        if name in seen:
            raise LsdgraphError(
                f"thresholds=: {seen[name]!r} and {float(t)!r} both get the lab's LUT name {name} "
                "(int(t*100)); use thresholds at least 0.01 apart with like_lab")
        seen[name] = float(t)
    return names


def lab_node_segments(tree: agglomerate.MergeTree, node_fragments) -> tuple[Callable[[float], np.ndarray], int]:
    """``(t -> lab segment id per skeleton node, nodes on fragments the RAG lacks)``, as the lab's
    ``replace_values`` through the LUT: a node on a fragment in the tree gets that fragment's lab
    id (fragment 0 too, if the RAG holds one); any other keeps its fragment id (0 stays 0)."""
    frags = np.asarray(node_fragments, np.uint64)
    idx = IdIndex(tree.fragments).lookup(frags)
    known = idx >= 0
    safe = np.where(known, idx, 0)

    def at(t: float) -> np.ndarray:
        return np.where(known, lab_segment_ids(tree, t)[safe], frags)

    return at, int((~known & (frags != 0)).sum())


# --------------------------------------------------------------------------- scores

def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs sorted by (a, b): (pair a, pair b, pair index of each element)."""
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    new = np.ones(len(sa), dtype=bool)
    new[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    pair_of = np.empty(len(sa), np.int64)
    pair_of[order] = np.cumsum(new) - 1
    return sa[new], sb[new], pair_of


def _runs(sorted_values: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal values in a sorted array."""
    if not len(sorted_values):
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.append(True, sorted_values[1:] != sorted_values[:-1]))
    return np.diff(np.append(starts, len(sorted_values)))


def _neuron_segment_table(node_neurons, node_segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rand_voi's contingency table: nodes of neuron 0 dropped, segment 0 kept.
    Returns (pair counts, nodes per neuron, nodes per segment)."""
    neurons = np.asarray(node_neurons)
    if neurons.ndim != 1 or neurons.dtype.kind not in "iu":
        raise LsdgraphError(
            f"node_neurons: expected a 1-d integer array of neuron ids, got {neurons.ndim}-d {neurons.dtype}")
    seg = _checked_segments(node_segments, len(neurons))
    keep = neurons != 0
    a, b = neurons[keep].astype(np.int64), seg[keep]
    pa, _, pair_of = _pairs(a, b)
    pair_counts = np.bincount(pair_of, minlength=len(pa))
    return pair_counts, _runs(np.sort(a)), _runs(np.sort(b))


def _checked_segments(node_segments, n: int, where: str = "node_segments") -> np.ndarray:
    """``node_segments`` checked as metrics checks them: ``(n,)`` non-negative integers → uint64."""
    seg = np.asarray(node_segments)
    if seg.shape != (n,):
        raise LsdgraphError(f"{where}: shape {seg.shape} does not match the {n} skeleton nodes; give one "
                            "segment id per node, in node order")
    if seg.dtype.kind not in "iu" or (seg.dtype.kind == "i" and n and seg.min() < 0):
        raise LsdgraphError(f"{where}: expected non-negative integer segment ids, got {seg.dtype}")
    return seg.astype(np.uint64, copy=False)


def _entropy(counts: np.ndarray, total: float) -> float:
    p = counts[counts > 0] / total
    return float(-np.dot(p, np.log2(p)))


def lab_variation_of_information(node_neurons, node_segments) -> tuple[float, float]:
    """``(voi_split, voi_merge)`` in bits as funlib.evaluate's ``rand_voi(neurons, segments)``:
    nodes whose neuron id is 0 are dropped, segment 0 is an ordinary segment. ``voi_split =
    H(N,S) − H(N)``, ``voi_merge = H(N,S) − H(S)`` over probabilities, unclamped (the lab's
    rounding can leave −1e-16)."""
    pair, per_neuron, per_segment = _neuron_segment_table(node_neurons, node_segments)
    total = float(pair.sum())
    if total == 0:
        return 0.0, 0.0
    h_ab = _entropy(pair, total)
    return h_ab - _entropy(per_neuron, total), h_ab - _entropy(per_segment, total)


def lab_split_merge_counts(node_neurons, node_segments) -> tuple[int, int]:
    """``(n_splits, n_merges)`` on rand_voi's table (neuron 0 dropped, segment 0 a segment):
    Σ over neurons of (segments − 1), Σ over segments of (neurons − 1). The lab's scripts report
    no such count; this is :func:`metrics.split_merge_counts` with background counted as VOI does."""
    pair, per_neuron, per_segment = _neuron_segment_table(node_neurons, node_segments)
    return len(pair) - len(per_neuron), len(pair) - len(per_segment)


@dataclass
class _LabClasses:
    """funlib's evaluate_skeletons on arrays: (segment, skeleton) pairs and every edge's class."""

    pair_skel: np.ndarray  # skeleton of each distinct (segment, skeleton) pair, sorted by segment
    pair_merging: np.ndarray  # per pair: its segment (0 too) holds ≥ 2 skeletons
    n_merging: int  # merging segments, 0 included (len(merge_stats))
    skel_merged: np.ndarray  # per skeleton: in a merging segment
    omitted: np.ndarray  # per edge
    split: np.ndarray
    merged: np.ndarray
    correct: np.ndarray
    skel_sq: np.ndarray  # per skeleton: Σ over segments of (correct length)²


def _lab_classes(skel: metrics.Skeletons, seg: np.ndarray, merge_rule: metrics.MergeRule) -> _LabClasses:
    if merge_rule not in ("segment", "skeleton"):
        raise LsdgraphError(f"lab_expected_run_length: merge_rule={merge_rule!r}; use 'segment' or 'skeleton'")
    n_skel = len(skel.skeleton_ids)
    pair_seg, pair_skel, pair_of = _pairs(seg, skel.node_skeleton)
    skels_per_seg = _runs(pair_seg)
    pair_merging = np.repeat(skels_per_seg > 1, skels_per_seg)
    skel_merged = np.zeros(n_skel, dtype=bool)
    skel_merged[pair_skel[pair_merging]] = True

    u, v = skel.edge_index[:, 0], skel.edge_index[:, 1]
    su, sv = seg[u], seg[v]
    if merge_rule == "skeleton":
        merged = skel_merged[skel.edge_skeleton]
    else:
        merged = np.zeros(len(u), dtype=bool)
    omitted = ~merged & ((su == 0) | (sv == 0))
    split = ~merged & ~omitted & (su != sv)
    inseg = ~merged & ~omitted & ~split
    if merge_rule == "segment":
        # funlib asks "skeleton merged and segment merging"; a merging segment's skeletons are
        # all merged, so the segment alone decides
        merged = inseg & pair_merging[pair_of[u]]
    correct = inseg & ~merged
    # a correct edge's ends share segment and skeleton: u's pair keys the (skeleton, segment) sum
    c = np.bincount(pair_of[u][correct], weights=skel.edge_lengths[correct], minlength=len(pair_seg))
    skel_sq = np.bincount(pair_skel, weights=c * c, minlength=n_skel)
    return _LabClasses(pair_skel, pair_merging, int((skels_per_seg > 1).sum()), skel_merged,
                       omitted, split, merged, correct, skel_sq)


def lab_expected_run_length(skel: metrics.Skeletons, node_segments,
                            merge_rule: metrics.MergeRule = "segment") -> metrics.ERLResult:
    """ERL and edge statistics as funlib.evaluate's ``expected_run_length`` /
    ``evaluate_skeletons`` (with ``return_merge_split_stats``).

    ``merge_rule="segment"``: funlib since b533ea8 — an edge is merged when both ends lie in one
    non-zero segment touched by another skeleton; the ERL is lsdgraph's default. The statistics
    follow the lab: ``merging_segments`` = ``len(merge_stats)``, which counts segment 0 when two
    skeletons have nodes on background, and ``merged_skeletons`` the skeletons in such segments.
    ``merge_rule="skeleton"``: funlib before b533ea8 — every edge of such a skeleton counts as
    merged, checked before omitted and split, so sharing background with another skeleton is
    enough to zero a skeleton's ERL."""
    seg = _checked_segments(node_segments, skel.n_nodes)
    c = _lab_classes(skel, seg, merge_rule)
    n_skel = len(skel.skeleton_ids)
    lengths = skel.skeleton_lengths
    total = skel.total_length
    split_skel = np.zeros(n_skel, dtype=bool)
    split_skel[skel.edge_skeleton[c.split]] = True
    return metrics.ERLResult(
        erl=float(c.skel_sq.sum() / total) if total > 0 else 0.0,
        max_erl=metrics.max_erl(skel),
        total_length=total,
        skeleton_ids=skel.skeleton_ids,
        skeleton_lengths=lengths,
        skeleton_erl=np.divide(c.skel_sq, lengths, out=np.zeros(n_skel), where=lengths > 0),
        merged_skeletons=int(c.skel_merged.sum()),
        merging_segments=c.n_merging,
        split_skeletons=int(split_skel.sum()),
        correct_edges=int(c.correct.sum()),
        split_edges=int(c.split.sum()),
        omitted_edges=int(c.omitted.sum()),
        merged_edges=int(c.merged.sum()),
    )


def lab_skeleton_scores(skel: metrics.Skeletons, node_segments, merge_rule: metrics.MergeRule = "segment",
                        node_flags: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """:func:`metrics.skeleton_scores`' per-neuron table (same columns) with the lab's scores, so
    its columns add up to :func:`lab_evaluate_thresholds`' row: ``erl``, ``erl_contribution`` and
    the edge classes from :func:`lab_expected_run_length`; ``in_merging_segments`` counts segment
    0; ``n_splits`` / ``n_merges`` on rand_voi's table (neuron 0 dropped, segment 0 a segment; a
    segment's ``k − 1`` merges go to all but its largest neuron, ties to the lower id).
    ``n_nodes``, ``cable_length``, ``background_nodes`` (nodes in segment 0) and the flags are
    metrics'."""
    seg = _checked_segments(node_segments, skel.n_nodes)
    df = metrics.skeleton_scores(skel, seg, merge_rule, node_flags)
    c = _lab_classes(skel, seg, merge_rule)
    k = len(skel.skeleton_ids)
    lengths = skel.skeleton_lengths
    total = skel.total_length

    def per_edge(mask: np.ndarray) -> np.ndarray:
        return np.bincount(skel.edge_skeleton[mask], minlength=k)

    keep = skel.neuron_ids != 0
    node_skel = skel.node_skeleton[keep]
    vseg, vskel, pair_of = _pairs(seg[keep], node_skel)
    counts = np.bincount(pair_of, minlength=len(vseg))
    owner_first = np.lexsort((vskel, -counts, vseg))  # per segment: most nodes first, then lower id
    first = np.ones(len(vseg), dtype=bool)
    first[1:] = vseg[owner_first][1:] != vseg[owner_first][:-1]
    intruder = np.zeros(len(vseg), dtype=bool)
    intruder[owner_first] = ~first
    df["erl"] = np.divide(c.skel_sq, lengths, out=np.zeros(k), where=lengths > 0)
    df["erl_contribution"] = c.skel_sq / total if total > 0 else np.zeros(k)
    df["n_splits"] = np.bincount(vskel, minlength=k) - (np.bincount(node_skel, minlength=k) > 0)
    df["n_merges"] = np.bincount(vskel[intruder], minlength=k)
    df["in_merging_segments"] = np.bincount(c.pair_skel[c.pair_merging], minlength=k)
    for name, mask in (("correct_edges", c.correct), ("split_edges", c.split), ("omitted_edges", c.omitted),
                       ("merged_edges", c.merged)):
        df[name] = per_edge(mask)
    return df


def lab_evaluate_thresholds(skel: metrics.Skeletons, node_segments_for: Callable[[float], np.ndarray],
                            thresholds: Sequence[float], names: Sequence[str] | None = None,
                            merge_rule: metrics.MergeRule = "segment") -> pd.DataFrame:
    """:func:`metrics.evaluate_thresholds`' table (same columns) with the lab's scores:
    :func:`lab_expected_run_length`, :func:`lab_variation_of_information`,
    :func:`lab_split_merge_counts`. ``names`` label the rows (default: the threshold formatted
    with ``g``, as metrics does; the lab's LUT names are :func:`lab_lut_names`)."""
    def scores(t: float) -> tuple[metrics.ERLResult, tuple[float, float], tuple[int, int]]:
        seg = _checked_segments(node_segments_for(t), skel.n_nodes, f"node_segments_for({t!r})")
        return (lab_expected_run_length(skel, seg, merge_rule), lab_variation_of_information(skel.neuron_ids, seg),
                lab_split_merge_counts(skel.neuron_ids, seg))

    return metrics.threshold_table(thresholds, names, scores)

"""Tests for lsdgraph.metrics: ERL, VOI, split/merge counts and the threshold sweep."""
from __future__ import annotations

import math
from collections import defaultdict

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsdgraph._algorithms.metrics import (
    Skeletons,
    best_threshold,
    edge_ids_to_indices,
    evaluate_thresholds,
    expected_run_length,
    max_erl,
    skeleton_scores,
    split_merge_counts,
    variation_of_information,
)
from lsdgraph._core.errors import LsdgraphError

SQ2 = math.sqrt(2)


def make(nodes, edges):
    """nodes: {node_id: (neuron_id, (z, y, x))}; edges: [(u, v)] as node ids."""
    ids = np.array(list(nodes), dtype=np.int64)
    neurons = np.array([nodes[i][0] for i in ids], dtype=np.int64)
    pos = np.array([nodes[i][1] for i in ids], dtype=np.float64).reshape(-1, 3)
    return Skeletons(ids, neurons, pos, np.array(edges, dtype=np.int64).reshape(-1, 2))


def segs(skel, lut):
    """Node-order segment array from a {node_id: segment} dict."""
    return np.array([lut[int(n)] for n in skel.node_ids], dtype=np.uint64)


def line(neuron, first_id, n, z=0):
    """n nodes 1 apart along x: ({id: (neuron, pos)}, [edges])."""
    nodes = {first_id + i: (neuron, (z, 0, i)) for i in range(n)}
    return nodes, [(first_id + i, first_id + i + 1) for i in range(n - 1)]


# --- funlib.evaluate's own pinned values (funlib/tests/test_run_length.py) -------------------

FUNLIB_NODES = {
    1: (1, (0, 0, 0)), 2: (1, (1, 1, 0)), 3: (1, (0, 1, 1)),  # two edges of length √2
    4: (2, (1, 1, 1)), 5: (2, (0, 0, 1)),  # one edge of length √2
}
FUNLIB_EDGES = [(1, 2), (2, 3), (4, 5)]


def test_funlib_single_skeleton_whole_and_split():
    skel = make({k: FUNLIB_NODES[k] for k in (1, 2, 3)}, FUNLIB_EDGES[:2])
    assert skel.total_length == pytest.approx(2 * SQ2)
    # whole: (2√2)² / 2√2 = 2√2
    r = expected_run_length(skel, segs(skel, {1: 10, 2: 10, 3: 10}))
    assert r.erl == pytest.approx(2 * SQ2)
    # one split: only edge 1–2 correct: (√2)² / 2√2 = √2/2
    r = expected_run_length(skel, segs(skel, {1: 10, 2: 10, 3: 20}))
    assert r.erl == pytest.approx(SQ2 / 2)
    assert (r.split_edges, r.correct_edges, r.split_skeletons) == (1, 1, 1)


def test_funlib_two_skeletons_one_split_each_and_complete_merge():
    skel = make(FUNLIB_NODES, FUNLIB_EDGES)
    # skeleton 1 keeps √2 in segment 10, skeleton 2's only edge is split: (√2)² / 3√2 = √2/3
    r = expected_run_length(skel, segs(skel, {1: 10, 2: 10, 3: 30, 4: 20, 5: 40}))
    assert r.erl == pytest.approx(SQ2 / 3)
    assert r.split_edges == 2 and r.merged_skeletons == 0
    # all five nodes in one segment: every edge merged
    r = expected_run_length(skel, segs(skel, dict.fromkeys(range(1, 6), 10)))
    assert r.erl == 0
    assert (r.merged_skeletons, r.merging_segments, r.merged_edges) == (2, 1, 3)


def test_funlib_five_node_line():
    nodes, edges = line(1, 1, 5)
    skel = make(nodes, edges)
    # labels 1 1 1 2 2: segment 1 has 2 correct, segment 2 has 1: (4 + 1) / 4
    assert expected_run_length(skel, segs(skel, {1: 1, 2: 1, 3: 1, 4: 2, 5: 2})).erl == pytest.approx(1.25)
    # labels 1 1 1 1 2: 3² / 4
    assert expected_run_length(skel, segs(skel, {1: 1, 2: 1, 3: 1, 4: 1, 5: 2})).erl == pytest.approx(2.25)


# --- hand-built cases ------------------------------------------------------------------------


def test_omitted_edges_keep_their_length_in_the_total():
    # edges of length 3 and 4; node 3 in no segment → edge 2–3 omitted: 3² / 7
    skel = make({1: (1, (0, 0, 0)), 2: (1, (0, 0, 3)), 3: (1, (0, 0, 7))}, [(1, 2), (2, 3)])
    r = expected_run_length(skel, segs(skel, {1: 5, 2: 5, 3: 0}))
    assert r.erl == pytest.approx(9 / 7)
    assert (r.omitted_edges, r.correct_edges, r.split_edges) == (1, 1, 0)
    assert r.total_length == pytest.approx(7)
    # both ends in segment 0 is omitted too, and not a "merge" of segment 0
    r = expected_run_length(skel, segs(skel, {1: 0, 2: 0, 3: 0}))
    assert (r.erl, r.omitted_edges, r.merged_skeletons) == (0, 2, 0)


def test_segment_zero_shared_by_skeletons_is_not_a_merge():
    a, ea = line(1, 1, 3)
    b, eb = line(2, 10, 3, z=50)
    skel = make({**a, **b}, ea + eb)
    lut = {1: 0, 2: 7, 3: 7, 10: 0, 11: 8, 12: 8}
    r = expected_run_length(skel, segs(skel, lut))
    # each skeleton: one omitted edge, one correct unit edge: (1 + 1) / 4
    assert r.erl == pytest.approx(0.5)
    assert (r.merged_skeletons, r.merging_segments, r.omitted_edges) == (0, 0, 2)


def three_way_merge():
    # A: a1–a2–a3 unit edges; B: b1–b2 length 3; C: c1–c2–c3 unit edges
    nodes = {
        1: (100, (0, 0, 0)), 2: (100, (0, 0, 1)), 3: (100, (0, 0, 2)),
        4: (200, (5, 0, 0)), 5: (200, (5, 0, 3)),
        6: (300, (9, 0, 0)), 7: (300, (9, 0, 1)), 8: (300, (9, 0, 2)),
    }
    skel = make(nodes, [(1, 2), (2, 3), (4, 5), (6, 7), (7, 8)])
    # segment 20 holds a3, b1, b2 and c1: it merges all three skeletons
    lut = {1: 10, 2: 10, 3: 20, 4: 20, 5: 20, 6: 20, 7: 30, 8: 30}
    return skel, segs(skel, lut)


def test_merge_between_three_skeletons_segment_rule():
    skel, seg = three_way_merge()
    r = expected_run_length(skel, seg)
    # L = 2 + 3 + 2 = 7. A: a1–a2 correct in 10 (1), a2–a3 split. B: b1–b2 merged in 20.
    # C: c1–c2 split, c2–c3 correct in 30 (1).  ERL = (1² + 1²) / 7
    assert r.erl == pytest.approx(2 / 7)
    assert (r.merged_skeletons, r.merging_segments) == (3, 1)
    assert (r.correct_edges, r.split_edges, r.merged_edges, r.omitted_edges) == (2, 2, 1, 0)
    np.testing.assert_array_equal(r.skeleton_ids, [100, 200, 300])
    np.testing.assert_allclose(r.skeleton_lengths, [2, 3, 2])
    # per skeleton: Σ c² / L_s
    np.testing.assert_allclose(r.skeleton_erl, [1 / 2, 0, 1 / 2])
    # the total is the length-weighted mean of the per-skeleton values
    assert r.erl == pytest.approx(np.dot(r.skeleton_erl, r.skeleton_lengths) / r.total_length)


def test_merge_between_three_skeletons_skeleton_rule():
    skel, seg = three_way_merge()
    # every skeleton touches segment 20, so every in-segment edge counts 0
    r = expected_run_length(skel, seg, merge_rule="skeleton")
    assert r.erl == 0
    assert (r.correct_edges, r.merged_edges, r.split_edges) == (0, 3, 2)
    with pytest.raises(LsdgraphError, match="merge_rule"):
        expected_run_length(skel, seg, merge_rule="run")


def test_skeleton_rule_differs_only_for_edges_outside_the_merging_segment():
    # A: 4-node line, nodes 1,2 in segment 1, nodes 3,4 in segment 2; B: one node in segment 2
    a, ea = line(1, 1, 4)
    skel = make({**a, 9: (2, (50, 0, 0))}, ea)
    seg = segs(skel, {1: 1, 2: 1, 3: 2, 4: 2, 9: 2})
    # segment rule: 1–2 correct (1), 2–3 split, 3–4 merged: 1² / 3
    assert expected_run_length(skel, seg).erl == pytest.approx(1 / 3)
    # skeleton rule: A is merged, so 1–2 counts 0 too
    assert expected_run_length(skel, seg, merge_rule="skeleton").erl == 0


def test_isolated_node_of_another_skeleton_causes_a_merge():
    # B has no edges (length 0) but its node sits in A's segment
    skel = make({1: (1, (0, 0, 0)), 2: (1, (0, 0, 5)), 3: (2, (9, 9, 9))}, [(1, 2)])
    r = expected_run_length(skel, segs(skel, {1: 4, 2: 4, 3: 4}))
    assert r.erl == 0 and r.merged_skeletons == 2 and r.max_erl == pytest.approx(5)
    np.testing.assert_allclose(r.skeleton_erl, [0, 0])  # length-0 skeleton scores 0, not NaN
    assert expected_run_length(skel, segs(skel, {1: 4, 2: 4, 3: 6})).erl == pytest.approx(5)


def test_skeleton_in_three_segments():
    nodes, edges = line(1, 1, 6)
    skel = make(nodes, edges)
    # labels 1 1 2 2 2 3: segment 1 holds 1 unit, segment 2 holds 2, segment 3 none;
    # two splits.  ERL = (1² + 2²) / 5 = 1
    r = expected_run_length(skel, segs(skel, {1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 3}))
    assert r.erl == pytest.approx(1.0)
    assert r.split_edges == 2
    assert split_merge_counts(skel.neuron_ids, segs(skel, {1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 3})) == (2, 0)


def test_per_segment_not_per_run():
    nodes, edges = line(1, 1, 7)
    skel = make(nodes, edges)
    # labels 1 1 1 2 1 1 1: the skeleton leaves segment 1 and comes back. Segment 1 holds 4 unit
    # edges in two runs of 2: per segment 4² / 6 = 8/3 (per run it would be (2² + 2²) / 6 = 4/3)
    r = expected_run_length(skel, segs(skel, {1: 1, 2: 1, 3: 1, 4: 2, 5: 1, 6: 1, 7: 1}))
    assert r.erl == pytest.approx(8 / 3)
    assert r.split_edges == 2


def test_edge_lengths_use_float32_positions():
    # 16777217 is not representable in float32 (rounds to 2**24), as in funlib's lengths
    skel = make({1: (1, (16777217, 0, 0)), 2: (1, (0, 0, 0))}, [(1, 2)])
    assert skel.edge_lengths[0] == 16777216.0
    assert skel.total_length == 16777216.0


def test_max_erl_is_erl_of_perfect_segmentation():
    a, ea = line(1, 1, 4)  # length 3
    b, eb = line(2, 10, 5, z=40)  # length 4
    skel = make({**a, **b}, ea + eb)
    # (3² + 4²) / 7
    assert max_erl(skel) == pytest.approx(25 / 7)
    perfect = (skel.neuron_ids + 1).astype(np.uint64)
    r = expected_run_length(skel, perfect)
    assert r.erl == pytest.approx(25 / 7) and r.erl_fraction == pytest.approx(1.0)


def test_erl_on_skeletons_without_length_is_zero():
    skel = make({1: (1, (0, 0, 0)), 2: (2, (1, 1, 1))}, [])
    r = expected_run_length(skel, np.array([1, 2], np.uint64))
    assert r.erl == 0 and r.max_erl == 0 and math.isnan(r.erl_fraction)


# --- Skeletons validation and conversion ------------------------------------------------------


def test_duplicate_and_reversed_edges_count_once():
    nodes, edges = line(1, 1, 3)
    skel = make(nodes, edges + [(2, 1), (1, 2), (3, 2)])
    assert skel.n_edges == 2 and skel.total_length == pytest.approx(2)


def test_edge_ids_to_indices_and_from_edge_indices():
    ids = np.array([70, 10, 40], np.int64)
    np.testing.assert_array_equal(edge_ids_to_indices(ids, np.array([[10, 70], [40, 10]])), [[1, 0], [2, 1]])
    with pytest.raises(LsdgraphError, match="first: 99"):
        edge_ids_to_indices(ids, np.array([[10, 99]]))
    pos = np.array([[0, 0, 0], [0, 0, 2], [0, 0, 5]], float)
    a = Skeletons.from_edge_indices(ids, [1, 1, 1], pos, [[0, 1], [1, 2]])
    b = Skeletons(ids, np.array([1, 1, 1]), pos, np.array([[70, 10], [10, 40]]))
    np.testing.assert_array_equal(a.edges, b.edges)
    assert a.total_length == pytest.approx(2 + 3)  # x: 0 → 2 → 5
    with pytest.raises(LsdgraphError, match="edge indices"):
        Skeletons.from_edge_indices(ids, [1, 1, 1], pos, [[0, 3]])


def test_from_graph_matches_arrays():
    g = nx.Graph()
    for n, (neuron, (z, y, x)) in FUNLIB_NODES.items():
        g.add_node(n, skeleton_id=neuron, z=z, y=y, x=x)
    g.add_edges_from(FUNLIB_EDGES)
    skel = Skeletons.from_graph(g, neuron_attribute="skeleton_id")
    np.testing.assert_allclose(skel.skeleton_lengths, [2 * SQ2, SQ2], rtol=1e-6)
    with pytest.raises(LsdgraphError, match="neuron_attribute"):
        Skeletons.from_graph(g, neuron_attribute="component_id")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(node_ids=[1, 1]), "not unique"),
        (dict(neuron_ids=[1]), "neuron_ids has 1"),
        (dict(positions=np.zeros((2, 2))), "positions has shape"),
        (dict(positions=np.array([[0, 0, np.nan], [0, 0, 0]])), "NaN"),
        (dict(edges=[[1, 3]]), "not among the skeleton nodes"),
        (dict(edges=[1, 2]), "edges must be a 2-d"),
        (dict(neuron_ids=[1, 2]), "different neurons"),
        (dict(node_ids=[1.0, 2.0]), "integer array"),
    ],
)
def test_skeletons_validation(kwargs, match):
    args = dict(node_ids=[1, 2], neuron_ids=[5, 5], positions=np.zeros((2, 3)), edges=[[1, 2]])
    args.update(kwargs)
    with pytest.raises(LsdgraphError, match=match):
        Skeletons(**{k: np.asarray(v) for k, v in args.items()})


def test_skeletons_copies_and_freezes_inputs():
    ids = np.array([1, 2], np.int64)
    Skeletons(ids, np.array([5, 5]), np.zeros((2, 3)), np.array([[1, 2]]))
    ids[0] = 3  # the caller's array stays writeable
    skel = make({1: (1, (0, 0, 0)), 2: (1, (0, 0, 1))}, [(1, 2)])
    with pytest.raises(ValueError):
        skel.edge_lengths[0] = 5


def test_node_segments_validation():
    skel = make({1: (1, (0, 0, 0)), 2: (1, (0, 0, 1))}, [(1, 2)])
    with pytest.raises(LsdgraphError, match="does not match the 2 skeleton nodes"):
        expected_run_length(skel, np.array([1], np.uint64))
    with pytest.raises(LsdgraphError, match="negative"):
        expected_run_length(skel, np.array([1, -1]))
    with pytest.raises(LsdgraphError, match="not an integer"):
        expected_run_length(skel, np.array([1.0, 1.0]))
    # signed non-negative ids are accepted
    assert expected_run_length(skel, np.array([3, 3], np.int64)).erl == pytest.approx(1)


# --- VOI and split/merge counts ---------------------------------------------------------------


def test_voi_perfect_split_and_merge():
    neurons = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    assert variation_of_information(neurons, np.array([7, 7, 7, 7, 9, 9, 9, 9], np.uint64)) == (0, 0)
    # one neuron cut into two equal halves: H(S|N) = H(½, ½) = 1 bit, each segment pure
    split, merge = variation_of_information(np.array([1, 1, 1, 1]), np.array([3, 3, 4, 4], np.uint64))
    assert split == pytest.approx(1.0) and merge == pytest.approx(0.0)
    # same cut when that neuron is half of all nodes: ½·1 + ½·0 = 0.5 bit
    split, merge = variation_of_information(neurons, np.array([3, 3, 4, 4, 9, 9, 9, 9], np.uint64))
    assert split == pytest.approx(0.5) and merge == pytest.approx(0.0)
    # two equal neurons in one segment: H(N|S) = H(½, ½) = 1 bit
    split, merge = variation_of_information(neurons, np.full(8, 5, np.uint64))
    assert split == pytest.approx(0.0) and merge == pytest.approx(1.0)


def test_voi_uneven_case_by_hand():
    neurons = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    seg = np.array([1, 1, 1, 2, 2, 2, 2, 2], np.uint64)
    h = lambda *p: -sum(x * math.log2(x) for x in p)  # noqa: E731
    # H(S|N): neuron 1 (p=½) spread 3:1, neuron 2 whole → ½·H(¾, ¼)
    # H(N|S): segment 1 (p=⅜) pure, segment 2 (p=⅝) holds 1 of neuron 1 and 4 of neuron 2
    split, merge = variation_of_information(neurons, seg)
    assert split == pytest.approx(0.5 * h(0.75, 0.25))
    assert merge == pytest.approx(5 / 8 * h(0.2, 0.8))


def test_voi_excludes_segment_zero():
    neurons = np.array([1, 1, 2, 2, 1, 2, 1])
    seg = np.array([4, 4, 6, 6, 0, 0, 0], np.uint64)
    assert variation_of_information(neurons, seg) == (0, 0)
    # nodes in segment 0 only: nothing to score
    assert variation_of_information(neurons, np.zeros(7, np.uint64)) == (0, 0)
    # segment 0 as one ordinary segment:
    split, merge = variation_of_information(neurons, seg, ignore_background=False)
    # H(S|N): neuron 1 (4/7) split 2:2 → 1 bit; neuron 2 (3/7) split 2:1 → H(⅔, ⅓)
    # H(N|S): segment 0 (3/7) holds neuron 1 twice, neuron 2 once → H(⅔, ⅓)
    h = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert split == pytest.approx(4 / 7 + 3 / 7 * h)
    assert merge == pytest.approx(3 / 7 * h)


def test_split_merge_counts_by_hand():
    skel, seg = three_way_merge()
    # neurons: A in {10, 20}, B in {20}, C in {20, 30} → splits 1 + 0 + 1
    # segments: 20 holds A, B, C → merges 2; 10 and 30 one neuron each
    assert split_merge_counts(skel.neuron_ids, seg) == (2, 2)
    # segment 0 neither splits nor merges; a neuron wholly in 0 adds nothing
    assert split_merge_counts(np.array([1, 1, 2, 3]), np.array([5, 0, 0, 5], np.uint64)) == (0, 1)
    assert split_merge_counts(np.array([1, 2]), np.array([0, 0], np.uint64)) == (0, 0)


def test_metrics_invariant_to_relabelling():
    rng = np.random.default_rng(3)
    skel, seg = three_way_merge()
    relabel = {10: 2**63 + 5, 20: 1, 30: 77}  # includes a segment id beyond int64
    seg2 = np.array([relabel[int(s)] for s in seg], np.uint64)
    neurons2 = rng.permutation(1000)[skel.node_skeleton] - 500  # negative neuron ids too
    assert variation_of_information(skel.neuron_ids, seg) == pytest.approx(variation_of_information(neurons2, seg2))
    assert split_merge_counts(skel.neuron_ids, seg) == split_merge_counts(neurons2, seg2)
    assert expected_run_length(skel, seg).erl == pytest.approx(expected_run_length(skel, seg2).erl)


# --- the threshold sweep ----------------------------------------------------------------------


def test_evaluate_thresholds_matches_single_calls_and_picks_best():
    a, ea = line(1, 1, 4)
    b, eb = line(2, 10, 4, z=40)
    skel = make({**a, **b}, ea + eb)
    by_t = {
        0.1: segs(skel, {1: 1, 2: 2, 3: 3, 4: 4, 10: 5, 11: 6, 12: 7, 13: 8}),  # all split
        0.5: segs(skel, {1: 1, 2: 1, 3: 1, 4: 1, 10: 5, 11: 5, 12: 5, 13: 0}),  # near perfect
        0.9: segs(skel, {1: 1, 2: 1, 3: 1, 4: 1, 10: 1, 11: 1, 12: 1, 13: 1}),  # all merged
    }
    calls = []

    def seg_for(t):
        calls.append(t)
        return by_t[t]

    df = evaluate_thresholds(skel, seg_for, [0.1, 0.5, 0.9], names=["lo", "mid", "hi"])
    assert calls == [0.1, 0.5, 0.9]
    assert list(df["name"]) == ["lo", "mid", "hi"]
    for t, row in zip(by_t, df.itertuples(), strict=True):
        r = expected_run_length(skel, by_t[t])
        vs, vm = variation_of_information(skel.neuron_ids, by_t[t])
        ns, nm = split_merge_counts(skel.neuron_ids, by_t[t])
        assert row.threshold == t
        assert (row.erl, row.max_erl, row.erl_fraction) == pytest.approx((r.erl, r.max_erl, r.erl_fraction))
        assert (row.voi_split, row.voi_merge, row.voi_sum) == pytest.approx((vs, vm, vs + vm))
        assert (row.n_splits, row.n_merges) == (ns, nm)
        assert (row.merged_skeletons, row.split_edges, row.omitted_edges) == (
            r.merged_skeletons, r.split_edges, r.omitted_edges)
    # 0.5: A whole (3² ), B 2 correct of 3 (2²) → (9 + 4) / 6
    assert df.loc[1, "erl"] == pytest.approx(13 / 6)
    assert df.loc[0, "n_splits"] == 6 and df.loc[2, "n_merges"] == 1
    assert best_threshold(df)["threshold"] == 0.5
    assert best_threshold(df, by="voi_sum")["name"] == "mid"
    assert best_threshold(df, by="n_merges")["threshold"] == 0.1  # first of the ties at 0
    assert best_threshold(df, by="voi_split", maximize=True)["threshold"] == 0.1
    assert df["n_splits"].dtype == np.int64


def test_evaluate_thresholds_errors_and_default_names():
    skel = make({1: (1, (0, 0, 0)), 2: (1, (0, 0, 1))}, [(1, 2)])
    df = evaluate_thresholds(skel, lambda t: np.array([1, 1], np.uint64), [0.25, 1])
    assert list(df["name"]) == ["0.25", "1"]
    with pytest.raises(LsdgraphError, match="2 names for 1 thresholds"):
        evaluate_thresholds(skel, lambda t: np.array([1, 1], np.uint64), [0.5], names=["a", "b"])
    with pytest.raises(LsdgraphError, match=r"node_segments_for\(0.5\)"):
        evaluate_thresholds(skel, lambda t: np.array([1], np.uint64), [0.5])
    with pytest.raises(LsdgraphError, match="no column 'erl2'"):
        best_threshold(df, by="erl2")
    with pytest.raises(LsdgraphError, match="no numeric values"):
        best_threshold(df.iloc[:0])


# --- per skeleton ----------------------------------------------------------------------------


def test_skeleton_scores_by_hand():
    a, ea = line(1, 1, 4)
    b, eb = line(2, 10, 4, z=40)
    skel = make({**a, **b}, ea + eb)
    # A: [1 2 | 3 4] in segments 1 and 2; B: [10 11] also in segment 2 (2 nodes each: a tie), 12 in 5, 13 in 0
    seg = segs(skel, {1: 1, 2: 1, 3: 2, 4: 2, 10: 2, 11: 2, 12: 5, 13: 0})
    flags = {"odd_nodes": skel.node_ids % 2 == 1}
    df = skeleton_scores(skel, seg, node_flags=flags)
    assert list(df.columns) == ["neuron_id", "n_nodes", "n_edges", "cable_length", "erl", "erl_contribution",
                                "n_splits", "n_merges", "in_merging_segments", "correct_edges", "split_edges",
                                "omitted_edges", "merged_edges", "background_nodes", "odd_nodes"]
    rows = {r.neuron_id: r for r in df.itertuples()}
    A, B = rows[1], rows[2]
    assert (A.n_nodes, A.n_edges, A.cable_length, B.cable_length) == (4, 3, 3.0, 3.0)
    # only A's edge 1-2 is correct (segment 1 holds A alone): A's ERL 1²/3, its share of the total 1²/6
    assert (A.erl, A.erl_contribution, B.erl, B.erl_contribution) == pytest.approx((1 / 3, 1 / 6, 0, 0))
    assert (A.n_splits, B.n_splits) == (1, 1)
    assert (A.n_merges, B.n_merges) == (0, 1)  # the tie in segment 2 goes to the lower neuron id
    assert (A.in_merging_segments, B.in_merging_segments) == (1, 1)
    assert (A.correct_edges, A.split_edges, A.merged_edges, A.omitted_edges) == (1, 1, 1, 0)
    assert (B.correct_edges, B.split_edges, B.merged_edges, B.omitted_edges) == (0, 1, 1, 1)
    assert (A.background_nodes, B.background_nodes, A.odd_nodes, B.odd_nodes) == (0, 1, 2, 2)
    # the larger skeleton owns a merging segment: B with 3 nodes there makes A the merge
    seg2 = segs(skel, {1: 1, 2: 1, 3: 2, 4: 2, 10: 2, 11: 2, 12: 2, 13: 0})
    assert list(skeleton_scores(skel, seg2)["n_merges"]) == [1, 0]
    # the older merge rule zeroes every edge of a merged skeleton
    strict = skeleton_scores(skel, seg, merge_rule="skeleton")
    assert strict["erl_contribution"].sum() == 0 and list(strict["merged_edges"]) == [2, 1]


def test_skeleton_scores_add_up_to_the_global_scores():
    rng = np.random.default_rng(7)
    nodes, edges = {}, []
    for k in range(6):
        n, e = line(k + 1, 100 * k, int(rng.integers(1, 30)), z=10 * k)
        nodes.update(n)
        edges += e
    skel = make(nodes, edges)
    neuron = skel.neuron_ids
    cases = [rng.integers(0, 12, skel.n_nodes), neuron * 4 + rng.integers(0, 3, skel.n_nodes),
             np.where(rng.random(skel.n_nodes) < 0.2, 0, neuron // 2 + 1), np.ones(skel.n_nodes),
             np.zeros(skel.n_nodes)]
    for case in cases:
        seg = np.asarray(case, np.uint64)
        for rule in ("segment", "skeleton"):
            df = skeleton_scores(skel, seg, merge_rule=rule)
            row = evaluate_thresholds(skel, lambda t, seg=seg: seg, [0.5], merge_rule=rule).iloc[0]
            assert df["erl_contribution"].sum() == pytest.approx(row["erl"])
            assert df["cable_length"].sum() == pytest.approx(skel.total_length)
            assert (df["n_nodes"].sum(), df["n_edges"].sum()) == (skel.n_nodes, skel.n_edges)
            for col in ("n_splits", "n_merges", "correct_edges", "split_edges", "omitted_edges", "merged_edges"):
                assert df[col].sum() == row[col], (col, rule)
            assert df["background_nodes"].sum() == (seg == 0).sum()
            assert (df["in_merging_segments"] >= df["n_merges"]).all()
            r = expected_run_length(skel, seg, rule)
            assert df["erl"].to_numpy() == pytest.approx(r.skeleton_erl)


def test_skeleton_scores_bad_flags():
    skel = make({1: (1, (0, 0, 0)), 2: (1, (0, 0, 1))}, [(1, 2)])
    seg = np.array([1, 1], np.uint64)
    with pytest.raises(LsdgraphError, match=r"node_flags\['x'\] must be a bool array"):
        skeleton_scores(skel, seg, node_flags={"x": np.array([1, 0])})
    with pytest.raises(LsdgraphError, match="would replace a score column"):
        skeleton_scores(skel, seg, node_flags={"n_nodes": np.array([True, False])})


# --- property test against a slow, literal reference ------------------------------------------


def reference_erl(graph: nx.Graph, lut: dict, rule: str):
    """funlib.evaluate's algorithm written out with dicts and loops (not shared with the code)."""
    skeletons_of_segment = defaultdict(set)
    for n, d in graph.nodes(data=True):
        if lut[n] != 0:
            skeletons_of_segment[lut[n]].add(d["neuron"])
    merging = {s for s, k in skeletons_of_segment.items() if len(k) > 1}
    merged_skeletons = {k for s in merging for k in skeletons_of_segment[s]}
    length = defaultdict(float)
    correct = defaultdict(float)
    counts = dict(split=0, omitted=0, merged=0, correct=0)
    for u, v in graph.edges():
        sk = graph.nodes[u]["neuron"]
        pu = np.array(graph.nodes[u]["pos"], dtype=np.float32)
        pv = np.array(graph.nodes[v]["pos"], dtype=np.float32)
        el = float(np.linalg.norm(pu - pv))
        length[sk] += el
        a, b = lut[u], lut[v]
        if a == 0 or b == 0:
            counts["omitted"] += 1
        elif a != b:
            counts["split"] += 1
        elif (a in merging) if rule == "segment" else (sk in merged_skeletons):
            counts["merged"] += 1
        else:
            counts["correct"] += 1
            correct[(sk, a)] += el
    total = sum(length.values())
    erl = sum(c * c for c in correct.values()) / total if total > 0 else 0.0
    per_skel = {
        sk: sum(c * c for (s, _), c in correct.items() if s == sk) / length[sk] if length[sk] > 0 else 0.0
        for sk in {d["neuron"] for _, d in graph.nodes(data=True)}
    }
    return erl, per_skel, counts, len(merged_skeletons), len(merging)


def reference_voi_counts(neurons, seg):
    pairs, n_of, s_of = defaultdict(int), defaultdict(int), defaultdict(int)
    for n, s in zip(neurons.tolist(), seg.tolist(), strict=True):
        if s != 0:
            pairs[(n, s)] += 1
            n_of[n] += 1
            s_of[s] += 1
    total = sum(n_of.values())
    if total == 0:
        return 0.0, 0.0, 0, 0
    # H(S|N) = Σ_n p(n) H(S | N=n), H(N|S) likewise
    split = sum(c / total * -math.log2(c / n_of[n]) for (n, s), c in pairs.items())
    merge = sum(c / total * -math.log2(c / s_of[s]) for (n, s), c in pairs.items())
    segs_per_neuron, neurons_per_seg = defaultdict(set), defaultdict(set)
    for n, s in pairs:
        segs_per_neuron[n].add(s)
        neurons_per_seg[s].add(n)
    splits = sum(len(x) - 1 for x in segs_per_neuron.values())
    merges = sum(len(x) - 1 for x in neurons_per_seg.values())
    return split, merge, splits, merges


@st.composite
def skeletons_and_segments(draw):
    n_skel = draw(st.integers(1, 4))
    graph = nx.Graph()
    next_id = draw(st.integers(0, 1000))
    for _k in range(n_skel):
        neuron = draw(st.integers(-3, 6))  # neuron ids may repeat: then they are one skeleton
        ids = list(range(next_id, next_id + draw(st.integers(1, 7))))
        next_id = ids[-1] + draw(st.integers(1, 50))
        for i, n in enumerate(ids):
            pos = draw(st.tuples(*[st.integers(0, 20)] * 3))
            graph.add_node(n, neuron=neuron, pos=pos)
            if i:
                graph.add_edge(n, ids[draw(st.integers(0, i - 1))])
    # a few extra edges within a skeleton (cycles, repeats are fine)
    nodes = list(graph.nodes)
    for _ in range(draw(st.integers(0, 3))):
        u, v = draw(st.sampled_from(nodes)), draw(st.sampled_from(nodes))
        if graph.nodes[u]["neuron"] == graph.nodes[v]["neuron"]:
            graph.add_edge(u, v)
    lut = {n: draw(st.sampled_from([0, 1, 2, 3, 4, 2**64 - 1])) for n in nodes}
    return graph, lut


@settings(max_examples=250, deadline=None)
@given(skeletons_and_segments())
def test_vectorized_metrics_match_reference(case):
    graph, lut = case
    skel = Skeletons(
        np.array(list(graph.nodes), np.int64),
        np.array([d["neuron"] for _, d in graph.nodes(data=True)], np.int64),
        np.array([d["pos"] for _, d in graph.nodes(data=True)], np.float64).reshape(-1, 3),
        np.array(list(graph.edges), np.int64).reshape(-1, 2),
    )
    seg = segs(skel, lut)
    for rule in ("segment", "skeleton"):
        erl, per_skel, counts, n_merged, n_merging = reference_erl(graph, lut, rule)
        r = expected_run_length(skel, seg, merge_rule=rule)
        assert r.erl == pytest.approx(erl, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(r.skeleton_erl, [per_skel[k] for k in r.skeleton_ids.tolist()],
                                   rtol=1e-9, atol=1e-12)
        assert (r.split_edges, r.omitted_edges, r.merged_edges, r.correct_edges) == (
            counts["split"], counts["omitted"], counts["merged"], counts["correct"])
        assert (r.merged_skeletons, r.merging_segments) == (n_merged, n_merging)
    split, merge, n_splits, n_merges = reference_voi_counts(skel.neuron_ids, seg)
    assert variation_of_information(skel.neuron_ids, seg) == pytest.approx((split, merge), abs=1e-12)
    assert split_merge_counts(skel.neuron_ids, seg) == (n_splits, n_merges)
    # the sweep gives the same numbers as the single calls
    df = evaluate_thresholds(skel, lambda t: seg, [0.5])
    assert df.loc[0, "erl"] == pytest.approx(expected_run_length(skel, seg).erl, rel=1e-12, abs=1e-15)
    assert (df.loc[0, "voi_split"], df.loc[0, "voi_merge"]) == pytest.approx((split, merge), abs=1e-12)

"""The agglomeration core against networkx's connected components, threshold parsing and naming,
and the merge-tree and LUT files."""
from __future__ import annotations

import gc
import weakref

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsdgraph._algorithms import merge_tree as ag
from lsdgraph._core.errors import LsdgraphError

BIG = 2**63


def reference(fragments, u, v, scores, t) -> np.ndarray:
    """Segments at t the slow, obvious way: networkx components of the float32 edges <= t, named
    by their smallest fragment id, in sorted fragment order."""
    ids = sorted({int(f) for f in fragments})
    known = set(ids)
    t32 = np.float32(t)
    g = nx.Graph()
    g.add_nodes_from(ids)
    for a, b, s in zip(u, v, scores, strict=True):
        s32 = np.float32(s)
        if int(a) in known and int(b) in known and s32 <= t32:  # NaN compares False
            g.add_edge(int(a), int(b))
    seg = {}
    for comp in nx.connected_components(g):
        for x in comp:
            seg[x] = min(comp)
    return np.array([seg[i] for i in ids], dtype=np.uint64)


# ids: small, just below 2**63 (BSON int64's top) and above it (uint64 input)
ids_st = st.one_of(st.integers(1, 40), st.integers(BIG - 40, BIG - 1), st.integers(BIG, 2**64 - 1))
# scores: exact threshold values, float64 values that round to the same float32, ties, NaN
SCORES = [0.0, -0.0, 0.25, 0.3, 0.3 + 1e-10, float(np.float32(0.3)), 0.5, 1.0, np.inf, -1.5]
score_st = st.one_of(st.sampled_from(SCORES), st.floats(-2, 2), st.just(np.nan))
THRESHOLDS = [-1.0, 0.0, 0.25, 0.3, 0.5, 0.75, 1.0, np.inf]


@st.composite
def rags(draw):
    n = draw(st.integers(0, 25))  # sizes drawn first: plain lists stay tiny
    fragments = draw(st.lists(ids_st, min_size=n, max_size=n))
    unknown = draw(st.lists(ids_st, max_size=3))
    pool = fragments * 4 + unknown  # mostly known endpoints
    if not pool:
        return fragments, [], [], []
    m = draw(st.integers(0, 3 * n + 3))
    edges = draw(st.lists(st.tuples(st.sampled_from(pool), st.sampled_from(pool), score_st),
                          min_size=m, max_size=m))
    if edges and draw(st.booleans()):
        edges += edges[: draw(st.integers(1, len(edges)))]  # duplicate edges
    u = [e[0] for e in edges]
    v = [e[1] for e in edges]
    s = [e[2] for e in edges]
    return fragments, u, v, s


def arrays(fragments, u, v, s):
    return (np.array(fragments, dtype=np.uint64), np.array(u, dtype=np.uint64),
            np.array(v, dtype=np.uint64), np.array(s, dtype=np.float64))


def check_tree(tree: ag.MergeTree):
    n = len(tree)
    idx = np.arange(n)
    assert np.all(tree.parent <= idx)
    merged = tree.parent < idx
    assert np.all(np.isinf(tree.score[~merged]))
    # a fragment joins its root no later than that root joins its own
    p = tree.parent[merged]
    assert np.all(~merged[p] | (tree.score[merged] <= tree.score[p]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rags(), st.lists(st.one_of(st.sampled_from(SCORES + THRESHOLDS), st.floats(-2, 2)),
                        min_size=1, max_size=4))
def test_cuts_match_networkx_components(rag, extra_thresholds):
    fragments, u, v, s = arrays(*rag)
    tree = ag.build_merge_tree(fragments, u, v, s)
    check_tree(tree)
    assert np.array_equal(tree.fragments, np.unique(fragments))
    for t in THRESHOLDS + [x for x in extra_thresholds if not np.isnan(x)]:
        expected = reference(fragments, u, v, s, t)
        assert np.array_equal(tree.cut(t), expected), t
        garbage = np.full(len(tree), 7, np.uint64)  # every entry must be written
        assert np.array_equal(tree.cut(t, out=garbage), expected)
        assert np.array_equal(tree.fragments[tree.cut_index(t)], expected)
        lut = tree.lut(t)
        assert lut.dtype == np.uint64 and lut.shape == (2, len(tree))
        assert np.array_equal(lut[0], tree.fragments) and np.array_equal(lut[1], expected)

    known = np.isin(u, fragments) & np.isin(v, fragments)
    null = np.isnan(s.astype(np.float32))
    r = tree.report
    assert r.n_fragments == len(set(rag[0])) and r.n_duplicate_fragments == len(rag[0]) - r.n_fragments
    assert r.n_edges == len(u)
    assert r.n_unknown_endpoint == int((~known).sum())
    assert r.n_self_loops == int((known & (u == v)).sum())
    assert r.n_null_scores == int((known & (u != v) & null).sum())
    assert r.n_used == int((known & (u != v) & ~null).sum())
    assert r.n_merges == len(tree) - len(set(reference(fragments, u, v, s, np.inf).tolist()))


@settings(max_examples=60, deadline=None)
@given(rags())
def test_summary_matches_reference(rag):
    fragments, u, v, s = arrays(*rag)
    tree = ag.build_merge_tree(fragments, u, v, s)
    table = ag.summary(tree, "0,0.25,0.3,0.5,1")
    assert table["name"].tolist() == ["0", "0.25", "0.3", "0.5", "1"]
    for row in table.itertuples():
        _, sizes = np.unique(reference(fragments, u, v, s, row.threshold), return_counts=True)
        assert row.n_segments == sizes.size
        assert row.largest_segment == (sizes.max() if sizes.size else 0)
        assert row.singletons == int((sizes == 1).sum())
        assert row.merged_fraction == pytest.approx(sizes[sizes > 1].sum() / max(len(tree), 1))


def test_int64_index_path_gives_the_same_cuts(monkeypatch):
    """From 2**31 fragments indices are int64; force that path on a small graph."""
    rng = np.random.default_rng(3)
    fragments = rng.choice(BIG - 1, 300, replace=False).astype(np.uint64)
    u, v = rng.choice(fragments, 900), rng.choice(fragments, 900)
    s = rng.random(900)
    small = ag.build_merge_tree(fragments, u, v, s)
    monkeypatch.setattr(ag, "index_dtype", lambda n: np.dtype(np.int64))
    wide = ag.build_merge_tree(fragments, u, v, s)
    assert wide.parent.dtype == np.int64 and small.parent.dtype == np.int32
    for t in (0.1, 0.5, 0.9):
        assert np.array_equal(wide.cut(t), small.cut(t))
        assert np.array_equal(wide.cut_index(t), small.cut_index(t))


# --------------------------------------------------------------------------- float32 semantics

def one_edge(score, t) -> bool:
    """Whether fragments 1 and 2, joined by one edge of ``score``, are one segment at ``t``."""
    tree = ag.build_merge_tree([1, 2], [1], [2], np.array([score]))
    return bool(tree.cut(t)[1] == 1)


def test_scores_and_thresholds_compare_in_float32():
    f32 = np.float32(0.3)
    # a float32 score 0.3 is above float64 0.3, but the lab compares in float32: it merges
    assert np.float64(f32) > 0.3
    assert one_edge(f32, 0.3)
    assert ag.build_merge_tree([1, 2], [1], [2], np.array([f32], dtype=np.float32)).cut(0.3)[1] == 1
    assert one_edge(0.3 + 1e-10, 0.3)  # above 0.3 in float64, equal in float32
    above = np.nextafter(f32, np.float32(1))
    assert not one_edge(above, 0.3)
    assert one_edge(above, float(above))
    assert one_edge(0.3, 0.3) and not one_edge(0.3, 0.29)  # ties merge: <=
    assert not one_edge(np.nan, 1e30)  # null scores never merge
    assert not one_edge(np.inf, 1e30) and one_edge(np.inf, np.inf)
    assert one_edge(-0.0, 0.0) and one_edge(0.0, -0.0)
    with pytest.raises(LsdgraphError, match="NaN"):
        ag.build_merge_tree([1, 2], [1], [2], [0.5]).cut(np.nan)


def test_segment_id_is_smallest_fragment_id_and_stable_across_thresholds():
    fragments = np.array([BIG - 1, 7, 2**64 - 1, 42, 5], dtype=np.uint64)
    u = np.array([7, BIG - 1, 42, 5], dtype=np.uint64)
    v = np.array([BIG - 1, 2**64 - 1, 2**64 - 1, 999], dtype=np.uint64)  # 999 is unknown
    tree = ag.build_merge_tree(fragments, u, v, [0.1, 0.2, 0.3, 0.0])
    order = [5, 7, 42, BIG - 1, 2**64 - 1]
    assert tree.fragments.tolist() == order
    assert tree.cut(0.15).tolist() == [5, 7, 42, 7, 2**64 - 1]
    assert tree.cut(0.2).tolist() == [5, 7, 42, 7, 7]
    assert tree.cut(0.3).tolist() == [5, 7, 7, 7, 7]
    assert tree.report.n_unknown_endpoint == 1


def test_accepts_int64_lists_and_empty_inputs():
    tree = ag.build_merge_tree([3, 1, 2, 3], [1, 2, 3], [2, 3, 3], [0.5, 0.7, 0.1])
    assert tree.report.n_duplicate_fragments == 1 and tree.report.n_self_loops == 1
    assert tree.cut(0.6).tolist() == [1, 1, 3]
    assert ag.build_merge_tree([1, BIG], [1], [BIG], [0.1]).cut(0.1).tolist() == [1, 1]
    empty = ag.build_merge_tree([], [], [], [])
    assert len(empty) == 0 and empty.cut(0.5).size == 0 and empty.lut(0.5).shape == (2, 0)
    lonely = ag.build_merge_tree([], [1, 2], [2, 3], [0.1, 0.2])
    assert len(lonely) == 0 and lonely.report.n_unknown_endpoint == 2
    singles = ag.build_merge_tree([9, 4], [], [], [])
    assert singles.cut(1.0).tolist() == [4, 9]


@pytest.mark.parametrize("args, match", [
    (([1, 2], [1, 2], [2], [0.5]), "differ in length"),
    (([1, 2], [1], [2], [0.5, 0.6]), "one score per edge"),
    (([1.5, 2.0], [1], [2], [0.5]), "integer ids"),
    ((np.ones((2, 2), np.uint64), [1], [2], [0.5]), "1-D"),
    (([1, 2], [1], [2], ["a"]), "numbers"),
    (([1, 2], [2**64], [2], [0.5]), "integer ids"),
])
def test_bad_input_raises_one_line_error(args, match):
    with pytest.raises(LsdgraphError, match=match) as err:
        ag.build_merge_tree(*args)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- edge indices

def test_index_edges_matches_searchsorted():
    rng = np.random.default_rng(0)
    fragments = np.unique(rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64, endpoint=True))
    rng.shuffle(fragments)
    with_dups = np.concatenate([fragments, fragments[:100]])
    strangers = rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)
    u = rng.choice(np.concatenate([fragments, strangers]), 20000)
    v = rng.choice(np.concatenate([fragments, strangers]), 20000)
    r = ag.index_edges(with_dups, u, v)
    ids = np.sort(fragments)
    assert np.array_equal(r.fragments, ids) and r.n_duplicates == 100
    for col, idx in ((u, r.u), (v, r.v)):
        pos = np.minimum(np.searchsorted(ids, col), ids.size - 1)
        found = ids[pos] == col
        assert np.array_equal(idx, np.where(found, pos, -1))
    assert np.array_equal(r.known, (r.u >= 0) & (r.v >= 0))
    assert r.u.dtype == np.int32


# --------------------------------------------------------------------------- thresholds

def test_parse_range_is_exact_decimal_with_exclusive_stop():
    values, names = ag.parse_thresholds("0:1:0.02")
    assert len(values) == 50 and values[-1] == 0.98
    assert np.array_equal(values, np.arange(50) * 2 / 100)  # correctly rounded k/50
    assert names[:4] == ["0", "0.02", "0.04", "0.06"] and names[-1] == "0.98"
    values, names = ag.parse_thresholds("0.5:0.8:0.1")
    assert values.tolist() == [0.5, 0.6, 0.7] and names == ["0.5", "0.6", "0.7"]
    values, names = ag.parse_thresholds("0:1:0.3")
    assert names == ["0", "0.3", "0.6", "0.9"]


def test_names_for_a_001_step_are_exact_and_unique():
    # the lab's int(t * 100) names 0.58 as 57 and 0.57 as 57 too: one LUT overwrites the other
    values, names = ag.parse_thresholds("0:1:0.01")
    expected = [f"{k / 100:.2f}".rstrip("0").rstrip(".") for k in range(100)]
    assert names == expected and len(set(names)) == 100
    assert names[57:59] == ["0.57", "0.58"]
    assert values.tolist() == [k / 100 for k in range(100)]


def test_parse_lists_numbers_and_sequences():
    values, names = ag.parse_thresholds("0.1,0.25,0.5")
    assert values.dtype == np.float64 and values.tolist() == [0.1, 0.25, 0.5] and names == ["0.1", "0.25", "0.5"]
    values, names = ag.parse_thresholds(" 0.50 , 1, 0.2:0.4:0.1 ,1E-7")
    assert values.tolist() == [0.5, 1.0, 0.2, 0.3, 1e-7] and names == ["0.5", "1", "0.2", "0.3", "0.0000001"]
    for outside in ("1.5", "7", "0:2:0.5", [-0.1]):  # merge scores are in [0, 1]
        with pytest.raises(LsdgraphError, match=r"thresholds=.* is outside \[0, 1\]"):
            ag.parse_thresholds(outside)
    values, names = ag.parse_thresholds([0.1, 0.25, 1.0])
    assert values.tolist() == [0.1, 0.25, 1.0] and names == ["0.1", "0.25", "1"]
    assert ag.parse_thresholds(0.58)[1] == ["0.58"]
    assert ag.parse_thresholds(np.array([0.58, 0.1], dtype=np.float32))[1] == ["0.58", "0.1"]
    assert ag.parse_thresholds([0, 1])[1] == ["0", "1"]
    assert ag.parse_thresholds([-0.0])[1] == ["0"]
    assert ag.parse_thresholds("0:0.5:0.25")[1] == ["0", "0.25"]


@pytest.mark.parametrize("spec, match", [
    ("0:1:0", "must be > 0"), ("0:1:-0.1", "must be > 0"), ("1:0:0.1", "empty"), ("0:1", "start:stop:step"),
    ("a,b", "not a number"), ("", "empty"), ("nan", "not finite"), ("0.1,0.10", "twice"),
    ("0:1:0.000001", "more than"), ([np.nan], "NaN"), ([], "expected"), ([0.5, 0.5], "twice"),
    ([[0.1]], "expected"), (["0.1"], "expected"), ([np.inf], "infinity"),
])
def test_bad_threshold_specs(spec, match):
    with pytest.raises(LsdgraphError, match=match):
        ag.parse_thresholds(spec)


# --------------------------------------------------------------------------- cuts, files, size

def grid_tree(n=40, seed=1) -> ag.MergeTree:
    rng = np.random.default_rng(seed)
    g = nx.grid_2d_graph(n, n)
    index = {node: i for i, node in enumerate(g.nodes)}
    ids = rng.choice(BIG - 1, n * n, replace=False).astype(np.uint64)
    e = np.array([(index[a], index[b]) for a, b in g.edges])
    return ag.build_merge_tree(ids, ids[e[:, 0]], ids[e[:, 1]], rng.random(len(e)))


def test_iter_cuts_yields_one_lut_at_a_time():
    tree = grid_tree()
    cuts = tree.iter_cuts("0.2,0.4,0.6")
    first = next(cuts)
    assert (first.name, first.threshold) == ("0.2", 0.2)
    assert np.array_equal(first.segments, tree.cut(0.2))
    ref = weakref.ref(first.segments)
    del first
    second = next(cuts)
    gc.collect()
    assert ref() is None  # the generator kept no reference to the cut it handed out
    assert np.array_equal(second.segments, tree.cut(0.4))
    assert [c.name for c in cuts] == ["0.6"]


def test_cut_into_a_given_buffer():
    tree = grid_tree()
    buf = np.zeros(len(tree), np.uint64)
    assert tree.cut(0.5, out=buf) is buf and np.array_equal(buf, tree.cut(0.5))
    for bad in (np.zeros(len(tree), np.int64), np.zeros(len(tree) + 1, np.uint64),
                np.zeros(2 * len(tree), np.uint64)[::2]):
        with pytest.raises(LsdgraphError, match="uint64"):
            tree.cut(0.5, out=bad)


def test_tree_is_at_most_16_bytes_per_fragment():
    tree = grid_tree()
    assert tree.parent.dtype == np.int32 and tree.score.dtype == np.float32
    assert tree.nbytes <= 16 * len(tree)


def test_lut_file_round_trip_is_lsd_format(tmp_path):
    tree = grid_tree()
    for compress in (False, True):
        path = ag.write_lut(tmp_path / f"seg_hist_quant_75_0.58_{compress}", tree.fragments, tree.cut(0.58),
                            compress=compress)
        assert path.name.endswith("_0.58_" + str(compress) + ".npz") and path.exists()
        lut = np.load(path)["fragment_segment_lut"]
        assert lut.dtype == np.uint64 and lut.shape == (2, len(tree))
        assert np.array_equal(lut, tree.lut(0.58))
        fragments, segments = ag.read_lut(path)
        assert np.array_equal(fragments, tree.fragments) and np.array_equal(segments, tree.cut(0.58))
    assert not list(tmp_path.glob("*.part"))


def test_read_lut_accepts_lab_int64_files_and_rejects_others(tmp_path):
    lab = tmp_path / "lab.npz"
    np.savez_compressed(lab, fragment_segment_lut=np.array([[1, 2, 3], [1, 1, 3]], dtype=np.int64))
    fragments, segments = ag.read_lut(lab)
    assert fragments.dtype == segments.dtype == np.uint64 and segments.tolist() == [1, 1, 3]
    np.savez(tmp_path / "other.npz", lut=np.zeros((2, 3), np.uint64))
    np.savez(tmp_path / "flat.npz", fragment_segment_lut=np.zeros(6, np.uint64))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.save(tmp_path / "single.npy", np.zeros((2, 3), np.uint64))
    for name, match in [("other.npz", "no 'fragment_segment_lut'"), ("flat.npz", "expected 2xN"),
                        ("junk.npz", "not a readable"), ("missing.npz", "does not exist"),
                        ("single.npy", "single array")]:
        with pytest.raises(LsdgraphError, match=match):
            ag.read_lut(tmp_path / name)
    with pytest.raises(LsdgraphError, match="one segment per fragment"):
        ag.write_lut(tmp_path / "x.npz", [1, 2], [1])


def test_merge_tree_save_load(tmp_path):
    tree = grid_tree()
    path = tree.save(tmp_path / "tree")
    assert path.suffix == ".npz"
    back = ag.MergeTree.load(path)
    assert back.report == tree.report
    for name in ("fragments", "parent", "score"):
        a, b = getattr(back, name), getattr(tree, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(back.cut(0.5), tree.cut(0.5))

    lut = ag.write_lut(tmp_path / "lut.npz", tree.fragments, tree.cut(0.5))
    with pytest.raises(LsdgraphError, match="not a merge tree"):
        ag.MergeTree.load(lut)
    bad = dict(np.load(path))
    bad["parent"] = bad["parent"][::-1].copy()  # parents after their children
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(LsdgraphError, match="inconsistent"):
        ag.MergeTree.load(tmp_path / "bad.npz")
    with pytest.raises(LsdgraphError, match="does not exist"):
        ag.MergeTree.load(tmp_path / "nope.npz")


def test_cuts_on_a_grid_match_networkx_and_summary_agrees():
    tree = grid_tree(60)
    ids = tree.fragments
    table = ag.summary(tree, "0:1:0.1")
    assert table["n_segments"].is_monotonic_decreasing
    for cut, row in zip(tree.iter_cuts("0:1:0.1"), table.itertuples(), strict=True):
        assert cut.name == row.name
        labels, counts = np.unique(cut.segments, return_counts=True)
        assert row.n_segments == labels.size and row.largest_segment == counts.max()
        assert np.all(np.isin(labels, ids))  # every segment id is one of its fragments' ids
        assert np.array_equal(cut.segments[np.searchsorted(ids, labels)], labels)

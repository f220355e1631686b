"""Lab-faithful mode (``like_lab``): the lab pipeline's numbers derived by hand on small graphs,
a line-by-line Python port of the lab's code as the reference on synthetic data, and the segment
job end to end on every store. The lab's code: lsd_experiments ``04_find_segments.py`` and
``05_evaluate_annotations.py``, funlib.segment ``connected_components_impl.cpp`` (boost
disjoint_sets), funlib.evaluate ``rand_voi.hpp`` and ``run_length.py``."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lsdgraph._algorithms import lab, metrics
from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest import ingest
from lsdgraph._jobs import segment
from lsdgraph._stores import api

EDGES = "edges_hist_quant_75"
NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# the lab's code, ported line by line (dicts and loops: the reference, not the implementation)


def boost_connected_components(nodes, edges, scores, threshold) -> list[int]:
    """funlib.segment's C++: boost disjoint_sets (union by rank; link(i, j) hangs i under j on
    equal rank), edges in array order, skipped when ``score > threshold`` (never for NaN),
    component = root index."""
    parent = list(range(len(nodes)))
    rank = [0] * len(nodes)
    index = {n: i for i, n in enumerate(nodes)}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    t = np.float32(threshold)
    for (a, b), s in zip(edges, scores, strict=True):
        if np.float32(s) > t or a not in index or b not in index:
            continue
        i, j = find(index[a]), find(index[b])
        if i == j:
            continue
        if rank[i] > rank[j]:
            parent[j] = i
        else:
            parent[i] = j
            if rank[i] == rank[j]:
                rank[j] += 1
    return [find(i) for i in range(len(nodes))]


def funlib_rand_voi(truth, test) -> tuple[float, float]:
    """rand_voi.hpp: nodes with truth 0 dropped; H over probabilities."""
    p_ij: dict = {}
    p_i: dict = {}
    p_j: dict = {}
    total = 0
    for a, b in zip(truth, test, strict=True):
        if a:
            total += 1
            p_ij[(a, b)] = p_ij.get((a, b), 0) + 1
            p_i[a] = p_i.get(a, 0) + 1
            p_j[b] = p_j.get(b, 0) + 1

    def h(d):
        return -sum(c / total * math.log2(c / total) for c in d.values())

    return h(p_ij) - h(p_i), h(p_ij) - h(p_j)


def funlib_evaluate(skel: metrics.Skeletons, node_segments, old_rule: bool = False) -> dict:
    """run_length.py's evaluate_skeletons + expected_run_length (return_merge_split_stats=True);
    ``old_rule``: before b533ea8 (a merged skeleton's every edge is merged, checked first)."""
    lut = dict(zip(skel.node_ids.tolist(), [int(s) for s in node_segments], strict=True))
    skel_of = dict(zip(skel.node_ids.tolist(), skel.neuron_ids.tolist(), strict=True))
    pairs = {(skel_of[n], lut[n]) for n in lut}
    per_segment: dict = {}
    for k, s in pairs:
        per_segment.setdefault(s, []).append(k)
    merges = {s: ks for s, ks in per_segment.items() if len(ks) > 1}
    merged_skeletons = {k for ks in merges.values() for k in ks}
    counts = dict.fromkeys(("omitted", "split", "merged", "correct"), 0)
    splits: dict = {}
    correct_len: dict = {}
    lengths = dict(zip(map(tuple, skel.edges.tolist()), skel.edge_lengths.tolist(), strict=True))
    for (u, v), length in lengths.items():
        k, su, sv = skel_of[u], lut[u], lut[v]
        if old_rule and k in merged_skeletons:
            counts["merged"] += 1
            continue
        if su == 0 or sv == 0:
            counts["omitted"] += 1
            continue
        if su != sv:
            counts["split"] += 1
            splits.setdefault(k, []).append((su, sv))
            continue
        if k in merged_skeletons and su in merges:
            counts["merged"] += 1
            continue
        counts["correct"] += 1
        correct_len[(k, su)] = correct_len.get((k, su), 0.0) + length
    skel_len = dict(zip(skel.skeleton_ids.tolist(), skel.skeleton_lengths.tolist(), strict=True))
    total = sum(skel_len.values())
    erl = sum(skel_len[k] / total * c * (c / skel_len[k]) for (k, _), c in correct_len.items())
    return {"erl": erl, "merging_segments": len(merges), "split_skeletons": len(splits),
            "merged_skeletons": len(merged_skeletons), **counts}


def chain(zs: list[list[int]], neuron_ids: list[int]) -> metrics.Skeletons:
    """Skeletons as straight chains along z, one per list of z positions (edge length = Δz)."""
    node_ids, neurons, pos, edges = [], [], [], []
    for zlist, nid in zip(zs, neuron_ids, strict=True):
        first = len(node_ids)
        for z in zlist:
            node_ids.append(len(node_ids))
            neurons.append(nid)
            pos.append((z, 0, 0))
        edges += [(i, i + 1) for i in range(first, len(node_ids) - 1)]
    return metrics.Skeletons(np.array(node_ids), np.array(neurons), np.array(pos, float), np.array(edges))


# ---------------------------------------------------------------------------------------------
# agglomeration, by hand


def test_a_null_edge_merges_at_every_threshold():
    # fragments 10, 20, 30; 10–20 null, 20–30 at 0.5
    # lab: NaN > t is false → 10–20 merges at t = 0 (and t = -1); lsdgraph: never
    ids, u, v, s = [10, 20, 30], [10, 20], [20, 30], [NAN, 0.5]
    assert lab.lab_scores(s).tolist() == [-np.inf, 0.5]
    tree = lab.build_lab_merge_tree(ids, u, v, s)
    assert tree.cut(0).tolist() == [10, 10, 30] and tree.cut(-1).tolist() == [10, 10, 30]
    assert tree.cut(0.5).tolist() == [10, 10, 10]
    assert agglomerate.build_merge_tree(ids, u, v, s).cut(0).tolist() == [10, 20, 30]
    assert boost_connected_components(ids, list(zip(u, v, strict=True)), s, 0) == [1, 1, 2]


def test_segment_ids_are_node_indices_and_index_0_collides_with_background():
    # fragments 5, 7, 9, 11 = indices 0..3; 5–7 at 0.2, 9–11 at 0.6
    tree = lab.build_lab_merge_tree([5, 7, 9, 11], [5, 9], [7, 11], [0.2, 0.6])
    # t = 0.1: nothing merges, each fragment is its own index: fragment 5 is segment 0 = "no fragment"
    assert lab.lab_segment_ids(tree, 0.1).tolist() == [0, 1, 2, 3]
    # t = 0.3: {5, 7} is one segment, named 1 (boost: 5's root hangs under 7's on equal rank)
    assert lab.lab_segment_ids(tree, 0.3).tolist() == [1, 1, 2, 3]
    assert boost_connected_components([5, 7, 9, 11], [(5, 7), (9, 11)], [0.2, 0.6], 0.3) == [1, 1, 2, 3]
    # skeleton nodes on fragments 5, 7 and on no fragment (0): at t = 0.1 the first looks like background
    at, foreign = lab.lab_node_segments(tree, np.array([5, 7, 0, 99], np.uint64))
    assert at(0.1).tolist() == [0, 1, 0, 99] and foreign == 1  # 99: not in the RAG, keeps its id
    assert at(0.3).tolist() == [1, 1, 0, 99]


@pytest.mark.parametrize("seed", range(5))
def test_lab_ids_match_boost_on_random_graphs(seed):
    """Nodes in ascending id order, u < v: the same partition as boost, every id a member index,
    and id 0 exactly when boost gives 0 (fragment index 0 alone)."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10_000, 60, replace=False)).astype(np.uint64)
    a, b = rng.integers(0, 60, (2, 90))
    keep = a != b
    u, v = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    s = rng.random(len(u))
    s[rng.random(len(u)) < 0.1] = NAN
    edges = list(zip(ids[u].tolist(), ids[v].tolist(), strict=True))
    tree = lab.build_lab_merge_tree(ids, ids[u], ids[v], s)
    for t in (0.0, 0.1, 0.3, 0.6):
        ours = lab.lab_segment_ids(tree, t)
        boost = np.array(boost_connected_components(ids.tolist(), edges, s, t))
        _, ours_dense = np.unique(ours, return_inverse=True)
        _, boost_dense = np.unique(boost, return_inverse=True)
        assert len(set(zip(ours_dense.tolist(), boost_dense.tolist(), strict=True))) == len(set(ours.tolist()))
        assert np.array_equal(ours == 0, boost == 0)
        assert all(ours[int(i)] == i for i in ours)  # a segment's id is one of its members' index


def test_lut_names_are_int_t_times_100():
    assert 0.58 * 100 == 57.99999999999999 and int(0.58 * 100) == 57
    assert lab.lab_lut_name(0.58) == "57" and lab.lab_lut_name(0.5) == "50" and lab.lab_lut_name(0) == "0"
    values, _ = agglomerate.parse_thresholds("0:1:0.02")
    # what the lab's script names np.arange(0, 1, 0.02) is what lsdgraph names its own 0:1:0.02
    assert lab.lab_lut_names(values.tolist()) == [str(int(t * 100)) for t in np.arange(0, 1, 0.02)]
    assert lab.lab_lut_names(values.tolist())[29] == "57"
    with pytest.raises(LsdgraphError, match=r"thresholds=.*0\.571.*0\.575.*57"):
        lab.lab_lut_names([0.571, 0.575])  # the lab would overwrite one file with the other


# ---------------------------------------------------------------------------------------------
# scores, by hand


def test_voi_counts_background_as_a_segment():
    # neurons 1, 1, 2, 2 on segments 0, 0, 0, 7 (three nodes on background)
    # lab: p(1,0) = 1/2, p(2,0) = p(2,7) = 1/4;  H(N,S) = 1/2·1 + 2·1/4·2 = 1.5
    #      H(N) = 1;  H(S) = -(3/4 log2 3/4 + 1/4 log2 1/4) = 0.811278
    #      voi_split = 1.5 - 1 = 0.5, voi_merge = 1.5 - 0.811278 = 0.688722
    # lsdgraph: segment 0 left out, one node remains: 0, 0
    neurons, segs = np.array([1, 1, 2, 2]), np.array([0, 0, 0, 7], np.uint64)
    h_s = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert lab.lab_variation_of_information(neurons, segs) == pytest.approx((0.5, 1.5 - h_s))
    assert lab.lab_variation_of_information(neurons, segs) == pytest.approx(funlib_rand_voi(neurons, segs))
    assert metrics.variation_of_information(neurons, segs) == (0.0, 0.0)
    # node-based counts on the same table: (1,0) (2,0) (2,7): splits 3 - 2 neurons, merges 3 - 2 segments
    assert lab.lab_split_merge_counts(neurons, segs) == (1, 1)
    assert metrics.split_merge_counts(neurons, segs) == (0, 0)


def test_voi_drops_neuron_0():
    # neurons 0, 1 in one segment 5: lab drops the neuron-0 node → 0, 0;
    # lsdgraph: neuron 0 is a neuron, two in one segment → voi_merge = H(N|S) = 1
    neurons, segs = np.array([0, 1]), np.array([5, 5], np.uint64)
    assert lab.lab_variation_of_information(neurons, segs) == (0.0, 0.0)
    assert metrics.variation_of_information(neurons, segs) == (0.0, 1.0)


def test_merge_statistics_count_segment_0_and_the_old_rule_zeroes_erl():
    # skeleton A at z 0, 1, 2 on segments 0, 8, 8; B at z 0, 1, 2 on 0, 9, 9 (both touch background)
    # edges: A (0,1) omitted, (1,2) correct in 8, length 1; B the same in 9; L = 4
    # ERL (funlib now and lsdgraph) = (1² + 1²) / 4 = 0.5
    # lab: segment 0 holds A and B → merging_segments 1, merged_skeletons 2; lsdgraph: 0, 0
    # old funlib rule: A and B are merged, so all 4 edges are merged → ERL 0; lsdgraph's 'skeleton': 0.5
    skel = chain([[0, 1, 2], [0, 1, 2]], [1, 2])
    seg = np.array([0, 8, 8, 0, 9, 9], np.uint64)
    now = lab.lab_expected_run_length(skel, seg)
    assert now.erl == pytest.approx(0.5) == metrics.expected_run_length(skel, seg).erl
    assert (now.merging_segments, now.merged_skeletons) == (1, 2)
    assert (now.omitted_edges, now.correct_edges, now.merged_edges) == (2, 2, 0)
    default = metrics.expected_run_length(skel, seg)
    assert (default.merging_segments, default.merged_skeletons) == (0, 0)
    old = lab.lab_expected_run_length(skel, seg, merge_rule="skeleton")
    assert old.erl == 0.0 and (old.merged_edges, old.omitted_edges, old.correct_edges) == (4, 0, 0)
    ours = metrics.expected_run_length(skel, seg, merge_rule="skeleton")
    assert ours.erl == pytest.approx(0.5) and (ours.merged_edges, ours.omitted_edges, ours.correct_edges) == (0, 2, 2)
    for rule, got in (("new", now), ("old", old)):
        ref = funlib_evaluate(skel, seg, old_rule=rule == "old")
        assert got.erl == pytest.approx(ref["erl"]) and got.merging_segments == ref["merging_segments"]
        assert (got.merged_edges, got.omitted_edges, got.correct_edges) == (ref["merged"], ref["omitted"],
                                                                            ref["correct"])


def test_per_neuron_lab_scores_add_up_to_the_lab_row():
    # A on segments 0, 8, 8 and B on 0, 9, 9, as above; per neuron:
    # erl = 1² / 2 = 0.5 each, contribution 1² / 4 = 0.25 each (Σ = ERL 0.5)
    # VOI's table: (A,0) (A,8) (B,0) (B,9) → n_splits 1, 1; segment 0 holds A and B one node each:
    # the tie goes to A (lower id), so B's is the merge: n_merges 0, 1; both sit in merging segment 0
    skel = chain([[0, 1, 2], [0, 1, 2]], [1, 2])
    seg = np.array([0, 8, 8, 0, 9, 9], np.uint64)
    df = lab.lab_skeleton_scores(skel, seg)
    assert list(df.columns) == list(metrics.skeleton_scores(skel, seg).columns)
    assert df["erl"].tolist() == [0.5, 0.5] and df["erl_contribution"].tolist() == [0.25, 0.25]
    assert df["n_splits"].tolist() == [1, 1] and df["n_merges"].tolist() == [0, 1]
    assert df["in_merging_segments"].tolist() == [1, 1] and df["omitted_edges"].tolist() == [1, 1]
    assert metrics.skeleton_scores(skel, seg)["in_merging_segments"].tolist() == [0, 0]
    row = lab.lab_evaluate_thresholds(skel, lambda t: seg, [0.5]).iloc[0]
    assert df["erl_contribution"].sum() == pytest.approx(row["erl"])
    for col in ("n_splits", "n_merges", "correct_edges", "split_edges", "omitted_edges", "merged_edges"):
        assert df[col].sum() == row[col], col
    old = lab.lab_skeleton_scores(skel, seg, merge_rule="skeleton")
    assert old["erl"].tolist() == [0.0, 0.0] and old["merged_edges"].tolist() == [2, 2]


def test_a_segment_numbered_0_is_scored_as_background():
    # A at z 0, 2, 5 all on fragment 5 = index 0 of the RAG [5, 7]; nothing merges at t = 0.1
    # lab: A's nodes get segment 0 → both edges omitted, ERL 0; lsdgraph: one correct segment,
    # ERL = 5² / 5 = 5
    tree = lab.build_lab_merge_tree([5, 7], [5], [7], [0.9])
    skel = chain([[0, 2, 5]], [1])
    frags = np.array([5, 5, 5], np.uint64)
    at, _ = lab.lab_node_segments(tree, frags)
    assert at(0.1).tolist() == [0, 0, 0]
    assert lab.lab_expected_run_length(skel, at(0.1)).erl == 0.0
    assert metrics.expected_run_length(skel, frags).erl == pytest.approx(5.0)


def test_lab_table_has_metrics_columns_and_agrees_where_the_semantics_do():
    """No background node, no neuron 0, no null score: lab and default tables are equal."""
    rng = np.random.default_rng(1)
    skel = chain([list(range(0, 40, 2)), list(range(0, 30, 3)), list(range(5, 25))], [3, 4, 5])

    def segs(t: float) -> np.ndarray:
        return rng.integers(1, 6, skel.n_nodes).astype(np.uint64) if t > 0 else np.full(skel.n_nodes, 4, np.uint64)

    fixed = {t: segs(t) for t in (0.0, 0.3, 0.7)}
    ours = lab.lab_evaluate_thresholds(skel, fixed.__getitem__, list(fixed))
    theirs = metrics.evaluate_thresholds(skel, fixed.__getitem__, list(fixed))
    assert list(ours.columns) == list(theirs.columns) == lab.COLUMNS
    assert ours["name"].tolist() == theirs["name"].tolist() == ["0", "0.3", "0.7"]
    assert (ours.dtypes == theirs.dtypes).all()
    for col in lab.COLUMNS[2:]:
        assert np.allclose(ours[col], theirs[col]), col
    for t, seg in fixed.items():  # and the port of the lab's code says the same
        row = ours[ours["threshold"] == t].iloc[0]
        ref = funlib_evaluate(skel, seg)
        assert row["erl"] == pytest.approx(ref["erl"]) and row["merging_segments"] == ref["merging_segments"]
        assert (row["voi_split"], row["voi_merge"]) == pytest.approx(funlib_rand_voi(skel.neuron_ids, seg))


def test_bad_input_names_the_parameter():
    skel = chain([[0, 1]], [1])
    with pytest.raises(LsdgraphError, match="merge_rule="):
        lab.lab_expected_run_length(skel, np.array([1, 1], np.uint64), merge_rule="nope")  # type: ignore[arg-type]
    with pytest.raises(LsdgraphError, match="names="):
        lab.lab_evaluate_thresholds(skel, lambda t: np.ones(2, np.uint64), [0.1, 0.2], names=["a"])
    with pytest.raises(LsdgraphError, match="node_segments"):
        lab.lab_expected_run_length(skel, np.ones(3, np.uint64))


# ---------------------------------------------------------------------------------------------
# the jobs, end to end on synthetic data


@pytest.fixture(scope="module")
def data(synthetic):
    return synthetic("zebrafinch", "tiny", seed=5)


@pytest.fixture(scope="module")
def loaded(data, store_uri):
    s = api.connect(store_uri)
    s.drop_database("lab")
    ingest(str(data.rag_dir), store=s, name="lab", quiet=True)
    return s


def rag_docs(data):
    import bson

    nodes = bson.decode_all((data.rag_dir / "nodes.bson").read_bytes())
    edges = bson.decode_all((data.rag_dir / f"{EDGES}.bson").read_bytes())
    return nodes, edges


def lab_reference_lut(data, t: float) -> dict[int, int]:
    """04_find_segments from the dump files: None → NaN in float32, boost components over the
    nodes in ascending id order, as {fragment: index id}."""
    nodes, edges = rag_docs(data)
    ids = sorted(n["id"] for n in nodes)
    scores = np.array([e["merge_score"] for e in edges], dtype=object).astype(np.float32)  # the lab's cast
    comps = boost_connected_components(ids, [(e["u"], e["v"]) for e in edges], scores, t)
    return dict(zip(ids, comps, strict=True))


def same_partition(a: dict, b: dict) -> bool:
    return len(set(zip(a.values(), [b[k] for k in a], strict=True))) == len(set(a.values())) == len(set(b.values()))


def test_segment_like_lab_end_to_end(data, loaded, tmp_path):
    assert data.n_null_scores > 0
    r = segment.segment(store=loaded, name="lab", edges=EDGES, thresholds="0:1:0.1", out=tmp_path, quiet=True,
                        like_lab=True)
    values, _ = agglomerate.parse_thresholds("0:1:0.1")
    assert [p.name for p in r.lut_paths] == [f"seg_{EDGES}_{int(t * 100)}.npz" for t in values]
    assert r.tree_path.name == f"merge_tree_{EDGES}_like_lab.npz" and not r.reused_tree
    assert r.db_luts == 0 and schema.LUT_PREFIX + EDGES not in loaded.collections("lab")
    assert schema.TREE_PREFIX + EDGES not in loaded.collections("lab")
    for t, path in zip(values, r.lut_paths, strict=True):
        frags, segs = agglomerate.read_lut(path)
        got = dict(zip(frags.tolist(), segs.tolist(), strict=True))
        ref = lab_reference_lut(data, t)
        assert same_partition(got, ref) and all(frags[s] == f for s, f in zip(segs, frags, strict=True) if s == 0)
        assert {f for f, s in got.items() if s == 0} == {f for f, s in ref.items() if s == 0}
    # t = 0 merges exactly the null edges (no score is 0 or below in the synthetic data)
    assert r.summary["n_segments"].iloc[0] < data.n_fragments
    assert r.summary["name"].tolist()[:3] == ["0", "10", "20"]
    assert (tmp_path / f"summary_{EDGES}_like_lab.csv").exists()
    # the two modes' trees never stand in for each other
    default = segment.segment(store=loaded, name="lab", edges=EDGES, thresholds="0", out=tmp_path, quiet=True,
                              db_luts="none")
    assert not default.reused_tree and default.tree_path.name == f"merge_tree_{EDGES}.npz"
    assert default.summary["n_segments"].iloc[0] > r.summary["n_segments"].iloc[0]  # nulls merge only in the lab's
    again = segment.segment(store=loaded, name="lab", edges=EDGES, thresholds="0.3", out=tmp_path, quiet=True,
                            like_lab=True)
    assert again.reused_tree and again.tree.score.min() == -np.inf
    files = segment.segment(bson=str(data.rag_dir), edges=EDGES, thresholds="0.3", out=tmp_path / "files",
                            quiet=True, like_lab=True)
    assert np.array_equal(np.load(files.lut_paths[0])["fragment_segment_lut"],
                          np.load(again.lut_paths[0])["fragment_segment_lut"])


def test_segment_like_lab_refuses_db_lut_specs(data, loaded, tmp_path):
    with pytest.raises(LsdgraphError, match="db_luts="):
        segment.segment(store=loaded, name="lab", edges=EDGES, thresholds="0.3", out=tmp_path, quiet=True,
                        like_lab=True, db_luts="0.3")
    with pytest.raises(LsdgraphError, match="thresholds="):
        segment.segment(bson=str(data.rag_dir), edges=EDGES, thresholds="0.571,0.575", out=tmp_path, quiet=True,
                        like_lab=True)


def test_lab_chain_equals_the_port_of_the_lab_code(data, tmp_path):
    """segment(like_lab) → lab_node_segments → lab_evaluate_thresholds equals the ported lab code
    (boost components, replace_values, evaluate_skeletons, rand_voi) at every threshold."""
    import bson
    import zarr

    r = segment.segment(bson=str(data.rag_dir), edges=EDGES, thresholds="0:1:0.1", out=tmp_path, quiet=True,
                        like_lab=True)
    nodes = bson.decode_all((data.skeleton_dir / f"{data.dataset}.nodes.bson").read_bytes())
    sk_edges = bson.decode_all((data.skeleton_dir / f"{data.dataset}.edges.bson").read_bytes())
    skel = metrics.Skeletons(np.array([n["id"] for n in nodes]), np.array([n["neuron_id"] for n in nodes]),
                             np.array([[n["z"], n["y"], n["x"]] for n in nodes]),
                             np.array([[e["u"], e["v"]] for e in sk_edges]))
    z = zarr.open_array(str(data.fragments_path), mode="r")
    off, res = np.array(z.attrs["offset"]), np.array(z.attrs["resolution"])
    vox = np.floor((skel.positions - off) / res).astype(int)
    inside = np.all((vox >= 0) & (vox < z.shape), axis=1)
    frag = np.zeros(skel.n_nodes, np.uint64)
    frag[inside] = z[:][tuple(vox[inside].T)]
    frag[::7] = 0  # some nodes on background, so segment 0 matters
    at, _ = lab.lab_node_segments(r.tree, frag)
    values, _ = agglomerate.parse_thresholds("0:1:0.1")
    table = lab.lab_evaluate_thresholds(skel, at, values.tolist())
    for t, (_, row) in zip(values, table.iterrows(), strict=True):
        per_neuron = lab.lab_skeleton_scores(skel, at(t))
        assert per_neuron["erl_contribution"].sum() == pytest.approx(row["erl"])
        assert (per_neuron["n_splits"].sum(), per_neuron["n_merges"].sum()) == (row["n_splits"], row["n_merges"])
        lut = lab_reference_lut(data, t)
        site_seg = np.array([lut.get(int(f), int(f)) for f in frag], np.uint64)  # replace_values
        ref = funlib_evaluate(skel, site_seg)
        assert row["erl"] == pytest.approx(ref["erl"])
        assert row["merging_segments"] == ref["merging_segments"] and row["split_skeletons"] == ref["split_skeletons"]
        assert (row["omitted_edges"], row["split_edges"], row["merged_edges"], row["correct_edges"]) == (
            ref["omitted"], ref["split"], ref["merged"], ref["correct"])
        assert (row["voi_split"], row["voi_merge"]) == pytest.approx(funlib_rand_voi(skel.neuron_ids, site_seg),
                                                                     abs=1e-12)

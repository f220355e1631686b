"""The query layer on every store (mongomock, the local Parquet store, SecantusDB): ROI/threshold
reads equal a brute-force computation over the same bson files, for random ROIs, thresholds and
edge policies."""
from __future__ import annotations

import math
import uuid
import warnings

import bson
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi, as_roi, parse_roi
from lsdgraph._ingest import ingest
from lsdgraph._io import bsonio
from lsdgraph._query import rag as query
from lsdgraph._stores import api
from lsdgraph._stores import mongo as store

EXTENT = 1000.0


def write_rag(folder, n=1500, seed=0):
    """A RAG dump in the real format: large sparse ids (some int32), null scores, edges whose
    endpoints are not in the dump, and skeletons with source/target free u/v edges."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 40 * n), n, replace=False)).astype(np.int64)
    ids[n // 2:] += 77_322_656_252  # half the ids above int32, as real per-block ids
    pos = rng.random((n, 3)) * EXTENT
    (folder / "nodes.bson").write_bytes(bsonio.encode(
        {"id": ("int", ids), "center_z": ("double", pos[:, 0]), "center_y": ("double", pos[:, 1]),
         "center_x": ("double", pos[:, 2])}, oids=bsonio.object_ids(n, rng)))
    m = 3 * n
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, 20, m)) % n
    u, v = np.minimum(ids[a], ids[b]), np.maximum(ids[a], ids[b])
    keep = u != v
    pairs = np.unique(np.stack([u[keep], v[keep]], 1), axis=0)
    ghosts = np.stack([np.full(5, 10**12), ids[:5] + 10**13], 1)  # neither end is a stored node
    dangling = np.stack([ids[5:10], np.full(5, 10**14)], 1)       # v not stored
    pairs = np.concatenate([pairs, ghosts, dangling]).astype(np.int64)
    score = rng.random(len(pairs))
    score[rng.random(len(pairs)) < 0.05] = np.nan
    score[:3] = 0.5  # ties exactly at a threshold used below
    (folder / "edges_hist_quant_75.bson").write_bytes(bsonio.encode(
        {"u": ("int", pairs[:, 0]), "v": ("int", pairs[:, 1]), "merge_score": ("double", score),
         "agglomerated": ("bool", np.ones(len(pairs)))}, oids=bsonio.object_ids(len(pairs), rng)))
    # a second merge function with other scores
    (folder / "edges_mean.bson").write_bytes(bsonio.encode(
        {"u": ("int", pairs[:, 0]), "v": ("int", pairs[:, 1]), "merge_score": ("double", rng.random(len(pairs)))},
        oids=bsonio.object_ids(len(pairs), rng)))
    return folder


@pytest.fixture(scope="module")
def rag_dir(tmp_path_factory):
    return write_rag(tmp_path_factory.mktemp("rag"))


@pytest.fixture(scope="module")
def rag(rag_dir, store_uri):
    s = api.connect(store_uri)
    name = f"q{uuid.uuid4().hex[:6]}"
    ingest(str(rag_dir), store=s, name=name, quiet=True)
    return query.open_rag(name=name, edges="edges_hist_quant_75", store=s)


@pytest.fixture(scope="module")
def mock_rag(rag_dir):
    """The RAG on mongomock, for what only a MongoDB store has (collections, $in fallbacks)."""
    s = store.connect("mongomock://test_query")
    ingest(str(rag_dir), store=s, name="q", quiet=True)
    return query.open_rag(name="q", edges="edges_hist_quant_75", store=s)


@pytest.fixture(scope="module")
def local_rag(rag_dir, tmp_path_factory):
    s = api.connect(str(tmp_path_factory.mktemp("local") / "store"))
    ingest(str(rag_dir), store=s, name="q", quiet=True)
    return query.open_rag(name="q", edges="edges_hist_quant_75", store=s)


@pytest.fixture(scope="module")
def truth(rag_dir):
    nodes = bson.decode_all((rag_dir / "nodes.bson").read_bytes())
    edges = bson.decode_all((rag_dir / "edges_hist_quant_75.bson").read_bytes())
    pos = {n["id"]: (n["center_z"], n["center_y"], n["center_x"]) for n in nodes}
    return pos, edges


def brute(truth, roi, t, policy):
    pos, edges = truth
    inside = {
        i
        for i, p in pos.items()
        if roi is None or all(b <= c < e for c, b, e in zip(p, roi.begin, roi.end, strict=True))
    }

    def passes(e):
        return t is None or (e["merge_score"] is not None and e["merge_score"] <= t)

    def has(x):
        return x in inside

    rule = {
        "u": lambda e: has(e["u"]),
        "both": lambda e: has(e["u"]) and has(e["v"]),
        "either": lambda e: has(e["u"]) or has(e["v"]),
    }[policy]
    if roi is None:
        rule = lambda e: True  # noqa: E731 - the whole collection
    return inside, {(e["u"], e["v"]): e["merge_score"] for e in edges if rule(e) and passes(e)}


rois = st.builds(
    lambda z, y, x, dz, dy, dx: Roi((z, y, x), (dz, dy, dx)),
    *[st.floats(-100, EXTENT) for _ in range(3)],
    *[st.floats(0, EXTENT) for _ in range(3)],
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    roi=rois,
    t=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1)),
    policy=st.sampled_from(["u", "both", "either"]),
)
def test_read_arrays_equals_brute_force(rag, truth, roi, t, policy):
    nodes, edges = rag.read_arrays(roi, max_score=t, edges=policy)
    inside, expected = brute(truth, roi, t, policy)
    assert set(nodes["id"].tolist()) == inside
    got = dict(
        zip(zip(edges["u"].tolist(), edges["v"].tolist(), strict=True), edges["merge_score"].tolist(), strict=True)
    )
    assert got.keys() == expected.keys()
    for k, s in expected.items():
        assert (s is None and math.isnan(got[k])) or got[k] == s
    assert nodes["id"].dtype == np.uint64 and edges["u"].dtype == np.uint64


def test_threshold_is_inclusive_and_nulls_never_pass(rag, truth):
    _, edges = rag.read_arrays(None, max_score=0.5)
    _, expected = brute(truth, None, 0.5, "u")
    assert set(zip(edges.u.tolist(), edges.v.tolist(), strict=True)) == set(expected)
    assert (edges.merge_score == 0.5).sum() >= 3  # the ties at exactly t pass
    assert not edges.merge_score.isna().any()


def test_read_graph_matches_arrays_and_uses_python_ints(rag):
    roi = ((0, 0, 0), (500, 600, 700))
    g = rag.read_graph(roi, max_score=0.7)
    nodes, edges = rag.read_arrays(roi, max_score=0.7)
    assert isinstance(g, nx.Graph) and not g.is_directed()
    assert all(type(n) is int for n in g.nodes)
    assert set(nodes.id.tolist()) <= set(g.nodes)
    some = int(nodes.id.iloc[0])
    assert set(g.nodes[some]) == {"center_z", "center_y", "center_x"}
    assert g.number_of_edges() == len(edges)
    u, _v, d = next(iter(g.edges(data=True)))
    assert set(d) == {"merge_score", "agglomerated"} and type(u) is int
    assert rag.read_graph(roi, directed=True).is_directed()


def test_null_scores_are_none_in_networkx(rag):
    g = rag.read_graph(None)
    assert any(d["merge_score"] is None for _, _, d in g.edges(data=True))


def test_iter_blocks_covers_each_edge_once(rag):
    roi = Roi((0, 0, 0), (EXTENT, EXTENT, EXTENT))
    whole_nodes, whole_edges = rag.read_arrays(roi, max_score=0.6)
    seen_nodes, seen_edges = [], []
    for block, (n, e) in rag.iter_blocks(roi, (400, 400, 400), max_score=0.6, as_graph=False):
        assert all(block.contains(n[["center_z", "center_y", "center_x"]].to_numpy()))
        seen_nodes += n.id.tolist()
        seen_edges += list(zip(e.u.tolist(), e.v.tolist(), strict=True))
    assert sorted(seen_nodes) == sorted(whole_nodes.id.tolist())
    assert sorted(seen_edges) == sorted(zip(whole_edges.u.tolist(), whole_edges.v.tolist(), strict=True))


def test_whole_collection_edge_arrays(rag, truth):
    u, _, s = rag.edge_arrays()
    assert len(u) == len(truth[1])
    u, _v, s = rag.edge_arrays(max_score=0.3)
    assert np.all(s <= 0.3)
    assert len(u) == sum(1 for e in truth[1] if e["merge_score"] is not None and e["merge_score"] <= 0.3)


def test_edges_without_positions_fall_back_with_a_warning(mock_rag, truth):
    s = mock_rag.store
    db = s.db("q")
    db["edges_copy"].insert_many([{k: v for k, v in e.items() if k != "_id"} for e in truth[1]])
    copy = query.Rag(s, "q", "nodes", "edges_copy")
    roi = Roi((100, 100, 100), (400, 400, 400))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for policy in ("u", "both", "either"):
            _, edges = copy.read_arrays(roi, 0.8, edges=policy)
            _, expected = brute(truth, roi, 0.8, policy)
            assert set(zip(edges.u.tolist(), edges.v.tolist(), strict=True)) == set(expected)
    assert any("lsdgraph index" in str(x.message) for x in w)
    db["edges_copy"].drop()


def test_threshold_stats_and_bbox(rag, truth):
    st_ = rag.threshold_stats([0.25, 0.5], bins=4)
    scores = [e["merge_score"] for e in truth[1]]
    scored = [x for x in scores if x is not None]
    assert st_["edges"] == len(scores) and st_["nulls"] == len(scores) - len(scored)
    assert sum(h["edges"] for h in st_["histogram"]) == len(scored)
    assert [c["edges"] for c in st_["counts"]] == [sum(x <= 0.25 for x in scored), sum(x <= 0.5 for x in scored)]
    box = rag.bbox()
    pos = np.array(list(truth[0].values()))
    assert np.allclose(box.begin, pos.min(0))
    assert box.contains(pos).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (((0, 0), (1, 1)), "dimensions"),
        (((0, 0, 0), (1, -1, 1)), "negative"),
        ("1,2,3", "z0,y0,x0:z1,y1,x1"),
        (((0, 0, "a"), (1, 1, 1)), "three numbers"),
    ],
)
def test_bad_rois(rag, bad, message):
    with pytest.raises(LsdgraphError, match=message):
        rag.read_arrays(bad)


def test_bad_threshold_and_names(rag):
    with pytest.raises(LsdgraphError, match="outside the stored range"):
        rag.read_arrays(None, max_score=1.5)
    with pytest.raises(LsdgraphError, match="outside the stored range"):
        rag.read_arrays(None, max_score=-0.1)
    with pytest.raises(LsdgraphError, match="NaN"):
        rag.read_arrays(None, max_score=float("nan"))
    with pytest.raises(LsdgraphError, match="edges_hist_quant_75, edges_mean"):
        query.open_rag(name=rag.db, edges="edges_nope", store=rag.store)
    # the one default rule: edges_hist_quant_75 of the two (schema.json default_edges)
    assert query.open_rag(name=rag.db, store=rag.store).edges_name == "edges_hist_quant_75"
    with pytest.raises(LsdgraphError, match="no database"):
        query.open_rag(name="nope", store=rag.store)
    with pytest.raises(LsdgraphError, match="edge policy"):
        rag.read_arrays(None, edges="sideways")


def test_roi_duck_typing():
    class DaisyRoi:  # daisy 0.2: get_offset()/get_shape()
        def get_offset(self):
            return (1, 2, 3)

        def get_shape(self):
            return (4, 5, 6)

    class FunlibRoi:  # funlib.geometry: properties, None = unbounded
        offset = (1, None, 3)
        shape = (4, None, 6)

    assert as_roi(DaisyRoi()) == Roi((1, 2, 3), (4, 5, 6))
    r = as_roi(FunlibRoi())
    assert r.begin[1] == -math.inf and r.end[1] == math.inf and r.end[0] == 5
    assert parse_roi("0,0,0:10,20,30") == Roi((0, 0, 0), (10, 20, 30))
    assert as_roi({"offset": [0, 0, 0], "shape": [1, 1, 1]}) == Roi((0, 0, 0), (1, 1, 1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lo=st.floats(-10, 1.1),
    width=st.floats(0, 1.2),
    op=st.sampled_from(["$lte", "$lt", "$gte", "$gt"]),
    ids=st.lists(st.integers(0, 3000), max_size=30),
    exists=st.booleans(),
)
def test_column_filters_match_mongomock_engine(mock_rag, local_rag, lo, width, op, ids, exists):
    """The in-process store's vectorized filter, and the local store's Arrow expressions, select
    exactly what mongomock's engine selects."""
    from lsdgraph._stores.mongo import _mock_find_raw

    coll = mock_rag.edges
    u_ids = sorted({d["u"] for d in coll.find({}, {"u": 1})})
    chosen = [u_ids[i % len(u_ids)] for i in ids]
    filters = [
        {"merge_score": {op: lo}},
        {"u_z": {"$gte": lo * 900, "$lt": (lo + width) * 900}},
        {"u": {"$in": chosen}, "merge_score": {"$lte": lo + width}},
        {"u_z": {"$exists": exists}},
        {},
    ]
    for filt in filters:
        got = [len(d) for d in _mock_find_raw(coll, filt, ["_id"], 10_000)]
        assert sum(got) == coll.count_documents(filt), filt
        assert local_rag.store.count_where(local_rag.db, local_rag.edges_name, filt) == sum(got), filt
        got_ids = {
            bson.decode(d.raw(i))["_id"] for d in _mock_find_raw(coll, filt, ["_id"], 500) for i in range(len(d))
        }
        assert got_ids == {d["_id"] for d in coll.find(filt, {"_id": 1})}


def edge_dict(edges: pd.DataFrame) -> dict:
    return dict(
        zip(zip(edges["u"].tolist(), edges["v"].tolist(), strict=True), edges["merge_score"].tolist(), strict=True)
    )


def node_dict(nodes: pd.DataFrame) -> dict:
    return {i: tuple(p) for i, *p in nodes[["id", "center_z", "center_y", "center_x"]].itertuples(index=False)}


def assert_same_edges(got: dict, expected: dict):
    assert got.keys() == expected.keys()
    for k, s in expected.items():
        assert (s is None and (got[k] is None or math.isnan(got[k]))) or got[k] == s, k


def test_unbounded_axes_and_the_whole_collection(rag, truth):
    # funlib's unbounded axes: ±inf bounds still leave out edges whose u is not a stored node
    roi = {"offset": (None, 100, 200), "shape": (None, 500, 400)}
    for policy in ("u", "both", "either"):
        nodes, edges = rag.read_arrays(roi, 0.6, edges=policy)
        inside, expected = brute(truth, as_roi(roi), 0.6, policy)
        assert set(nodes["id"].tolist()) == inside
        assert_same_edges(edge_dict(edges), expected)
    u, v, s = rag.edge_arrays()
    got = dict(zip(zip(u.tolist(), v.tolist(), strict=True), s.tolist(), strict=True))
    assert_same_edges(got, {(e["u"], e["v"]): e["merge_score"] for e in truth[1]})
    u, v, s = rag.edge_arrays(max_score=0.5)
    assert_same_edges(
        dict(zip(zip(u.tolist(), v.tolist(), strict=True), s.tolist(), strict=True)),
        brute(truth, None, 0.5, "u")[1],
    )
    assert (s == 0.5).sum() >= 3  # write_rag's ties at exactly 0.5 pass


def test_read_graph_daisy_shape_ties_and_direction(rag, truth):
    roi = Roi((100, 200, 0), (600, 500, 700))
    g = rag.read_graph(roi, max_score=0.7)
    inside, expected = brute(truth, roi, 0.7, "u")
    assert isinstance(g, nx.Graph) and not g.is_directed()
    assert all(type(n) is int for n in g.nodes)
    with_attrs = {n for n, d in g.nodes(data=True) if d}
    assert with_attrs == inside
    for n in inside:
        assert (g.nodes[n]["center_z"], g.nodes[n]["center_y"], g.nodes[n]["center_x"]) == truth[0][n]
    # daisy's shape: endpoints outside the ROI are nodes without attributes
    assert set(g.nodes) - inside == {v for (u, v) in expected if v not in inside}
    assert {frozenset(e) for e in g.edges} == {frozenset(e) for e in expected}
    for u, v, d in g.edges(data=True):
        key = (min(u, v), max(u, v))
        assert d["merge_score"] == expected[key] and type(d["agglomerated"]) is bool
    nulls = rag.read_graph(roi)  # no threshold: null scores come back as None
    assert any(d["merge_score"] is None for _, _, d in nulls.edges(data=True)) == any(
        s is None for s in brute(truth, roi, None, "u")[1].values()
    )
    directed = rag.read_graph(roi, max_score=0.7, directed=True)
    assert directed.is_directed() and set(directed.edges) == set(expected)


def test_threshold_stats_counts_and_histogram(rag, truth):
    stats = rag.threshold_stats([0.25, 0.5, 1.0], bins=4)
    scored = [e["merge_score"] for e in truth[1] if e["merge_score"] is not None]
    assert stats["edges"] == len(truth[1]) and stats["nulls"] == len(truth[1]) - len(scored)
    assert (stats["min"], stats["max"]) == (min(scored), max(scored))
    assert [h["edges"] for h in stats["histogram"]] == [
        sum(lo <= s < hi for s in scored) for lo, hi in ((0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 2))
    ]
    assert [c["edges"] for c in stats["counts"]] == [sum(s <= t for s in scored) for t in (0.25, 0.5, 1.0)]

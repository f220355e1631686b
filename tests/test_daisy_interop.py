"""Interop with daisy 0.2.1's ``MongoDbGraphProvider`` (the store the LSD paper used), on a real
wire-protocol server: a database lsdgraph loaded reads the same through daisy, and a database daisy
wrote reads right through lsdgraph — first through the chunked ``$in`` fallback (with a warning),
then, after ``lsdgraph index``, through one indexed find per collection."""
from __future__ import annotations

import shutil
import uuid
import warnings

import bson
import numpy as np
import pymongo
import pytest
from test_query import brute
from test_query_server import Commands, assert_same_edges, edge_dict

from lsdgraph._core.roi import Roi, as_roi
from lsdgraph._ingest import ingest
from lsdgraph._query import rag as query
from lsdgraph._stores import mongo as store_mod
from lsdgraph._synth import synth

from conftest import run_cli
from servers import unavailable

try:
    import daisy
    from daisy.persistence import MongoDbGraphProvider
    from daisy.persistence.mongodb_graph_provider import MongoDbSharedSubGraph
except ImportError:  # a test dependency: skipped here, a failure in CI (LSDGRAPH_REQUIRE_SERVERS=1)
    daisy = None

pytestmark = pytest.mark.server


@pytest.fixture(autouse=True, scope="module")
def _daisy_installed():
    if daisy is None:
        unavailable("daisy 0.2.1 is not installed (pip install -e '.[test]')")


EDGES = "edges_hist_quant_75"
POSITION = ["center_z", "center_y", "center_x"]
# daisy returns every stored field: lsdgraph's edge positions and block keys (the sharded layout) too
HELPER_FIELDS = {"_id", "u_z", "u_y", "u_x", "v_z", "v_y", "v_x", "blk", "blk_u", "blk_v"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic hemi RAG (int64 ids, as the paper's), decoded for brute-force checks."""
    base = tmp_path_factory.mktemp("daisy")
    r = synth(base / "synth", "hemi", "tiny", seed=2, fragments=False)
    folder = base / "rag"
    folder.mkdir()
    for f in ("nodes.bson", f"{EDGES}.bson"):
        shutil.copy(r.rag_dir / f, folder / f)
    nodes = bson.decode_all((folder / "nodes.bson").read_bytes())
    edges = bson.decode_all((folder / f"{EDGES}.bson").read_bytes())
    pos = np.array([[n[f] for f in POSITION] for n in nodes])
    return folder, nodes, edges, Roi(tuple(pos.min(0)), tuple(pos.max(0) - pos.min(0) + 1))


def provider(uri: str, name: str, mode: str = "r") -> MongoDbGraphProvider:
    return MongoDbGraphProvider(name, uri, mode=mode, nodes_collection="nodes", edges_collection=EDGES,
                                position_attribute=POSITION)


def rois_in(box: Roi, n: int, seed: int) -> list:
    """The box and ``n - 1`` random parts of it, as daisy ROIs (daisy's coordinates are integers)."""
    rng = np.random.default_rng(seed)
    begin, shape = np.floor(box.begin), np.ceil(box.shape)
    out = [daisy.Roi(tuple(begin.astype(int).tolist()), tuple(shape.astype(int).tolist()))]
    for _ in range(n - 1):
        part = np.round(shape * rng.uniform(0.2, 0.7, 3))
        offset = np.round(begin + rng.uniform(0, 1, 3) * (shape - part))
        out.append(daisy.Roi(tuple(offset.astype(int).tolist()), tuple(part.astype(int).tolist())))
    return out


def assert_same_graph(theirs, ours):
    """daisy's graph (numpy.uint64 keys, every stored field) equals lsdgraph's (policy "u")."""
    assert {int(n) for n in theirs.nodes} == set(ours.nodes)
    for n, d in theirs.nodes(data=True):
        # centres (and nothing for endpoints outside the ROI)
        assert {k: x for k, x in d.items() if k not in HELPER_FIELDS} == ours.nodes[int(n)]
    assert {frozenset(map(int, e)) for e in theirs.edges} == {frozenset(e) for e in ours.edges}
    for u, v, d in theirs.edges(data=True):
        mine = ours.edges[int(u), int(v)]
        assert {k: x for k, x in d.items() if k not in HELPER_FIELDS} == mine


def test_a_database_lsdgraph_loaded_reads_the_same_through_daisy(secantus, data):
    folder, _nodes, _edges, box = data
    name = f"dl_{uuid.uuid4().hex[:8]}"
    try:
        ingest(str(folder), db=secantus.uri, name=name, quiet=True)
        theirs = provider(secantus.uri, name)  # opens: lsdgraph wrote daisy's meta {directed: false}
        rag = query.open_rag(secantus.uri, name, edges=EDGES)
        for roi in rois_in(box, 5, seed=1):
            g = theirs.get_graph(roi)
            assert g.number_of_edges() > 0
            assert_same_graph(g, rag.read_graph(roi))  # a daisy Roi, duck typed
    finally:
        with secantus.client() as c:
            c.drop_database(name)


def daisy_writes(uri: str, name: str, nodes, edges, box: Roi) -> None:
    """Write the RAG through daisy's own API (mode 'w': its collections, indexes and meta)."""
    p = provider(uri, name, mode="w")
    g = p[rois_in(box, 1, seed=0)[0]]
    for n in nodes:
        g.add_node(n["id"], **{f: n[f] for f in POSITION})
    for e in edges:
        g.add_edge(e["u"], e["v"], merge_score=e["merge_score"], agglomerated=e["agglomerated"])
    g.write_nodes()
    g.write_edges()


@pytest.fixture
def daisy_db(secantus, data, monkeypatch):
    # daisy 0.2.1 reads ``Graph.node``, an alias networkx 2.4 removed: give it back for the write
    monkeypatch.setattr(MongoDbSharedSubGraph, "node", property(lambda self: self.nodes), raising=False)
    _folder, nodes, edges, box = data
    name = f"dw_{uuid.uuid4().hex[:8]}"
    daisy_writes(secantus.uri, name, nodes, edges, box)
    yield name
    with secantus.client() as c:
        c.drop_database(name)


def test_a_database_daisy_wrote_reads_right_before_and_after_lsdgraph_index(secantus, data, daisy_db):
    _folder, nodes, edges, box = data
    pos = {n["id"]: tuple(n[f] for f in POSITION) for n in nodes}
    written = [e for e in edges if e["u"] in pos]  # daisy writes an edge with the block of its u
    cases = [(roi, t, policy) for roi, t in zip(rois_in(box, 3, seed=2), (None, 0.5, 0.3), strict=True)
             for policy in ("u", "both", "either")]
    slow = cases[0::4]  # the fallback's $in is slow on SecantusDB: the whole box, then parts of it

    listener = Commands()
    client = pymongo.MongoClient(secantus.uri, event_listeners=[listener])
    try:
        rag = query.open_rag(name=daisy_db, edges=EDGES, store=store_mod.Store(client, secantus.uri, mock=False))
        with pytest.warns(UserWarning, match="lsdgraph index"):
            for roi, t, policy in slow:
                n, e = rag.read_arrays(roi, t, edges=policy)
                inside, expected = brute((pos, written), as_roi(roi), t, policy)
                assert set(n.id.tolist()) == inside
                assert_same_edges(edge_dict(e), expected)
        # the fallback's $in lists stay small, whatever the ROI holds
        sizes = [len(cmd["filter"][end]["$in"]) for name, cmd in listener.sent if name == "find"
                 for end in ("u", "v") if end in cmd.get("filter", {})]
        assert max(sizes) == query._IN_CHUNK < len(nodes)  # the whole box took more than one chunk
    finally:
        client.close()

    p = run_cli("index", "--db", secantus.uri, "--name", daisy_db)
    assert p.returncode == 0, p.stderr
    assert "positions added" in p.stdout and EDGES in p.stdout

    rag = query.open_rag(secantus.uri, daisy_db, edges=EDGES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback any more
        for roi, t, policy in cases:
            n, e = rag.read_arrays(roi, t, edges=policy)
            inside, expected = brute((pos, written), as_roi(roi), t, policy)
            assert set(n.id.tolist()) == inside
            assert_same_edges(edge_dict(e), expected)
            for row in rag.explain(roi, t, edges=policy):
                assert row["index"] in ("position", "u_position", "v_position")
                assert row["docs_examined"] <= 1.2 * row["returned"]
    # and daisy still reads its database the same after lsdgraph's additions
    theirs = provider(secantus.uri, daisy_db)
    for roi in rois_in(box, 2, seed=3):
        assert_same_graph(theirs.get_graph(roi), rag.read_graph(roi))
    # the same graph daisy wrote comes back whole
    u, v, s = rag.edge_arrays()
    got = dict(zip(zip(u.tolist(), v.tolist(), strict=True), s.tolist(), strict=True))
    assert_same_edges(got, brute((pos, written), None, None, "u")[1])

"""What only a real MongoDB wire-protocol server (SecantusDB) shows: every ROI read is one
index-bounded find per collection (explain), the number of round trips does not grow with the ROI,
and the CLI's ``info``/``query`` (all formats, bad input) agree with the API. Results against a
brute-force computation run on every store in ``test_query.py``. One ~11k-document database."""
from __future__ import annotations

import io
import json
import math
import uuid

import bson
import networkx as nx
import numpy as np
import pandas as pd
import pymongo
import pytest
from pymongo import monitoring
from test_query import EXTENT, assert_same_edges, edge_dict, node_dict, write_rag

from lsdgraph import cli
from lsdgraph._core import blocks, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi, mongo_filter
from lsdgraph._ingest import ingest
from lsdgraph._query import rag as query
from lsdgraph._stores import mongo as store_mod

from conftest import run_cli
from dumpdata import Dumps

pytestmark = pytest.mark.server

EDGES = "edges_hist_quant_75"
NODE_INDEX, U_INDEX, V_INDEX = "position", "u_position", "v_position"


class Commands(monitoring.CommandListener):
    """Every command a client sends: (name, command document)."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def started(self, event):
        self.sent.append((event.command_name, event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def round_trips(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, _ in self.sent:
            out[name] = out.get(name, 0) + 1
        return out


class Loaded:
    """The module's database and the files it was loaded from."""

    def __init__(self, server, name, folder):
        self.server, self.uri, self.name, self.folder = server, server.uri, name, folder
        nodes = bson.decode_all((folder / "nodes.bson").read_bytes())
        self.edges = bson.decode_all((folder / f"{EDGES}.bson").read_bytes())
        self.pos = {n["id"]: (n["center_z"], n["center_y"], n["center_x"]) for n in nodes}
        self.truth = (self.pos, self.edges)
        skel = folder / "dumps" / "skel"
        self.skel_nodes = bson.decode_all((skel / "zebrafinch.nodes.bson").read_bytes())
        self.skel_edges = bson.decode_all((skel / "zebrafinch.edges.bson").read_bytes())
        self.scores = sorted({e["merge_score"] for e in self.edges if e["merge_score"] is not None})

    def rag(self, client=None) -> query.Rag:
        store = store_mod.connect(self.uri) if client is None else store_mod.Store(client, self.uri, mock=False)
        return query.open_rag(name=self.name, edges=EDGES, store=store)


@pytest.fixture(scope="module")
def loaded(secantus, tmp_path_factory):
    folder = write_rag(tmp_path_factory.mktemp("rag_server"), n=1500, seed=11)
    Dumps(folder / "dumps", seed=5).skeletons("skel", n_nodes=300, n_skeletons=4)
    name = f"qs_{uuid.uuid4().hex[:8]}"
    reports = ingest(str(folder), store=store_mod.connect(secantus.uri), name=name, quiet=True)
    assert all(r.status == "complete" for r in reports)
    # a database without a nodes collection (bad input: a missing collection)
    with secantus.client() as c:
        c[name + "_nonodes"]["other"].insert_one({"x": 1})
    yield Loaded(secantus, name, folder)
    with secantus.client() as c:
        c.drop_database(name)
        c.drop_database(name + "_nonodes")
        c.drop_database(name + "_const")


@pytest.fixture(scope="module")
def rag(loaded):
    return loaded.rag()


def index_fields(coll, name: str) -> set[str]:
    return {f for f, _ in coll.index_information()[name]["key"]}


# ---------------------------------------------------------------------------------------------
# results equal brute force





def test_threshold_stats_when_every_score_is_one_value_outside_0_1(loaded):
    store = store_mod.connect(loaded.uri)
    db = store.db(loaded.name + "_const")
    db.nodes.insert_one({"id": 1, "center_z": 0.0, "center_y": 0.0, "center_x": 0.0})
    db[EDGES].insert_many([{"u": 1, "v": v, "merge_score": s} for v, s in ((2, 2.0), (3, 2.0), (4, 2.0), (5, None))])
    db[EDGES].create_index("merge_score", name="merge_score")
    stats = query.open_rag(name=db.name, edges=EDGES, store=store).threshold_stats([2.0], bins=4)
    assert (stats["min"], stats["max"], stats["nulls"]) == (2.0, 2.0, 1)
    assert [h["edges"] for h in stats["histogram"]] == [3] and stats["counts"][0]["edges"] == 3


# ---------------------------------------------------------------------------------------------
# query shapes: index-bounded, a constant number of round trips, no $in


def random_cases(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        begin = rng.uniform(-100, EXTENT, 3)
        shape = rng.uniform(0, EXTENT, 3) * rng.choice([0.1, 0.5, 1.0])
        t = [None, float(rng.random()), 0.5][i % 3]
        yield Roi(tuple(begin), tuple(shape)), t, ("u", "both", "either")[i % 3]


@pytest.mark.parametrize("case", range(3))
def test_every_roi_read_is_bounded_by_an_index(loaded, rag, case):
    def passes(e, t):
        return t is None or (e["merge_score"] is not None and e["merge_score"] <= t)

    def inside(roi, i):
        return i in loaded.pos and bool(roi.contains(np.array([loaded.pos[i]]))[0])

    for roi, t, policy in random_cases(6, seed=case):
        rows = rag.explain(roi, t, edges=policy)
        expected = [NODE_INDEX, U_INDEX] + ([V_INDEX] if policy == "either" else [])
        assert [r["index"] for r in rows] == [r["hint"] for r in rows] == expected
        for r in rows:
            coll = rag.nodes if r["collection"] == "nodes" else rag.edges
            # every predicate is an index bound (no residual filter): on mongod too, every document
            # fetched is returned; the block key (for mongos's routing) is a superset of the box
            block = {blocks.NODE_FIELD, *blocks.EDGE_FIELDS.values()}
            assert set(r["filter"]) - block <= index_fields(coll, r["index"]), r
            assert r["docs_examined"] <= 1.2 * r["returned"], r
        # the server returned exactly what the read needs: the threshold is applied there
        assert rows[0]["returned"] == sum(inside(roi, i) for i in loaded.pos)
        assert rows[1]["returned"] == sum(inside(roi, e["u"]) and passes(e, t) for e in loaded.edges)
        if policy == "either":
            assert rows[2]["returned"] == sum(inside(roi, e["v"]) and passes(e, t) for e in loaded.edges)


def test_explain_would_catch_a_collection_scan(rag):
    """The ratio is a real measurement on this server: the same node filter without the hint is
    a collection scan that examines every node."""
    roi = Roi((0, 0, 0), (100, 100, 100))
    row = rag.store.explain_read(rag.db, rag.nodes_name, mongo_filter(roi, schema.NODE_POSITION))  # no role: no hint
    assert row["index"] is None and row["docs_examined"] == rag.nodes.estimated_document_count() > 10 * row["returned"]


def test_round_trips_do_not_grow_with_the_roi(loaded):
    listener = Commands()
    client = pymongo.MongoClient(loaded.uri, event_listeners=[listener])
    try:
        rag = loaded.rag(client)
        small = Roi((400, 400, 400), (200, 200, 200))
        large = Roi((-1, -1, -1), (EXTENT + 2,) * 3)
        rag.read_arrays(small, 0.5)  # first read: collection, index and attribute lookups, once
        for policy, finds in (("u", 2), ("both", 2), ("either", 3)):
            counts = {}
            for name, roi in (("small", small), ("large", large)):
                listener.sent.clear()
                nodes, _edges = rag.read_arrays(roi, 0.5, edges=policy)
                counts[name] = (listener.round_trips(), len(nodes))
                assert not any("$in" in json.dumps({k: v for k, v in cmd.get("filter", {}).items()  # of ids
                                                    if k not in (blocks.NODE_FIELD, *blocks.EDGE_FIELDS.values())},
                                                   default=str) for _, cmd in listener.sent)
            assert counts["small"][0] == counts["large"][0] == {"find": finds}, (policy, counts)
            assert counts["large"][1] > 20 * counts["small"][1] > 0
        # what getMores depend on: the documents a find returns over the batch size, nothing else
        n_edges = rag.edges.estimated_document_count()
        for batch in (500, 2000):
            listener.sent.clear()
            got = sum(len(u) for u, _, _ in rag.iter_edge_batches(batch_size=batch))
            assert got == n_edges
            assert listener.round_trips() == {"find": 1, "getMore": math.ceil(n_edges / batch) - 1}
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# skeletons


def skeleton_brute(loaded, roi, neuron_ids):
    nodes = {
        n["id"]: n
        for n in loaded.skel_nodes
        if (roi is None or roi.contains(np.array([[n["z"], n["y"], n["x"]]]))[0])
        and (neuron_ids is None or n["neuron_id"] in neuron_ids)
    }
    edges = {(e["u"], e["v"]) for e in loaded.skel_edges if e["u"] in nodes and e["v"] in nodes}
    return nodes, edges


def test_skeleton_reads_and_summary_on_the_server(loaded):
    sk = query.open_skeletons(loaded.uri, loaded.name)
    neurons = sorted({n["neuron_id"] for n in loaded.skel_nodes})
    rng = np.random.default_rng(3)
    for i in range(6):
        roi = None if i == 0 else Roi(tuple(rng.uniform(0, 5000, 3)), tuple(rng.uniform(2000, 8000, 3)))
        ids = None if i in (1, 2) else [int(x) for x in rng.choice(neurons, 1 + i % 3, replace=False)]
        g = sk.read(roi, ids)
        nodes, edges = skeleton_brute(loaded, roi, ids)
        assert set(g.nodes) == set(nodes) and all(type(n) is int for n in g.nodes)
        assert {frozenset(e) for e in g.edges} == {frozenset(e) for e in edges}
        for n, d in g.nodes(data=True):
            assert (d["neuron_id"], d["z"], d["y"], d["x"]) == tuple(nodes[n][k] for k in ("neuron_id", "z", "y", "x"))
        summary = sk.summary(roi, ids).set_index("neuron_id")
        assert sorted(summary.index) == sorted({n["neuron_id"] for n in nodes.values()})
        for nid, row in summary.iterrows():
            mine = [e for e in edges if nodes[e[0]]["neuron_id"] == nid]
            length = sum(math.dist(*[(nodes[x]["z"], nodes[x]["y"], nodes[x]["x"]) for x in e]) for e in mine)
            assert row["nodes"] == sum(n["neuron_id"] == nid for n in nodes.values())
            assert row["edges"] == len(mine) and row["cable_length_nm"] == pytest.approx(length, rel=1e-12)


def test_skeleton_reads_are_bounded_by_an_index(loaded):
    sk = query.open_skeletons(loaded.uri, loaded.name)
    neurons = sorted({n["neuron_id"] for n in loaded.skel_nodes})
    rng = np.random.default_rng(4)
    cases = [(Roi(tuple(rng.uniform(0, 6000, 3)), tuple(rng.uniform(500, 6000, 3))), None) for _ in range(4)]
    cases += [(None, [int(x) for x in rng.choice(neurons, k, replace=False)]) for k in (1, 2, 3)]
    for roi, ids in cases:
        rows = sk.explain(roi, ids)
        expected = ["position", "u_position"] if roi is not None else ["neuron_id", "neuron_id"]
        assert [r["index"] for r in rows] == expected
        nodes, _edges = skeleton_brute(loaded, roi, ids)
        assert rows[0]["returned"] == len(nodes)
        mongo = sk.store.db(sk.db)
        for r, coll in zip(rows, (mongo[sk.nodes_name], mongo[sk.edges_name]), strict=True):
            assert set(r["filter"]) <= index_fields(coll, r["index"])
            assert r["docs_examined"] <= 1.2 * r["returned"], r


# ---------------------------------------------------------------------------------------------
# the command line


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``lsdgraph ARGS`` in this process (fast); :func:`run_cli` runs the real entry point."""
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_query_formats_parse_back_to_the_api(loaded, rag, capsys, tmp_path):
    roi, t = Roi((100, 0, 200), (700, 800, 600)), 0.55
    nodes, edges = rag.read_arrays(roi, t)
    text = "100,0,200:800,800,800"
    base = ("query", "--db", loaded.uri, "--name", loaded.name, "--edges", EDGES, "--roi", text, "--max-score", str(t))
    want_nodes = node_dict(nodes)
    want_edges = edge_dict(edges)
    assert len(want_edges) > 50 and any(v > 2**31 for v in nodes.id.tolist())

    p = run_cli(*base, "--format", "json")  # the real entry point, once
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert {n["id"]: (n["center_z"], n["center_y"], n["center_x"]) for n in doc["nodes"]} == want_nodes
    assert_same_edges({(e["u"], e["v"]): e["merge_score"] for e in doc["edges"]}, want_edges)

    code, out, _ = run_main(capsys, *base, "--format", "csv")
    assert code == 0
    df = pd.read_csv(io.StringIO(out), dtype={"u": np.uint64, "v": np.uint64})
    assert_same_edges(edge_dict(df), want_edges)
    code, out, _ = run_main(capsys, *base, "--format", "csv", "--what", "nodes")
    df = pd.read_csv(io.StringIO(out), dtype={"id": np.uint64})
    assert node_dict(df) == want_nodes

    out_file = tmp_path / "g.graphml"
    code, _, err = run_main(capsys, *base, "--format", "graphml", "--out", str(out_file))
    assert code == 0 and "wrote" in err
    g = nx.read_graphml(out_file, node_type=int)
    assert {n for n, d in g.nodes(data=True) if d} == set(want_nodes)
    assert {frozenset(e) for e in g.edges} == {frozenset(e) for e in want_edges}
    for u, v, d in g.edges(data=True):
        assert d["merge_score"] == want_edges[(min(u, v), max(u, v))]

    code, out, _ = run_main(capsys, *base, "--format", "table")
    assert code == 0 and f"{len(nodes):,} nodes, {len(edges):,} edges" in out


def test_cli_info_on_the_server(loaded, rag, capsys):
    code, out, _ = run_main(capsys, "info", "--db", loaded.uri, "--name", loaded.name, "--json", "--bins", "4")
    assert code == 0
    info = json.loads(out)
    counts = {c["name"]: c["count"] for c in info["collections"]}
    assert counts["nodes"] == len(loaded.pos) and counts[EDGES] == len(loaded.edges)
    assert counts["zebrafinch.nodes"] == len(loaded.skel_nodes)
    assert {c["name"]: c["kind"] for c in info["collections"]}[EDGES] == "rag_edges"
    pos = np.array(list(loaded.pos.values()))
    assert info["bbox"]["begin"] == pos.min(0).tolist() and np.all(np.array(info["bbox"]["end"]) > pos.max(0))
    assert info["scores"][EDGES] == json.loads(json.dumps(rag.threshold_stats(bins=4)))
    code, out, _ = run_main(capsys, "info", "--db", loaded.uri, "--name", loaded.name)
    assert code == 0 and f"{len(loaded.edges):,} edges" in out and "nodes bounding box" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (("query", "--roi", "0,0:10,10"), "2 dimensions"),
        (("query", "--roi", "0,0,0:-5,10,10"), "negative"),
        (("query", "--roi", "0,0,0:10,10,10", "--max-score", "1.5"), "outside the stored range"),
        (("query", "--edges", "edges_nope"), "edges_hist_quant_75, edges_mean"),
        (("query", "--name", "{name}_nonodes"), "no 'nodes' collection"),
        (("query", "--name", "no_such_db_here"), "no database 'no_such_db_here'"),
        (("info", "--name", "no_such_db_here"), "no database 'no_such_db_here'"),
    ],
)
def test_cli_bad_input_is_one_clear_line(loaded, capsys, args, message):
    args = tuple(a.format(name=loaded.name) for a in args)
    if "--name" not in args:
        args += ("--name", loaded.name)
    if args[0] == "query" and "--edges" not in args:
        args += ("--edges", EDGES)
    code, out, err = run_main(capsys, *args, "--db", loaded.uri)
    assert code == 1 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_bad_input_exit_status_from_the_real_entry_point(loaded):
    p = run_cli("query", "--db", loaded.uri, "--name", loaded.name, "--edges", EDGES, "--roi", "0,0:1,1")
    assert p.returncode == 1 and p.stdout == ""
    assert "2 dimensions" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_api_bad_input_on_the_server(loaded, rag):
    with pytest.raises(LsdgraphError, match="edges_hist_quant_75, edges_mean"):
        query.open_rag(loaded.uri, loaded.name, edges="edges_typo")
    assert query.open_rag(loaded.uri, loaded.name).edges_name == "edges_hist_quant_75"  # the default rule
    with pytest.raises(LsdgraphError, match="outside the stored range"):
        rag.read_arrays(None, max_score=-0.5)
    with pytest.raises(LsdgraphError, match="edge policy"):
        rag.explain(None, edges="sideways")
    with pytest.raises(LsdgraphError, match="negative"):
        rag.read_graph(((0, 0, 0), (10, -1, 10)))

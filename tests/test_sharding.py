"""The sharded layout (issue 13 point 4): the spatial block key (a Morton code of 4096 nm blocks)
against brute force; ingest and ``lsdgraph index`` store it on nodes (``blk``) and RAG edges
(``blk_u``/``blk_v``); every ROI read carries ``$in`` the covering blocks (Python and mongosh, the
same filters) with results unchanged, on mongomock and a real wire-protocol server; ``lsdgraph
shard-plan`` prints mongosh that the real mongosh runs, with split points of equal counts; its
mistakes are one line. Data: :class:`dumpdata.Dumps` RAGs over 20 × 9 × 9 µm (5 × 3 × 3 blocks),
moved so they straddle the origin (negative coordinates, and the offset's top bit)."""
from __future__ import annotations

import itertools
import json
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from bson import json_util
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsdgraph
from lsdgraph import cli
from lsdgraph._core import blocks, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi, make_roi
from lsdgraph._ingest import reindex
from lsdgraph._jobs.shard_plan import shard_plan, split_points
from lsdgraph._query import rag as query
from lsdgraph._stores import mongo as store_mod

from dumpdata import Dumps

B = blocks.BLOCK_NM
SHIFT = np.array([10_000.0, 4_500.0, 4_500.0])  # the dumps' 0..20000 × 0..9000 × 0..9000 nm, centred on 0
EDGES = "edges_hist_quant_75"


# ---------------------------------------------------------------------------------------------
# the key


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**20), 2**20 - 1), min_size=3, max_size=3),
       st.lists(st.floats(0, 0.99), min_size=3, max_size=3))
def test_encode_decode_round_trip(cell, frac):
    pos = (np.array(cell, float) + np.array(frac)) * B
    code = blocks.encode(pos[None])
    assert code.dtype == np.int64 and code[0] >= 0
    assert blocks.decode(code)[0].tolist() == cell


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**21 - 2), min_size=3, max_size=3), st.integers(0, 2))
def test_morton_order(idx, axis):
    """One step up an axis raises the code; the parent block (indices halved) is the code without
    its last three bits, so every aligned cube is one run of codes (Z-order)."""
    a = np.array([idx], np.int64)
    b = a.copy()
    b[0, axis] += 1
    assert blocks.interleave(b)[0] > blocks.interleave(a)[0]
    assert blocks.interleave(a // 2)[0] == blocks.interleave(a)[0] >> 3


def test_the_code_by_hand():
    assert blocks.interleave(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [2, 0, 0], [1, 1, 1]])).tolist() == \
        [1, 2, 4, 32, 7]
    o = blocks.OFFSET
    # block 0 is stored as 2**20 on each axis: the top bit of every axis set
    assert blocks.encode([[0.0, 0.0, 0.0]])[0] == blocks.interleave(np.array([[o, o, o]]))[0] == 7 << 60
    assert blocks.encode([[-1.0, -0.5, B - 1e-9]]).tolist() == blocks.interleave(np.array([[o - 1, o - 1, o]])).tolist()
    # far outside the 21-bit range: clamped to the edge blocks, never wrapped or negative
    assert blocks.encode([[1e30, -1e30, np.inf]])[0] == blocks.interleave(np.array([[2**21 - 1, 0, 2**21 - 1]]))[0]
    assert blocks.encode([[1e30, 1e30, 1e30]])[0] == 2**63 - 1
    with pytest.raises(LsdgraphError, match="NaN"):
        blocks.encode([[np.nan, 0, 0]])


def brute_cover(begin, end, block) -> list[int]:
    """Codes of the blocks [i*block, (i+1)*block)³ sharing a point with the half-open box (integer nm)."""
    axes = []
    for b, e in zip(begin, end, strict=True):
        first, last = b // block - 1, e // block + 1
        axes.append([i for i in range(first, last + 1) if max(b, i * block) < min(e, (i + 1) * block)])
    cells = [(z, y, x) for z in axes[0] for y in axes[1] for x in axes[2]]
    return sorted(blocks.interleave(np.array(cells, np.int64).reshape(-1, 3) + blocks.OFFSET).tolist())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-700, 700), min_size=3, max_size=3), st.lists(st.integers(0, 400), min_size=3, max_size=3),
       st.sampled_from([64, 100, 128]), st.integers(0, 2**32 - 1))
def test_covering_equals_brute_force(begin, shape, block, seed):
    roi = Roi(tuple(map(float, begin)), tuple(map(float, shape)))
    end = [b + s for b, s in zip(begin, shape, strict=True)]
    expected = brute_cover(begin, end, block) if all(s > 0 for s in shape) else []
    got = blocks.covering(roi, block, limit=None)
    assert got.tolist() == expected  # an empty box (a zero shape) holds no point: no block
    runs = blocks.covering_runs(roi, block)
    assert np.concatenate([np.arange(a, b + 1) for a, b in runs] or [np.empty(0, np.int64)]).tolist() == got.tolist()
    assert np.all(runs[1:, 0] > runs[:-1, 1] + 1)  # sorted, disjoint, not touching
    assert blocks.cover_count(roi, block) == len(got)
    # every point the box predicate accepts has its code in the cover
    rng = np.random.default_rng(seed)
    pts = np.array(begin, float) + rng.random((50, 3)) * np.array(shape, float)
    pts = np.concatenate([pts, [np.nextafter(np.array(end, float), -np.inf)], [np.array(begin, float)]])
    pts = pts[roi.contains(pts)]
    assert np.isin(blocks.encode(pts, block), got).all()


def test_large_covers_are_left_out():
    whole = make_roi((None, None, None), (None, None, None))
    assert blocks.covering(whole) is None and blocks.in_filter(whole, "blk") == {}
    assert blocks.covering_runs(whole).tolist() == [[0, 2**63 - 1]]
    column = make_roi((None, 0, 0), (None, 10, 10))  # one block thin, unbounded: 2**21 separate codes
    assert blocks.covering(column) is None and blocks.covering_runs(column) is None
    side = round(blocks.MAX_COVER ** (1 / 3))  # 16: a 16³ block ROI is the largest that gets one
    just = Roi((0.0, 0.0, 0.0), (side * B,) * 3)
    assert blocks.cover_count(just) == blocks.MAX_COVER and len(blocks.in_filter(just, "blk")["blk"]["$in"]) == 4096
    over = Roi((0.0, 0.0, 0.0), (side * B + 1, side * B, side * B))
    assert blocks.in_filter(over, "blk") == {} and len(blocks.covering_runs(over)) < 100
    assert blocks.in_filter(None, "blk") == {}


# ---------------------------------------------------------------------------------------------
# a RAG across blocks and the origin, on mongomock and a real wire-protocol server


def write_dump(root: Path, n_nodes: int = 1500, seed: int = 3):
    d = Dumps(root, seed=seed)
    r = d.rag("rag", n_nodes=n_nodes, merge_functions=("hist_quant_75", "mean"))
    r.positions = r.positions - SHIFT
    r.nodes_file.write_bytes(d.nodes_bytes(r.ids, r.positions))
    return r


class Loaded:
    def __init__(self, uri: str, name: str, rag, mock: bool):
        self.uri, self.name, self.dump, self.mock = uri, name, rag, mock
        self.pos = dict(zip(rag.ids.tolist(), map(tuple, rag.positions.tolist()), strict=True))

    def store(self):
        return store_mod.connect(self.uri)

    def rag(self, blocked: bool = True) -> query.Rag:
        r = query.open_rag(name=self.name, edges=EDGES, store=self.store())
        if not blocked:
            r._blocks = {"nodes": False, "edges": False}
        return r


@pytest.fixture(scope="module", params=["mongomock", pytest.param("secantus", marks=pytest.mark.server)])
def loaded(request, tmp_path_factory):
    r = write_dump(tmp_path_factory.mktemp("shard"))
    if request.param == "mongomock":
        uri = f"mongomock://shard-{uuid.uuid4().hex[:8]}"
    else:
        uri = request.getfixturevalue("secantus").uri
    name = f"sh_{uuid.uuid4().hex[:8]}"
    store = store_mod.connect(uri)
    assert all(x.status == "complete" for x in lsdgraph.ingest(str(r.folder), store=store, name=name, quiet=True))
    yield Loaded(uri, name, r, request.param == "mongomock")
    store.drop_database(name)
    store_mod._mock_clients.pop(uri, None)


def stored(loaded, coll: str, fields) -> list[dict]:
    return list(loaded.store().db(loaded.name)[coll].find({}, {"_id": 0, **{f: 1 for f in fields}}))


def test_ingest_stores_the_block_keys(loaded):
    nodes = stored(loaded, "nodes", ["id", "blk", *schema.NODE_POSITION])
    assert len(nodes) == len(loaded.dump.ids)
    pos = np.array([[n[f] for f in schema.NODE_POSITION] for n in nodes])
    assert (pos < 0).any() and (pos > 0).any()
    assert [n["blk"] for n in nodes] == blocks.encode(pos).tolist()
    assert len({n["blk"] for n in nodes}) > 20  # the RAG spans many blocks
    for coll in (EDGES, "edges_mean"):
        edges = stored(loaded, coll, ["u", "v", "blk_u", "blk_v"])
        assert len(edges) == len(loaded.dump.u)
        for end in ("u", "v"):
            want = blocks.encode(np.array([loaded.pos[e[end]] for e in edges]))
            assert [e[f"blk_{end}"] for e in edges] == want.tolist()
    info = loaded.store().db(loaded.name)
    assert list(info.nodes.index_information()["block"]["key"]) == [("blk", 1), ("id", 1)]
    assert info.nodes.index_information()["block"]["unique"]
    assert list(info[EDGES].index_information()["block_u"]["key"]) == [("blk_u", 1), ("u", 1), ("v", 1)]
    rag = loaded.rag()
    assert rag.has_blocks("nodes") and rag.has_blocks("edges")
    nodes_df, edges_df = rag.read_arrays()  # the API never shows the keys
    assert "blk" not in nodes_df.columns and not {"blk_u", "blk_v"} & set(edges_df.columns)


def random_rois(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = rng.choice([300.0, 3_000.0, 9_000.0])
        begin = rng.uniform(-12_000, 8_000, 3)
        if i % 3 == 0:  # a corner on a block border
            begin = np.round(begin / B) * B
        yield Roi(tuple(begin), tuple(rng.uniform(0, size, 3))), [None, 0.5, 0.3][i % 3], ("u", "both", "either")[i % 3]


def same(a, b, keys):
    return a.sort_values(keys).reset_index(drop=True).equals(b.sort_values(keys).reset_index(drop=True))


def test_every_roi_read_carries_the_block_predicate_and_reads_the_same(loaded):
    rag, plain = loaded.rag(), loaded.rag(blocked=False)
    seen_blocks = 0
    for roi, t, policy in random_rois(9, seed=1):
        n1, e1 = rag.read_arrays(roi, t, edges=policy)
        n2, e2 = plain.read_arrays(roi, t, edges=policy)
        assert same(n1, n2, ["id"]) and same(e1, e2, ["u", "v"])
        inside = {i for i, p in loaded.pos.items() if roi.contains(np.array([p]))[0]}
        assert set(n1.id.tolist()) == inside
        rows, bare = rag.explain(roi, t, edges=policy), plain.explain(roi, t, edges=policy)
        fields = ["blk", "blk_u"] + (["blk_v"] if policy == "either" else [])
        assert len(rows) == len(fields)
        for row, other, f in zip(rows, bare, fields, strict=True):
            assert row["filter"][f] == {"$in": blocks.covering(roi).tolist()}
            assert {k: v for k, v in row["filter"].items() if k != f} == other["filter"]
            if not loaded.mock:  # the real server: the box index still bounds the read, same answer
                assert row["index"] == row["hint"] == other["index"]
                assert row["returned"] == other["returned"] and row["keys_examined"] == other["keys_examined"]
        seen_blocks = max(seen_blocks, len(blocks.covering(roi)))
    assert seen_blocks > 8
    # the whole volume (or no ROI) goes to every shard anyway: no predicate
    whole = make_roi((None, None, None), (None, None, None))
    assert all(not {"blk", "blk_u", "blk_v"} & set(r["filter"]) for r in rag.explain(whole, edges="either"))
    assert all(not {"blk", "blk_u"} & set(r["filter"]) for r in rag.explain(None))
    # batch reads of a block (the Dask workers' reads) carry it too
    roi = Roi((-B, -B, -B), (2 * B, 2 * B, 2 * B))
    got = np.concatenate([u for u, _, _ in rag.iter_edge_batches(roi=roi)])
    want = np.concatenate([u for u, _, _ in plain.iter_edge_batches(roi=roi)])
    assert sorted(got.tolist()) == sorted(want.tolist()) and len(got)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(-13_000, 11_000), min_size=3, max_size=3),
       st.lists(st.sampled_from([0.0, 1.0, 100.0, B, 2 * B, 5_000.0, 12_000.0]), min_size=3, max_size=3),
       st.sampled_from(["u", "both", "either"]), st.booleans())
def test_random_rois_read_the_same_with_and_without_blocks(mock_rag, begin, shape, policy, on_border):
    rag, plain, pos = mock_rag
    if on_border:
        begin = [round(b / B) * B for b in begin]
    roi = Roi(tuple(begin), tuple(shape))
    n1, e1 = rag.read_arrays(roi, edges=policy)
    n2, e2 = plain.read_arrays(roi, edges=policy)
    assert same(n1, n2, ["id"]) and same(e1, e2, ["u", "v"])
    assert set(n1.id.tolist()) == {i for i, p in pos.items() if roi.contains(np.array([p]))[0]}


@pytest.fixture(scope="module")
def mock_rag(tmp_path_factory):
    r = write_dump(tmp_path_factory.mktemp("mock"), n_nodes=800, seed=9)
    uri = f"mongomock://shard-h-{uuid.uuid4().hex[:8]}"
    store = store_mod.connect(uri)
    lsdgraph.ingest(str(r.folder), store=store, name="h", quiet=True)
    rag = query.open_rag(name="h", edges=EDGES, store=store)
    plain = query.open_rag(name="h", edges=EDGES, store=store)
    plain._blocks = {"nodes": False, "edges": False}
    assert rag.has_blocks("nodes") and rag.has_blocks("edges")
    yield rag, plain, dict(zip(r.ids.tolist(), map(tuple, r.positions.tolist()), strict=True))
    store_mod._mock_clients.pop(uri, None)


def test_edges_loaded_before_their_nodes_get_block_keys(tmp_path, mock_uri):
    r = write_dump(tmp_path, n_nodes=300, seed=4)
    store = store_mod.connect(mock_uri)
    lsdgraph.ingest(str(r.edges_files["mean"]), store=store, name="late", quiet=True)
    assert store.db("late").edges_mean.find_one({"blk_u": {"$exists": True}}) is None
    lsdgraph.ingest(str(r.nodes_file), store=store, name="late", quiet=True)  # positions follow
    pos = dict(zip(r.ids.tolist(), r.positions.tolist(), strict=True))
    for e in store.db("late").edges_mean.find({}):
        assert e["blk_u"] == blocks.encode([pos[e["u"]]])[0] and e["blk_v"] == blocks.encode([pos[e["v"]]])[0]
    assert query.open_rag(name="late", store=store).has_blocks("edges")


def test_an_older_database_reads_as_before_until_lsdgraph_index(tmp_path, mock_uri):
    r = write_dump(tmp_path, n_nodes=300, seed=5)
    store = store_mod.connect(mock_uri)
    lsdgraph.ingest(str(r.folder), store=store, name="old", quiet=True)
    db = store.db("old")
    before = {coll: list(db[coll].find({}, {"_id": 0}).sort("_id")) for coll in ("nodes", EDGES)}
    # what an earlier lsdgraph left: positions on edges, no block keys, no block indexes
    db.nodes.update_many({}, {"$unset": {"blk": ""}})
    db.nodes.drop_index("block")
    for coll in (EDGES, "edges_mean"):
        db[coll].update_many({}, {"$unset": {"blk_u": "", "blk_v": ""}})
        db[coll].drop_index("block_u")
    store._indexes.clear()
    old = query.open_rag(name="old", edges=EDGES, store=store)
    roi = Roi((-3000.0, -2000.0, -2000.0), (6000.0, 4000.0, 4000.0))
    assert not old.has_blocks("nodes") and not old.has_blocks("edges")
    assert not any({"blk", "blk_u", "blk_v"} & set(x["filter"]) for x in old.explain(roi, edges="either"))
    n_old, e_old = old.read_arrays(roi, edges="either")
    with pytest.raises(LsdgraphError, match=r"old\.nodes has no block keys .* `lsdgraph index --name old`"):
        shard_plan(store=store, name="old", shards=2)
    lines = reindex(store, db)
    assert any(x.startswith("blocks added") and "nodes" in x for x in lines)
    assert any(x.startswith("positions added") and EDGES in x for x in lines)
    after = {coll: list(db[coll].find({}, {"_id": 0}).sort("_id")) for coll in ("nodes", EDGES)}
    assert after == before  # the same keys as ingest gives, in the same documents
    store._indexes.clear()
    new = query.open_rag(name="old", edges=EDGES, store=store)
    assert new.has_blocks("nodes") and new.has_blocks("edges")
    n_new, e_new = new.read_arrays(roi, edges="either")
    assert same(n_old, n_new, ["id"]) and same(e_old, e_new, ["u", "v"]) and len(e_new)
    assert reindex(store, db) and not any(x.startswith(("blocks added", "positions added")) for x in reindex(store, db))


def test_a_copy_from_the_local_store_into_mongodb_gets_the_block_keys(tmp_path, mock_uri):
    r = write_dump(tmp_path, n_nodes=300, seed=6)
    local = str(tmp_path / "store")
    lsdgraph.ingest(str(r.folder), db=local, name="part", quiet=True)
    store = store_mod.connect(mock_uri)
    lsdgraph.ingest(f"file:{local}/part", store=store, name="copy", quiet=True)
    db = store.db("copy")
    nodes = list(db.nodes.find({}, {"_id": 0}))
    assert [d["blk"] for d in nodes] == blocks.encode([[d[f] for f in schema.NODE_POSITION] for d in nodes]).tolist()
    edges = [d for d in db[EDGES].find({}, {"_id": 0}) if "u_z" in d]
    assert edges and [d["blk_u"] for d in edges] == blocks.encode(
        [[d[f] for f in schema.EDGE_POSITIONS["u"]] for d in edges]).tolist()
    rag = query.open_rag(name="copy", edges=EDGES, store=store)
    assert rag.has_blocks("nodes") and rag.has_blocks("edges")
    shard_plan(store=store, name="copy", shards=2)  # no "run lsdgraph index" refusal


# ---------------------------------------------------------------------------------------------
# shard-plan


def key_rows(loaded, coll: str, key) -> list[tuple[int, ...]]:
    return [tuple(int(d[f]) for f in key) for d in stored(loaded, coll, key) if all(f in d for f in key)]


def test_split_points_hold_equal_counts(loaded):
    for shards in (1, 2, 3, 7):
        plan = shard_plan(store=loaded.store(), name=loaded.name, shards=shards, sample=10**6)  # all of them
        assert [c.collection for c in plan.collections] == ["nodes", EDGES, "edges_mean"]
        for c in plan.collections:
            rows = key_rows(loaded, c.collection, c.key)
            assert c.sampled == len(rows) == c.documents
            assert len(c.splits) == shards - 1 and c.splits == sorted(c.splits)
            bounds = [None, *c.splits, None]
            counts = [sum((lo is None or r >= lo) and (hi is None or r < hi) for r in rows)
                      for lo, hi in itertools.pairwise(bounds)]
            assert max(counts) - min(counts) <= 1, counts
    # a sample: ranges hold about equal counts; a heavy block is split inside by id
    plan = shard_plan(store=loaded.store(), name=loaded.name, shards=4, sample=400)
    assert all(c.sampled == 400 and len(c.splits) == 3 for c in plan.collections)
    heavy = np.array([[5, i] for i in range(100)] + [[6, 1]], np.int64)
    assert split_points(heavy, 4) == [(5, 25), (5, 50), (5, 75)]


def run_plan(mongosh, uri: str, db: str, script: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """The plan through the real mongosh, connected to the server (its index commands run for real)
    with ``sh`` stubbed (the server is not a sharded cluster): each ``sh.*`` call printed."""
    stub = ("(() => { globalThis.sh = {}; for (const name of ['enableSharding', 'shardCollection', 'splitAt']) {"
            " sh[name] = (...args) => print(EJSON.stringify({call: name, args}, {relaxed: false})); } })()")
    p = subprocess.run([mongosh, f"{uri}/{db}", "--quiet", "--eval", stub, "--file", str(script)],
                       capture_output=True, text=True, timeout=120)
    calls = [json_util.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    return p, calls


@pytest.mark.server
@pytest.mark.mongosh
def test_the_plan_runs_in_mongosh(loaded, mongosh, tmp_path, capsys):
    if loaded.mock:
        pytest.skip("mongosh needs the wire-protocol server")
    out = tmp_path / "plan.js"
    assert cli.main(["shard-plan", "--db", loaded.uri, "--name", loaded.name, "--shards", "3", "--out", str(out)]) == 0
    assert "wrote the plan" in capsys.readouterr().err
    p, calls = run_plan(mongosh, loaded.uri, loaded.name, out)
    assert p.returncode == 0, p.stderr
    n = loaded.name
    assert calls[0] == {"call": "enableSharding", "args": [n]}
    sharded = [c["args"] for c in calls if c["call"] == "shardCollection"]
    assert sharded == [[f"{n}.nodes", {"blk": 1, "id": 1}, True], [f"{n}.{EDGES}", {"blk_u": 1, "u": 1, "v": 1}, True],
                       [f"{n}.edges_mean", {"blk_u": 1, "u": 1, "v": 1}, True]]
    splits = [c["args"] for c in calls if c["call"] == "splitAt"]
    assert [s[0] for s in splits] == [f"{n}.nodes"] * 2 + [f"{n}.{EDGES}"] * 2 + [f"{n}.edges_mean"] * 2
    plan = shard_plan(store=loaded.store(), name=n, shards=3)  # the whole RAG is under the default sample
    assert [tuple(int(v) for v in s[1].values()) for s in splits] == [pt for c in plan.collections for pt in c.splits]
    assert all(type(v).__name__ == "Int64" for s in splits for v in s[1].values())  # NumberLong: exact
    # the index commands ran: the unprefixed unique indexes are plain now, the shard keys unique
    db = loaded.store().db(n)
    ix = db.nodes.index_information()
    assert not ix["id"].get("unique") and ix["block"]["unique"] and list(ix["id"]["key"]) == [("id", 1)]
    ix = db[EDGES].index_information()
    assert not ix["incident"].get("unique") and ix["block_u"]["unique"]
    assert set(ix) == {"_id_", *(s["name"] for s in schema.indexes("rag_edges"))}


@pytest.mark.server
@pytest.mark.mongosh
def test_roi_js_sends_the_same_filters_as_python(loaded, mongosh):
    if loaded.mock:
        pytest.skip("mongosh needs the wire-protocol server")
    rag = loaded.rag()
    for roi, t, policy in random_rois(6, seed=7):
        params = {"roi": {"offset": list(roi.offset), "shape": list(roi.shape)}, "policy": policy, "edges": EDGES,
                  "explain": True, **({} if t is None else {"maxScore": t})}
        p = subprocess.run([mongosh, f"{loaded.uri}/{loaded.name}", "--quiet", "--eval",
                            "var " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items()),
                            "--file", str(Path(query.__file__).parent.parent / "queries" / "roi.js")],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        out = json_util.loads(p.stdout)
        assert [q["filter"] for q in out["queries"]] == [r["filter"] for r in rag.explain(roi, t, edges=policy)]
        assert "blk" in out["queries"][0]["filter"] and "blk_u" in out["queries"][1]["filter"]
        nodes, edges = rag.read_arrays(roi, t, edges=policy)
        assert sorted(int(x["id"]) for x in out["nodes"]) == sorted(nodes.id.tolist())
        pairs = sorted(zip(edges.u.tolist(), edges.v.tolist(), strict=True))
        assert sorted((int(e["u"]), int(e["v"])) for e in out["edges"]) == pairs
        assert not any("blk" in x for x in out["nodes"]) and not any("blk_u" in e for e in out["edges"])


# ---------------------------------------------------------------------------------------------
# mistakes: one line each


@pytest.fixture
def planned(tmp_path, mock_uri):
    r = write_dump(tmp_path, n_nodes=200, seed=6)
    store = store_mod.connect(mock_uri)
    lsdgraph.ingest(str(r.folder), store=store, name="p", quiet=True)
    lsdgraph.ingest(str(r.folder), store=store, name="bare", quiet=True)
    store.db("bare").nodes.update_many({}, {"$unset": {"blk": ""}})
    local = tmp_path / "local"
    lsdgraph.ingest(str(r.folder), db=str(local), name="p", quiet=True)
    return mock_uri, str(local)


@pytest.mark.parametrize("args, message", [
    (["--name", "nope", "--shards", "2"], "no database 'nope' at"),
    (["--name", "p", "--shards", "0"], "--shards 0: give the number of shards, 1 or more"),
    (["--name", "p", "--shards", "two"], "--shards two: not a whole number"),
    (["--name", "p", "--shards", "2", "--sample", "0"], "--sample 0: give how many documents to sample"),
    (["--name", "bare", "--shards", "2"], "bare.nodes has no block keys"),
    (["--name", "p", "--shards", "2", "--db", "LOCAL"], "is a local store: sharding is for a MongoDB cluster"),
])
def test_shard_plan_mistakes_are_one_line(planned, capsys, args, message):
    uri, local = planned
    argv = ["shard-plan", "--db", uri] + [local if a == "LOCAL" else a for a in args]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsdgraph shard-plan: error: ") and message in err[0], err
    assert captured.out == ""
    if "no block keys" in message:
        assert "`lsdgraph index --name bare`" in err[0]


def test_shard_plan_prints_to_stdout(planned, capsys):
    uri, _ = planned
    assert cli.main(["shard-plan", "--db", uri, "--name", "p", "--shards", "2", "--sample", "50"]) == 0
    out = capsys.readouterr().out
    assert 'sh.shardCollection("p.nodes", {"blk": 1, "id": 1}, true);' in out
    assert out.count("sh.splitAt(") == 3 and out.count("sh.shardCollection(") == 3

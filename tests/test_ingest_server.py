"""lsdgraph ingest against a real MongoDB wire-protocol server (SecantusDB, started once per
session): raw BSON inserts, indexes, reruns, SIGKILL mid-load, a server that goes away, and the
real mongo shell reading the result. Datasets stay under 20k documents (SecantusDB is slow)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from bson.raw_bson import RawBSONDocument
from pymongo.collection import Collection

from lsdgraph import _ingest as ingest_mod
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.retry import RetryPolicy
from lsdgraph._stores import mongo as store_mod

from conftest import run_cli, subprocess_env
from servers import REPO

pytestmark = pytest.mark.server


def index_specs(coll) -> dict:
    return {name: (list(info["key"]), bool(info.get("unique", False)))
            for name, info in coll.index_information().items() if name != "_id_"}


def expected_specs(kind_name: str) -> dict:
    return {s["name"]: ([(f, d) for f, d in s["key"]], bool(s.get("unique", False)))
            for s in schema.indexes(kind_name)}


def distinct_count(coll, fields: tuple[str, ...]) -> int:
    key = {f: f"${f}" for f in fields}
    return next(coll.aggregate([{"$group": {"_id": key}}, {"$count": "n"}]))["n"]


def test_load_on_a_real_server_raw_indexes_meta_and_rerun(dumps, server_db, monkeypatch):
    server, name = server_db
    rag = dumps.rag(n_nodes=2000)
    dumps.skeletons(folder="skel", n_nodes=300)
    sent_types, events = set(), []
    real_insert_many, real_create_indexes = Collection.insert_many, Collection.create_indexes

    def insert_many(self, documents, ordered=True, **k):
        documents = list(documents)
        sent_types.update(type(d) for d in documents)
        events.append(("insert", self.name, len(documents), ordered))
        return real_insert_many(self, documents, ordered=ordered, **k)

    def create_indexes(self, indexes, **k):
        events.append(("indexes", self.name, len(indexes), None))
        return real_create_indexes(self, indexes, **k)

    monkeypatch.setattr(Collection, "insert_many", insert_many)
    monkeypatch.setattr(Collection, "create_indexes", create_indexes)
    reports = ingest_mod.ingest(str(dumps.root), db=server.uri, name=name, quiet=True, batch_docs=1000)
    assert all(r.status == "complete" for r in reports) and len(reports) == 4
    assert sent_types == {RawBSONDocument}  # bytes straight from the file, never decoded to dicts
    staging_edges = schema.STAGING_PREFIX + "edges_hist_quant_75"
    inserts = [e for e in events if e[0] == "insert" and e[1] == staging_edges]
    assert len(inserts) == -(-len(rag.u) // 1000) and all(
        n <= 1000 and ordered is False for _, _, n, ordered in inserts
    )
    # every collection's indexes come after its last insert (bulk load first, then the build): the
    # unique ones on the staging collection, the rest once it has its real name
    for coll in {e[1] for e in events if e[0] == "insert"}:
        final = coll[len(schema.STAGING_PREFIX) :]
        last_insert = max(i for i, e in enumerate(events) if e[:2] == ("insert", coll))
        builds = [i for i, e in enumerate(events) if e[0] == "indexes" and e[1] in (coll, final)]
        assert builds and min(builds) > last_insert, coll
        assert any(events[i][1] == final for i in builds), coll

    with server.client() as c:
        db = c[name]
        assert db.nodes.count_documents({}) == len(rag.ids)
        assert db.edges_hist_quant_75.count_documents({}) == len(rag.u)
        assert index_specs(db.nodes) == expected_specs("rag_nodes")
        assert index_specs(db.edges_hist_quant_75) == expected_specs("rag_edges")
        assert index_specs(db["zebrafinch.nodes"]) == expected_specs("skeleton_nodes")
        assert index_specs(db["zebrafinch.edges"]) == expected_specs("skeleton_edges")
        e = db.edges_hist_quant_75.find_one({"u": int(rag.u[5]), "v": int(rag.v[5])})
        assert (e["u_z"], e["u_y"], e["u_x"]) == rag.position_of(rag.u[5])
        assert db[schema.DAISY_META].find_one()["directed"] is False
        rec = db[schema.META].find_one({"_id": "nodes"})
        assert rec["status"] == "complete" and rec["bytes_loaded"] == rec["size"] == rag.nodes_file.stat().st_size
        before = {c_: sorted(map(str, db[c_].find())) for c_ in db.list_collection_names()}

    reports = ingest_mod.ingest(str(dumps.root), db=server.uri, name=name, quiet=True)
    assert [r.status for r in reports] == ["already-complete"] * 4
    with server.client() as c:
        after = {c_: sorted(map(str, c[name][c_].find())) for c_ in c[name].list_collection_names()}
    assert after == before


def _wait_for_progress(meta, coll: str, proc, above: int) -> int:
    """Poll the meta record until ``coll`` has committed more than ``above`` documents."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rec = meta.find_one({"_id": coll})
        if rec and rec.get("status") == "loading" and rec.get("documents", 0) > above:
            return rec["documents"]
        if proc.poll() is not None:
            pytest.fail(f"the load of {coll} ended (exit {proc.returncode}) before it could be killed")
        time.sleep(0.003)
    pytest.fail(f"no progress on {coll} within 60 s")


@pytest.mark.slow
def test_sigkill_mid_load_then_rerun_gives_exact_counts(dumps, server_db):
    server, name = server_db
    rag = dumps.rag(n_nodes=4000, per_node=2)  # 4k nodes + ~7k edges
    edges = "edges_hist_quant_75"
    args = ["ingest", str(dumps.root), "--db", server.uri, "--name", name, "--batch-docs", "100"]
    with server.client() as c:
        meta = c[name][schema.META]
        for coll in ("nodes", edges):  # kill once inside each file
            proc = subprocess.Popen(
                [sys.executable, "-m", "lsdgraph.cli", *args, "--quiet"],
                env=subprocess_env(),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            committed = _wait_for_progress(meta, coll, proc, 0)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL
            assert committed > 0
            assert coll not in c[name].list_collection_names()  # a killed load never looks complete
            assert meta.find_one({"_id": coll})["status"] == "loading"

        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        assert "resumed at byte" in r.stdout
        db = c[name]
        assert db.nodes.count_documents({}) == distinct_count(db.nodes, ("id",)) == len(rag.ids)
        assert db[edges].count_documents({}) == distinct_count(db[edges], ("u", "v")) == len(rag.u)
        assert db[edges].count_documents({"u_z": {"$exists": True}, "v_z": {"$exists": True}}) == len(rag.u)
        for coll, path in (("nodes", rag.nodes_file), (edges, rag.edges_files["hist_quant_75"])):
            rec = meta.find_one({"_id": coll})
            assert rec["status"] == "complete" and rec["documents"] == rec["loaded"]
            assert rec["bytes_loaded"] == path.stat().st_size
        assert not any(n.startswith(schema.STAGING_PREFIX) for n in db.list_collection_names())
        again = run_cli(*args)
        assert again.returncode == 0 and again.stdout.count("already loaded") == 2


def _cut_on_batch(monkeypatch, proxy, batch: int, refuse: bool):
    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def insert_docs(self, coll, docs, what):
        calls["n"] += 1
        if calls["n"] == batch:
            proxy.cut_after(2000, refuse=refuse)  # the line drops in the middle of this insert
        return real(self, coll, docs, what)

    monkeypatch.setattr(store_mod.Store, "insert_docs", insert_docs)


def test_connection_cut_mid_insert_is_retried_and_the_load_completes(dumps, server_db, tcp_proxy, monkeypatch):
    server, name = server_db
    rag = dumps.rag(n_nodes=3000, per_node=1)
    proxy = tcp_proxy(server.host, server.port)
    _cut_on_batch(monkeypatch, proxy, batch=5, refuse=False)
    st = store_mod.connect(proxy.uri(), timeout_ms=2000)
    reports = ingest_mod.ingest(str(dumps.root), name=name, quiet=True, batch_docs=300, store=st)
    assert proxy.cuts == 1
    assert [r.status for r in reports] == ["complete", "complete"]
    with server.client() as c:
        db = c[name]
        assert db.nodes.count_documents({}) == distinct_count(db.nodes, ("id",)) == len(rag.ids)
        assert db.edges_hist_quant_75.count_documents({}) == len(rag.u)


def test_server_gone_fails_cleanly_then_rerun_resumes(dumps, server_db, tcp_proxy, monkeypatch):
    server, name = server_db
    rag = dumps.rag(n_nodes=3000, per_node=1)
    proxy = tcp_proxy(server.host, server.port)
    st = store_mod.connect(proxy.uri(), timeout_ms=400)
    st.policy = RetryPolicy(retries=2)
    with monkeypatch.context() as m:
        _cut_on_batch(m, proxy, batch=4, refuse=True)
        with pytest.raises(LsdgraphError) as e:
            ingest_mod.ingest(str(dumps.root), name=name, quiet=True, batch_docs=300, store=st)
    message = str(e.value)
    assert "\n" not in message and str(rag.nodes_file) in message
    assert "lost MongoDB at" in message and "rerun the same command to resume" in message
    with server.client() as c:
        rec = c[name][schema.META].find_one({"_id": "nodes"})
        assert rec["status"] == "loading" and 0 < rec["documents"] < len(rag.ids)
        assert "nodes" not in c[name].list_collection_names()

    proxy.refusing = False  # the server is back
    st = store_mod.connect(proxy.uri(), timeout_ms=2000)
    reports = ingest_mod.ingest(str(dumps.root), name=name, quiet=True, batch_docs=300, store=st)
    assert [r.status for r in reports] == ["complete", "complete"]
    assert any(n.startswith("resumed at byte") for n in reports[0].notes)
    with server.client() as c:
        db = c[name]
        assert db.nodes.count_documents({}) == distinct_count(db.nodes, ("id",)) == len(rag.ids)
        assert db.edges_hist_quant_75.count_documents({"u_z": {"$exists": True}}) == len(rag.u)


def test_duplicate_keys_on_a_real_server(dumps, server_db):
    import bson

    server, name = server_db
    ids = dumps.fragment_ids(400)
    docs = bson.decode_all(dumps.nodes_bytes(ids, dumps.rng.uniform(0, 1000, (400, 3))))
    twin = dict(docs[7], _id=bson.ObjectId())  # identical but for _id: keep one
    clash = dict(docs[9], _id=bson.ObjectId(), center_x=-1.0)  # same id, other content: error
    path = dumps.write("nodes.bson", b"".join(bson.encode(d) for d in docs + [twin, clash]))
    with pytest.raises(LsdgraphError, match=r"documents #9 \(byte \d+\) and #401 \(byte \d+\) share id = "):
        ingest_mod.ingest(str(path), db=server.uri, name=name, quiet=True, batch_docs=100)
    (report,) = ingest_mod.ingest(str(path), db=server.uri, name=name, quiet=True, on_duplicate="skip")
    assert report.status == "complete" and report.loaded == 400 and report.duplicates == 2
    with server.client() as c:
        assert c[name].nodes.count_documents({}) == distinct_count(c[name].nodes, ("id",)) == 400
        assert index_specs(c[name].nodes)["id"] == ([("id", 1)], True)


def test_cli_subprocess_against_the_server_uses_the_env_uri(dumps, server_db):
    server, name = server_db
    rag = dumps.rag(n_nodes=200)
    r = run_cli("ingest", str(rag.nodes_file), "--name", name, env=subprocess_env(LSDGRAPH_MONGO_URI=server.uri))
    assert r.returncode == 0 and r.stderr == "" and r.stdout.startswith("loaded")
    with server.client() as c:
        assert c[name].nodes.count_documents({}) == 200


@pytest.mark.mongosh
def test_mongosh_reads_what_ingest_wrote(dumps, server_db, mongosh, tmp_path):
    server, name = server_db
    rag = dumps.rag(n_nodes=500)
    ingest_mod.ingest(str(dumps.root), db=server.uri, name=name, quiet=True)
    script = tmp_path / "check.js"
    script.write_text(f"""
        const d = db.getSiblingDB({json.dumps(name)});
        const names = c => d.getCollection(c).getIndexes().map(i => i.name).sort();
        const e = d.edges_hist_quant_75.findOne({{u: {int(rag.u[0])}, v: {int(rag.v[0])}}});
        print(JSON.stringify({{
          nodes: d.nodes.countDocuments({{}}), edges: d.edges_hist_quant_75.countDocuments({{}}),
          nodeIndexes: names("nodes"), edgeIndexes: names("edges_hist_quant_75"),
          idUnique: d.nodes.getIndexes().filter(i => i.name === "id")[0].unique === true,
          status: d.lsdgraph_meta.find({{}}, {{status: 1}}).toArray().map(r => r.status),
          directed: d.meta.findOne().directed, uz: e.u_z,
          inBox: d.nodes.find({{center_z: {{$gte: 0, $lt: 10000}}}}).hint("position").count(),
        }}));
    """)
    p = subprocess.run(
        [mongosh, server.uri, "--quiet", "--norc", "--file", str(script)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["nodes"] == len(rag.ids) and got["edges"] == len(rag.u)
    assert got["nodeIndexes"] == sorted(["_id_"] + [s["name"] for s in schema.indexes("rag_nodes")])
    assert got["edgeIndexes"] == sorted(["_id_"] + [s["name"] for s in schema.indexes("rag_edges")])
    assert got["idUnique"] is True and got["status"] == ["complete", "complete"] and got["directed"] is False
    assert got["uz"] == rag.position_of(rag.u[0])[0]
    assert got["inBox"] == int((rag.positions[:, 0] < 10000).sum())


def test_edges_before_nodes_get_positions_on_a_real_server(dumps, server_db):
    server, name = server_db
    rag = dumps.rag(n_nodes=300)
    ingest_mod.ingest(str(rag.edges_files["hist_quant_75"]), db=server.uri, name=name, quiet=True)
    with server.client() as c:
        assert c[name].edges_hist_quant_75.count_documents({"u_z": {"$exists": True}}) == 0
    ingest_mod.ingest(str(rag.nodes_file), db=server.uri, name=name, quiet=True)
    with server.client() as c:
        edges = list(c[name].edges_hist_quant_75.find())
        assert len(edges) == len(rag.u)
        for e in edges:
            assert (e["u_z"], e["u_y"], e["u_x"]) == rag.position_of(e["u"])
            assert (e["v_z"], e["v_y"], e["v_x"]) == rag.position_of(e["v"])
        assert c[name][schema.META].find_one({"_id": "edges_hist_quant_75"})["positions"] is True


def test_a_password_the_server_refuses_is_never_shown(dumps, server_db):
    server, name = server_db
    rag = dumps.rag(n_nodes=20)
    uri = f"mongodb://bob:Sup3r-S3cret%21@127.0.0.1:{server.port}/?authSource=admin"
    r = run_cli("ingest", str(rag.nodes_file), "--db", uri, "--name", name)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "mongodb://bob:***@127.0.0.1" in r.stderr and "check the user and password" in r.stderr
    assert "Sup3r-S3cret" not in r.stdout + r.stderr

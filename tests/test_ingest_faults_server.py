"""Ingest faults on a real MongoDB wire-protocol server (SecantusDB daemons on 127.0.0.1): two
ingests at once (one source; two sources into one name), the server killed and restarted on its
storage mid-load, and a short outage ridden out. Each ends exact or fails cleanly, resumable."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lsdgraph import _ingest as ingest_mod
from lsdgraph._core import schema
from lsdgraph._stores import mongo as store_mod

from conftest import run_cli, subprocess_env
from servers import REPO, free_port, unavailable, wait_for_ping

pytestmark = [pytest.mark.server, pytest.mark.slow]


class Daemon:
    """A secantusd-py process of this test's own, which can be killed and restarted on its storage."""

    def __init__(self, storage: Path):
        self.exe = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
        if not Path(self.exe).exists():
            unavailable("secantusd-py is not installed (pip install secantusdb, a test dependency)")
        self.storage, self.port, self.proc = storage, free_port(), None
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> Daemon:
        log = open(self.storage.parent / f"secantusd-{self.port}.log", "ab")
        self.proc = subprocess.Popen([self.exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path",
                                      str(self.storage), "--log-level", "WARNING"], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_for_ping(self.uri, 60, self.proc):
            unavailable(f"secantusd-py did not answer on port {self.port}")
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "secantus").start()
    yield d
    d.stop()


def client(uri):
    import pymongo

    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000)


def distinct(coll, fields) -> int:
    return next(coll.aggregate([{"$group": {"_id": {f: f"${f}" for f in fields}}}, {"$count": "n"}]))["n"]


def spawn(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lsdgraph.cli", *args], env=env or subprocess_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, seconds=60.0, what="a condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    pytest.fail(f"no {what} within {seconds} s")


def test_two_ingests_of_one_source_at_once_end_exact(dumps, server_db):
    server, name = server_db
    rag = dumps.rag(n_nodes=2500, per_node=2)
    args = ("ingest", str(dumps.root), "--db", server.uri, "--name", name, "--batch-docs", "100")
    first = spawn(*args)
    with client(server.uri) as c:
        wait_for(lambda: (c[name][schema.META].find_one({"_id": "nodes"}) or {}).get("documents", 0) > 0,
                 what="progress of the first ingest")
        second = spawn(*args)
        outs = [p.communicate(timeout=300) for p in (first, second)]
        assert [p.returncode for p in (first, second)] == [0, 0], [o[1] for o in outs]
        stdout = outs[1][0]
        assert "waiting" in stdout and "for the load by pid" in stdout
        assert "already loaded" in stdout
        db = c[name]
        assert db.nodes.count_documents({}) == distinct(db.nodes, ("id",)) == len(rag.ids)
        edges = db.edges_hist_quant_75
        assert edges.count_documents({}) == distinct(edges, ("u", "v")) == len(rag.u)
        assert edges.count_documents({"u_z": {"$exists": True}, "v_z": {"$exists": True}}) == len(rag.u)
        for rec in db[schema.META].find():
            assert rec["status"] == "complete" and rec["loaded"] == rec["documents"] and "lease" not in rec
        assert not [n for n in db.list_collection_names() if n.startswith(schema.STAGING_PREFIX)]


def test_two_sources_into_one_name_at_once_never_mix(dumps, server_db):
    server, name = server_db
    a = dumps.rag("a", n_nodes=2000)
    b = dumps.rag("b", n_nodes=1500)
    first = spawn("ingest", str(a.folder), "--db", server.uri, "--name", name, "--batch-docs", "100")
    with client(server.uri) as c:
        wait_for(lambda: (c[name][schema.META].find_one({"_id": "nodes"}) or {}).get("documents", 0) > 0,
                 what="progress of the first ingest")
        second = spawn("ingest", str(b.folder), "--db", server.uri, "--name", name, "--batch-docs", "100")
        (_, err_a), (out_b, err_b) = first.communicate(timeout=300), second.communicate(timeout=300)
        assert first.returncode == 0, err_a
        assert second.returncode == 1 and len(err_b.splitlines()) == 1
        assert "differs from this file; pass --drop" in err_b and "(and 1 more failed files)" in err_b
        assert "not loaded: its nodes (nodes) failed above" in out_b
        db = c[name]
        pos = {int(i): tuple(p) for i, p in zip(a.ids, a.positions, strict=True)}
        assert db.nodes.count_documents({}) == len(a.ids)
        assert db.edges_hist_quant_75.count_documents({}) == len(a.u)
        for e in db.edges_hist_quant_75.find():
            assert (e["u_z"], e["u_y"], e["u_x"]) == pos[e["u"]] and (e["v_z"], e["v_y"], e["v_x"]) == pos[e["v"]]


def test_server_killed_mid_load_fails_cleanly_and_after_a_restart_the_rerun_is_exact(dumps, daemon):
    rag = dumps.rag(n_nodes=3000, per_node=2)
    name = "restart"
    env = subprocess_env(LSDGRAPH_SERVER_TIMEOUT_MS="300")
    args = ("ingest", str(dumps.root), "--db", daemon.uri, "--name", name, "--batch-docs", "100")
    p = spawn(*args, env=env)
    with client(daemon.uri) as c:
        wait_for(lambda: (c[name][schema.META].find_one({"_id": "edges_hist_quant_75"}) or {}).get("documents", 0)
                 > 1000, 120, "progress on the edges")
    daemon.kill()
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    assert len(err.splitlines()) == 1 and "lost MongoDB at" in err and "rerun the same command to resume" in err
    daemon.start()
    with client(daemon.uri) as c:
        rec = c[name][schema.META].find_one({"_id": "edges_hist_quant_75"})
        assert rec["status"] in ("loading", "failed") and "edges_hist_quant_75" not in c[name].list_collection_names()
    r = run_cli(*args, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    with client(daemon.uri) as c:
        db = c[name]
        assert db.nodes.count_documents({}) == distinct(db.nodes, ("id",)) == len(rag.ids)
        edges = db.edges_hist_quant_75
        assert edges.count_documents({}) == distinct(edges, ("u", "v")) == len(rag.u)
        assert edges.count_documents({"u_z": {"$exists": True}}) == len(rag.u)
        for rec in db[schema.META].find():
            assert rec["status"] == "complete" and rec["loaded"] == rec["documents"] - rec["duplicates"]


def test_a_server_restart_within_the_retry_window_is_ridden_out(dumps, daemon):
    rag = dumps.rag(n_nodes=3000, per_node=1)
    name = "blip"
    st = store_mod.connect(daemon.uri, timeout_ms=500)
    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def insert_docs(self, coll, docs, what):
        calls["n"] += 1
        if calls["n"] == 6:  # the server goes down for about 2 s, then comes back on its storage
            daemon.kill()
            threading.Timer(2.0, daemon.start).start()
        return real(self, coll, docs, what)

    store_mod.Store.insert_docs = insert_docs
    try:
        reports = ingest_mod.ingest(str(dumps.root), name=name, quiet=True, batch_docs=200, store=st)
    finally:
        store_mod.Store.insert_docs = real
    assert [r.status for r in reports] == ["complete", "complete"]
    with client(daemon.uri) as c:
        db = c[name]
        assert db.nodes.count_documents({}) == distinct(db.nodes, ("id",)) == len(rag.ids)
        assert db.edges_hist_quant_75.count_documents({}) == len(rag.u)


def _kill_mid_load(args, uri, name, coll="nodes", above=300):
    p = spawn(*args, "--quiet")
    with client(uri) as c:
        wait_for(lambda: (c[name][schema.META].find_one({"_id": coll}) or {}).get("documents", 0) > above, 120,
                 f"progress on {coll}")
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)


def test_a_shortfall_between_a_kill_and_the_rerun_is_loaded_again_on_a_server(dumps, server_db):
    server, name = server_db
    rag = dumps.rag(n_nodes=4000, per_node=1)
    args = ("ingest", str(rag.nodes_file), "--db", server.uri, "--name", name, "--batch-docs", "100")
    _kill_mid_load(args, server.uri, name)
    with client(server.uri) as c:
        staged = c[name][schema.STAGING_PREFIX + "nodes"]
        gone = [d["_id"] for d in staged.find({}, {"_id": 1}).limit(25)]
        staged.delete_many({"_id": {"$in": gone}})  # what a restart that lost writes leaves
    r = run_cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "25 documents missing from staging were loaded again" in r.stdout
    with client(server.uri) as c:
        db = c[name]
        assert db.nodes.count_documents({}) == distinct(db.nodes, ("id",)) == len(rag.ids)
        rec = db[schema.META].find_one({"_id": "nodes"})
        assert rec["status"] == "complete" and rec["loaded"] == len(rag.ids) and rec["duplicates"] == 0


def test_a_file_changed_under_a_resume_is_loaded_again_on_a_server(dumps, server_db):
    import os

    import bson

    server, name = server_db
    rag = dumps.rag(n_nodes=4000, per_node=1)
    args = ("ingest", str(rag.nodes_file), "--db", server.uri, "--name", name, "--batch-docs", "100")
    _kill_mid_load(args, server.uri, name)
    st = rag.nodes_file.stat()
    docs = bson.decode_all(rag.nodes_file.read_bytes())
    for d in docs:
        d["center_x"] += 3.0  # the same size and date, other content
    rag.nodes_file.write_bytes(b"".join(bson.encode(d) for d in docs))
    os.utime(rag.nodes_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = run_cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "the file changed since the interrupted load" in r.stdout
    with client(server.uri) as c:
        got = {d["_id"]: d["center_x"] for d in c[name].nodes.find({}, {"center_x": 1})}
    assert got == {d["_id"]: d["center_x"] for d in docs}

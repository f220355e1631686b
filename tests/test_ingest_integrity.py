"""Ingest integrity on the in-process store: a load never ends ``complete`` with less (or other)
than its file holds. Shortfalls between a kill and a rerun, writes the server lost, foreign
documents, files changed under a resume, identical files with a new date, ``_id`` clashes, every
server call failing once, leases held, stale, dead and lost, and what ``info`` says of each."""
from __future__ import annotations

import datetime as dt
import os
import socket
import zlib

import bson
import numpy as np
import pytest
from pymongo import errors as perr

from lsdgraph import _ingest as ingest_mod
from lsdgraph import cli
from lsdgraph._core import retry, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest import lease as lease_mod
from lsdgraph._jobs import info as info_mod
from lsdgraph._stores import mongo as store_mod

from conftest import run_cli
from faults import Killed, kill_after

DB = "lsd"



@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)


def load(source, uri, **kw):
    kw.setdefault("quiet", True)
    return ingest_mod.ingest(str(source), db=uri, name=kw.pop("name", DB), **kw)


def database(uri, name=DB):
    return store_mod.connect(uri).db(name)


def record(uri, coll="nodes"):
    return database(uri)[schema.META].find_one({"_id": coll})


def staging(uri, coll="nodes"):
    return database(uri)[schema.STAGING_PREFIX + coll]


def file_docs(path) -> list[dict]:
    return bson.decode_all(path.read_bytes())


def assert_exact(uri, path, coll="nodes"):
    """The collection holds every document of the file, once, and the record says complete."""
    want = {str(d["_id"]): d for d in file_docs(path)}
    got = {str(d["_id"]): {k: v for k, v in d.items() if k in want[str(d["_id"])]}
           for d in database(uri)[coll].find()}
    assert got == want
    rec = record(uri, coll)
    assert rec["status"] == "complete" and rec["loaded"] == len(want) and "lease" not in rec
    assert rec["checksum"] == f"crc32:{zlib.crc32(path.read_bytes()):08x}"
    assert schema.STAGING_PREFIX + coll not in database(uri).list_collection_names()


# ---------------------------------------------------------------------------------------------
# exact accounting


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_shortfall_between_a_kill_and_the_rerun_is_loaded_again(dumps, mock_uri, monkeypatch, when):
    rag = dumps.rag(n_nodes=1000, per_node=1)
    with monkeypatch.context() as m:
        kill_after(m, 4, when)
        with pytest.raises(Killed):
            load(rag.nodes_file, mock_uri, batch_docs=100)
    lost = [d["_id"] for d in staging(mock_uri).find().limit(37)]
    staging(mock_uri).delete_many({"_id": {"$in": lost}})  # what a server restart can do
    (report,) = load(rag.nodes_file, mock_uri, batch_docs=100)
    assert report.status == "complete" and report.duplicates == 0 and report.loaded == len(rag.ids)
    assert "37 documents missing from staging were loaded again" in report.notes
    assert_exact(mock_uri, rag.nodes_file)


def test_writes_the_server_lost_without_a_kill_are_found_and_loaded_again(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=800, per_node=1)
    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def losing(self, coll, docs, what):
        res = real(self, coll, docs, what)
        calls["n"] += 1
        if calls["n"] == 3:  # acknowledged, then gone (an unjournaled write across a restart)
            coll.delete_many({"_id": {"$in": [d["_id"] for d in coll.find().limit(10)]}})
        return res

    monkeypatch.setattr(store_mod.Store, "insert_docs", losing)
    (report,) = load(rag.nodes_file, mock_uri, batch_docs=100)
    assert report.duplicates == 0 and "10 documents missing from staging were loaded again" in report.notes
    assert_exact(mock_uri, rag.nodes_file)


def test_a_server_that_keeps_losing_writes_never_ends_complete(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=500, per_node=1)
    real = store_mod.Store.insert_docs

    def losing(self, coll, docs, what):
        res = real(self, coll, docs, what)
        last = bson.decode(docs.raw(len(docs) - 1))["_id"]
        coll.delete_one({"_id": last})
        return res

    monkeypatch.setattr(store_mod.Store, "insert_docs", losing)
    with pytest.raises(LsdgraphError, match=r"staging holds \d+ of the file's 500 documents even after sending "
                                            r"them all again"):
        load(rag.nodes_file, mock_uri, batch_docs=100)
    rec = record(mock_uri)
    assert rec["status"] == "failed" and "nodes" not in database(mock_uri).list_collection_names()


def test_foreign_documents_in_staging_fail_then_the_rerun_starts_over(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=600, per_node=1)
    with monkeypatch.context() as m:
        kill_after(m, 2)
        with pytest.raises(Killed):
            load(rag.nodes_file, mock_uri, batch_docs=100)
    staging(mock_uri).insert_one({"id": 1, "center_z": 0.0, "center_y": 0.0, "center_x": 0.0})
    with pytest.raises(LsdgraphError, match=r"staging held 601 documents but the file has 600 .*something else "
                                            r"wrote into it; rerun"):
        load(rag.nodes_file, mock_uri, batch_docs=100)
    assert "nodes" not in database(mock_uri).list_collection_names()
    (report,) = load(rag.nodes_file, mock_uri, batch_docs=100)
    assert report.status == "complete" and not any("resumed" in n for n in report.notes)
    assert_exact(mock_uri, rag.nodes_file)


def test_duplicates_are_the_files_own_repeated_ids_across_a_resume(dumps, mock_uri, monkeypatch):
    """The replayed batch after a kill comes back as duplicate _ids: those are not the file's."""
    rag = dumps.rag(n_nodes=500, per_node=1)
    docs = file_docs(rag.nodes_file)
    path = dumps.write("twice/nodes.bson", b"".join(bson.encode(d) for d in docs[:350] + [docs[3]] + docs[350:]))
    with monkeypatch.context() as m:
        kill_after(m, 3, "after")  # batch 4 is stored, then the process dies before recording it
        with pytest.raises(Killed):
            load(path, mock_uri, batch_docs=100)
    (report,) = load(path, mock_uri, batch_docs=100)
    assert report.status == "complete" and report.documents == 501 and report.duplicates == 1
    assert report.loaded == 500 == database(mock_uri).nodes.count_documents({})
    assert record(mock_uri)["duplicates"] == 1


# ---------------------------------------------------------------------------------------------
# sources pinned by content


def test_a_file_rewritten_with_the_same_size_and_date_under_a_resume_starts_over(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=600, per_node=1)
    with monkeypatch.context() as m:
        kill_after(m, 3)
        with pytest.raises(Killed):
            load(rag.nodes_file, mock_uri, batch_docs=100)
    st = rag.nodes_file.stat()
    docs = file_docs(rag.nodes_file)
    for d in docs:
        d["center_z"] += 1.0  # same size, other content, and the old date put back
    rag.nodes_file.write_bytes(b"".join(bson.encode(d) for d in docs))
    os.utime(rag.nodes_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert rag.nodes_file.stat().st_size == st.st_size
    (report,) = load(rag.nodes_file, mock_uri, batch_docs=100)
    assert any("the file changed since the interrupted load" in n and "from the start" in n for n in report.notes)
    assert_exact(mock_uri, rag.nodes_file)


def test_a_file_that_only_grew_after_the_loaded_prefix_resumes(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=600, per_node=1)
    docs = file_docs(rag.nodes_file)
    rag.nodes_file.write_bytes(b"".join(bson.encode(d) for d in docs[:500]))
    with monkeypatch.context() as m:
        kill_after(m, 3)
        with pytest.raises(Killed):
            load(rag.nodes_file, mock_uri, batch_docs=100)
    rag.nodes_file.write_bytes(b"".join(bson.encode(d) for d in docs))  # the download went on
    (report,) = load(rag.nodes_file, mock_uri, batch_docs=100)
    assert any(n.startswith("resumed at byte") for n in report.notes)
    assert_exact(mock_uri, rag.nodes_file)


def test_a_touched_or_copied_identical_file_is_already_loaded(dumps, mock_uri, tmp_path):
    rag = dumps.rag(n_nodes=300)
    load(rag.nodes_file, mock_uri)
    os.utime(rag.nodes_file, ns=(1, 1_700_000_000_000_000_000))
    (report,) = load(rag.nodes_file, mock_uri)
    assert report.status == "already-complete" and any("same content" in n for n in report.notes)
    copy = tmp_path / "elsewhere" / "nodes.bson"
    copy.parent.mkdir()
    copy.write_bytes(rag.nodes_file.read_bytes())
    (report,) = load(copy, mock_uri)
    assert report.status == "already-complete"
    assert record(mock_uri)["source"] == str(copy)
    docs = file_docs(rag.nodes_file)
    docs[0]["center_x"] += 1
    copy.write_bytes(b"".join(bson.encode(d) for d in docs))
    with pytest.raises(LsdgraphError, match="differs from this file; pass drop=True"):
        load(copy, mock_uri)


def test_the_same_id_with_other_content_is_an_error_naming_both_documents(dumps, mock_uri):
    rag = dumps.rag(n_nodes=400)
    docs = file_docs(rag.nodes_file)
    clash = dict(docs[5], id=docs[5]["id"] + 10**9)  # same _id, another fragment
    docs = docs[:300] + [clash] + docs[300:]
    path = dumps.write("clash/nodes.bson", b"".join(bson.encode(d) for d in docs))
    offsets = np.cumsum([0] + [len(bson.encode(d)) for d in docs]).tolist()
    with pytest.raises(LsdgraphError) as e:
        load(path, mock_uri, batch_docs=100)
    assert (f"{path}: documents #5 (byte {offsets[5]}) and #300 (byte {offsets[300]}) share _id "
            f"ObjectId('{docs[5]['_id']}') with different content") in str(e.value)
    assert "on_duplicate='skip'" in str(e.value) and "\n" not in str(e.value)
    (report,) = load(path, mock_uri, batch_docs=100, on_duplicate="skip")
    assert report.loaded == 400 and report.duplicates == 1
    assert database(mock_uri).nodes.find_one({"_id": docs[5]["_id"]})["id"] == docs[5]["id"]  # the first kept


# ---------------------------------------------------------------------------------------------
# every server call of a load is retried


def _flaky(monkeypatch, cls, method: str, times: int = 1):
    real = getattr(cls, method)
    left = {"n": times}

    def flaky(self, *a, **k):
        if left["n"] > 0:
            left["n"] -= 1
            raise perr.AutoReconnect(f"connection reset during {method}")
        return real(self, *a, **k)

    monkeypatch.setattr(cls, method, flaky)
    return left


@pytest.mark.parametrize("method", ["insert_many", "update_one", "find_one_and_update", "find_one", "drop",
                                    "rename", "count_documents", "create_indexes", "aggregate",
                                    "list_collection_names"])
def test_every_server_call_of_a_load_rides_out_a_dropped_connection(dumps, mock_uri, monkeypatch, method):
    import mongomock

    rag = dumps.rag(n_nodes=400)
    docs = file_docs(rag.nodes_file)
    twin = dict(docs[7], _id=bson.ObjectId())  # a repeated key, so the aggregate runs too
    path = dumps.write("flaky/nodes.bson", b"".join(bson.encode(d) for d in docs + [twin]))
    cls = mongomock.database.Database if method == "list_collection_names" else mongomock.collection.Collection
    left = _flaky(monkeypatch, cls, method)
    (report,) = load(path, mock_uri, batch_docs=100)
    assert left["n"] == 0, f"{method} was never called"
    assert report.status == "complete" and report.loaded == 400 and report.duplicates == 1
    assert record(mock_uri)["status"] == "complete"


def test_a_lasting_outage_fails_with_one_line_and_a_resumable_record(dumps, mock_uri, monkeypatch):
    import mongomock

    rag = dumps.rag(n_nodes=500, per_node=1)
    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def insert_docs(self, coll, docs, what):
        calls["n"] += 1
        if calls["n"] == 3:
            _flaky(monkeypatch, mongomock.collection.Collection, "insert_many", times=100)
        return real(self, coll, docs, what)

    monkeypatch.setattr(store_mod.Store, "insert_docs", insert_docs)
    with pytest.raises(LsdgraphError, match=r"lost MongoDB at mongomock://.* after 5 retries .*rerun the same "
                                            r"command to resume"):
        load(rag.nodes_file, mock_uri, batch_docs=100)
    monkeypatch.undo()
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    rec = record(mock_uri)
    assert rec["status"] == "failed" and rec["documents"] == 200 and "lease" not in rec
    (report,) = load(rag.nodes_file, mock_uri, batch_docs=100)
    assert any(n.startswith("resumed at byte") for n in report.notes)
    assert_exact(mock_uri, rag.nodes_file)


# ---------------------------------------------------------------------------------------------
# leases


def _hold(uri, coll="nodes", host="elsewhere", pid=4242, age=0.0, **fields):
    beat = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age)
    database(uri)[schema.META].update_one({"_id": coll}, {"$set": {
        "lease": {"owner": "someone-else", "host": host, "pid": pid, "heartbeat": beat}, **fields}}, upsert=True)


def test_a_live_load_is_waited_for_and_wait_0_fails_at_once(dumps, mock_uri, capsys):
    rag = dumps.rag(n_nodes=100)
    _hold(mock_uri, status="loading")
    with pytest.raises(LsdgraphError, match=r"lsd\.nodes is being loaded by pid 4242 on elsewhere \(heartbeat "
                                            r"\d+ s ago\); rerun when it is done, or pass a longer wait="):
        load(rag.nodes_file, mock_uri, wait=0)
    code = cli.main(["ingest", str(rag.nodes_file), "--db", mock_uri, "--name", DB, "--wait", "0.3"])
    out, err = capsys.readouterr()
    assert code == 1 and len(err.splitlines()) == 1 and "after waiting 0.3 s" in err
    assert "waiting         nodes" in out and "for the load by pid 4242 on elsewhere" in out
    assert staging(mock_uri).count_documents({}) == 0  # the other owner's staging is never touched
    assert record(mock_uri)["lease"]["owner"] == "someone-else"


def test_a_lease_whose_heartbeat_stopped_is_taken_over(dumps, mock_uri):
    rag = dumps.rag(n_nodes=100)
    _hold(mock_uri, age=lease_mod.STALE_SECONDS + 5, status="loading")
    (report,) = load(rag.nodes_file, mock_uri, wait=0)
    assert report.status == "complete"
    assert_exact(mock_uri, rag.nodes_file)


def test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(dumps, mock_uri):
    rag = dumps.rag(n_nodes=100)
    dead = os.getpid() + 1_000_000  # no such process
    _hold(mock_uri, host=socket.gethostname(), pid=dead, status="loading")
    (report,) = load(rag.nodes_file, mock_uri, wait=0)
    assert report.status == "complete"


def test_a_load_whose_lease_was_taken_over_stops_and_leaves_it_alone(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=600, per_node=1)
    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def insert_docs(self, coll, docs, what):
        calls["n"] += 1
        if calls["n"] == 3:  # this process froze; another took the load over meanwhile
            _hold(mock_uri, host="other", pid=7)
        return real(self, coll, docs, what)

    monkeypatch.setattr(store_mod.Store, "insert_docs", insert_docs)
    with pytest.raises(LsdgraphError, match=r"the load was taken over by pid 7 on other .*leaves it alone"):
        load(rag.nodes_file, mock_uri, batch_docs=100)
    rec = record(mock_uri)
    assert rec["lease"]["owner"] == "someone-else" and rec["status"] == "loading"  # not marked failed by us


def test_info_shows_live_dead_and_failed_loads(dumps, mock_uri):
    rag = dumps.rag(n_nodes=100)
    load(rag.nodes_file, mock_uri)
    _hold(mock_uri, "edges_hist_quant_75", status="loading", size=1000, bytes_loaded=400)
    _hold(mock_uri, "edges_mean", age=3600, status="loading", size=1000, bytes_loaded=100)
    database(mock_uri)[schema.META].insert_one({"_id": "edges_max", "status": "failed",
                                                "error": "x.bson: document #3 at byte 9: bad"})
    info = info_mod.describe(mock_uri, DB)
    state = {c["name"]: (c["status"], c["detail"]) for c in info["collections"]}
    assert state["nodes"] == ("complete", None)
    assert state["edges_hist_quant_75"][0] == "loading"
    live = state["edges_hist_quant_75"][1]
    assert "live: pid 4242 on elsewhere" in live and "400 of 1,000 bytes" in live
    assert state["edges_mean"][0] == "dead" and "rerun the same ingest to resume" in state["edges_mean"][1]
    assert state["edges_max"] == ("failed", "x.bson: document #3 at byte 9: bad")
    text = "\n".join(info_mod.render(info))
    assert "dead" in text and "error: x.bson: document #3" in text


def test_two_sources_into_one_name_never_mix(dumps, mock_uri):
    """The second source's nodes differ: they fail, and its edges (whose positions would come
    from the first source's nodes) are not loaded either."""
    a = dumps.rag("a", n_nodes=200)
    b = dumps.rag("b", n_nodes=150, merge_functions=("hist_quant_75", "mean"))
    load(a.folder, mock_uri)
    with pytest.raises(LsdgraphError, match="differs from this file; pass drop=True"):
        load(b.folder, mock_uri)
    db = database(mock_uri)
    assert "edges_mean" not in db.list_collection_names()
    assert record(mock_uri, "edges_mean") is None  # never started: no record, no staging
    assert db.nodes.count_documents({}) == 200 and db.edges_hist_quant_75.count_documents({}) == len(a.u)


def test_edges_whose_nodes_were_replaced_get_their_positions_renewed(dumps, mock_uri):
    a = dumps.rag("a", n_nodes=200)
    load(a.folder, mock_uri)
    docs = file_docs(a.nodes_file)
    for d in docs:
        d["center_y"] += 5.0
    a.nodes_file.write_bytes(b"".join(bson.encode(d) for d in docs))
    lines = []
    ingest_mod.ingest(
        str(a.nodes_file),
        db=mock_uri,
        name=DB,
        drop=True,
        out=type("O", (), {"write": lambda self, s: lines.append(s), "flush": lambda self: None})(),
    )
    assert any("positions renewed" in line and "edges_hist_quant_75" in line for line in lines)
    by_id = {d["id"]: d for d in docs}
    for e in database(mock_uri).edges_hist_quant_75.find():
        assert e["u_y"] == by_id[e["u"]]["center_y"] and e["v_y"] == by_id[e["v"]]["center_y"]


def test_cli_wait_flag_and_one_line(dumps, mock_uri):
    rag = dumps.rag(n_nodes=50)
    r = run_cli("ingest", str(rag.nodes_file), "--db", str(rag.nodes_file.parent / "store"), "--wait", "-1")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--wait -1" in r.stderr


def test_nothing_secret_reaches_a_meta_record(dumps, mock_uri):
    from lsdgraph._core.errors import register_secret

    secret = "tok3n-Sup3rSecret"
    register_secret(secret)  # as S3Options does with an AWS session token
    path = dumps.write(f"from-{secret}/nodes.bson", b"\x05\x00\x00\x00\x01")
    with pytest.raises(LsdgraphError):
        load(path, mock_uri)
    rec = record(mock_uri)
    assert rec["status"] == "failed" and secret not in repr(rec) and "***" in rec["source"] + rec["error"]

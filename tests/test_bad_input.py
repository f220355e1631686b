"""Bad input: every case gets one line naming the file, where (byte offset or document number) and
what to do, a non-zero exit, a ``failed`` meta record, and no collection under its real name."""
from __future__ import annotations

import gzip
import re
import struct

import bson
import numpy as np
import pytest

from lsdgraph import _ingest as ingest_mod
from lsdgraph import cli
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._stores import mongo as store_mod

from conftest import run_cli, subprocess_env
from servers import free_port

N = 500        # documents in each file
BATCH = 100    # so that most errors come after several committed batches


def _offsets(docs: list[dict]) -> list[int]:
    sizes = [len(bson.encode(d)) for d in docs]
    return np.concatenate([[0], np.cumsum(sizes)]).tolist()


def _nodes(dumps) -> list[dict]:
    ids = dumps.fragment_ids(N)
    pos = dumps.rng.uniform(0, 1000, (N, 3))
    return bson.decode_all(dumps.nodes_bytes(ids, pos))


def _edges(dumps) -> list[dict]:
    ids = dumps.fragment_ids(N + 1)
    return bson.decode_all(dumps.edges_bytes(ids[:-1], ids[1:], dumps.rng.random(N)))


def _edit(docs, i, **changes):
    docs = [dict(d) for d in docs]
    for k, v in changes.items():
        if v is _DROP:
            docs[i].pop(k)
        else:
            docs[i][k] = v
    return docs


_DROP = object()


def _lying_prefix(docs, i, delta):
    data = bytearray(b"".join(bson.encode(d) for d in docs))
    at = _offsets(docs)[i]
    (length,) = struct.unpack_from("<i", data, at)
    struct.pack_into("<i", data, at, length + delta)
    return bytes(data)


def _cases(dumps):
    """(file name, bytes, expected message pattern) for each bad input."""
    nodes, edges = _nodes(dumps), _edges(dumps)
    off_n, off_e = _offsets(nodes), _offsets(edges)
    raw_nodes = b"".join(bson.encode(d) for d in nodes)

    def enc(docs):
        return b"".join(bson.encode(d) for d in docs)

    return {
        "truncated": ("nodes.bson", raw_nodes[:-7],
                      rf"document #{N - 1} at byte {off_n[N - 1]}: the data ends inside a document.*"
                      r"incomplete \(truncated\): download it again"),
        "prefix-too-big": ("nodes.bson", _lying_prefix(nodes, 250, +6),
                           rf"document #250 at byte {off_n[250]}: the length prefix says \d+ bytes but.*"
                           r"corrupt from here on: download it again"),
        "prefix-too-small": ("nodes.bson", _lying_prefix(nodes, 333, -9),
                             rf"document #333 at byte {off_n[333]}: .*corrupt from here on"),
        "missing-id": ("nodes.bson", enc(_edit(nodes, 321, id=_DROP)),
                       rf"document #321 at byte {off_n[321]} has no field `id`.*fix the file"),
        "missing-u": ("edges_mean.bson", enc(_edit(edges, 7, u=_DROP)),
                      rf"document #7 at byte {off_e[7]} has no field `u`"),
        "missing-v": ("edges_mean.bson", enc(_edit(edges, 499, v=_DROP)),
                      rf"document #499 at byte {off_e[499]} has no field `v`"),
        "float-id": ("nodes.bson", enc(_edit(nodes, 150, id=5.0)),
                     rf"document #150 at byte {off_n[150]} has `id` of type double \(5\.0\); fragment ids must be "
                     "int32/int64"),
        "string-id": ("nodes.bson", enc(_edit(nodes, 0, id="17")),
                      r"document #0 at byte 0 has `id` of type string \('17'\)"),
        "string-u": ("edges_mean.bson", enc(_edit(edges, 260, u="3")),
                     rf"document #260 at byte {off_e[260]} has `u` of type string"),
        "string-position": ("nodes.bson", enc(_edit(nodes, 420, center_y="12.5")),
                            rf"document #420 at byte {off_n[420]} has `center_y` of type string \('12.5'\); "
                            "positions must be numbers"),
        "string-score": ("edges_mean.bson", enc(_edit(edges, 101, merge_score="0.5")),
                         rf"document #101 at byte {off_e[101]} has `merge_score` of type string \('0.5'\); "
                         "it must be a number or null"),
        "negative-id": ("nodes.bson", enc(_edit(nodes, 42, id=-3)),
                        rf"document #42 at byte {off_n[42]} has a negative fragment id"),
        "empty": ("nodes.bson", b"", r"the file is empty \(0 bytes\).*check the download"),
        "not-bson": ("nodes.bson", b"id,center_z,center_y,center_x\n1,2,3,4\n" * 20,
                     r"document #0 at byte 0: .*does not look like a mongodump \.bson file"),
        "gzip": ("nodes.bson", gzip.compress(raw_nodes),
                 r"document #0 at byte 0: .*gzip-compressed: gunzip it first"),
        "json": ("edges_mean.bson", b'[{"u": 1, "v": 2}]',
                 r"document #0 at byte 0: .*does not look like a mongodump \.bson file"),
    }


CASES = ["truncated", "prefix-too-big", "prefix-too-small", "missing-id", "missing-u", "missing-v", "float-id",
         "string-id", "string-u", "string-position", "string-score", "negative-id", "empty", "not-bson", "gzip",
         "json"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_with_a_failed_record(case, dumps, mock_uri, capsys):
    name, data, pattern = _cases(dumps)[case]
    path = dumps.write(f"bad/{name}", data)
    code = cli.main(["ingest", str(path), "--db", mock_uri, "--name", "bad", "--batch-docs", str(BATCH)])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"lsdgraph ingest: error: {path}: ")
    assert re.search(pattern, lines[0]), lines[0]
    coll = name[:-5]
    db = store_mod.connect(mock_uri).db("bad")
    rec = db[schema.META].find_one({"_id": coll})
    assert rec["status"] == "failed" and rec["error"] in lines[0] and rec["source"] == str(path)
    assert coll not in db.list_collection_names()  # nothing half loaded looks complete
    assert rec["documents"] < N


def test_documents_before_the_error_stay_staged_and_the_fixed_file_loads(dumps, mock_uri):
    nodes = _nodes(dumps)
    path = dumps.write("nodes.bson", b"".join(bson.encode(d) for d in _edit(nodes, 321, id=_DROP)))
    with pytest.raises(LsdgraphError, match="document #321"):
        ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=BATCH)
    db = store_mod.connect(mock_uri).db("x")
    rec = db[schema.META].find_one({"_id": "nodes"})
    assert rec["documents"] == 300 and db[schema.STAGING_PREFIX + "nodes"].count_documents({}) == 300
    path.write_bytes(b"".join(bson.encode(d) for d in nodes))  # the user fixes the file
    (report,) = ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=BATCH)
    assert report.status == "complete" and report.loaded == N and db.nodes.count_documents({}) == N
    assert db[schema.META].find_one({"_id": "nodes"})["error"] is None


def test_one_bad_file_does_not_stop_the_others(dumps, mock_uri):
    rag = dumps.rag(n_nodes=100)
    dumps.write("rag/edges_mean.bson", b"garbage!" * 10)
    dumps.write("rag/edges_max.bson", b"")
    with pytest.raises(LsdgraphError, match=r"edges_max\.bson: the file is empty.*\(and 1 more failed files\)"):
        ingest_mod.ingest(str(dumps.root), db=mock_uri, name="x", quiet=True)
    db = store_mod.connect(mock_uri).db("x")
    assert db.nodes.count_documents({}) == len(rag.ids)
    assert db.edges_hist_quant_75.count_documents({}) == len(rag.u)
    statuses = {r["_id"]: r["status"] for r in db[schema.META].find()}
    assert statuses == {"nodes": "complete", "edges_hist_quant_75": "complete", "edges_mean": "failed",
                        "edges_max": "failed"}


# ---------------------------------------------------------------------------------------------
# duplicates


def _write(dumps, name, docs):
    return dumps.write(name, b"".join(bson.encode(d) for d in docs))


def test_same_id_twice_is_skipped_like_mongorestore(dumps, mock_uri):
    nodes = _nodes(dumps)
    path = _write(dumps, "nodes.bson", nodes[:200] + [nodes[10]] + nodes[200:])
    (report,) = ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=BATCH)
    assert report.status == "complete" and report.documents == N + 1
    assert report.loaded == N and report.duplicates == 1 and "1 duplicates skipped" in report.line()
    rec = store_mod.connect(mock_uri).db("x")[schema.META].find_one({"_id": "nodes"})
    assert rec["documents"] == N + 1 and rec["loaded"] == N and rec["duplicates"] == 1


def test_same_node_id_with_identical_content_keeps_one(dumps, mock_uri):
    nodes = _nodes(dumps)
    twin = dict(nodes[10], _id=bson.ObjectId())
    path = _write(dumps, "nodes.bson", nodes + [twin])
    (report,) = ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=BATCH)
    db = store_mod.connect(mock_uri).db("x")
    assert report.status == "complete" and report.loaded == N and report.duplicates == 1
    assert "1 documents with a repeated key removed" in report.notes
    assert db.nodes.count_documents({"id": nodes[10]["id"]}) == 1


@pytest.mark.parametrize("kind", ["nodes", "edges"])
def test_same_key_with_different_content_is_an_error_unless_skip(kind, dumps, mock_uri, capsys):
    if kind == "nodes":
        docs = _nodes(dumps)
        clash = dict(docs[40], _id=bson.ObjectId(), center_z=docs[40]["center_z"] + 1)
        name, key = "nodes.bson", rf"id = {docs[40]['id']}"
    else:
        docs = _edges(dumps)
        clash = dict(docs[40], _id=bson.ObjectId(), merge_score=0.999)
        name, key = "edges_mean.bson", rf"u = {docs[40]['u']}, v = {docs[40]['v']}"
    docs = docs[:300] + [clash] + docs[300:]
    path = _write(dumps, name, docs)
    off = _offsets(docs)
    code = cli.main(["ingest", str(path), "--db", mock_uri, "--name", "x", "--batch-docs", str(BATCH)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1
    assert re.search(rf"{re.escape(str(path))}: documents #40 \(byte {off[40]}\) and #300 \(byte {off[300]}\) "
                     rf"share {key} with different content.*--on-duplicate skip", err[0]), err[0]
    db = store_mod.connect(mock_uri).db("x")
    coll = name[:-5]
    assert db[schema.META].find_one({"_id": coll})["status"] == "failed"
    assert coll not in db.list_collection_names()

    code = cli.main(["ingest", str(path), "--db", mock_uri, "--name", "x", "--on-duplicate", "skip", "--quiet"])
    assert code == 0
    assert db[coll].count_documents({}) == N
    assert db[schema.META].find_one({"_id": coll})["status"] == "complete"


# ---------------------------------------------------------------------------------------------
# through a real process: exit code and exactly one line on stderr


def test_subprocess_bad_file_exits_1_with_one_line(dumps):
    name, data, pattern = _cases(dumps)["truncated"]
    path = dumps.write(name, data)
    r = run_cli("ingest", str(path), "--db", str(path.parent / "store"), "--batch-docs", str(BATCH))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("lsdgraph ingest: error: ")
    assert str(path) in r.stderr and re.search(pattern, r.stderr)
    assert "Traceback" not in r.stderr


def test_subprocess_missing_source_and_no_bson_files(tmp_path):
    r = run_cli("ingest", str(tmp_path / "nope.bson"), "--db", str(tmp_path / "store"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no such file or folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_cli("ingest", str(tmp_path / "empty"), "--db", str(tmp_path / "store"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no .bson files there" in r.stderr


@pytest.mark.parametrize("password", ["s3cr3t-Pa55", "p%40ss%3Aw0rd"])
def test_unreachable_server_is_one_line_without_the_password(dumps, password):
    rag = dumps.rag(n_nodes=20)
    uri = f"mongodb://lsduser:{password}@127.0.0.1:{free_port()}/?authSource=admin"
    r = run_cli("ingest", str(rag.nodes_file), "--db", uri,
                env=subprocess_env(LSDGRAPH_SERVER_TIMEOUT_MS="300"))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "cannot reach MongoDB at mongodb://lsduser:***@127.0.0.1" in r.stderr
    assert "start one" in r.stderr and "docker compose up -d" in r.stderr
    for secret in (password, "p@ss:w0rd", "p@ss"):
        assert secret not in r.stderr + r.stdout


def test_unreachable_server_in_process_says_how_to_start_one(capsys, monkeypatch):
    monkeypatch.setenv("LSDGRAPH_SERVER_TIMEOUT_MS", "200")
    monkeypatch.setenv("LSDGRAPH_MONGO_URI", f"mongodb://admin:hunter2hunter2@127.0.0.1:{free_port()}")
    with pytest.raises(LsdgraphError) as e:
        store_mod.connect()
    assert "hunter2hunter2" not in str(e.value) and "docker compose up -d" in str(e.value)
    assert "db=./lsdgraph-data" in str(e.value)  # the serverless alternative is named too


def test_cli_refuses_an_in_process_store_that_would_end_with_the_command(dumps):
    rag = dumps.rag()
    r = run_cli("ingest", str(rag.nodes_file), "--db", "mongomock://")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "ends with this command" in r.stderr and "--db ./lsdgraph-data" in r.stderr

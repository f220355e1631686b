"""Parallel ingest (issue 13, point 3): a large file split at document boundaries into byte ranges
loaded at once by worker processes, on SecantusDB (a real wire-protocol server). It must agree
with the one-process load (counts, ``_id``s, contents, indexes, records), survive a worker killed
mid-range (a rerun completes exact), let two concurrent ingests end with one load, reload a file
that changed between runs, and refuse bad ``--workers`` values in one line."""
from __future__ import annotations

import os
import subprocess
import sys
import zlib

import bson
import numpy as np
import pytest

import lsdgraph
from lsdgraph import cli
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest import parallel, ranges
from lsdgraph._io import bsonio
from lsdgraph._io.sources import list_files

from conftest import subprocess_env
from faults import kill_a_worker_after
from servers import REPO

SMALL = {"batch_docs": 100, "range_bytes": 20_000, "quiet": True}  # tiny files still split into many ranges
RECORD_FIELDS = ("status", "phase", "kind", "size", "fingerprint", "documents", "loaded", "duplicates", "removed",
                 "checksum", "crc32", "offset", "bytes_loaded", "endpoints", "positions", "nodes",
                 "nodes_checksum", "stats", "error", "ranges")


def client(server):
    return server.client()


def snapshot(c, name: str) -> dict:
    """Everything a load leaves: each collection's documents (by _id), its indexes, and the records."""
    db = c[name]
    out: dict = {"collections": sorted(db.list_collection_names())}
    for coll in out["collections"]:
        if coll == schema.META:
            out[coll] = {r["_id"]: {k: r.get(k) for k in RECORD_FIELDS} for r in db[coll].find()}
            continue
        out[coll] = {"docs": [bson.encode(d) for d in db[coll].find().sort("_id", 1)],
                     "indexes": {k: (v["key"], v.get("unique", False))
                                 for k, v in db[coll].index_information().items()}}
    return out


def distinct(coll, fields) -> int:
    got = list(coll.aggregate([{"$group": {"_id": {f: f"${f}" for f in fields}}}, {"$count": "n"}]))
    return got[0]["n"] if got else 0


def assert_exact(c, name: str, want: dict[str, int]) -> None:
    """Each collection holds exactly its file's documents once, its record complete, no leftovers."""
    db = c[name]
    for coll, n in want.items():
        unique = schema.kind_of(coll).unique
        assert db[coll].count_documents({}) == n == distinct(db[coll], unique), coll
        assert distinct(db[coll], ("_id",)) == n
    recs = list(db[schema.META].find())
    assert sorted(r["_id"] for r in recs) == sorted(want)  # no range records left
    for rec in recs:
        assert rec["status"] == "complete" and rec["loaded"] == rec["documents"] and "lease" not in rec
        assert rec.get("ranges") is None
    assert not [n for n in db.list_collection_names() if n.startswith(schema.STAGING_PREFIX)]


# ---------------------------------------------------------------------------------------------
# the split itself (no server)


def test_the_split_lands_on_document_boundaries_with_their_indexes(dumps):
    rag = dumps.rag(n_nodes=900, with_ids=False)
    data = rag.nodes_file.read_bytes()
    (f,) = list_files(str(rag.nodes_file))
    cut = ranges.split(f, 5, chunk_bytes=4096, min_documents=1)
    assert cut is not None and len(cut.ranges) == 5
    assert cut.documents == 900 and cut.crc == zlib.crc32(data) and cut.size == len(data)
    assert cut.ranges[0].start == 0 and cut.ranges[-1].end == len(data)
    first = 0
    for k, r in enumerate(cut.ranges):
        docs = bson.decode_all(data[r.start:r.end])  # whole documents, nothing cut
        assert r.index == k and r.first == first and r.documents == len(docs) > 0
        assert r.crc == zlib.crc32(data[r.start:r.end])
        assert [d["id"] for d in docs] == rag.ids[first:first + len(docs)].tolist()
        first += len(docs)
        if k:
            assert r.start == cut.ranges[k - 1].end
    # too few documents per range: joined onto their neighbours, boundaries and CRC-32s still exact
    few = ranges.split(f, 12, chunk_bytes=1000, min_documents=200)
    assert few is not None and all(r.documents >= 200 for r in few.ranges) and 2 <= len(few.ranges) <= 4
    for r in few.ranges:
        assert r.crc == zlib.crc32(data[r.start:r.end]) and len(bson.decode_all(data[r.start:r.end])) == r.documents
    # a truncated file is not split: the one-process load says what is wrong where
    bad = dumps.write("bad/nodes.bson", data[:-7])
    assert ranges.split(list_files(str(bad))[0], 4) is None
    assert ranges.count_for(10_000, 2, 20_000) == 1 and ranges.count_for(100_000, 2, 20_000) == 5
    assert ranges.count_for(100_000, 8, 20_000) == 8 and ranges.count_for(10**9, 1, 1) == 1


# ---------------------------------------------------------------------------------------------
# parallel = serial


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("source", ["without _ids", "synthetic"])
def test_a_parallel_ingest_agrees_with_the_serial_one(dumps, synthetic, server_db, source):
    server, name = server_db
    if source == "synthetic":
        folder = synthetic("hemi", "tiny", seed=5).rag_dir
    else:  # ingest numbers the documents: each range must know its first document's index
        folder = dumps.rag(n_nodes=1500, with_ids=False).folder
    with client(server) as c:
        serial = lsdgraph.ingest(str(folder), db=server.uri, name=name, batch_docs=100, quiet=True)
        want = snapshot(c, name)
        c.drop_database(name)
        par = lsdgraph.ingest(str(folder), db=server.uri, name=name, workers=2, **SMALL)
        got = snapshot(c, name)
        assert [(r.collection, r.status, r.documents, r.loaded, r.duplicates) for r in par] == \
            [(r.collection, r.status, r.documents, r.loaded, r.duplicates) for r in serial]
        for r in par:
            n = int(next(x for x in r.notes if "ranges loaded by 2 worker processes" in x).split()[0])
            assert n >= 3, r.notes
        assert got.keys() == want.keys()
        for coll in want:
            assert got[coll] == want[coll], coll
        assert_exact(c, name, {r.collection: r.documents for r in serial})


@pytest.mark.server
@pytest.mark.slow
def test_documents_sharing_an_id_keep_the_first_as_the_serial_load(dumps, server_db):
    """With on_duplicate='skip' the file's first document of an _id stays, whichever range got
    there first: here the later one opens range 1 while the earlier one ends range 0."""
    server, name = server_db
    n = 1500
    ids = dumps.fragment_ids(n)
    pos = dumps.rng.uniform(0, 9000, (n, 3))
    oids = dumps.oids(n)
    path = dumps.path("clash/nodes.bson")
    path.write_bytes(dumps.nodes_bytes(ids, pos))
    (f,) = list_files(str(path))
    cut = ranges.split(f, ranges.count_for(f.size, 2, SMALL["range_bytes"]), min_documents=SMALL["batch_docs"])
    k = cut.ranges[1].first
    oids[k] = oids[k - 1]            # the same _id, other content
    oids[k + 5] = oids[k + 4]        # and once more, inside one range
    cols = {"id": ("int", ids), "center_z": ("double", pos[:, 0]), "center_y": ("double", pos[:, 1]),
            "center_x": ("double", pos[:, 2])}
    path.write_bytes(bsonio.encode(cols, oids))
    with client(server) as c:
        serial = lsdgraph.ingest(str(path), db=server.uri, name=name, batch_docs=100, quiet=True, on_duplicate="skip")
        want = snapshot(c, name)
        c.drop_database(name)
        par = lsdgraph.ingest(str(path), db=server.uri, name=name, workers=2, on_duplicate="skip", **SMALL)
        assert snapshot(c, name) == want
        assert par[0].loaded == serial[0].loaded == n - 2 and par[0].duplicates == 2
        kept = c[name].nodes.find_one({"_id": bson.ObjectId(oids[k - 1].tobytes())})
        assert kept["id"] == ids[k - 1]


# ---------------------------------------------------------------------------------------------
# a worker killed mid-range


@pytest.mark.server
@pytest.mark.slow
def test_a_worker_killed_mid_range_is_resumed_by_a_rerun(dumps, server_db, monkeypatch, tmp_path):
    server, name = server_db
    rag = dumps.rag(n_nodes=2000, with_ids=False)
    kill_a_worker_after(monkeypatch, 3, tmp_path / "killed")
    with pytest.raises(LsdgraphError, match=r"a worker process loading its ranges stopped without a word.*rerun"):
        lsdgraph.ingest(str(rag.folder), db=server.uri, name=name, workers=2, **SMALL)
    assert (tmp_path / "killed").exists()
    with client(server) as c:
        db = c[name]
        rec = db[schema.META].find_one({"_id": "nodes"})
        assert rec["status"] == "failed" and rec["ranges"]["plan"] and "lease" not in rec
        parts = list(db[schema.META].find({"range_of": "nodes"}))
        assert parts and any(p["status"] == "loading" for p in parts)
        assert 0 < db[schema.STAGING_PREFIX + "nodes"].count_documents({}) < len(rag.ids)
        assert "nodes" not in db.list_collection_names()
        # info folds the range records into the file's line
        from lsdgraph._jobs.info import describe

        shown = describe(server.uri, name)["collections"]
        assert not any("$range" in c["name"] for c in shown)
        staged = next(c for c in shown if c["name"] == schema.STAGING_PREFIX + "nodes")
        assert f"of {len(parts)} byte ranges done (rerun to resume the rest)" in staged["detail"]
        monkeypatch.setattr(parallel, "WORKER_INIT", None)
        # the same bytes with a new date: the ranges are kept (the split made again matches)
        st = rag.nodes_file.stat()
        os.utime(rag.nodes_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        again = lsdgraph.ingest(str(rag.folder), db=server.uri, name=name, workers=2, **SMALL)
        nodes = next(r for r in again if r.collection == "nodes")
        assert nodes.status == "complete" and nodes.loaded == len(rag.ids) and nodes.duplicates == 0
        assert any("only the file's date or copy changed" in n for n in nodes.notes), nodes.notes
        assert any("interrupted ranges taken over at their committed bytes" in n for n in nodes.notes), nodes.notes
        assert_exact(c, name, {"nodes": len(rag.ids), "edges_hist_quant_75": len(rag.u)})
        # the same documents as one process gives them (the _ids numbered by file index)
        ids = sorted(d["_id"].binary for d in db.nodes.find({}, {"_id": 1}))
        prefix = zlib.crc32(f"{name}/nodes".encode()).to_bytes(4, "big")
        assert ids == [prefix + int(i).to_bytes(8, "big") for i in range(len(rag.ids))]
        got = {d["id"]: (d["center_z"], d["center_y"], d["center_x"]) for d in db.nodes.find()}
        assert got == {int(i): tuple(p) for i, p in zip(rag.ids, rag.positions.tolist(), strict=True)}


@pytest.mark.server
@pytest.mark.slow
def test_a_file_changed_between_runs_is_loaded_again(dumps, server_db, monkeypatch, tmp_path):
    server, name = server_db
    rag = dumps.rag(n_nodes=2000, with_ids=False)
    kill_a_worker_after(monkeypatch, 3, tmp_path / "killed")
    with pytest.raises(LsdgraphError, match="stopped without a word"):
        lsdgraph.ingest(str(rag.nodes_file), db=server.uri, name=name, workers=2, **SMALL)
    monkeypatch.setattr(parallel, "WORKER_INIT", None)
    ids = rag.ids[::2].copy()
    positions = rag.positions[::2] + 1.0
    rag.nodes_file.write_bytes(dumps.nodes_bytes(ids, positions, with_ids=False))
    out = lsdgraph.ingest(str(rag.nodes_file), db=server.uri, name=name, workers=2, **SMALL)
    assert out[0].status == "complete" and out[0].loaded == len(ids)
    assert any("the file changed since the interrupted load: loaded again from the start" in n
               for n in out[0].notes), out[0].notes
    with client(server) as c:
        assert_exact(c, name, {"nodes": len(ids)})
        got = {d["id"]: d["center_x"] for d in c[name].nodes.find()}
        assert got == dict(zip(ids.tolist(), positions[:, 2].tolist(), strict=True))


# ---------------------------------------------------------------------------------------------
# two at once


@pytest.mark.server
@pytest.mark.slow
def test_two_parallel_ingests_of_one_source_end_with_one_load(dumps, server_db):
    server, name = server_db
    rag = dumps.rag(n_nodes=2500, with_ids=False)
    args = [sys.executable, "-m", "lsdgraph.cli", "ingest", str(rag.folder), "--db", server.uri, "--name", name,
            "--workers", "2", "--range-bytes", "20000", "--batch-docs", "100"]
    procs = [subprocess.Popen(args, env=subprocess_env(), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    text = outs[0][0] + outs[1][0]
    assert text.count("ranges loaded by 2 worker processes") == 2, text  # each file loaded once
    assert text.count("already loaded") == 2, text
    with client(server) as c:
        assert_exact(c, name, {"nodes": len(rag.ids), "edges_hist_quant_75": len(rag.u)})
        edges = c[name].edges_hist_quant_75
        assert edges.count_documents({"u_z": {"$exists": True}, "v_z": {"$exists": True}}) == len(rag.u)


# ---------------------------------------------------------------------------------------------
# S3: ranges are ranged GETs pinned to the listed ETag


@pytest.mark.server
@pytest.mark.s3
@pytest.mark.slow
def test_a_parallel_ingest_from_s3(dumps, server_db, s3):
    server, name = server_db
    rag = dumps.rag(n_nodes=1500, with_ids=False)
    url = s3.upload_folder(rag.folder, f"public/{s3.prefix}rag")
    out = lsdgraph.ingest(url, db=server.uri, name=name, workers=2, endpoint_url=s3.endpoint, **SMALL)
    assert [r.status for r in out] == ["complete", "complete"]
    assert all(any("worker processes" in n for n in r.notes) for r in out)
    with client(server) as c:
        assert_exact(c, name, {"nodes": len(rag.ids), "edges_hist_quant_75": len(rag.u)})


# ---------------------------------------------------------------------------------------------
# mistakes


@pytest.mark.parametrize(("value", "phrase"), [
    ("0", "--workers 0: use a whole number of worker processes, 1 or more"),
    ("-2", "--workers -2: use a whole number of worker processes, 1 or more"),
    ("abc", "--workers abc: not a whole number; use 1 or more"),
    ("1.5", "--workers 1.5: not a whole number"),
])
def test_a_bad_workers_value_is_one_line(dumps, tmp_path, capsys, value, phrase):
    rag = dumps.rag(n_nodes=50)
    assert cli.main(["ingest", str(rag.folder), "--db", str(tmp_path / "s"), "--name", "x", "--workers", value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsdgraph ingest: error: ") and phrase in err[0], err
    assert not (tmp_path / "s").exists()  # before any work


def test_workers_on_a_store_of_one_process_is_one_line(dumps, tmp_path, capsys, mock_uri):
    rag = dumps.rag(n_nodes=50)
    assert cli.main(["ingest", str(rag.folder), "--db", str(tmp_path / "s"), "--name", "x", "--workers", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers 2: the local store lives in this one process" in err[0], err
    with pytest.raises(LsdgraphError, match=r"^workers=2: mongomock:// lives in this one process.*workers=1"):
        lsdgraph.ingest(str(rag.folder), db=mock_uri, name="x", workers=2)
    with pytest.raises(LsdgraphError, match=r"^workers=True: use a whole number"):
        lsdgraph.ingest(str(rag.folder), db=mock_uri, name="x", workers=True)
    with pytest.raises(LsdgraphError, match=r"^range_bytes=0: use a whole number of bytes"):
        lsdgraph.ingest(str(rag.folder), db=mock_uri, name="x", range_bytes=0)


def test_one_worker_loads_as_today(dumps, mock_uri):
    """workers=1 (the default) takes the one-process path: no split, no range records."""
    rag = dumps.rag(n_nodes=300)
    out = lsdgraph.ingest(str(rag.folder), db=mock_uri, name="x", workers=1, batch_docs=50, range_bytes=1000,
                          quiet=True)
    assert [r.status for r in out] == ["complete", "complete"]
    assert not any("ranges" in n for r in out for n in r.notes)
    assert np.all([r.loaded == r.documents for r in out])


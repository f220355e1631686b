"""Ingest into the local store keeps the guarantees of a MongoDB load: exact counts, duplicates judged
as unique indexes judge them, idempotent reruns, nothing published by a run that stops, one writer
per collection, and the same data as MongoDB holds (compared with mongomock); plus moving databases
between the stores."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pandas as pd
import pytest

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest import ingest
from lsdgraph._query.rag import open_rag
from lsdgraph._stores import api


def _rag(store_path, name="r"):
    return open_rag(str(store_path), name, edges="edges_hist_quant_75")


def test_counts_positions_and_records_match_mongodb(dumps, tmp_path, mock_uri):
    rag = dumps.rag(n_nodes=400)
    ingest(str(rag.folder), db=str(tmp_path / "store"), name="r", quiet=True)
    ingest(str(rag.folder), db=mock_uri, name="r", quiet=True)
    local, mock = _rag(tmp_path / "store"), open_rag(mock_uri, "r", edges="edges_hist_quant_75")
    for a, b in zip(local.read_arrays(), mock.read_arrays(), strict=True):
        key = ["id"] if "id" in a else ["u", "v"]
        pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True),
                                      check_like=True)
    rec = api.connect(str(tmp_path / "store")).record("r", "edges_hist_quant_75")
    assert rec["status"] == "complete" and rec["loaded"] == len(rag.u) and rec["positions"] is True
    assert local.bbox() == mock.bbox() and local.score_range() == mock.score_range()


def test_rerun_is_idempotent_and_a_changed_file_needs_drop(dumps, tmp_path, capsys):
    rag = dumps.rag(n_nodes=100)
    db = str(tmp_path / "store")
    ingest(str(rag.folder), db=db, name="r")
    again = ingest(str(rag.folder), db=db, name="r")
    assert {r.status for r in again} == {"already-complete"}
    rag.nodes_file.write_bytes(dumps.nodes_bytes(rag.ids[:10], rag.positions[:10]))
    with pytest.raises(LsdgraphError, match=r"differs from this file; pass drop=True"):
        ingest(str(rag.nodes_file), db=db, name="r", quiet=True)
    ingest(str(rag.nodes_file), db=db, name="r", quiet=True, drop=True)
    assert api.connect(db).count("r", "nodes") == 10


def test_repeated_keys_are_duplicates_or_an_error(dumps, tmp_path):
    rag = dumps.rag(n_nodes=60)
    raw = rag.nodes_file.read_bytes()
    dup = dumps.write("dup/nodes.bson", raw + dumps.nodes_bytes(rag.ids[:5], rag.positions[:5]))
    (r,) = ingest(str(dup), db=str(tmp_path / "a"), name="r", quiet=True)
    assert (r.documents, r.loaded, r.duplicates) == (65, 60, 5)
    moved = rag.positions[:5] + 1.0
    bad = dumps.write("bad/nodes.bson", raw + dumps.nodes_bytes(rag.ids[:5], moved))
    with pytest.raises(LsdgraphError, match=r"documents #0 and #60 share id with different content"):
        ingest(str(bad), db=str(tmp_path / "b"), name="r", quiet=True)
    assert "nodes" not in api.connect(str(tmp_path / "b")).collections("r")  # nothing half-written
    (r,) = ingest(str(bad), db=str(tmp_path / "b"), name="r", quiet=True, on_duplicate="skip")
    assert r.loaded == 60


def test_bad_document_publishes_nothing_and_names_the_byte(dumps, tmp_path):
    rag = dumps.rag(n_nodes=50)
    cut = dumps.write("cut/nodes.bson", rag.nodes_file.read_bytes()[:-7])
    with pytest.raises(LsdgraphError, match=r"nodes.bson: document #49 at byte [0-9,]+: the data ends inside"):
        ingest(str(cut), db=str(tmp_path / "s"), name="r", quiet=True)
    store = api.connect(str(tmp_path / "s"))
    assert store.collections("r") == []
    rec = store.record("r", "nodes")  # a failed record, as `info` shows for MongoDB loads
    assert rec["status"] == "failed" and "the data ends inside" in rec["error"]


def test_edges_need_their_nodes_in_the_store(dumps, tmp_path):
    rag = dumps.rag(n_nodes=50)
    with pytest.raises(LsdgraphError, match=r"needs 'nodes' before 'edges_hist_quant_75'"):
        ingest(str(rag.edges_files["hist_quant_75"]), db=str(tmp_path / "s"), name="r", quiet=True)


def _ingest_slowly(folder, db):
    import lsdgraph._ingest.local as local
    import lsdgraph._stores.local_write as w

    local.CHECKPOINT_ROWS = 100

    append = w.DatasetWriter.append

    def slow(self, columns):
        time.sleep(0.05)
        return append(self, columns)

    w.DatasetWriter.append = slow
    ingest(folder, db=db, name="r", quiet=True, batch_docs=20)


def test_a_killed_run_leaves_nothing_and_a_second_run_waits_then_completes(dumps, tmp_path):
    rag = dumps.rag(n_nodes=400)
    db = str(tmp_path / "s")
    ingest(str(rag.nodes_file), db=db, name="r", quiet=True)
    before = api.connect(db).count("r", "nodes")
    child = mp.get_context("fork").Process(target=_ingest_slowly,
                                           args=(str(rag.edges_files["hist_quant_75"]), db))
    child.start()
    time.sleep(1.0)
    # a second run while the first holds the collection: refused at once with --wait 0
    with pytest.raises(LsdgraphError, match=r"pid"):
        ingest(str(rag.edges_files["hist_quant_75"]), db=db, name="r", quiet=True, wait=0)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    store = api.connect(db)
    assert "edges_hist_quant_75" not in store.collections("r") and store.count("r", "nodes") == before
    (r,) = ingest(str(rag.edges_files["hist_quant_75"]), db=db, name="r", quiet=True)
    assert r.status == "complete" and store.count("r", "edges_hist_quant_75") == len(rag.u)
    assert any(n.startswith("resumed at byte ") for n in r.notes), r.notes  # from the last checkpoint
    # exactly what a load that was never stopped holds
    fresh = str(tmp_path / "fresh")
    ingest(str(rag.folder), db=fresh, name="r", quiet=True)
    a, b = (open_rag(x, "r", edges="edges_hist_quant_75").read_arrays()[1].sort_values(["u", "v"], ignore_index=True)
            for x in (db, fresh))
    pd.testing.assert_frame_equal(a, b)


def test_a_file_changed_under_a_stopped_load_is_loaded_again_from_the_start(dumps, tmp_path):
    rag = dumps.rag(n_nodes=400)
    db = str(tmp_path / "s")
    edges = rag.edges_files["hist_quant_75"]
    ingest(str(rag.nodes_file), db=db, name="r", quiet=True)
    child = mp.get_context("fork").Process(target=_ingest_slowly, args=(str(edges), db))
    child.start()
    time.sleep(1.0)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    raw = bytearray(edges.read_bytes())
    raw[20] ^= 0x01  # inside the first document's u: a different file with the same size
    edges.write_bytes(bytes(raw))
    (r,) = ingest(str(edges), db=db, name="r", quiet=True)
    assert any("loaded again from the start" in n for n in r.notes), r.notes
    assert api.connect(db).count("r", "edges_hist_quant_75") == len(rag.u)


def test_rows_are_clustered_so_small_rois_skip_row_groups(synthetic, tmp_path):
    data = synthetic("hemi", "small", seed=1)
    db = str(tmp_path / "s")
    ingest(str(data.rag_dir / "nodes.bson"), db=db, name="r", quiet=True)
    ingest(str(data.rag_dir / "edges_hist_quant_75.bson"), db=db, name="r", quiet=True)
    rag = _rag(tmp_path / "s")
    box = rag.bbox()
    from lsdgraph._core.roi import Roi

    small = Roi(box.begin, tuple(s / 4 for s in box.shape))  # a corner: 1/64 of the volume
    ex = rag.explain(small)
    assert ex[1]["row_groups_kept"] < ex[1]["row_groups"], ex  # edges by u: statistics rule some out
    nodes, _edges = rag.read_arrays(small)
    ids, pos = rag.node_arrays()
    inside = small.contains(pos)
    assert set(nodes["id"].tolist()) == set(ids[inside].tolist())


def lsd_roi(box, fraction):
    from lsdgraph._core.roi import Roi

    side = fraction ** (1 / 3)
    shape = tuple(s * side for s in box.shape)
    return Roi(tuple(b + (s - t) / 2 for b, s, t in zip(box.begin, box.shape, shape, strict=True)), shape)


def test_export_roi_and_ingest_back_into_mongodb(dumps, tmp_path, mock_uri, cli):
    rag = dumps.rag(n_nodes=300)
    ingest(str(rag.folder), db=mock_uri, name="r", quiet=True)
    src = open_rag(mock_uri, "r", edges="edges_hist_quant_75")
    roi = lsd_roi(src.bbox(), 0.3)
    from lsdgraph._ingest.copy import copy_database

    out = tmp_path / "exported"
    copy_database(api.connect(mock_uri), "r", api.connect(str(out)), "r", roi=roi)
    got = _rag(out).read_arrays()
    want = src.read_arrays(roi)
    assert set(got[0]["id"].tolist()) == set(want[0]["id"].tolist())
    assert set(zip(got[1]["u"].tolist(), got[1]["v"].tolist(), strict=True)) == \
        set(zip(want[1]["u"].tolist(), want[1]["v"].tolist(), strict=True))
    # plain Parquet: pandas and DuckDB read the files as they are
    import duckdb

    assert len(pd.read_parquet(out / "r" / "nodes")) == len(want[0])
    n = duckdb.sql(f"select count(*) from read_parquet('{out}/r/edges_hist_quant_75/*.parquet')").fetchall()[0][0]
    assert n == len(want[1])
    # and back into a MongoDB store, from the local store's database folder
    ingest(f"file:{out}/r", db=mock_uri, name="back", quiet=True)
    back = open_rag(mock_uri, "back", edges="edges_hist_quant_75")
    assert back.store.count("back", "nodes") == len(want[0])
    assert back.read_arrays(roi)[1].shape[0] == want[1].shape[0]
    r = cli("export", "--db", str(out), "--name", "r", "--to", str(tmp_path / "again"))
    assert r.returncode == 0 and "copied" in r.stdout


def test_demo_leaves_a_local_store_with_commands_that_work(tmp_path, cli):
    r = cli("demo", "--out", str(tmp_path / "d"), "--size", "tiny", timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("lsdgraph ")]
    assert [ln.split()[1] for ln in lines] == ["info", "query", "evaluate"]
    for line in lines[:2]:
        got = cli(*line.split()[1:])
        assert got.returncode == 0, (line, got.stderr)
    assert schema.LUT_PREFIX + "edges_hist_quant_75" in api.connect(str(tmp_path / "d" / "db")).collections(
        "lsdgraph_demo")


def test_store_values_that_are_neither_a_uri_nor_a_path_are_one_line(tmp_path, cli):
    with pytest.raises(LsdgraphError, match=r"db=localhost:27017: not a store; write mongodb://localhost:27017"):
        api.connect("localhost:27017")
    r = cli("index", "--db", str(tmp_path / "s"), "--name", "x")
    assert r.returncode == 1 and "local store" in r.stderr and r.stderr.count("\n") == 1


def test_the_environment_may_name_a_local_store(dumps, tmp_path, monkeypatch):
    rag = dumps.rag(n_nodes=40)
    monkeypatch.setenv("LSDGRAPH_MONGO_URI", str(tmp_path / "env-store"))
    ingest(str(rag.nodes_file), name="r", quiet=True)
    assert api.connect().count("r", "nodes") == 40

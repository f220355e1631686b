"""lsdgraph._ingest on the in-process mongomock store: what lands where, indexes, the meta record,
reruns, resuming after an interruption at each phase, naming, positions, progress, the CLI."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import zlib

import bson
import numpy as np
import pytest
from bson.objectid import ObjectId

from lsdgraph import _ingest as ingest_mod
from lsdgraph import cli
from lsdgraph._core import blocks, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.progress import Progress
from lsdgraph._ingest import keys as ingest_keys
from lsdgraph._ingest import load as ingest_load
from lsdgraph._io.sources import SourceFile
from lsdgraph._stores import mongo as store_mod

from conftest import subprocess_env
from faults import Killed, kill_after
from servers import REPO

DB = "lsd"
POS_FIELDS = schema.EDGE_POSITIONS["u"] + schema.EDGE_POSITIONS["v"] + tuple(blocks.EDGE_FIELDS.values())


def load(source, uri, **kw):
    kw.setdefault("quiet", True)
    return ingest_mod.ingest(str(source), db=uri, name=kw.pop("name", DB), **kw)


def database(uri, name=DB):
    return store_mod.connect(uri).db(name)


def file_docs(path) -> list[dict]:
    return bson.decode_all(path.read_bytes())


def snapshot(db) -> dict:
    return {c: sorted(db[c].find(), key=lambda d: str(d["_id"])) for c in sorted(db.list_collection_names())}


def index_specs(coll) -> dict:
    return {name: (list(info["key"]), bool(info.get("unique", False)))
            for name, info in coll.index_information().items() if name != "_id_"}


def expected_specs(kind_name: str, rename: dict | None = None) -> dict:
    rename = rename or {}
    return {s["name"]: ([(rename.get(f, f), d) for f, d in s["key"]], bool(s.get("unique", False)))
            for s in schema.indexes(kind_name)}



# ---------------------------------------------------------------------------------------------
# a plain load


def test_folder_load_counts_content_and_positions(dumps, mock_uri):
    rag = dumps.rag(n_nodes=800, merge_functions=("hist_quant_75", "mean"))
    _skel_nodes, _skel_edges, n_skel_edges = dumps.skeletons(folder="skel")
    reports = load(dumps.root, mock_uri, batch_docs=300)
    by_coll = {r.collection: r for r in reports}
    assert next(r.collection for r in reports) == "nodes"  # nodes first: edges copy their positions
    assert set(by_coll) == {"nodes", "edges_hist_quant_75", "edges_mean", "zebrafinch.nodes", "zebrafinch.edges"}
    assert all(r.status == "complete" and r.duplicates == 0 for r in reports)
    db = database(mock_uri)
    assert db.nodes.count_documents({}) == by_coll["nodes"].loaded == len(rag.ids)
    assert db.edges_mean.count_documents({}) == len(rag.u)
    assert db["zebrafinch.edges"].count_documents({}) == n_skel_edges
    assert db["zebrafinch.nodes"].count_documents({}) == by_coll["zebrafinch.nodes"].documents

    # every document arrives as it was in the file (nodes gain only their block key, edges their
    # endpoint positions and block keys)
    got_nodes = sorted(db.nodes.find(), key=lambda d: d["_id"])
    assert [{k: v for k, v in d.items() if k != blocks.NODE_FIELD} for d in got_nodes] == \
        sorted(file_docs(rag.nodes_file), key=lambda d: d["_id"])
    assert [d[blocks.NODE_FIELD] for d in got_nodes] == \
        blocks.encode([[d[f] for f in schema.NODE_POSITION] for d in got_nodes]).tolist()
    stored = {d["_id"]: d for d in db.edges_hist_quant_75.find()}
    for doc in file_docs(rag.edges_files["hist_quant_75"]):
        got = stored[doc["_id"]]
        assert {k: v for k, v in got.items() if k not in POS_FIELDS} == doc
        assert (got["u_z"], got["u_y"], got["u_x"]) == rag.position_of(doc["u"])
        assert (got["v_z"], got["v_y"], got["v_x"]) == rag.position_of(doc["v"])
    assert db.edges_hist_quant_75.count_documents({"merge_score": None}) == int(np.isnan(rag.score).sum())


def test_edges_naming_fragments_outside_the_dump_get_only_known_positions(dumps, mock_uri):
    rag = dumps.rag(n_nodes=50)
    outside = 10**12 + 7
    dumps.write("rag/edges_outside.bson", dumps.edges_bytes(np.array([rag.ids[0]]), np.array([outside]),
                                                           np.array([0.5])))
    load(dumps.root, mock_uri)
    edge = database(mock_uri).edges_outside.find_one()
    assert (edge["u_z"], edge["u_y"], edge["u_x"]) == rag.position_of(rag.ids[0])
    assert not any(f in edge for f in schema.EDGE_POSITIONS["v"])


def test_indexes_by_name_key_and_unique(dumps, mock_uri):
    dumps.rag(n_nodes=100)
    dumps.skeletons(folder="skel", n_nodes=60)
    load(dumps.root, mock_uri)
    db = database(mock_uri)
    assert index_specs(db.nodes) == expected_specs("rag_nodes")
    assert index_specs(db.edges_hist_quant_75) == expected_specs("rag_edges")
    assert index_specs(db["zebrafinch.nodes"]) == expected_specs("skeleton_nodes")
    assert index_specs(db["zebrafinch.edges"]) == expected_specs("skeleton_edges")
    # the names the issue asks for, spelled out (schema.json is the one definition)
    nodes = index_specs(db.nodes)
    assert nodes["position"] == ([("center_z", 1), ("center_y", 1), ("center_x", 1)], False)
    assert nodes["id"] == ([("id", 1)], True)
    edges = index_specs(db.edges_hist_quant_75)
    assert edges["incident"] == ([("u", 1), ("v", 1)], True)
    assert edges["merge_score"] == ([("merge_score", 1)], False)
    assert {"u_position", "v_position"} <= set(edges)
    assert index_specs(db["zebrafinch.nodes"])["neuron_id"] == ([("neuron_id", 1)], False)


def test_meta_record_and_daisy_meta(dumps, mock_uri):
    rag = dumps.rag(n_nodes=300)
    load(dumps.root, mock_uri, batch_docs=100)
    db = database(mock_uri)
    for path, coll in ((rag.nodes_file, "nodes"), (rag.edges_files["hist_quant_75"], "edges_hist_quant_75")):
        rec = db[schema.META].find_one({"_id": coll})
        data = path.read_bytes()
        assert rec["source"] == str(path) and rec["file"] == f"rag/{path.name}"
        assert rec["size"] == rec["bytes_loaded"] == rec["offset"] == len(data)
        assert rec["documents"] == rec["loaded"] == len(file_docs(path))
        assert rec["checksum"] == f"crc32:{zlib.crc32(data):08x}"
        assert rec["status"] == "complete" and rec["error"] is None
        assert rec["started"] <= rec["finished"]
    assert db[schema.META].find_one({"_id": "edges_hist_quant_75"})["positions"] is True
    # daisy's MongoDbGraphProvider reads the first document of `meta`
    first = db[schema.DAISY_META].find_one()
    assert first["directed"] is False
    assert not any(c.startswith(schema.STAGING_PREFIX) for c in db.list_collection_names())


def test_daisy_meta_is_kept_when_it_exists(dumps, mock_uri):
    dumps.rag(n_nodes=50)
    database(mock_uri)[schema.DAISY_META].insert_one({"directed": False, "total_roi_offset": [0, 0, 0]})
    load(dumps.root, mock_uri)
    docs = list(database(mock_uri)[schema.DAISY_META].find())
    assert len(docs) == 1 and docs[0]["total_roi_offset"] == [0, 0, 0]


def test_rerun_says_already_loaded_and_changes_nothing(dumps, mock_uri, capsys):
    dumps.rag(n_nodes=200)
    dumps.skeletons(folder="skel", n_nodes=40)
    load(dumps.root, mock_uri, quiet=False)
    capsys.readouterr()
    before = snapshot(database(mock_uri))
    reports = load(dumps.root, mock_uri, quiet=False)
    out = capsys.readouterr().out.splitlines()
    assert [r.status for r in reports] == ["already-complete"] * 4
    assert len(out) == 4 and all(line.startswith("already loaded") for line in out)
    assert snapshot(database(mock_uri)) == before


# ---------------------------------------------------------------------------------------------
# resuming


@pytest.mark.parametrize("when", ["before", "after"])
def test_resume_after_a_kill_between_batches(dumps, mock_uri, monkeypatch, when):
    rag = dumps.rag(n_nodes=1000, per_node=1)
    with monkeypatch.context() as m:
        kill_after(m, 3, when=when)
        with pytest.raises(Killed):
            load(rag.nodes_file, mock_uri, batch_docs=100)
    db = database(mock_uri)
    rec = db[schema.META].find_one({"_id": "nodes"})
    assert rec["status"] == "loading" and rec["documents"] == 300 and 0 < rec["offset"] < rec["size"]
    assert "nodes" not in db.list_collection_names()  # nothing half loaded looks complete
    staged = db[schema.STAGING_PREFIX + "nodes"].count_documents({})
    assert staged == (400 if when == "after" else 300)

    (report,) = load(rag.nodes_file, mock_uri, batch_docs=100)
    assert report.status == "complete" and f"resumed at byte {rec['offset']:,}" in report.notes
    assert report.documents == report.loaded == len(rag.ids) and report.duplicates == 0
    ids = [d["id"] for d in db.nodes.find({}, {"id": 1})]
    assert len(ids) == len(set(ids)) == len(rag.ids)
    final = db[schema.META].find_one({"_id": "nodes"})
    assert final["status"] == "complete"
    assert final["checksum"] == f"crc32:{zlib.crc32(rag.nodes_file.read_bytes()):08x}"
    assert schema.STAGING_PREFIX + "nodes" not in db.list_collection_names()


def test_resume_after_kills_during_index_build_and_after_rename(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=400)
    edges = rag.edges_files["hist_quant_75"]
    with monkeypatch.context() as m:
        def boom(*a, **k):
            raise Killed()
        m.setattr(ingest_keys, "create_indexes", boom)
        with pytest.raises(Killed):
            load(edges, mock_uri)
    db = database(mock_uri)
    assert db[schema.META].find_one({"_id": "edges_hist_quant_75"})["offset"] == edges.stat().st_size
    assert "edges_hist_quant_75" not in db.list_collection_names()

    with monkeypatch.context() as m:
        m.setattr(ingest_load, "_complete", lambda *a, **k: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            load(edges, mock_uri)
    rec = db[schema.META].find_one({"_id": "edges_hist_quant_75"})
    assert rec["status"] == "loading" and "edges_hist_quant_75" in db.list_collection_names()

    opened = []
    real_open = SourceFile.open
    monkeypatch.setattr(SourceFile, "open", lambda self, off=0: opened.append(off) or real_open(self, off))
    (report,) = load(edges, mock_uri)
    assert report.status == "complete" and "finished an interrupted load" in report.notes
    assert opened == []  # the complete collection was recognised, not loaded again
    assert report.loaded == db.edges_hist_quant_75.count_documents({}) == len(rag.u)
    assert db[schema.META].find_one({"_id": "edges_hist_quant_75"})["status"] == "complete"
    assert index_specs(db.edges_hist_quant_75) == expected_specs("rag_edges")


def test_documents_without_id_get_deterministic_ids_across_a_resume(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=600, with_ids=False)
    edges = rag.edges_files["hist_quant_75"]
    with monkeypatch.context() as m:
        kill_after(m, 2, when="after")  # batch 3 is stored, then the process dies
        with pytest.raises(Killed):
            load(edges, mock_uri, batch_docs=150)
    (report,) = load(edges, mock_uri, batch_docs=150)
    db = database(mock_uri)
    docs = list(db.edges_hist_quant_75.find())
    assert report.loaded == len(docs) == len(rag.u) and report.duplicates == 0
    assert all(isinstance(d["_id"], ObjectId) for d in docs)
    prefixes = {d["_id"].binary[:4] for d in docs}
    numbers = sorted(int.from_bytes(d["_id"].binary[4:], "big") for d in docs)
    assert len(prefixes) == 1 and numbers == list(range(len(rag.u)))  # _id = file prefix + doc number
    pairs = {(d["u"], d["v"]) for d in docs}
    assert len(pairs) == len(docs)


# ---------------------------------------------------------------------------------------------
# naming, kinds, collisions


def test_collection_names_kinds_and_collisions(dumps, mock_uri, capsys):
    a = dumps.rag(folder="ACLSD/roi_1", n_nodes=80)
    b = dumps.rag(folder="LSD/roi_1", n_nodes=90)
    dumps.skeletons(folder="gt/testing", n_nodes=30)
    dumps.write("system.indexes.bson", dumps.edges_bytes(np.array([1]), np.array([2]), np.array([0.1])))
    dumps.write("lsdgraph_meta.bson", bson.encode({"_id": "nodes", "status": "complete"}))
    dumps.write("notes.txt", b"not a dump")
    reports = load(dumps.root, mock_uri, quiet=False)
    out = capsys.readouterr().out
    kinds = {r.collection: (r.kind, r.status) for r in reports}
    assert kinds == {
        "ACLSD.roi_1.nodes": ("rag_nodes", "complete"), "LSD.roi_1.nodes": ("rag_nodes", "complete"),
        "ACLSD.roi_1.edges_hist_quant_75": ("rag_edges", "complete"),
        "LSD.roi_1.edges_hist_quant_75": ("rag_edges", "complete"),
        "zebrafinch.nodes": ("skeleton_nodes", "complete"), "zebrafinch.edges": ("skeleton_edges", "complete"),
        "system.indexes": ("other", "skipped"), "lsdgraph_meta": ("other", "skipped")}
    assert "skipped" in out and "system collection" in out
    db = database(mock_uri)
    assert "system.indexes" not in db.list_collection_names()
    assert db[schema.META].find_one({"_id": "nodes"}) is None  # the dump's bookkeeping was not loaded
    # a renamed RAG keeps its kind's indexes, and its edges take positions from their own folder
    assert index_specs(db["LSD.roi_1.nodes"]) == expected_specs("rag_nodes")
    for rag, prefix in ((a, "ACLSD.roi_1"), (b, "LSD.roi_1")):
        edges = db[f"{prefix}.edges_hist_quant_75"]
        assert edges.count_documents({}) == len(rag.u)
        e = edges.find_one({"u": int(rag.u[0]), "v": int(rag.v[0])})
        assert (e["u_z"], e["u_y"], e["u_x"]) == rag.position_of(rag.u[0])
        assert db[schema.META].find_one({"_id": f"{prefix}.edges_hist_quant_75"})["nodes"] == f"{prefix}.nodes"


def test_plan_order_and_default_names(tmp_path):
    files = [SourceFile(f"/x/{rel}", rel, 1, "f") for rel in
             ("b/edges_mean.bson", "b/nodes.bson", "a/zebrafinch.edges.bson", "a/zebrafinch.nodes.bson", "a/meta.bson")]
    planned = [(c, k.name) for _, c, k in ingest_mod.plan(files)]
    assert planned == [("nodes", "rag_nodes"), ("zebrafinch.nodes", "skeleton_nodes"), ("edges_mean", "rag_edges"),
                       ("meta", "other"), ("zebrafinch.edges", "skeleton_edges")]
    assert ingest_mod.default_db_name("s3://open-neurodata/funke/hemi/rags/ACLSD/hemi_roi_1/") == "hemi_roi_1"
    assert ingest_mod.default_db_name("s3://b/x/my.rag/nodes.bson") == "my_rag"
    (tmp_path / "fib25 roi").mkdir()
    assert ingest_mod.default_db_name(str(tmp_path / "fib25 roi" / "nodes.bson")) == "fib25_roi"
    assert ingest_mod.default_db_name(str(tmp_path / "fib25 roi")) == "fib25_roi"


def test_skeleton_edges_with_source_and_target(dumps, mock_uri):
    _, _edges, n = dumps.skeletons(folder="skel", n_nodes=100, endpoint_names=("source", "target"))
    reports = load(dumps.root, mock_uri)
    rep = next(r for r in reports if r.collection == "zebrafinch.edges")
    assert rep.status == "complete" and rep.loaded == n
    assert any("source/target instead of u/v" in note for note in rep.notes)
    db = database(mock_uri)
    assert index_specs(db["zebrafinch.edges"]) == expected_specs("skeleton_edges", {"u": "source", "v": "target"})
    assert db[schema.META].find_one({"_id": "zebrafinch.edges"})["endpoints"] == ["source", "target"]


def test_existing_collection_from_elsewhere_is_not_touched_without_drop(dumps, mock_uri):
    rag = dumps.rag(n_nodes=60)
    db = database(mock_uri)
    db.nodes.insert_one({"id": 1, "written_by": "daisy"})
    with pytest.raises(LsdgraphError, match=r"'nodes' already exists and was not loaded by lsdgraph.*drop=True"):
        load(rag.nodes_file, mock_uri)
    assert list(db.nodes.find({}, {"_id": 0})) == [{"id": 1, "written_by": "daisy"}]
    (report,) = load(rag.nodes_file, mock_uri, drop=True)
    assert report.status == "complete" and db.nodes.count_documents({}) == len(rag.ids)
    assert db.nodes.count_documents({"written_by": "daisy"}) == 0


def test_a_different_file_for_a_complete_collection_needs_drop(dumps, mock_uri):
    rag = dumps.rag(n_nodes=60)
    load(rag.nodes_file, mock_uri)
    smaller = dumps.nodes_bytes(rag.ids[:10], rag.positions[:10])
    rag.nodes_file.write_bytes(smaller)
    with pytest.raises(LsdgraphError, match=r"already holds a complete load .* differs from this file; pass drop=True"):
        load(rag.nodes_file, mock_uri)
    assert database(mock_uri).nodes.count_documents({}) == 60
    (report,) = load(rag.nodes_file, mock_uri, drop=True)
    assert report.loaded == database(mock_uri).nodes.count_documents({}) == 10


# ---------------------------------------------------------------------------------------------
# edges before nodes


def test_edges_loaded_before_nodes_get_positions_once_nodes_load(dumps, mock_uri, capsys):
    rag = dumps.rag(n_nodes=300)
    edges = rag.edges_files["hist_quant_75"]
    (rep,) = load(edges, mock_uri)
    db = database(mock_uri)
    assert any("positions are added once 'nodes' is loaded" in n for n in rep.notes)
    assert db.edges_hist_quant_75.count_documents({"u_z": {"$exists": True}}) == 0
    assert db[schema.META].find_one({"_id": "edges_hist_quant_75"})["positions"] is False

    load(rag.nodes_file, mock_uri, quiet=False)
    out = capsys.readouterr().out
    assert "positions added" in out and "edges_hist_quant_75" in out
    for e in db.edges_hist_quant_75.find():
        assert (e["u_z"], e["u_y"], e["u_x"]) == rag.position_of(e["u"])
        assert (e["v_z"], e["v_y"], e["v_x"]) == rag.position_of(e["v"])
    assert db[schema.META].find_one({"_id": "edges_hist_quant_75"})["positions"] is True
    assert index_specs(db.edges_hist_quant_75) == expected_specs("rag_edges")


def test_edges_interrupted_before_nodes_existed_all_get_positions(dumps, mock_uri, monkeypatch):
    rag = dumps.rag(n_nodes=500, per_node=1)
    nodes_bytes = rag.nodes_file.read_bytes()
    rag.nodes_file.unlink()
    with monkeypatch.context() as m:
        kill_after(m, 2)
        with pytest.raises(Killed):
            load(dumps.root, mock_uri, batch_docs=100)
    rag.nodes_file.write_bytes(nodes_bytes)  # the nodes arrive; the folder is loaded again
    reports = load(dumps.root, mock_uri, batch_docs=100)
    assert [r.status for r in reports] == ["complete", "complete"]
    edges = database(mock_uri).edges_hist_quant_75
    assert edges.count_documents({}) == len(rag.u)
    assert edges.count_documents({"u_z": {"$exists": True}, "v_z": {"$exists": True}}) == len(rag.u)


# ---------------------------------------------------------------------------------------------
# progress


class _Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_bar_shows_bytes_rate_and_eta():
    tty = _Tty()
    bar = Progress("edges_hist_quant_75", 2_000_000, stream=tty)
    bar.update(1_000_000, 5000)
    bar.close()
    assert "\r" in tty.text and tty.text.endswith("\n")
    assert "1.0 MB/2.0 MB" in tty.text and "50.0%" in tty.text and "docs/s" in tty.text and "ETA" in tty.text
    quiet = _Tty()
    bar = Progress("x", 100, stream=quiet, enabled=False)
    bar.update(100, 1)
    bar.close()
    assert quiet.text == ""


def test_ingest_progress_only_when_asked_or_on_a_terminal(dumps, mock_uri, capsys):
    rag = dumps.rag(n_nodes=100)
    load(rag.nodes_file, mock_uri, quiet=False, progress=True, name="a")
    err = capsys.readouterr().err
    assert "\r" in err and "docs/s" in err and "ETA" in err
    load(rag.nodes_file, mock_uri, quiet=False, name="b")  # stderr is not a terminal here
    load(rag.nodes_file, mock_uri, quiet=True, progress=True, name="c")
    assert capsys.readouterr().err == ""


def _run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; returns (exit code, what the terminal got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "lsdgraph.cli", *args], stdout=subprocess.DEVNULL,
                         stderr=slave, env=subprocess_env(), cwd=REPO)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(60), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_cli_progress_bar_on_a_terminal_and_quiet(dumps, tmp_path):
    rag = dumps.rag(n_nodes=100)
    code, tty = _run_on_a_terminal(["ingest", str(rag.nodes_file), "--db", str(tmp_path / "store"), "--name", "t"])
    assert code == 0 and "docs/s" in tty and "ETA" in tty and "nodes" in tty
    code, tty = _run_on_a_terminal(["ingest", str(rag.nodes_file), "--db", str(tmp_path / "store2"), "--name", "t",
                                    "--quiet"])
    assert code == 0 and tty == ""


# ---------------------------------------------------------------------------------------------
# the CLI in-process


def test_cli_main_loads_and_reruns(dumps, mock_uri, capsys):
    dumps.rag(n_nodes=120)
    assert cli.main(["ingest", str(dumps.root), "--db", mock_uri, "--name", "viacli"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("loaded") and "nodes" in out[0]
    assert cli.main(["ingest", str(dumps.root), "--db", mock_uri, "--name", "viacli"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith("already loaded") for line in out) and len(out) == 2
    assert database(mock_uri, "viacli").nodes.count_documents({}) == 120


def test_cli_db_defaults_to_the_environment(dumps, mock_uri, monkeypatch, capsys):
    rag = dumps.rag(n_nodes=40)
    assert store_mod.default_uri() == "mongodb://localhost:27017"
    monkeypatch.setenv("LSDGRAPH_MONGO_URI", mock_uri)
    assert store_mod.default_uri() == mock_uri
    assert cli.main(["ingest", str(rag.nodes_file), "--name", "fromenv", "--quiet"]) == 0
    assert capsys.readouterr().out == ""  # --quiet: no per-file lines either
    assert database(mock_uri, "fromenv").nodes.count_documents({}) == 40

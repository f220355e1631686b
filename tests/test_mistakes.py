"""Ordinary mistakes, as a new user makes them (the list in issue 12): each is one line on stderr
naming the value and the fix, exit status 1, before any work starts — never "internal error",
never a traceback, never a result that looks fine. Empty results say why."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsdgraph import cli
from lsdgraph._core.errors import LsdgraphError

OUTSIDE = "100000,100000,100000:200000,200000,200000"


@pytest.fixture(scope="module")
def day(synthetic, tmp_path_factory):
    """A local store holding the tiny synthetic RAG (three edges collections) and its skeletons,
    a second database with the RAG alone, and a folder to write into."""
    import lsdgraph

    src = synthetic("hemi", "tiny", seed=0)
    root = tmp_path_factory.mktemp("day")
    store = f"{root}/store"
    lsdgraph.ingest(str(src.rag_dir), db=store, name="hemi", quiet=True)
    lsdgraph.ingest(str(src.skeleton_dir), db=store, name="hemi", quiet=True)
    lsdgraph.ingest(str(src.rag_dir), db=store, name="rag_only", quiet=True)
    (root / "a_file").write_text("not a folder")
    return {"store": store, "rag": str(src.rag_dir), "skeletons": str(src.skeleton_dir),
            "fragments": str(src.fragments_path), "root": root}


def one_line(capsys, argv: list[str], code: int = 1) -> str:
    got = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code, err
    assert len(err) == 1, err
    assert "internal error" not in err[0] and "Traceback" not in err[0]
    return err[0]


# (what the user typed, a phrase the one line must hold); {store} etc. come from the fixture
MISTAKES = {
    "segment threshold 1.5": (["segment", "--db", "{store}", "--name", "hemi", "--thresholds", "0:2:0.5",
                               "--out", "{root}/seg"], "--thresholds 0:2:0.5: 1.5 is outside [0, 1]"),
    "segment threshold 7": (["segment", "--db", "{store}", "--name", "hemi", "--thresholds", "7",
                             "--out", "{root}/seg"], "7 is outside [0, 1]"),
    "evaluate threshold 1.5": (["evaluate", "--db", "{store}", "--name", "hemi", "--fragments", "{fragments}",
                                "--thresholds", "1.5", "--out", "{root}/ev"], "1.5 is outside [0, 1]"),
    "info --edges typo": (["info", "--db", "{store}", "--name", "hemi", "--edges", "edges_hist_quant_57"],
                          "--edges edges_hist_quant_57: no such edges collection"),
    "query --edges typo": (["query", "--db", "{store}", "--name", "hemi", "--edges", "edges_maen"],
                           "--edges edges_maen: no such edges collection"),
    "segment --roi outside the data": (["segment", "--db", "{store}", "--name", "hemi", "--roi", OUTSIDE,
                                        "--out", "{root}/seg"], "outside the nodes' bounding box"),
    "evaluate --roi outside the data": (["evaluate", "--db", "{store}", "--name", "hemi", "--fragments",
                                         "{fragments}", "--roi", OUTSIDE, "--out", "{root}/ev"],
                                        "outside the nodes' bounding box"),
    "query --out into a missing folder": (["query", "--db", "{store}", "--name", "hemi", "--out",
                                           "{root}/missing/x.csv"], "does not exist"),
    "query --out below a file": (["query", "--db", "{store}", "--name", "hemi", "--out", "{root}/a_file/x.csv"],
                                 "does not exist"),
    "segment --out below a file": (["segment", "--db", "{store}", "--name", "hemi", "--out", "{root}/a_file/seg"],
                                   "--out {root}/a_file/seg: cannot create the folder"),
    "segment --out is a file": (["segment", "--db", "{store}", "--name", "hemi", "--out", "{root}/a_file"],
                                "is a file; give a folder"),
    "relabel --out below a file": (["relabel", "{fragments}", "--lut", "{root}/lut.npz", "--out",
                                    "{root}/a_file/seg.zarr"], "cannot create the folder"),
    "segment --bson without nodes.bson": (["segment", "--bson", "{skeletons}", "--out", "{root}/seg"],
                                          "no nodes.bson there; point it at a RAG folder"),
    "segment --bson not a folder": (["segment", "--bson", "{root}/a_file", "--out", "{root}/seg"],
                                    "not a folder"),
    "info --bins 0": (["info", "--db", "{store}", "--name", "hemi", "--bins", "0"], "--bins 0: use 1 or more"),
    "info --bins negative": (["info", "--db", "{store}", "--name", "hemi", "--bins", "-3"], "--bins -3"),
    "evaluate --fragments is a file": (["evaluate", "--db", "{store}", "--name", "hemi", "--fragments",
                                        "{root}/a_file", "--out", "{root}/ev"], "a file, not a zarr array"),
    "relabel of a file": (["relabel", "{root}/a_file", "--lut", "{root}/lut.npz", "--out", "{root}/r.zarr"],
                          "a file, not a zarr array"),
    "ingest --name a/b": (["ingest", "{rag}", "--db", "{store}", "--name", "a/b", "-q"], "database name 'a/b'"),
    "ingest --workers 0": (["ingest", "{rag}", "--db", "{store}", "--name", "w", "--workers", "0", "-q"],
                           "--workers 0: use a whole number of worker processes, 1 or more"),
    "ingest --workers negative": (["ingest", "{rag}", "--db", "{store}", "--name", "w", "--workers", "-2", "-q"],
                                  "--workers -2: use a whole number"),
    "ingest --workers not a number": (["ingest", "{rag}", "--db", "{store}", "--name", "w", "--workers", "two",
                                       "-q"], "--workers two: not a whole number"),
    "a URI with a bad port": (["info", "--db", "mongodb://localhost:99999", "--name", "hemi"],
                              "--db mongodb://localhost:99999: not a usable MongoDB URI"),
    "a URI with a word for a port": (["query", "--db", "mongodb://localhost:port", "--name", "hemi"],
                                     "not a usable MongoDB URI"),
    "evaluate without skeletons": (["evaluate", "--db", "{store}", "--name", "rag_only", "--fragments",
                                    "{fragments}", "--out", "{root}/ev"], "with --skeletons-name DB"),
    "a LUT of Python objects": (["relabel", "{fragments}", "--lut", "{root}/pickled.npz", "--out",
                                 "{root}/r.zarr"], "holds Python objects"),
    "a LUT that is not one": (["relabel", "{fragments}", "--lut", "{root}/a_file", "--out", "{root}/r.zarr"],
                              "is not a readable .npz"),
    "shard-plan on a local store": (["shard-plan", "--db", "{store}", "--name", "hemi", "--shards", "4"],
                                    "is a local store: sharding is for a MongoDB cluster"),
    "shard-plan --shards 0": (["shard-plan", "--db", "{store}", "--name", "hemi", "--shards", "0"],
                              "--shards 0: give the number of shards, 1 or more"),
    "segment --db-luts typo": (["segment", "--db", "{store}", "--name", "hemi", "--db-luts", "0.3;0.5",
                                "--out", "{root}/seg"], "--db-luts '0.3;0.5': '0.3;0.5' is not a number"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_an_ordinary_mistake_is_one_line_before_any_work(day, capsys, case):
    argv, phrase = MISTAKES[case]
    np.savez(day["root"] / "pickled.npz", fragment_segment_lut=np.array([[1, 2]], dtype=object))
    before = sorted(p.name for p in Path(day["root"]).iterdir())
    line = one_line(capsys, [a.format(**day) for a in argv])
    assert line.startswith(f"lsdgraph {argv[0]}: error: ") and phrase.format(**day) in line, line
    assert sorted(p.name for p in Path(day["root"]).iterdir()) == before  # nothing written


def test_a_negative_roi_is_a_value_not_a_flag(day, capsys):
    assert cli.main(["query", "--db", day["store"], "--name", "hemi", "--roi", "-100,-100,-100:21000,21000,21000",
                     "--limit", "1"]) == 0
    assert "nodes" in capsys.readouterr().out


def test_an_empty_read_says_why(day, capsys):
    assert cli.main(["query", "--db", day["store"], "--name", "hemi", "--roi", OUTSIDE]) == 0
    captured = capsys.readouterr()
    assert "0 nodes, 0 edges" in captured.out
    assert "note: roi [100000,100000,100000 : 200000,200000,200000) lies outside the nodes' bounding box" \
        in captured.err


def test_query_says_what_it_wrote(day, capsys, tmp_path):
    assert cli.main(["query", "--db", day["store"], "--name", "hemi", "--what", "nodes", "--format", "csv",
                     "--out", str(tmp_path / "n.csv")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("wrote 1,006 nodes to ") and "edges" not in err


def test_an_ingest_error_is_said_once(day, capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "nodes.bson").write_bytes(Path(day["rag"], "nodes.bson").read_bytes()[:3000])
    assert cli.main(["ingest", str(bad), "--db", str(tmp_path / "s"), "--name", "x"]) == 1
    captured = capsys.readouterr()
    assert "truncated" in captured.err and "truncated" not in captured.out
    assert "FAILED" in captured.out and "(the error below)" in captured.out


@pytest.mark.parametrize("db", ["mongomock://", "local"])
def test_bad_documents_through_every_store_are_one_line(tmp_path, db):
    """The in-process store and the local store refuse what a real mongod refuses, in the loader's
    own words: an array ``_id``, a corrupt document."""
    import bson

    import lsdgraph

    uri = str(tmp_path / "s") if db == "local" else db
    folder = tmp_path / "arr"
    folder.mkdir()
    (folder / "nodes.bson").write_bytes(bson.encode({"_id": [1, 2], "id": 5, "center_z": 1.0, "center_y": 2.0,
                                                     "center_x": 3.0}))
    with pytest.raises(LsdgraphError, match=r"document #0 at byte 0 has an `_id` that is an array"):
        lsdgraph.ingest(str(folder), db=uri, name="arr", quiet=True)
    (folder / "nodes.bson").write_bytes(b"\x10\x00\x00\x00garbage-garbage!")
    with pytest.raises(LsdgraphError, match=r"nodes\.bson: document #0 at byte 0"):
        lsdgraph.ingest(str(folder), db=uri, name="arr2", quiet=True)


def test_library_errors_name_the_parameter(day):
    """Python callers read ``edges=``, not ``--edges``: the CLI rewrites them into its flags."""
    import lsdgraph

    with pytest.raises(LsdgraphError, match=r"^edges='edges_x': no such edges collection") as e:
        lsdgraph.open_rag(day["store"], "hemi", edges="edges_x")
    assert "--" not in str(e.value)
    with pytest.raises(LsdgraphError, match=r"thresholds='0:2:0.5'") as e:
        lsdgraph.segment(db=day["store"], name="hemi", thresholds="0:2:0.5", out=day["root"] / "never")
    assert "--" not in str(e.value)
    with pytest.raises(LsdgraphError, match=r"skeletons_name=DB"):
        lsdgraph.evaluate(db=day["store"], name="rag_only", fragments=day["fragments"], out=day["root"] / "never")


def test_unknown_neuron_ids_are_said(day):
    import lsdgraph

    sk = lsdgraph.open_skeletons(day["store"], "hemi")
    with pytest.warns(UserWarning, match=r"neuron_ids: 999 not in hemi\.hemi\.nodes"):
        nodes, _ = sk.arrays(neuron_ids=[1, 999])
    assert set(nodes["neuron_id"]) == {1}

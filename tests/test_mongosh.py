"""The mongo shell scripts (``lsdgraph/queries/``, shipped in the package; ``queries/`` in a checkout is a
symlink to it), run by the real ``mongosh`` against a real wire-protocol server (SecantusDB): each
script's output equals what the Python API returns on the same database (64-bit ids exact), with
``pretty = true`` as plain indented JSON; bad parameters and unknown ids give a non-zero exit and one
line on stderr, an empty result a note why; the scripts run from any folder, also from a
non-editable install; ``lsdgraph scripts`` says where they are and how to run them.

Data: a synthetic fib25 RAG (int32 and int64 ids mixed, as pymongo writes them) plus one fragment
whose id is above 2**53, its skeletons, and the LUTs ``lsdgraph segment`` writes (~10k documents)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bson
import numpy as np
import pytest
from bson import json_util
from bson.int64 import Int64
from bson.objectid import ObjectId

from lsdgraph._cli import scripts as scripts_cli
from lsdgraph._core import schema
from lsdgraph._core.roi import Roi
from lsdgraph._ingest import ingest
from lsdgraph._jobs import info, results, segment
from lsdgraph._query import rag as query
from lsdgraph._stores import mongo as store_mod
from lsdgraph._synth import synth

from servers import REPO

pytestmark = [pytest.mark.server, pytest.mark.mongosh]

EDGES = "edges_hist_quant_75"
THRESHOLDS = (0.3, 0.5)
BIG = 2**60 + 7  # a fragment id a double cannot hold


FOLDER = scripts_cli.FOLDER  # lsdgraph/queries, where `lsdgraph scripts` says they are


class Shell:
    """Runs ``mongosh URI/db --quiet --eval 'var k = v, ...' --file FOLDER/SCRIPT`` (in ``cwd``)."""

    def __init__(self, exe: str, uri: str):
        self.exe, self.uri = exe, uri

    def run(self, db: str, script: str, folder: Path = FOLDER, cwd: Path | None = None,
            **params) -> subprocess.CompletedProcess:
        args = [self.exe, f"{self.uri}/{db}", "--quiet"]
        if params:
            args += ["--eval", "var " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items())]
        args += ["--file", str(folder / script)]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd)

    def __call__(self, db: str, script: str, **params):
        p = self.run(db, script, **params)
        assert p.returncode == 0, p.stderr
        return json_util.loads(p.stdout)

    def many(self, db: str, calls: list[tuple[str, dict]]) -> list[subprocess.CompletedProcess]:
        """Several runs at once (each mongosh spends most of its time starting node)."""
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda c: self.run(db, c[0], **c[1]), calls))


class Loaded:
    def __init__(self, shell, uri, name, store, tree):
        self.shell, self.uri, self.name, self.store, self.tree = shell, uri, name, store, tree
        self.rag = query.open_rag(name=name, edges=EDGES, store=store)

    def js(self, script: str, **params):
        return self.shell(self.name, script, **params)


@pytest.fixture(scope="module")
def loaded(secantus, mongosh, tmp_path_factory):
    base = tmp_path_factory.mktemp("mongosh")
    r = synth(base / "synth", "fib25", "tiny", seed=4, fragments=False)
    folder = base / "load"
    folder.mkdir()
    for f in ("nodes.bson", f"{EDGES}.bson", "edges_mean.bson"):
        shutil.copy(r.rag_dir / f, folder / f)
    shutil.copytree(r.skeleton_dir, folder / "skel")
    # one more fragment, with an id above 2**53, and an edge to it
    first = bson.decode_all((r.rag_dir / "nodes.bson").read_bytes())[0]
    with open(folder / "nodes.bson", "ab") as f:
        f.write(bson.encode({"_id": ObjectId(), "id": Int64(BIG), "center_z": first["center_z"] + 1.5,
                             "center_y": first["center_y"], "center_x": first["center_x"]}))
    with open(folder / f"{EDGES}.bson", "ab") as f:
        f.write(bson.encode({"_id": ObjectId(), "u": first["id"], "v": Int64(BIG), "merge_score": 0.125,
                             "agglomerated": True}))
    name = f"sh_{uuid.uuid4().hex[:8]}"
    store = store_mod.connect(secantus.uri)
    assert all(x.status == "complete" for x in ingest(str(folder), store=store, name=name, quiet=True))
    res = segment.segment(store=store, name=name, edges=EDGES, thresholds=",".join(map(str, THRESHOLDS)),
                          out=base / "segment", lut_files=False, db_luts="all", quiet=True)
    yield Loaded(Shell(mongosh, secantus.uri), secantus.uri, name, store, res.tree)
    with secantus.client() as c:
        for db in (name, name + "_raw"):
            c.drop_database(db)


def nodes_of(docs) -> dict:
    return {int(n["id"]): (n["center_z"], n["center_y"], n["center_x"]) for n in docs}


def edges_of(docs) -> dict:
    return {(int(e["u"]), int(e["v"])): e["merge_score"] for e in docs}


def api_nodes(df) -> dict:
    return {i: tuple(p) for i, *p in df[["id", "center_z", "center_y", "center_x"]].itertuples(index=False)}


def api_edges(df) -> dict:
    return {(u, v): (None if s != s else s) for u, v, s in df[["u", "v", "merge_score"]].itertuples(index=False)}


def test_roi_js_equals_read_arrays(loaded):
    rag = loaded.rag
    box = rag.bbox()
    (z0, y0, x0), (z1, y1, x1) = box.begin, box.end
    tie = float(np.median(rag.edge_arrays(max_score=1.0)[2]))  # a stored score: <= keeps it
    cases = [  # (roi parameter, the same ROI for the API, maxScore, policy)
        ({"offset": [z0, y0, x0], "shape": [z1 - z0, y1 - y0, x1 - x0]}, box, None, "u"),
        (f"{z0 + 50},{y0 + 20},{x0}:{z1 - 60},{y1},{x1 - 30}",
         Roi((z0 + 50, y0 + 20, x0), (z1 - z0 - 110, y1 - y0 - 20, x1 - x0 - 30)), tie, "both"),
        ({"begin": [z0 + 100, y0, x0 + 40], "end": [z1, y1 - 100, x1]},
         Roi((z0 + 100, y0, x0 + 40), (z1 - z0 - 100, y1 - y0 - 100, x1 - x0 - 40)), 0.5, "either"),
        ({"offset": [None, y0 + 60, x0], "shape": [None, 150, 200]},
         {"offset": (None, y0 + 60, x0), "shape": (None, 150, 200)}, 0.4, "u"),
    ]
    calls = [("roi.js", {"roi": roi_js, "policy": policy, "edges": EDGES, **({} if t is None else {"maxScore": t})})
             for roi_js, _, t, policy in cases] + [("roi.js", {"roi": cases[0][0], "edges": EDGES})]
    runs = loaded.shell.many(loaded.name, calls)
    assert all(p.returncode == 0 for p in runs), [p.stderr for p in runs]
    outs = [json_util.loads(p.stdout) for p in runs]
    for (_, roi_api, t, policy), out in zip(cases, outs[:-1], strict=True):  # the last: the default policy
        nodes, edges = rag.read_arrays(roi_api, t, edges=policy)
        assert out["policy"] == policy and out["edges_collection"] == EDGES
        assert len(nodes) and len(edges)
        assert nodes_of(out["nodes"]) == api_nodes(nodes)
        assert edges_of(out["edges"]) == api_edges(edges)
        assert not any(f in e for e in out["edges"] for f in schema.EDGE_POSITIONS["u"] + schema.EDGE_POSITIONS["v"])
    # the whole-volume read held the fragment above 2**53, exactly
    whole = outs[-1]
    assert BIG in nodes_of(whole["nodes"]) and any(int(e["v"]) == BIG for e in whole["edges"])
    assert any(type(n["id"]) is int and n["id"] < 2**31 for n in whole["nodes"])  # int32 ids stay int32


def test_thresholds_js_equals_threshold_stats(loaded):
    tie = float(loaded.rag.edge_arrays(max_score=1.0)[2][7])
    out = loaded.js("thresholds.js", thresholds=[0.1, tie, 0.9], bins=5, edges=EDGES)
    assert out.pop("edges_collection") == EDGES
    expected = loaded.rag.threshold_stats([0.1, tie, 0.9], bins=5)
    assert expected["nulls"] > 0 and expected["counts"][1]["edges"] > 0
    assert out == expected


def test_skeleton_js_equals_the_api(loaded):
    sk = query.open_skeletons(name=loaded.name, store=loaded.store)
    nodes, _ = sk.arrays()
    neurons = sorted(set(nodes["neuron_id"].tolist()))
    for ids in (neurons[1], neurons[:3]):
        out = loaded.js("skeleton.js", neuronId=ids)
        n, e = sk.arrays(neuron_ids=ids)
        assert len(e) > 0
        assert {int(x["id"]): (x["neuron_id"], x["z"], x["y"], x["x"]) for x in out["nodes"]} == {
            i: tuple(rest) for i, *rest in n[["id", "neuron_id", "z", "y", "x"]].itertuples(index=False)}
        assert {(int(x["u"]), int(x["v"])) for x in out["edges"]} == set(zip(e.u.tolist(), e.v.tolist(), strict=True))


def test_summary_js_matches_lsdgraph_info(loaded):
    out = loaded.js("summary.js")
    described = info.describe(loaded.uri, loaded.name)
    mine = {c["name"]: (c["kind"], c["count"], sorted(c["indexes"]), c["status"]) for c in described["collections"]}
    theirs = {c["name"]: (c["kind"], c["count"], c["indexes"], c["status"]) for c in out["collections"]}
    assert theirs == mine and {"nodes", EDGES, "fib25.nodes", schema.LUT_PREFIX + EDGES} <= set(theirs)
    _ids, pos = loaded.rag.node_arrays()
    assert out["bbox"]["begin"] == described["bbox"]["begin"] == pos.min(0).tolist()
    assert out["bbox"]["end"] == pos.max(0).tolist()  # the largest centre; lsdgraph's box ends just past it
    assert {s["edges_collection"]: (s["min"], s["max"]) for s in out["scores"]} == {
        e: query.open_rag(name=loaded.name, edges=e, store=loaded.store).score_range()
        for e in (EDGES, "edges_mean")}


def test_segment_of_js_equals_the_luts(loaded):
    tree = loaded.tree
    for t in THRESHOLDS:
        seg = tree.cut(t)
        sizes = dict(zip(*np.unique(seg, return_counts=True), strict=True))
        merged = [int(f) for f, s in zip(tree.fragments, seg, strict=True) if f != s][:2]  # not their segment's root
        root = next(int(s) for s in sizes if sizes[s] > 2)                    # root of a larger segment
        assert int(seg[tree.fragments == BIG][0]) != BIG                      # merged at 0.125
        frags = [BIG] + merged + [root]
        # ids as decimal strings (exact above 2**53) and as numbers
        out = loaded.js("segment_of.js", fragment=[str(f) for f in frags[:2]] + frags[2:], threshold=t,
                        members=True, edges=EDGES)
        assert out["threshold"] == t and out["lut"] == schema.LUT_PREFIX + EDGES
        assert [int(r["fragment"]) for r in out["segments"]] == frags
        for row, f in zip(out["segments"], frags, strict=True):
            s = results.segment_of(loaded.store, loaded.rag.db, EDGES, f, t)
            assert int(row["segment"]) == s == int(seg[tree.fragments == f][0])
            assert sorted(map(int, row["members"])) == sorted(tree.fragments[seg == s].tolist())
            assert int(row["members"][0]) == s
    # a fragment of the RAG the LUTs do not name is a segment by itself
    seg = tree.cut(THRESHOLDS[0])
    ids, counts = np.unique(seg, return_counts=True)
    alone = int(ids[counts == 1][0])
    assert results.segment_of(loaded.store, loaded.rag.db, EDGES, alone, THRESHOLDS[0]) == alone
    out = loaded.js("segment_of.js", fragment=alone, threshold=THRESHOLDS[0], members=True, edges=EDGES)
    assert out["segments"] == [{"fragment": alone, "segment": alone, "members": [alone]}]


def test_create_indexes_js_on_a_database_without_indexes(loaded, secantus):
    raw = loaded.name + "_raw"
    with secantus.client() as c:
        for coll in ("nodes", EDGES, "fib25.nodes", "fib25.edges"):
            docs = list(c[loaded.name][coll].find({}).limit(200))
            c[raw][coll].insert_many(docs)
        assert all(set(c[raw][n].index_information()) == {"_id_"} for n in c[raw].list_collection_names())
    for _ in range(2):  # idempotent
        out = loaded.shell(raw, "create_indexes.js")
    assert out["database"] == raw
    with secantus.client() as c:
        for coll in ("nodes", EDGES, "fib25.nodes", "fib25.edges"):
            kind = schema.kind_of(coll).name
            got = {n: (list(map(tuple, i["key"])), bool(i.get("unique"))) for n, i in
                   c[raw][coll].index_information().items() if n != "_id_"}
            assert got == {s["name"]: ([tuple(k) for k in s["key"]], bool(s.get("unique")))
                           for s in schema.indexes(kind)}, coll
    assert {(x["collection"], x["index"]) for x in out["indexes"]} == {
        (coll, s["name"]) for coll in ("nodes", EDGES, "fib25.nodes", "fib25.edges")
        for s in schema.indexes(schema.kind_of(coll).name)}


BAD = [
    ("roi.js", {"roi": {"offset": [0, 0], "shape": [1, 1, 1]}}, "give three numbers"),
    ("roi.js", {"roi": {"offset": [0, 0, 0], "shape": [1, -1, 1]}}, "is negative on an axis"),
    ("roi.js", {"roi": "0,0,0:1,,1"}, "not numbers"),
    ("roi.js", {"roi": "0,0,0:1,1,1", "maxScore": "abc"}, "maxScore abc: give a number"),
    ("roi.js", {"roi": "0,0,0:1,1,1", "maxScore": 1.5}, "outside the stored range"),
    ("roi.js", {"roi": "0,0,0:1,1,1", "policy": "sideways"}, "policy sideways: use one of u, both, either"),
    ("roi.js", {"roi": "0,0,0:1,1,1", "edges": "edges_nope"}, "edges_hist_quant_75, edges_mean"),
    ("thresholds.js", {"bins": 0}, "bins 0"),
    ("segment_of.js", {"fragment": 1, "threshold": 0.42}, "no LUT at threshold 0.42"),
    ("segment_of.js", {"fragment": 1.5, "threshold": 0.5}, "give an integer"),
    ("skeleton.js", {}, "set neuronId"),
]


@pytest.fixture(scope="module")
def bad_runs(loaded):
    calls = [(script, params if script == "skeleton.js" else {"edges": EDGES, **params}) for script, params, _ in BAD]
    return loaded.shell.many(loaded.name, calls)


@pytest.mark.parametrize("case", range(len(BAD)), ids=[m for _, _, m in BAD])
def test_bad_parameters_exit_non_zero_with_one_line(bad_runs, case):
    p, message = bad_runs[case], BAD[case][2]
    assert p.returncode != 0 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr


def node_ids(loaded) -> np.ndarray:
    return np.sort(loaded.rag.node_arrays()[0])


def test_unknown_ids_are_errors_that_name_what_there_is(loaded):
    ids = node_ids(loaded)
    sk = query.open_skeletons(name=loaded.name, store=loaded.store)
    neurons = sorted(set(sk.arrays()[0]["neuron_id"].tolist()))
    n_skel = len(sk.arrays()[0])
    missing = max(neurons) + 1000
    assert 12345 not in set(ids.tolist())
    runs = loaded.shell.many(loaded.name, [
        ("skeleton.js", {"neuronId": missing}),
        ("skeleton.js", {"neuronId": [neurons[0], missing]}),      # one unknown in a list is enough
        ("skeleton.js", {"neuronId": "twelve"}),
        ("segment_of.js", {"fragment": 12345, "threshold": THRESHOLDS[0], "edges": EDGES}),
        ("segment_of.js", {"fragment": [int(ids[0]), 12345, "12346"], "threshold": THRESHOLDS[1]}),
        # the README's example, on data that does not hold its fragment or its threshold
        ("segment_of.js", {"fragment": 77322656253, "threshold": 0.46, "members": True}),
        ("segment_of.js", {"fragment": 77322656253, "threshold": THRESHOLDS[1], "members": True}),
    ])
    where = f"{loaded.name}.nodes ({len(ids)} fragments, ids {ids[0]} .. {ids[-1]})"
    expected = [
        f"no neuron {missing} in {loaded.name}.fib25.nodes ({n_skel} nodes, neuron_ids {neurons[0]} .. {neurons[-1]})",
        f"no neuron {missing} in {loaded.name}.fib25.nodes",
        'neuronId "twelve": give an integer',
        f"no fragment 12345 in {where}",
        f"no fragment 12345, 12346 in {where}",
        f"no LUT at threshold 0.46 in {schema.LUT_PREFIX}{EDGES}; it has: 0.3, 0.5",
        f"no fragment 77322656253 in {where}",
    ]
    for p, message in zip(runs, expected, strict=True):
        assert p.returncode != 0 and p.stdout == "", p.stdout
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (message, p.stderr)
    assert str(BIG) in where  # the range names the id above 2**53 exactly


def test_an_empty_roi_says_why(loaded):
    box = loaded.rag.bbox()
    (z0, y0, x0), (z1, y1, x1) = box.begin, box.end
    nodes, _ = loaded.rag.read_arrays(None)
    first = nodes.iloc[0]
    at = [float(first[f]) for f in schema.NODE_POSITION]
    runs = loaded.shell.many(loaded.name, [
        ("roi.js", {"roi": {"offset": [z1 + 10, y0, x0], "shape": [100, 100, 100]}, "edges": EDGES}),
        ("roi.js", {"roi": f"{z0 - 500},{y0},{x0}:{z0 - 400},{y1},{x1}"}),
        # one node's own box at a threshold below every score: nodes, no edge
        ("roi.js", {"roi": {"offset": at, "shape": [0.5, 0.5, 0.5]}, "maxScore": 0, "edges": EDGES}),
    ])
    for p in runs:
        assert p.returncode == 0, p.stderr
    outside = [json_util.loads(p.stdout) for p in runs[:2]]
    assert all(o["nodes"] == [] and o["edges"] == [] for o in outside)
    lo = ", ".join(f"{v:g}" for v in box.begin)
    for p in runs[:2]:
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("note: roi "), p.stderr
        assert "lies outside the nodes' bounding box" in lines[0] and f"box [{lo}] .. [" in lines[0], lines[0]
    assert loaded.rag.why_empty(Roi((z1 + 10, y0, x0), (100, 100, 100)))  # the API agrees it misses the data
    one = json_util.loads(runs[2].stdout)
    assert len(one["nodes"]) >= 1 and one["edges"] == []
    assert "but no edge of edges_hist_quant_75 with its u end there and merge_score <= 0" in runs[2].stderr


def test_pretty_prints_plain_indented_json(loaded):
    whole = {"roi": {"begin": [None, None, None], "end": [None, None, None]}, "edges": EDGES}
    runs = loaded.shell.many(loaded.name, [("roi.js", whole), ("roi.js", {**whole, "pretty": True}),
                                           ("summary.js", {}), ("summary.js", {"pretty": True})])
    assert all(p.returncode == 0 for p in runs), [p.stderr for p in runs]
    canonical, pretty, summary, summary_pretty = (p.stdout for p in runs)
    # the default: canonical Extended JSON, every number typed, on one line
    assert canonical.count("\n") == 1 and f'{{"$numberLong":"{BIG}"}}' in canonical and '"$numberInt"' in canonical
    # pretty: indented, plain numbers, the id above 2**53 with every digit; the same values
    for text in (pretty, summary_pretty):
        assert text.startswith("{\n  \"") and "$numberLong" not in text and "$numberInt" not in text
    plain = json.loads(pretty)
    assert BIG in {n["id"] for n in plain["nodes"]} and any(e["v"] == BIG for e in plain["edges"])
    assert json_util.loads(pretty) == json_util.loads(canonical)
    assert plain["roi"]["begin"] == [{"$numberDouble": "-Infinity"}] * 3  # JSON has no plain infinity
    assert json.loads(summary_pretty) == json_util.loads(summary)


def test_scripts_run_from_any_folder(loaded, tmp_path):
    """From another cwd: through the checkout's ``queries`` symlink and from the package folder."""
    assert (REPO / "queries").is_symlink() and (REPO / "queries").resolve() == FOLDER.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    expected = loaded.js("thresholds.js", thresholds=[0.5], bins=3)
    for folder in (REPO / "queries", FOLDER, Path(os.path.relpath(FOLDER, elsewhere))):
        p = loaded.shell.run(loaded.name, "thresholds.js", folder=folder, cwd=elsewhere, thresholds=[0.5], bins=3)
        assert p.returncode == 0, p.stderr
        assert json_util.loads(p.stdout) == expected


@pytest.mark.slow
def test_scripts_run_from_a_non_editable_install(loaded, tmp_path):
    """``pip install --target`` (a wheel, not the checkout): the scripts and schema.json are in the
    package, lsdgraph's ``scripts`` command points at them, and they run from anywhere."""
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    shutil.copytree(REPO / "lsdgraph", src / "lsdgraph", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(src)]
    p = subprocess.run(pip, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if p.returncode != 0:
        pytest.skip(f"pip could not build lsdgraph here: {p.stderr.strip().splitlines()[-1:]}")
    installed = site / "lsdgraph" / "queries"
    assert sorted(f.name for f in installed.glob("*.js")) == sorted(f.name for f in FOLDER.glob("*.js"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    code = "import argparse; from lsdgraph._cli import scripts; scripts.run(argparse.Namespace(path=True))"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                           check=True).stdout.strip()
    assert Path(where) == installed.resolve()
    shutil.rmtree(src)  # nothing of the checkout is left to lean on
    for script, params in (("summary.js", {}), ("segment_of.js", {"fragment": str(BIG), "threshold": THRESHOLDS[1]})):
        p = loaded.shell.run(loaded.name, script, folder=Path(where), cwd=Path("/"), **params)
        assert p.returncode == 0, p.stderr
        assert json_util.loads(p.stdout) == loaded.js(script, **params)


def test_lsdgraph_scripts_says_where_and_how(capsys):
    ap = argparse.ArgumentParser(prog="lsdgraph")
    scripts_cli.register(ap.add_subparsers())
    a = ap.parse_args(["scripts"])
    assert a.func(a) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(FOLDER) and (FOLDER / "roi.js").is_file() and (FOLDER.parent / "_core/schema.json").is_file()
    text = "\n".join(out)
    assert "npm install -g mongosh" in text and "URI=mongodb://localhost:27017 " in text and "$URI/hemi_roi1" in text
    assert "the server's connection string; the database is its path" in text and "pretty = true" in text
    listed = [line.split()[0] for line in out[out.index("scripts:") + 1:]]
    assert listed == sorted(f.name for f in FOLDER.glob("*.js") if f.name != "lib.js")
    assert all(len(line) <= 120 for line in out[out.index("scripts:") + 1:])
    a = ap.parse_args(["scripts", "--path"])
    assert a.func(a) == 0
    assert capsys.readouterr().out == f"{FOLDER}\n"
    help_text = ap.format_help()
    assert "scripts" in help_text


def test_the_scripts_ship_with_the_package():
    """pyproject's package data holds every script (and the schema they read)."""
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lsdgraph"]
    pkg = FOLDER.parent
    shipped = {p for pattern in data for p in pkg.glob(pattern)}
    assert set(FOLDER.glob("*.js")) <= shipped and pkg / "_core" / "schema.json" in shipped

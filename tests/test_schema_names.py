"""``schema.json`` is the only place for collection names, prefixes and index names: code looks
indexes up by their role (``schema.index_name`` in Python, ``indexName`` in the mongo shell
scripts) and collections by the schema's names, so renaming one is one edit."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import lsdgraph

PKG = Path(lsdgraph.__file__).parent
REPO = PKG.parent
SCHEMA = json.loads((PKG / "_core" / "schema.json").read_text())
# own_prefix is checked as a whole word only: it also starts names that are not collections
COLLECTION_NAMES = {v for k, v in SCHEMA["collections"].items() if k == "own_prefix" or not k.endswith("prefix")}
PREFIXES = {v for k, v in SCHEMA["collections"].items() if k.endswith("prefix") and k != "own_prefix"}
INDEX_NAMES = {spec["name"] for k, specs in SCHEMA["indexes"].items() if k != "about" for spec in specs}
PY_FILES = sorted(p for p in PKG.rglob("*.py") if p.name != "schema.py")  # schema.py reads the file: its keys
JS_FILES = sorted((PKG / "queries").glob("*.js"))  # the mongosh scripts ship in the package


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _index_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants handed to something that names an index: ``hint``/``name`` keywords, a
    ``.hint(...)`` / ``_hint(...)`` argument, a ``{"hint": ...}`` value."""
    found = []

    def literal(node):
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in INDEX_NAMES

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            named = [kw.value for kw in node.keywords if kw.arg == "hint"
                     or (kw.arg == "name" and "index" in fn.lower())]
            args = node.args if fn.lstrip("_").endswith("hint") else []
            found += [(n.lineno, n.value) for n in named + list(args) if literal(n)]
        elif isinstance(node, ast.Dict):
            found += [(v.lineno, v.value) for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and k.value == "hint" and literal(v)]
    return found


def _name_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants (not docstrings) that are a collection name of the schema or start with
    one of its prefixes."""
    skip = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            v = node.value
            if v in COLLECTION_NAMES or any(v.startswith(p) for p in PREFIXES):
                out.append((node.lineno, v))
    return out


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_python_names_no_index_or_collection(path):
    tree = ast.parse(path.read_text())
    leaks = _index_literals(tree) + _name_literals(tree)
    assert not leaks, (
        f"{path.relative_to(REPO)}: names from schema.json written out: {leaks}; use lsdgraph._core.schema"
    )


# index names in a .hint(...) / hint: / createIndex name:, and collection names or prefixes, as JS literals
_JS_INDEX = re.compile(r"""(?:\.hint\(\s*|\bhint:\s*|\bname:\s*)(['"`])(\w+)\1""")
_JS_STRING = re.compile(r"""(['"`])((?:(?!\1).)*)\1""")


@pytest.mark.parametrize("path", JS_FILES, ids=lambda p: p.name)
def test_scripts_name_no_index_or_collection(path):
    leaks = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("//", 1)[0]
        leaks += [(n, m.group(2)) for m in _JS_INDEX.finditer(code) if m.group(2) in INDEX_NAMES]
        leaks += [
            (n, m.group(2))
            for m in _JS_STRING.finditer(code)
            if m.group(2) in COLLECTION_NAMES or any(m.group(2).startswith(p) for p in PREFIXES)
        ]
    assert not leaks, f"{path.name}: names from schema.json written out: {leaks}; read them from SCHEMA"


def test_every_read_role_names_an_index():
    from lsdgraph._core import schema

    for kind, uses in {
        "rag_nodes": ["roi", "id"],
        "rag_edges": ["roi_u", "roi_v", "threshold", "ends"],
        "skeleton_nodes": ["roi", "neuron"],
        "skeleton_edges": ["roi_u", "neuron"],
        "lut": ["fragment", "segment"],
        "merge_tree": ["fragment"],
        "skeleton_fragments": ["node"],
    }.items():
        for use in uses:
            assert schema.index_name(kind, use) in {s["name"] for s in schema.indexes(kind)}
    with pytest.raises(KeyError):
        schema.index_name("rag_nodes", "no_such_role")


def test_the_checks_catch_what_they_look_for():
    tree = ast.parse(
        'coll.find({}).hint("u_position")\nx = {"hint": "position"}\n'
        'c.create_index([("a", 1)], name="fragment")\ny = db["lsdgraph_meta"]\nz = "lsdgraph_lut." + e\n'
    )
    assert sorted(v for _, v in _index_literals(tree)) == ["fragment", "position", "u_position"]
    assert sorted(v for _, v in _name_literals(tree)) == ["lsdgraph_lut.", "lsdgraph_meta"]


def test_the_scripts_are_found():
    assert {p.name for p in JS_FILES} >= {"lib.js", "roi.js", "segment_of.js", "skeleton.js", "thresholds.js"}


@pytest.mark.parametrize("path", [p for p in JS_FILES if p.name != "lib.js"], ids=lambda p: p.name)
def test_scripts_taking_edges_use_the_one_default_rule(path):
    """Every script with an ``edges`` parameter picks the collection with lib.js's edgesCollection
    (the named one, else the only one, else edges_hist_quant_75, else an error listing them)."""
    code = path.read_text()
    if "param('edges')" in code:
        assert "edgesCollection(param('edges'))" in code, path.name
        assert code.count("param('edges')") == code.count("edgesCollection(param('edges'))"), path.name


def test_one_rule_for_the_default_edges():
    from lsdgraph._core import schema
    from lsdgraph._core.errors import LsdgraphError

    assert schema.choose_edges(["edges_mean"], None, "db") == "edges_mean"  # the only one
    three = ["edges_hist_quant_50", "edges_hist_quant_75", "edges_mean"]
    assert schema.choose_edges(three, None, "db") == schema.DEFAULT_EDGES == "edges_hist_quant_75"
    assert schema.choose_edges(three, "edges_mean", "db") == "edges_mean"
    with pytest.raises(LsdgraphError, match=r"db has 2 edges collections \(edges_a, edges_b\) and none is"):
        schema.choose_edges(["edges_b", "edges_a"], None, "db")
    with pytest.raises(LsdgraphError, match=r"edges='edges_x': no such edges collection in db; it has: edges_mean"):
        schema.choose_edges(["edges_mean"], "edges_x", "db")

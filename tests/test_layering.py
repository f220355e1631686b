"""The architecture, held by a test: data flows one way, core → algorithms / I/O → stores → query
→ ingest and jobs → CLI, and each layer imports only the layers below it. The numpy-only
algorithms import neither pymongo nor boto3; I/O does not import the stores. The public API is the
stub's list and every name in it resolves."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lsdgraph

PKG = Path(lsdgraph.__file__).parent
# layer → the lsdgraph layers it may import (besides itself)
ALLOWED = {
    "_core": set(),
    "_algorithms": {"_core"},
    "_io": {"_core"},
    "_synth": {"_core", "_io"},
    "_stores": {"_core", "_io"},
    "_query": {"_core", "_io", "_stores", "_algorithms"},
    "_ingest": {"_core", "_io", "_stores"},
    "_jobs": {"_core", "_io", "_stores", "_algorithms", "_query", "_ingest", "_synth"},
    "_cli": {"_core", "_io", "_stores", "_algorithms", "_query", "_ingest", "_jobs", "_synth"},
    "cli": {"_core", "_io", "_stores", "_algorithms", "_query", "_ingest", "_jobs", "_synth", "_cli"},
}
# third-party modules a layer must not import: the algorithms are numpy (and numba) only
FORBIDDEN = {"_algorithms": {"pymongo", "bson", "mongomock", "boto3", "botocore", "zarr", "pyarrow"},
             "_io": {"pymongo", "mongomock"}, "_core": {"pymongo", "boto3", "zarr"}}


def layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> list[str]:
    """Every module an lsdgraph file imports (absolute, also inside functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; lsdgraph imports are absolute")
            out.append(node.module or "")
    return out


FILES = sorted(p for p in PKG.rglob("*.py") if p.name != "__init__.py" or p.parent != PKG)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_each_layer_imports_only_the_layers_below(path):
    layer = layer_of(path)
    assert layer in ALLOWED, f"{path}: not in a known layer; add it to ALLOWED"
    for mod in imports(path):
        top, _, rest = mod.partition(".")
        if top == "lsdgraph":
            used = rest.partition(".")[0]
            assert used, f"{path}: imports the public package from inside it (import the private module)"
            assert used == layer or used in ALLOWED[layer], f"{path} ({layer}) imports {mod}"
        assert top not in FORBIDDEN.get(layer, ()), f"{path} ({layer}) imports {mod}"


def test_the_public_api_is_the_stub_and_import_stays_cheap():
    names = set(lsdgraph.__all__)
    assert {"open_rag", "ingest", "segment", "evaluate", "build_merge_tree", "read_lut", "expected_run_length",
            "synth", "LsdgraphError", "connect"} <= names
    for name in names:
        assert getattr(lsdgraph, name) is not None
    code = "import sys, lsdgraph; print(sorted(m for m in ('numba', 'pymongo', 'boto3', 'zarr') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    with pytest.raises(AttributeError):
        lsdgraph.no_such_name  # noqa: B018 (the attribute access is the test)

"""lsdgraph: load the LSD benchmark RAGs and skeletons into MongoDB, query them by ROI and merge
threshold, agglomerate over many thresholds at once, and score the result against skeletons.

The public API is what ``__init__.pyi`` lists; each name is imported on first use, so
``import lsdgraph`` stays cheap (numba compiles only when a kernel runs). Everything under an
underscore (``lsdgraph._io``, ``lsdgraph._jobs``, ...) is private and may change.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

from lsdgraph._core.version import VERSION


def _stub_names() -> dict[str, tuple[str, str]]:
    """public name → (module, attribute), read from the stub next to this file."""
    tree = ast.parse((Path(__file__).with_suffix(".pyi")).read_text())
    return {(a.asname or a.name): (node.module, a.name) for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module for a in node.names}


_API = _stub_names()
__version__ = VERSION


def __getattr__(name: str):
    where = _API.get(name)
    if where is None:
        raise AttributeError(f"module 'lsdgraph' has no attribute {name!r}")
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))


__all__ = sorted(_API)

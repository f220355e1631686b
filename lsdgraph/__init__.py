"""lsdgraph: load the LSD benchmark RAGs and skeletons into MongoDB, query them by ROI and merge
threshold, agglomerate over many thresholds at once, and score the result against skeletons.

The public API is imported lazily so ``import lsdgraph`` stays cheap (numba compiles on first use).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "open_rag": "lsdgraph.query",
    "open_skeletons": "lsdgraph.query",
    "to_networkx": "lsdgraph.query",
    "Rag": "lsdgraph.query",
    "SkeletonSet": "lsdgraph.query",
    "Roi": "lsdgraph.roi",
    "connect": "lsdgraph.store",
    "LsdgraphError": "lsdgraph.errors",
}


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'lsdgraph' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_API))


__all__ = sorted(_API)

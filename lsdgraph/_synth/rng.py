"""Hashed random draws for the numba kernels of ``world`` and ``scores``: a uniform, a standard
normal and a Kumaraswamy quantile that depend only on their integer arguments (a cell, an edge's
``(u, v)``, ... and ``key`` + a hash stream), never on a generator's state, so what is drawn does
not depend on the order or batching of the work; and the table of hash streams, one per kind of
draw, kept in one place so that no two kinds share one.

numba's on-disk cache (``cache=True``) of a kernel is keyed on the kernel's own source file only:
the kernels in ``world`` and ``scores`` keep their compiled copy of these helpers and stream
numbers when only this file changes. After editing it, delete ``lsdgraph/_synth/__pycache__`` (or
touch ``world.py`` and ``scores.py``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# hash streams
_S_MERGE, _S_OUTSIDE, _S_OUT_CLASS, _S_INTRA, _S_INTER, _S_CUT, _S_CONTACT = 1, 2, 3, 4, 5, 6, 7
_S_LEAK_EDGE, _S_LEAK_LEVEL, _S_LEAK_JIT, _S_NULL, _S_ORDER = 8, 9, 10, 11, 12
_S_START, _S_DIR, _S_TURN, _S_CUTS = 13, 14, 16, 18  # _normal draws from key and key + 1, hence the gaps


@njit(inline="always")
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(inline="always")
def _unif(a, b, key):
    """A uniform in [0, 1) that depends only on (a, b, key) (all non-negative int64)."""
    h = _mix(np.uint64(a) + np.uint64(0x9E3779B97F4A7C15))
    h = _mix(h ^ np.uint64(b))
    h = _mix(h ^ np.uint64(key))
    return np.float64(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def _kum(p, a, b):
    """Kumaraswamy(a, b) quantile: Beta-like, with a closed-form inverse."""
    return (1.0 - (1.0 - p) ** (1.0 / b)) ** (1.0 / a)


@njit(inline="always")
def _normal(a, b, key):
    """A standard normal from (a, b, key) (Box-Muller on two hashed uniforms)."""
    r = np.sqrt(-2.0 * np.log(1.0 - _unif(a, b, key)))
    return r * np.cos(2.0 * np.pi * _unif(a, b, key + 1))

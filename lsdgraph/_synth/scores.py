"""The score model: from the world's neurons and tube pieces, a latent boundary strength per edge
(with the null flag and the edges' order inside a block), and from it the ``merge_score`` of each
merge function.

Scores (``merge_score`` in [0, 1], lower merges earlier) come from a latent boundary strength per
edge: low inside a neuron, high between neurons, plus two kinds of hard cases that make the best
threshold intermediate: *false boundaries* (each tube is cut into pieces along its path; every edge
across a cut scores near that cut's strength, so the neuron splits below it) and *leaks* (some
neuron contacts carry a few low-scoring edges, so the two neurons merge above the leak's level).
Each merge function adds its own bias and noise to the same latent scores. All per-edge randomness
is a hash of ``(u, v, seed)``, so the content does not depend on how the output is batched.
"""
from __future__ import annotations

import re

import numpy as np
from numba import njit

from lsdgraph._synth.rng import (
    _S_CONTACT,
    _S_CUT,
    _S_INTER,
    _S_INTRA,
    _S_LEAK_EDGE,
    _S_LEAK_JIT,
    _S_LEAK_LEVEL,
    _S_NULL,
    _S_ORDER,
    _S_OUT_CLASS,
    _kum,
    _unif,
)

CUT_JITTER = 0.04           # edges across a cut score its strength ± this
INTRA_MAX, INTRA_A, INTRA_B = 0.35, 1.3, 3.0   # intra-neuron scores: INTRA_MAX * Kumaraswamy(a, b)
INTER_MIN, INTER_A, INTER_B = 0.60, 2.0, 2.0   # inter-neuron scores: INTER_MIN + (1-INTER_MIN) * Kum
P_LEAKY_CONTACT, P_LEAK_EDGE = 0.04, 0.2
LEAK_LO, LEAK_HI, LEAK_JITTER = 0.30, 0.75, 0.04
P_NULL = 0.005              # share of edges whose merge_score is null


@njit(cache=True, nogil=True)
def _latent(us, vs, fa, fb, fneuron, fpiece, strength, key):
    """Latent boundary strength per edge (see the module docstring), the null flag, the
    within-block order key and, for edges leaving the ROI, the outside fragment's neuron."""
    n = us.size
    lat = np.empty(n, np.float64)
    null = np.empty(n, np.bool_)
    order = np.empty(n, np.float64)
    out_neuron = np.zeros(n, np.int32)
    for i in range(n):
        u = us[i]
        v = vs[i]
        intra = False
        s = -1.0
        a = fa[i]
        if fb[i] < 0:
            # beyond the ROI: the same neuron continuing, or another one
            if _unif(u, v, key + _S_OUT_CLASS) < 0.5:
                intra = True
                out_neuron[i] = fneuron[a]
        else:
            d = fb[i]
            na = fneuron[a]
            nb = fneuron[d]
            if na == nb:
                pa = fpiece[a]
                pb = fpiece[d]
                if pa == pb:
                    intra = True
                else:
                    s = strength[max(pa, pb)] + CUT_JITTER * (2.0 * _unif(u, v, key + _S_CUT) - 1.0)
            else:
                lo = min(na, nb)
                hi = max(na, nb)
                if (_unif(lo, hi, key + _S_CONTACT) < P_LEAKY_CONTACT
                        and _unif(u, v, key + _S_LEAK_EDGE) < P_LEAK_EDGE):
                    level = LEAK_LO + (LEAK_HI - LEAK_LO) * _unif(lo, hi, key + _S_LEAK_LEVEL)
                    s = level + LEAK_JITTER * (2.0 * _unif(u, v, key + _S_LEAK_JIT) - 1.0)
        if s < 0.0:
            if intra:
                s = INTRA_MAX * _kum(_unif(u, v, key + _S_INTRA), INTRA_A, INTRA_B)
            else:
                s = INTER_MIN + (1.0 - INTER_MIN) * _kum(_unif(u, v, key + _S_INTER), INTER_A, INTER_B)
        lat[i] = s
        null[i] = _unif(u, v, key + _S_NULL) < P_NULL
        order[i] = _unif(u, v, key + _S_ORDER)
    return lat, null, order, out_neuron


@njit(cache=True, nogil=True)
def _function_scores(us, vs, lat, null, bias, noise, fkey):
    n = us.size
    out = np.empty(n, np.float64)
    for i in range(n):
        if null[i]:
            out[i] = np.nan
        else:
            s = lat[i] + bias + noise * (2.0 * _unif(us[i], vs[i], fkey) - 1.0)
            out[i] = min(1.0, max(0.0, s))
    return out


def _function_params(name: str) -> tuple[float, float]:
    """(bias, noise) of a merge function: higher quantiles score a little higher."""
    m = re.fullmatch(r"hist_quant_(\d+)", name)
    if m:
        return (min(int(m.group(1)), 100) - 50) / 500.0, 0.03
    if name == "mean":
        return -0.01, 0.02
    return 0.0, 0.03


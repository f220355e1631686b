"""Compiled kernels behind the merge tree: a radix sort of edges by float32 score, one union-find
pass that records the merge tree, and O(N) cuts of that tree.

Index arrays are int32 below 2**31 fragments, int64 up to 2**32 (edges travel as two uint32 indices
packed in one uint64); callers allocate the outputs, so each kernel compiles once per index type.
The hot loops are bound by random memory reads; they prefetch a few iterations ahead (measured at
10M fragments: 2x faster union-find). The id hash table lives in :mod:`lsdgraph._core.idhash`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from lsdgraph._core.idhash import AHEAD, prefetch

_SIGN = np.uint32(0x80000000)
_LOW32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)
_DIGIT_BITS = 8  # 4 passes of 256 buckets beat 3 of 2048 here (fewer write streams)
_DIGITS = 1 << _DIGIT_BITS
_PASSES = 32 // _DIGIT_BITS


@njit(cache=True, nogil=True)
def sort_edges(ui, vi, score):
    """Drop unusable edges and order the rest by float32 score (LSD radix sort, 8-bit digits).

    An edge is dropped, and counted under the first reason that applies, when an endpoint is
    unknown (index < 0), when it is a self loop, or when its score is NaN.
    Returns (scores ascending, edges as ``a << 32 | b``, n_unknown, n_self_loops, n_null).
    """
    m = ui.size
    bits = score.view(np.uint32)
    keys = np.empty(m, np.uint32)
    ab = np.empty(m, np.uint64)
    hist = np.zeros((_PASSES, _DIGITS), np.int64)
    n_unknown = 0
    n_self = 0
    n_null = 0
    k = 0
    for e in range(m):
        x = ui[e]
        y = vi[e]
        if x < 0 or y < 0:
            n_unknown += 1
            continue
        if x == y:
            n_self += 1
            continue
        s = score[e]
        if s != s:
            n_null += 1
            continue
        # order-preserving map of float32 bits to uint32: negatives flip every bit, the rest
        # flip the sign bit
        f = bits[e]
        key = ~f if f & _SIGN else f | _SIGN
        keys[k] = key
        ab[k] = (np.uint64(x) << _U32) | np.uint64(y)
        for d in range(_PASSES):
            hist[d, (key >> np.uint32(_DIGIT_BITS * d)) & np.uint32(_DIGITS - 1)] += 1
        k += 1
    keys2 = np.empty_like(keys)
    ab2 = np.empty_like(ab)
    for d in range(_PASSES):
        shift = np.uint32(_DIGIT_BITS * d)
        h = hist[d]
        total = 0
        single = False
        for j in range(_DIGITS):
            c = h[j]
            if c == k:
                single = True  # every key has this digit: the pass would not move anything
            h[j] = total
            total += c
        if single:
            continue
        for e in range(k):
            key = keys[e]
            j = (key >> shift) & np.uint32(_DIGITS - 1)
            p = h[j]
            h[j] = p + 1
            keys2[p] = key
            ab2[p] = ab[e]
        keys, keys2 = keys2, keys
        ab, ab2 = ab2, ab
    for e in range(k):
        key = keys[e]
        keys[e] = key ^ _SIGN if key & _SIGN else ~key
    return keys.view(np.float32)[:k], ab[:k], n_unknown, n_self, n_null


@njit(inline="always")
def _root(uf, x):
    while uf[x] != x:
        uf[x] = uf[uf[x]]  # path halving
        x = uf[x]
    return x


@njit(inline="always")
def _edge_roots(uf, ab, e):
    """The two roots edge ``e`` joins, smaller first, with an edge a few ahead prefetched (the
    loops are bound by random reads of ``uf``)."""
    if e + AHEAD < ab.size:
        pair = ab[e + AHEAD]
        prefetch(uf, pair >> _U32)
        prefetch(uf, pair & _LOW32)
    pair = ab[e]
    x = _root(uf, np.int64(pair >> _U32))
    y = _root(uf, np.int64(pair & _LOW32))
    if y < x:
        return y, x
    return x, y


@njit(cache=True, nogil=True)
def union_pass(scores, ab, parent, merge_score, keep=None):
    """Kruskal over edges sorted by score. The root of a set is its smallest index; when root r
    joins root q (q < r), ``parent[r] = q`` and ``merge_score[r]`` = the edge's score. Roots keep
    ``parent[i] = i`` and score +inf. ``keep`` (bool per edge), when given, marks the edges that
    joined two sets: the minimum spanning forest (every other edge closes a cycle of edges scored
    no higher, so it changes no threshold's components). Returns the number of merges."""
    n = parent.size
    uf = np.empty_like(parent)
    for i in range(n):
        uf[i] = i
        parent[i] = i
        merge_score[i] = np.inf
    merges = 0
    for e in range(ab.size):
        x, y = _edge_roots(uf, ab, e)
        if x == y:
            continue
        uf[y] = x
        parent[y] = x
        merge_score[y] = scores[e]
        if keep is not None:
            keep[e] = True
        merges += 1
        if merges == n - 1:
            break  # one segment left: later edges cannot change anything
    return merges


@njit(cache=True, nogil=True)
def canonical_parents(parent, merge_score):
    """Make the tree independent of the order tied edges came in: a fragment that merged at the
    same score as its parent hangs from that parent's parent instead, so every ``parent[i]`` is the
    smallest fragment of i's segment at ``merge_score[i]`` (a cut at that score). Cuts are
    unchanged; the arrays then depend only on each threshold's components. One forward pass:
    ``parent[p] < p`` is final by the time ``i > p`` reads it."""
    for i in range(parent.size):
        p = parent[i]
        if p != i and parent[p] != p and merge_score[p] == merge_score[i]:
            parent[i] = parent[p]


@njit(cache=True, nogil=True)
def cut(parent, merge_score, t, out, ids=None):
    """``out[i]`` = id (``ids[i]``; with ``ids`` None, the index) of the smallest fragment in i's
    segment at threshold ``t``. Valid in one forward pass because ``parent[i] < i`` and scores
    rise along every chain. numba compiles the ``ids is None`` case without the branch."""
    n = parent.size
    for i in range(n):
        if i + AHEAD < n:
            prefetch(out, parent[i + AHEAD])
        p = parent[i]
        if p != i and merge_score[i] <= t:
            out[i] = out[p]
        elif ids is None:
            out[i] = i
        else:
            out[i] = ids[i]


@njit(cache=True, nogil=True)
def cut_stats(parent, merge_score, t):
    """(n_segments, largest segment, singleton segments) at ``t`` without building labels:
    sizes flow from child to parent in one backward pass, since every parent has a lower index."""
    n = parent.size
    size = np.ones(n, np.int64)
    n_segments = 0
    largest = 0
    singletons = 0
    for i in range(n - 1, -1, -1):
        p = parent[i]
        if p != i and merge_score[i] <= t:
            size[p] += size[i]
        else:
            n_segments += 1
            if size[i] > largest:
                largest = size[i]
            if size[i] == 1:
                singletons += 1
    return n_segments, largest, singletons

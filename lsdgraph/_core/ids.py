"""Fragment and node ids: the one home for turning id columns into uint64, sorting them to distinct
values and finding where ids sit in a list (a hash table, several times faster than
``np.searchsorted`` for millions of random lookups)."""
from __future__ import annotations

import numpy as np

from lsdgraph._core.errors import LsdgraphError


def as_ids(x, what: str) -> np.ndarray:
    """A 1-D uint64 view or copy of integer ids (int64 is reinterpreted, not copied); ``what``
    names the argument in the error for anything else."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f" and not isinstance(x, np.ndarray) and arr.size:
        arr = np.asarray(x, dtype=object)  # a list mixing ids below and above 2**63 became float64
    if arr.ndim != 1:
        raise LsdgraphError(f"{what} must be a 1-D array of integer ids, got shape {arr.shape}")
    if arr.dtype == np.uint64:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.int64:
        return np.ascontiguousarray(arr).view(np.uint64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.uint64)
    if arr.size == 0:
        return np.zeros(0, np.uint64)
    if arr.dtype == object and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in arr):
        values = [int(e) for e in arr]
        if all(-(2**63) <= e < 2**64 for e in values):
            return np.array([e % 2**64 for e in values], dtype=np.uint64)  # negatives as int64 bits
    raise LsdgraphError(
        f"{what} must hold integer ids within uint64 (or int64), got dtype {arr.dtype}; "
        "convert the id column to integers")


def sorted_unique(ids, what: str = "ids") -> np.ndarray:
    """Sorted distinct uint64 ids: np.sort plus a neighbour mask (np.unique's hash path on
    numpy >= 2.3 is far slower for uint64)."""
    out = np.sort(as_ids(ids, what))
    if out.size > 1:
        keep = np.empty(out.size, dtype=bool)
        keep[0] = True
        np.not_equal(out[1:], out[:-1], out=keep[1:])
        out = out[keep]
    return out


def dense_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each value in them), in the values' own dtype."""
    order = np.argsort(values, kind="stable")
    s = values[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] != s[:-1]
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return s[new], inverse


class IdIndex:
    """Where ids sit in a list: ``lookup(values)`` gives each value's index (-1 if absent).

    By default the list is ``ids``' sorted distinct values (``self.ids``); with ``sort=False`` it
    is ``ids`` as given, and a repeated id answers with its first position."""

    def __init__(self, ids, what: str = "ids", *, sort: bool = True):
        self.ids = sorted_unique(ids, what) if sort else as_ids(ids, what)
        from lsdgraph._core import idhash  # numba: loaded when an index is first built

        self._table, self._bits = idhash.hash_build(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, values, what: str = "ids to look up", out: np.ndarray | None = None) -> np.ndarray:
        """int64 indices (or into ``out``, an int32/int64 array of the values' size), shaped as ``values``."""
        keys = as_ids(np.ravel(values), what)
        res = np.empty(keys.size, np.int64) if out is None else out
        from lsdgraph._core import idhash

        idhash.hash_lookup(self._table, self._bits, keys, res)
        return res.reshape(np.shape(values))

    def contains(self, values) -> np.ndarray:
        """Whether each value is in the list."""
        return self.lookup(values) >= 0

"""The one home for ids (lsdgraph._core.ids): uint64 conversion, sorted distinct ids, and the hash
index every layer uses to find ids in a list."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex, as_ids, dense_ids, sorted_unique

BIG = 2**63


def test_sorted_unique():
    x = np.array([5, 1, BIG, 5, 2**64 - 1, 1, 0], dtype=np.uint64)
    assert sorted_unique(x).tolist() == [0, 1, 5, BIG, 2**64 - 1]
    assert sorted_unique(np.array([], np.uint64)).size == 0


def test_as_ids_reinterprets_int64_and_names_the_argument():
    neg = np.array([-1, 3], np.int64)
    assert as_ids(neg, "u").tolist() == [2**64 - 1, 3]
    assert as_ids([1, 2**64 - 1], "u").tolist() == [1, 2**64 - 1]  # a list mixing both halves
    with pytest.raises(LsdgraphError, match="fragments must hold integer ids"):
        as_ids(np.array([0.5]), "fragments")
    with pytest.raises(LsdgraphError, match="node ids must be a 1-D array"):
        as_ids(np.zeros((2, 2), np.int64), "node ids")


def test_dense_ids():
    values = np.array([7, -3, 7, 0], np.int64)
    distinct, inverse = dense_ids(values)
    assert distinct.tolist() == [-3, 0, 7] and np.array_equal(distinct[inverse], values)


ids_st = st.lists(st.integers(0, 2**64 - 1), max_size=200)


@settings(max_examples=60, deadline=None)
@given(ids_st, ids_st)
def test_lookup_agrees_with_searchsorted(ids, probes):
    ids = np.array(ids, np.uint64)
    probes = np.array(probes + ids[:5].tolist(), np.uint64)
    index = IdIndex(ids)
    s = np.unique(ids)
    assert np.array_equal(index.ids, s)
    pos = np.searchsorted(s, probes).clip(0, max(len(s) - 1, 0))
    found = (s[pos] == probes) if len(s) else np.zeros(len(probes), bool)
    assert np.array_equal(index.lookup(probes), np.where(found, pos, -1))
    assert np.array_equal(index.contains(probes), found)


def test_unsorted_index_answers_positions_in_the_given_order_first_occurrence():
    ids = np.array([40, 10, 30, 10], np.int64)
    index = IdIndex(ids, sort=False)
    assert index.lookup(np.array([10, 30, 40, 99])).tolist() == [1, 2, 0, -1]
    assert index.lookup(np.array([[40], [10]])).shape == (2, 1)  # keeps the values' shape
    out = np.empty(2, np.int32)
    assert index.lookup(np.array([30, 5]), out=out) is not None and out.tolist() == [2, -1]
    assert IdIndex(np.empty(0, np.uint64)).lookup(np.array([1, 2], np.uint64)).tolist() == [-1, -1]

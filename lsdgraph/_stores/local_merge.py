"""The range phase of the local store's external sort (see :mod:`lsdgraph._stores.local_write`):
sorted runs on disk → all their rows in key order, in ranges of about ``memory_rows / 2`` rows.

The ranges come from a sample of every run's key column taken with a stride chosen so that the
estimated count of any range is off by at most ``memory_rows / 8``. Each range is read from every
run with a key filter (the runs' row-group statistics skip the rest) and sorted. A single key with
more rows than a range holds (a coarse block, or the ``2**64 - 1`` key of rows without a position)
is streamed run by run, never held at once; a range whose estimate is too coarse (the sample is
capped at 4M keys, 32 MB) is sampled again on its own.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SAMPLE_BUDGET = 1 << 22       # keys held by one sample (32 MB)
MAX_KEY = 2**64 - 1


def _between(key: str, lo: int | None, hi: int | None) -> pc.Expression | None:
    """``lo <= key < hi`` (either side may be open), with uint64 scalars: a bare Python int below
    2**63 would be int64 and make Arrow refuse the statistics of keys above it."""
    terms = []
    if lo is not None:
        terms.append(pc.field(key) >= pa.scalar(lo, pa.uint64()))
    if hi is not None:
        terms.append(pc.field(key) < pa.scalar(hi, pa.uint64()))
    if not terms:
        return None
    return terms[0] & terms[1] if len(terms) == 2 else terms[0]



class Merge:
    """Sorted runs (Parquet fragments) → the rows in key order, one bounded range at a time."""

    def __init__(self, runs: list, key: str, memory_rows: int, row_group_rows: int):
        self.runs, self.key, self.memory_rows, self.rg = runs, key, memory_rows, row_group_rows
        self.target = max(1, memory_rows // 2)

    def ranges(self, lo: int | None, hi: int | None, rows: int, depth: int
               ) -> Iterator[tuple[int | None, int | None, int | None]]:
        """``(lo, hi, None)`` ranges of at most about ``target`` rows, or ``(k, k + 1, k)`` for one heavy
        key ``k``, covering ``[lo, hi)`` in key order."""
        if rows <= self.target or depth > 64:
            yield lo, hi, None
            return
        nruns = len(self.runs)
        stride = max(1, self.memory_rows // (16 * nruns), -(-rows // SAMPLE_BUDGET))
        error = 2 * nruns * stride  # a range's count is off by at most this
        keys = self._sample(lo, hi, stride)
        if keys.size == 0:
            return
        new = np.ones(keys.size, bool)
        new[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(new)
        uk = keys[starts]
        w = np.diff(np.append(starts, keys.size)) * stride
        heavy = w >= self.target // 2
        cum_before = np.cumsum(w) - w
        cut = np.zeros(uk.size, bool)
        cut[1:] = (cum_before[1:] // self.target) != (cum_before[:-1] // self.target)
        cut |= heavy
        cut[1:] |= heavy[:-1]
        cut[0] = False  # the first range starts at lo
        bounds = [lo, *uk[cut].tolist(), hi]
        est = np.add.reduceat(w, np.concatenate(([0], np.flatnonzero(cut)))).tolist()
        firsts = [0, *np.flatnonzero(cut).tolist()]
        for (a, b), n, first in zip(itertools.pairwise(bounds), est, firsts, strict=True):
            k = int(uk[first])
            if heavy[first]:  # cuts before and after a heavy key: its range samples k alone
                if a is None or a < k:  # the first range also holds the unsampled keys below k
                    yield from self.ranges(a, k, error, depth + 1)
                yield k, k + 1, k
                if k < MAX_KEY and (b is None or k + 1 < b):
                    yield from self.ranges(k + 1, b, error, depth + 1)
            elif stride * 16 * nruns > self.memory_rows:
                yield from self.ranges(a, b, n + error, depth + 1)  # a capped sample: look closer
            else:
                yield a, b, None

    def _sample(self, lo: int | None, hi: int | None, stride: int) -> np.ndarray:
        """Every ``stride``-th key of each run inside ``[lo, hi)``, sorted."""
        parts = []
        flt = _between(self.key, lo, hi)
        for frag in self.runs:
            pos = 0
            for batch in frag.to_batches(columns=[self.key], filter=flt, batch_size=1 << 16):
                k = batch.column(0).to_numpy()
                parts.append(k[(-pos) % stride::stride].copy())
                pos += k.size
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)

    def sorted_range(self, lo: int | None, hi: int | None, out: Callable[[pa.Table], None]) -> None:
        flt = _between(self.key, lo, hi)
        table = pa.concat_tables([frag.to_table(filter=flt) for frag in self.runs])
        if table.num_rows:
            order = np.argsort(table.column(self.key).to_numpy(), kind="stable")
            out(table.take(pa.array(order)))

    def stream_key(self, k: int, out: Callable[[pa.Table], None]) -> None:
        flt = pc.field(self.key) == pa.scalar(k, pa.uint64())
        for frag in self.runs:
            for batch in frag.to_batches(filter=flt, batch_size=self.rg):
                out(pa.Table.from_batches([batch]))

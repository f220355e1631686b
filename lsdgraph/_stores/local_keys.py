"""Filters and clustering keys of the local store: ROI filters as Arrow expressions (the same
box semantics as :func:`lsdgraph._core.roi.mongo_filter`) and Morton (Z-order) block keys, the
``cluster_by`` column that makes a small ROI read touch few row groups."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi, as_roi

MORTON_BITS = 21                       # per axis: 3 × 21 = 63 bits
MAX_BLOCK = (1 << MORTON_BITS) - 1
NO_POSITION = np.uint64(2**64 - 1)     # the key of a row without a (finite) position: sorts last


def roi_filter(roi: Roi | None, fields: Sequence[str]) -> pc.Expression | None:
    """``begin <= field < end`` per axis (half-open), as an Arrow expression for
    :meth:`LocalStore.read`/``scan``; ``None`` for no ROI. An unbounded side adds no bound, but a
    fully unbounded axis still requires the field to be set, as the MongoDB filter (``$gte: -inf``)
    does: rows without a position (null; NaN is stored as null) are never inside an ROI. Accepts
    whatever :func:`lsdgraph._core.roi.as_roi` accepts."""
    box = as_roi(roi)
    if box is None:
        return None
    if len(fields) != 3:
        raise LsdgraphError(f"roi_filter: fields {tuple(fields)!r} must name three position columns (z, y, x)")
    terms: list[pc.Expression] = []
    for name, b, e in zip(fields, box.begin, box.end, strict=True):
        f = pc.field(name)
        bounded = False
        if not math.isinf(b) or b > 0:  # begin +inf: an empty axis, kept as a bound
            terms.append(f >= pa.scalar(float(b), pa.float64()))
            bounded = True
        if not math.isinf(e) or e < 0:
            terms.append(f < pa.scalar(float(e), pa.float64()))
            bounded = True
        if not bounded:
            terms.append(f.is_valid())
    out = terms[0]
    for t in terms[1:]:
        out = out & t
    return out


def _spread(v: np.ndarray) -> np.ndarray:
    """Put the low 21 bits of each uint64 two zero bits apart (bit i → bit 3i)."""
    v = v & np.uint64(MAX_BLOCK)
    v = (v | (v << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    v = (v | (v << np.uint64(2))) & np.uint64(0x1249249249249249)
    return v


def block_key(z, y, x, block_size: Sequence[float], origin: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """uint64 Morton (Z-order) code of each point's block index ``floor((p - origin) / block_size)``,
    bits interleaved z, y, x from the most significant (21 bits per axis).

    Clustering only decides which rows share a row group, never which rows a read returns, so no
    point is refused: block indices outside ``[0, 2**21)`` are clamped to the edge, and a point with
    a NaN or infinite coordinate (an edge whose endpoint is not a stored node) gets the key
    ``2**64 - 1``, which sorts after every real block."""
    bs = [float(b) for b in block_size]
    org = [float(o) for o in origin]
    if len(bs) != 3 or any(not (b > 0) or math.isinf(b) for b in bs):
        raise LsdgraphError(f"block_key: block_size {tuple(block_size)!r} must be three positive finite sizes in nm")
    if len(org) != 3 or any(not math.isfinite(o) for o in org):
        raise LsdgraphError(f"block_key: origin {tuple(origin)!r} must be three finite numbers in nm")
    axes = [np.asarray(a, dtype=np.float64) for a in (z, y, x)]
    shape = np.broadcast_shapes(*(a.shape for a in axes))
    key = np.zeros(shape, np.uint64)
    bad = np.zeros(shape, bool)
    for shift, a, b, o in zip((2, 1, 0), axes, bs, org, strict=True):
        with np.errstate(invalid="ignore"):
            idx = np.floor((a - o) / b)
        bad |= ~np.isfinite(idx)
        idx = np.clip(np.nan_to_num(idx, nan=0.0, posinf=0.0, neginf=0.0), 0, MAX_BLOCK).astype(np.uint64)
        key |= _spread(idx) << np.uint64(shift)
    key[bad] = NO_POSITION
    return key

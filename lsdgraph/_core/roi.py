"""Regions of interest: offset and shape in world units (nm), zyx, half-open ``[begin, end)`` per
axis, as daisy and funlib do. Accepts funlib/daisy ``Roi`` objects by duck typing."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from lsdgraph._core.errors import LsdgraphError


@dataclass(frozen=True)
class Roi:
    """A 3-D box: ``offset`` (begin) and ``shape`` in nm, zyx; ``±inf`` for an unbounded axis."""

    offset: tuple[float, ...]
    shape: tuple[float, ...]

    @property
    def begin(self) -> tuple[float, ...]:
        return self.offset

    @property
    def end(self) -> tuple[float, ...]:
        return tuple(math.inf if math.isinf(s) else o + s for o, s in zip(self.offset, self.shape, strict=True))

    def contains(self, zyx: np.ndarray) -> np.ndarray:
        """Mask of the (n, 3) points inside (half-open, like the database query)."""
        zyx = np.asarray(zyx, float)
        b, e = np.asarray(self.begin), np.asarray(self.end)
        return np.all((zyx >= b) & (zyx < e), axis=1)

    def intersects(self, other: Roi) -> bool:
        """Whether the two half-open boxes share a point."""
        return all(b1 < e2 and b2 < e1 for b1, e1, b2, e2 in
                   zip(self.begin, self.end, other.begin, other.end, strict=True))

    def blocks(self, block_shape: Sequence[float]) -> Iterator[Roi]:
        """Tile this ROI with blocks of ``block_shape`` (the last ones clipped to the ROI)."""
        bs = _triple(block_shape, "block shape")
        if any(not (s > 0) or math.isinf(s) for s in bs):
            raise LsdgraphError(f"block shape {tuple(bs)}: every axis must be a positive finite size in nm")
        if any(math.isinf(s) for s in self.shape):
            raise LsdgraphError(f"ROI {self}: blocks need a bounded ROI")
        counts = [max(1, math.ceil(s / b)) for s, b in zip(self.shape, bs, strict=True)]
        for idx in product(*(range(c) for c in counts)):
            off = tuple(o + i * b for o, i, b in zip(self.offset, idx, bs, strict=True))
            shp = tuple(min(b, e - a) for a, b, e in zip(off, bs, self.end, strict=True))
            yield Roi(off, shp)

    def __str__(self) -> str:
        def f(v):
            return "inf" if math.isinf(v) else f"{v:g}"
        return "[" + ",".join(f(v) for v in self.begin) + " : " + ",".join(f(v) for v in self.end) + ")"


def _triple(values, what: str) -> tuple[float, ...]:
    try:
        vals = [float("inf") if v is None else float(v) for v in values]
    except (TypeError, ValueError):
        raise LsdgraphError(f"{what} {values!r}: expected three numbers (z, y, x) in nm") from None
    if len(vals) != 3:
        raise LsdgraphError(f"{what} {tuple(values)!r} has {len(vals)} dimensions; give three (z, y, x) in nm")
    if any(math.isnan(v) for v in vals):
        raise LsdgraphError(f"{what} {tuple(values)!r} contains NaN")
    return tuple(vals)


def parse_roi(text: str) -> Roi:
    """``"z0,y0,x0:z1,y1,x1"`` (begin:end, nm) → Roi."""
    parts = text.split(":")
    if len(parts) != 2:
        raise LsdgraphError(f"roi={text!r}: write it as z0,y0,x0:z1,y1,x1 (begin:end in nm)")
    try:
        begin, end = ([float(v) for v in p.split(",")] for p in parts)
    except ValueError:
        raise LsdgraphError(f"roi={text!r}: not numbers; write it as z0,y0,x0:z1,y1,x1 (nm)") from None
    b = _triple(begin, f"roi={text!r} begin")
    e = _triple(end, f"roi={text!r} end")
    return make_roi(b, tuple(ei - bi for bi, ei in zip(b, e, strict=True)))


def make_roi(offset, shape) -> Roi:
    o = _triple(offset, "ROI offset")
    s = _triple(shape, "ROI shape")
    if any(v < 0 for v in s):
        raise LsdgraphError(f"ROI shape {tuple(s)} is negative on an axis; give offset and a shape >= 0 (nm)")
    # funlib's unbounded axes (offset and shape None): the whole axis
    unbounded = [math.isinf(a) or math.isinf(b) for a, b in zip(o, s, strict=True)]
    o = tuple(-math.inf if u else v for u, v in zip(unbounded, o, strict=True))
    s = tuple(math.inf if u else v for u, v in zip(unbounded, s, strict=True))
    return Roi(o, s)


def as_roi(roi) -> Roi | None:
    """None, a :class:`Roi`, ``(offset, shape)``, a ``"z0,y0,x0:z1,y1,x1"`` string, or a
    funlib/daisy Roi (``get_offset()/get_shape()``, or ``.offset/.shape``) → Roi."""
    if roi is None or isinstance(roi, Roi):
        return roi
    if isinstance(roi, str):
        return parse_roi(roi)
    if hasattr(roi, "get_offset") and hasattr(roi, "get_shape"):  # daisy 0.2
        return make_roi(tuple(roi.get_offset()), tuple(roi.get_shape()))
    if hasattr(roi, "offset") and hasattr(roi, "shape") and not isinstance(roi, (tuple, list)):
        off, shp = roi.offset, roi.shape  # funlib.geometry: properties (None = unbounded)
        off = off() if callable(off) else off
        shp = shp() if callable(shp) else shp
        return make_roi(tuple(off), tuple(shp))
    if isinstance(roi, dict) and "offset" in roi and "shape" in roi:
        return make_roi(roi["offset"], roi["shape"])
    try:
        offset, shape = roi
    except (TypeError, ValueError):
        raise LsdgraphError(f"ROI {roi!r}: give ((z, y, x) offset, (dz, dy, dx) shape) in nm, or a Roi") from None
    return make_roi(offset, shape)


def mongo_filter(roi: Roi | None, fields: Sequence[str]) -> dict:
    """``{field: {$gte: begin, $lt: end}}`` per axis: the shape every ROI read uses (and
    ``queries/lib.js`` builds the same). Unbounded axes use ±inf, which still excludes documents
    without the field (edges whose endpoint is not a stored node)."""
    if roi is None:
        return {}
    return {f: {"$gte": float(b), "$lt": float(e)} for f, b, e in zip(fields, roi.begin, roi.end, strict=True)}

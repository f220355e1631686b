"""The spatial block key of the sharded MongoDB layout (``schema.json`` → ``blocks``).

A block is a cube of :data:`BLOCK_NM` nm (4096: an LSD volume of ~10⁵ nm a side is ~25 blocks a
side, a few hundred to a few thousand fragments a block, and a 16 µm ROI touches at most 125
blocks). A position's block is ``floor(p / BLOCK_NM)`` per axis, shifted by :data:`OFFSET` (2²⁰)
so negative coordinates work and clamped to ``[0, 2²¹)``; its key is the Morton (Z-order) code of
the three 21-bit indices, interleaved z, y, x from the most significant bit: a non-negative int64.
Z-order keeps nearby blocks in nearby key ranges at every scale, so a shard that owns a key range
owns a compact piece of the volume, and an ROI's blocks fall in few ranges.

Nodes store it as ``blk`` (their centre), RAG edges as ``blk_u`` / ``blk_v`` (the u and v end).
An ROI read adds ``{field: {$in: covering(roi)}}``: a coarse superset of the box (the box
predicate stays), which lets ``mongos`` send the read only to the shards owning those blocks. An
ROI touching more than :data:`MAX_COVER` blocks (an unbounded or whole-volume read) gets no block
predicate at all: it goes to every shard anyway, and a list of tens of thousands of codes would
cost more to send and match than it saves. :func:`covering_runs` gives the same blocks as sorted
``[lo, hi]`` runs of consecutive codes, computed without listing the blocks (for large ROIs).
"""
from __future__ import annotations

import math

import numpy as np

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi

_SPEC = schema.BLOCKS
BLOCK_NM = float(_SPEC["size_nm"])
BITS = int(_SPEC["bits_per_axis"])                 # per axis: 3 × 21 = 63 bits, a non-negative int64
OFFSET = int(_SPEC["offset_blocks"])               # block -2**20 is stored as 0
MAX_INDEX = (1 << BITS) - 1
MAX_COVER = int(_SPEC["max_cover"])
NODE_FIELD: str = _SPEC["nodes"]
EDGE_FIELDS: dict[str, str] = dict(_SPEC["edges"])
SHARD_KEYS: dict[str, str] = dict(_SPEC["shard_keys"])  # kind → the use of the index that is the shard key

_MASKS = ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
          (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249))


def _spread(v: np.ndarray) -> np.ndarray:
    """Bit i of each (21-bit) value → bit 3i."""
    v = v.astype(np.uint64) & np.uint64(MAX_INDEX)
    for shift, mask in _MASKS:
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _compact(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_spread`: bit 3i → bit i."""
    v = v.astype(np.uint64) & np.uint64(0x1249249249249249)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x10C30C30C30C30C3)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x100F00F00F00F00F)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x1F0000FF0000FF)
    v = (v | (v >> np.uint64(16))) & np.uint64(0x1F00000000FFFF)
    v = (v | (v >> np.uint64(32))) & np.uint64(MAX_INDEX)
    return v


def interleave(idx: np.ndarray) -> np.ndarray:
    """int64 Morton codes of (n, 3) stored block indices (each in ``[0, 2**21)``), z most significant."""
    idx = np.asarray(idx)
    code = (_spread(idx[:, 0]) << np.uint64(2)) | (_spread(idx[:, 1]) << np.uint64(1)) | _spread(idx[:, 2])
    return code.view(np.int64)


def stored_index(coords: np.ndarray, block: float = BLOCK_NM) -> np.ndarray:
    """``floor(coords / block) + OFFSET`` clamped to ``[0, 2**21)``, as int64 (any shape; ±inf clamp)."""
    with np.errstate(invalid="ignore", over="ignore"):
        idx = np.floor(np.asarray(coords, np.float64) / block) + OFFSET
    return np.clip(idx, 0, MAX_INDEX).astype(np.int64)


def encode(positions: np.ndarray, block: float = BLOCK_NM) -> np.ndarray:
    """int64 block key of each (n, 3) zyx position in nm (vectorized)."""
    pos = np.asarray(positions, np.float64).reshape(-1, 3)
    if np.isnan(pos).any():
        raise LsdgraphError("block keys: a position is NaN; positions must be numbers (nm)")
    return interleave(stored_index(pos, block))


def decode(codes: np.ndarray) -> np.ndarray:
    """(n, 3) signed block coordinates ``floor(pos / block)`` of int64 codes (clamped ones as stored)."""
    c = np.asarray(codes, np.int64).reshape(-1).view(np.uint64)
    out = np.stack([_compact(c >> np.uint64(2)), _compact(c >> np.uint64(1)), _compact(c)], axis=1)
    return out.astype(np.int64) - OFFSET


def block_range(roi: Roi, block: float = BLOCK_NM) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) stored block indices per axis of the blocks a half-open ROI can hold points of:
    the block of ``begin`` and the block of the largest double below ``end`` (division and floor
    are monotone, so every point the box predicate accepts lands in between). ``hi < lo`` on an
    axis (an empty box): no point."""
    begin, end = np.asarray(roi.begin, np.float64), np.asarray(roi.end, np.float64)
    lo, hi = stored_index(begin, block), stored_index(np.nextafter(end, -np.inf), block)
    return lo, np.where(end > begin, hi, lo - 1)


def cover_count(roi: Roi, block: float = BLOCK_NM) -> int:
    """How many blocks :func:`covering` lists for ``roi`` (an exact Python int, however large)."""
    lo, hi = block_range(roi, block)
    return math.prod(max(0, int(b) - int(a) + 1) for a, b in zip(lo, hi, strict=True))


def covering(roi: Roi, block: float = BLOCK_NM, limit: int | None = MAX_COVER) -> np.ndarray | None:
    """The sorted int64 codes of every block ``roi`` touches, or None when there are more than
    ``limit`` (None: no limit; an unbounded ROI then is an error)."""
    n = cover_count(roi, block)
    if limit is not None and n > limit:
        return None
    if n > 1 << 26:
        raise LsdgraphError(f"ROI {roi}: {n:,} blocks of {block:g} nm; list them as runs (covering_runs)")
    lo, hi = block_range(roi, block)
    if n == 0:
        return np.empty(0, np.int64)
    axes = np.meshgrid(*(np.arange(a, b + 1, dtype=np.int64) for a, b in zip(lo, hi, strict=True)),
                       indexing="ij")
    return np.sort(interleave(np.stack([a.ravel() for a in axes], axis=1)))


def covering_runs(roi: Roi, block: float = BLOCK_NM, max_runs: int = 1 << 16) -> np.ndarray | None:
    """The blocks of :func:`covering` as sorted, disjoint ``[lo, hi]`` runs of consecutive codes
    ((k, 2) int64), found by descending the Morton octree: an aligned cube of 2^L blocks a side
    is one run of 8^L codes, so a cube wholly inside the ROI is emitted at once and only the
    cubes the ROI's surface cuts are split. None when more than ``max_runs`` runs (or cut cubes)
    would be needed, e.g. for a one-block-thin unbounded column."""
    lo, hi = block_range(roi, block)
    if np.any(hi < lo):
        return np.empty((0, 2), np.int64)
    cells = np.zeros((1, 3), np.int64)          # corners of the cubes still cut, at this level
    runs: list[np.ndarray] = []
    found = 0
    for level in range(BITS, -1, -1):
        side = np.int64(1) << np.int64(level)
        far = cells + side - 1
        disjoint = np.any((cells > hi) | (far < lo), axis=1)
        inside = np.all((cells >= lo) & (far <= hi), axis=1)
        whole = cells[inside & ~disjoint]
        if len(whole):
            start = interleave(whole)
            runs.append(np.stack([start, start + (np.int64(1) << np.int64(3 * level)) - 1], axis=1))
            found += len(whole)
        cut = cells[~inside & ~disjoint]
        if found > max_runs or len(cut) > max_runs:
            return None
        if level == 0 or not len(cut):
            break
        half = side // 2
        kids = np.array([[dz, dy, dx] for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)], np.int64) * half
        cells = (cut[:, None, :] + kids[None, :, :]).reshape(-1, 3)
    if not runs:
        return np.empty((0, 2), np.int64)
    out = np.concatenate(runs)
    out = out[np.argsort(out[:, 0], kind="stable")]
    # merge runs that touch: a new run starts where the previous one does not continue
    starts = np.ones(len(out), bool)
    starts[1:] = out[1:, 0] != out[:-1, 1] + 1
    group = np.cumsum(starts) - 1
    merged = np.empty((int(group[-1]) + 1, 2), np.int64)
    merged[:, 0] = out[starts, 0]
    ends = np.flatnonzero(np.r_[starts[1:], True])
    merged[:, 1] = out[ends, 1]
    return merged if len(merged) <= max_runs else None


def in_filter(roi: Roi | None, field: str, block: float = BLOCK_NM, limit: int = MAX_COVER) -> dict:
    """``{field: {"$in": [codes]}}`` for the blocks ``roi`` touches; ``{}`` for no ROI or more than
    ``limit`` blocks (a read that goes to every shard anyway). ``queries/lib.js`` builds the same."""
    if roi is None:
        return {}
    codes = covering(roi, block, limit)
    return {} if codes is None else {field: {"$in": codes.tolist()}}

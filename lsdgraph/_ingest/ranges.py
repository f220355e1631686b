"""A large dump file split into byte ranges at document boundaries, for a parallel load.

A ``.bson`` file is a concatenation of length-prefixed documents, so its boundaries are found by
walking the int32 lengths from byte 0 (:func:`bsonio.walk_lengths`, no element scan); a cut is
the first boundary at or after each of ``n - 1`` evenly spaced targets, never a guess. The same
walk counts documents, so each range knows the file index of its first document (the ``_id``
numbering of documents without one is by file index), and takes the CRC-32 of every range and of
the whole file, so a range can prove at its end that it loaded the bytes that were split, and a
rerun can tell an unchanged file from a changed one.
"""
from __future__ import annotations

import math
import uuid
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from lsdgraph._io import bsonio
from lsdgraph._io.sources import SourceFile


@dataclass(frozen=True)
class Range:
    """Bytes ``[start, end)`` of a file: whole documents, the first one the file's ``first``-th."""

    index: int
    start: int
    end: int
    first: int       # file index of the range's first document
    documents: int
    crc: int         # CRC-32 of the range's bytes


@dataclass(frozen=True)
class Split:
    """A file's ranges as its load record keeps them (``plan`` names this split: records of
    ranges from another split are stale)."""

    plan: str
    size: int
    documents: int
    crc: int         # CRC-32 of the whole file
    ranges: tuple[Range, ...]

    def record(self) -> dict:
        return {"plan": self.plan, "size": self.size, "documents": self.documents, "crc32": self.crc,
                "ranges": [asdict(r) for r in self.ranges]}

    @classmethod
    def of(cls, rec: dict) -> Split:
        return cls(rec["plan"], int(rec["size"]), int(rec["documents"]), int(rec["crc32"]),
                   tuple(Range(**{k: int(v) for k, v in r.items()}) for r in rec["ranges"]))

    def same_bytes(self, other: Split) -> bool:
        return (self.size, self.documents, self.crc, self.ranges) == (other.size, other.documents, other.crc,
                                                                      other.ranges)


def count_for(size: int, workers: int, range_bytes: int) -> int:
    """How many ranges a file of ``size`` bytes is split into: one when it is no larger than
    ``range_bytes`` (it loads as one), else enough of at most ``range_bytes`` each, and at least
    one per worker."""
    if workers < 2 or size <= range_bytes:
        return 1
    return max(workers, math.ceil(size / range_bytes))


def split(f: SourceFile, n: int, *, chunk_bytes: int = 8 << 20, min_documents: int = 1) -> Split | None:
    """``f`` cut into at most ``n`` ranges of about equal bytes, each holding at least
    ``min_documents`` documents. One sequential read of the file. None when fewer than two
    ranges come out, or the walk meets a length prefix out of range or a last document cut short:
    the one-process load then reports exactly what is wrong where."""
    if n < 2 or f.size == 0:
        return None
    targets = [f.size * k // n for k in range(1, n)]
    cuts: list[tuple[int, int, int]] = []    # (boundary, documents before it, CRC of the range ending there)
    stream = f.open(0)
    buf = np.empty(0, np.uint8)
    base = pos = docs = 0                     # buf[0] is at file byte `base`; `pos` is a boundary in buf
    crc = range_crc = 0
    try:
        while True:
            data = stream.read(max(chunk_bytes, 1))
            eof = not data
            if data:
                buf = np.concatenate([buf[pos:], np.frombuffer(data, np.uint8)])
                base, pos = base + pos, 0
            while True:
                target = targets[0] - base if targets else len(buf)
                end, walked, bad = bsonio.walk_lengths(buf, pos, max(target, pos + 1))
                piece = buf[pos:end].data
                crc, range_crc = zlib.crc32(piece, crc), zlib.crc32(piece, range_crc)
                docs, pos = docs + walked, end
                if bad:
                    return None
                if not targets or base + pos < targets[0]:
                    break  # the next document is not wholly in the buffer yet
                at = base + pos
                while targets and targets[0] <= at:
                    targets.pop(0)
                if at < f.size:
                    cuts.append((at, docs, range_crc))
                    range_crc = 0
            if eof:
                break
    finally:
        stream.close()
    if base + pos != f.size or docs == 0:
        return None
    cuts.append((f.size, docs, range_crc))
    out: list[Range] = []
    start, first = 0, 0
    for end, before, rcrc in cuts:
        out.append(Range(len(out), start, end, first, before - first, rcrc))
        start, first = end, before
    out = _merge_small(out, min_documents)
    if len(out) < 2:
        return None
    return Split(uuid.uuid4().hex, f.size, docs, crc, tuple(out))


def _merge_small(ranges: list[Range], min_documents: int) -> list[Range]:
    """Neighbouring ranges joined until each holds at least ``min_documents`` documents (the last
    one onto the one before it)."""
    out: list[Range] = []
    for r in ranges:
        if out and out[-1].documents < min_documents:
            out[-1] = _joined(out[-1], r)
        else:
            out.append(r)
    if len(out) > 1 and out[-1].documents < min_documents:
        last = out.pop()
        out[-1] = _joined(out[-1], last)
    return [Range(k, r.start, r.end, r.first, r.documents, r.crc) for k, r in enumerate(out)]


def _joined(a: Range, b: Range) -> Range:
    return Range(a.index, a.start, b.end, a.first, a.documents + b.documents,
                 _crc32_combine(a.crc, b.crc, b.end - b.start))


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A + B from CRC-32(A), CRC-32(B) and len(B) (zlib's crc32_combine, which
    Python's zlib does not export)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << i for i in range(31)]  # the operator for one zero bit
    even = [_gf2_times(odd, odd[i]) for i in range(32)]     # two zero bits
    odd = [_gf2_times(even, even[i]) for i in range(32)]    # four zero bits
    while True:
        even = [_gf2_times(odd, odd[i]) for i in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, even[i]) for i in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2

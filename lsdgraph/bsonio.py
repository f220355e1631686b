"""Raw BSON, vectorized: split a byte buffer into documents, pull chosen top-level fields out as
numpy columns, and write columns back as BSON — without building a Python object per document.

A mongodump ``.bson`` file is a plain concatenation of BSON documents, each starting with its int32
little-endian total length. :func:`scan` walks the documents *and their elements* (so a length
prefix that lies is caught where it lies), recording for each requested field its BSON type and the
byte offset of its value; :func:`gather` turns those into int64 values (doubles as raw bits).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator, Sequence

import numpy as np
from numba import njit

# BSON element types used here
T_MISSING = 0
T_DOUBLE = 1
T_STRING = 2
T_OID = 7
T_BOOL = 8
T_NULL = 10
T_INT32 = 16
T_INT64 = 18
TYPE_NAMES = {
    0: "missing", 1: "double", 2: "string", 3: "document", 4: "array", 5: "binary",
    6: "undefined", 7: "ObjectId", 8: "bool", 9: "datetime", 10: "null", 11: "regex",
    12: "DBPointer", 13: "code", 14: "symbol", 15: "code with scope", 16: "int32",
    17: "timestamp", 18: "int64", 19: "decimal128", 127: "maxKey", 255: "minKey",
}

MAX_DOC_BYTES = 16 * 1024 * 1024 + 16 * 1024  # the server's 16 MiB limit plus headroom

# scan() error codes
OK = 0
ERR_LENGTH = 1      # a length prefix out of range
ERR_TYPE = 2        # an unknown element type byte
ERR_OVERRUN = 3     # an element runs past the document's declared end
ERR_TERMINATOR = 4  # the elements end somewhere other than where the length prefix says
ERR_CSTRING = 5     # an element name without its NUL
ERR_STRLEN = 6      # a string/binary length out of range
ERR_TRUNCATED = 7   # the data ends inside a document

ERROR_TEXT = {
    ERR_LENGTH: "length prefix {length} is not a valid BSON document length (5 .. 16 MiB)",
    ERR_TYPE: "unknown BSON element type byte at byte {at}",
    ERR_OVERRUN: "an element at byte {at} runs past the document's declared length {length}",
    ERR_TERMINATOR: "the length prefix says {length} bytes but the document's elements end at byte {at}",
    ERR_CSTRING: "an element name starting at byte {at} has no terminating NUL",
    ERR_STRLEN: "a string or binary value at byte {at} declares an impossible length",
    ERR_TRUNCATED: "the data ends inside a document: {remaining} bytes remain of a declared {length}",
}


@njit(inline="always")
def _u32(b, p):
    return (np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16)
            | (np.int64(b[p + 3]) << 24))


@njit(inline="always")
def _i32(b, p):
    v = _u32(b, p)
    if v >= 2147483648:
        v -= 4294967296
    return v


@njit(inline="always")
def _i64(b, p):
    return _u32(b, p) | (_u32(b, p + 4) << 32)  # int64 wraparound gives two's complement


@njit(cache=True, nogil=True)
def _scan(buf, pos, end, final, names, name_lens, max_docs, starts, types, vpos):
    """Walk documents in ``buf[pos:end]``; returns (n_docs, pos, error, error_at)."""
    nf = names.shape[0]
    n = 0
    while n < max_docs:
        if pos >= end:
            return n, pos, OK, pos
        if end - pos < 4:
            if final:
                return n, pos, ERR_TRUNCATED, pos
            return n, pos, OK, pos
        length = _i32(buf, pos)
        if length < 5 or length > MAX_DOC_BYTES:
            return n, pos, ERR_LENGTH, pos
        if pos + length > end:
            if final:
                return n, pos, ERR_TRUNCATED, pos
            return n, pos, OK, pos
        last = pos + length - 1  # where the terminating NUL must be
        for f in range(nf):
            types[n, f] = 0
        p = pos + 4
        while True:
            if p > last:
                return n, pos, ERR_OVERRUN, p
            t = buf[p]
            if t == 0:
                if p != last:
                    return n, pos, ERR_TERMINATOR, p
                break
            p += 1
            q = p
            while q < last and buf[q] != 0:
                q += 1
            if q >= last:
                return n, pos, ERR_CSTRING, p
            nl = q - p
            field = -1
            for f in range(nf):
                if name_lens[f] == nl:
                    same = True
                    for k in range(nl):
                        if buf[p + k] != names[f, k]:
                            same = False
                            break
                    if same:
                        field = f
                        break
            p = q + 1
            if t == 1 or t == 9 or t == 17 or t == 18:
                size = 8
            elif t == 16:
                size = 4
            elif t == 7:
                size = 12
            elif t == 8:
                size = 1
            elif t == 10 or t == 6 or t == 255 or t == 127:
                size = 0
            elif t == 19:
                size = 16
            elif t == 2 or t == 13 or t == 14 or t == 12:
                if p + 4 > last:
                    return n, pos, ERR_OVERRUN, p
                sl = _i32(buf, p)
                if sl < 1 or p + 4 + sl > last:
                    return n, pos, ERR_STRLEN, p
                size = 4 + sl + (12 if t == 12 else 0)
            elif t == 3 or t == 4 or t == 15:
                if p + 4 > last:
                    return n, pos, ERR_OVERRUN, p
                size = _i32(buf, p)
                if size < 5:
                    return n, pos, ERR_STRLEN, p
            elif t == 5:
                if p + 4 > last:
                    return n, pos, ERR_OVERRUN, p
                sl = _i32(buf, p)
                if sl < 0:
                    return n, pos, ERR_STRLEN, p
                size = 5 + sl
            elif t == 11:
                q = p
                for _ in range(2):
                    while q < last and buf[q] != 0:
                        q += 1
                    q += 1
                size = q - p
            else:
                return n, pos, ERR_TYPE, p - nl - 2
            if p + size > last:
                return n, pos, ERR_OVERRUN, p
            if field >= 0:
                types[n, field] = t
                vpos[n, field] = p
            p += size
        starts[n] = pos
        n += 1
        pos += length
    return n, pos, OK, pos


@njit(cache=True, nogil=True)
def _gather(buf, types, vpos, out):
    """int32/int64/bool values as int64, doubles as their raw 64-bit pattern, others 0."""
    n, nf = types.shape
    for i in range(n):
        for f in range(nf):
            t = types[i, f]
            p = vpos[i, f]
            if t == 16:
                out[i, f] = _i32(buf, p)
            elif t == 18 or t == 1:
                out[i, f] = _i64(buf, p)
            elif t == 8:
                out[i, f] = buf[p]
            else:
                out[i, f] = 0


@dataclass
class ScanError:
    """Where and why :func:`scan` stopped on bad bytes."""

    code: int
    doc_offset: int  # offset of the offending document in the buffer
    at: int          # offset of the offending byte in the buffer
    length: int      # the document's declared length (when readable)
    remaining: int   # bytes left from doc_offset to the end of the data

    def describe(self, base: int = 0) -> str:
        return ERROR_TEXT[self.code].format(length=self.length, at=base + self.at,
                                            remaining=self.remaining)


@dataclass
class Docs:
    """A run of whole documents in ``buf`` with the requested fields' types and values."""

    buf: np.ndarray      # uint8
    starts: np.ndarray   # int64 offset of each document in buf
    ends: np.ndarray     # int64 end (exclusive) of each document
    fields: tuple[str, ...]
    types: np.ndarray    # uint8 (n, n_fields): BSON type per field, 0 = missing
    values: np.ndarray   # int64 (n, n_fields): ints as values, doubles as bit patterns

    def __len__(self) -> int:
        return len(self.starts)

    def col(self, field: str) -> int:
        return self.fields.index(field)

    def type_of(self, field: str) -> np.ndarray:
        return self.types[:, self.col(field)]

    def ints(self, field: str) -> np.ndarray:
        """The field as int64 (0 where it is not an integer)."""
        return self.values[:, self.col(field)].copy()

    def floats(self, field: str) -> np.ndarray:
        """The field as float64: doubles and integers converted, NaN for null/missing/other."""
        j = self.col(field)
        t = self.types[:, j]
        v = self.values[:, j]
        out = np.full(len(t), np.nan)
        d = t == T_DOUBLE
        out[d] = v[d].view(np.float64)
        i = (t == T_INT32) | (t == T_INT64)
        out[i] = v[i].astype(np.float64)
        return out

    def take(self, rows: np.ndarray) -> "Docs":
        """The documents at ``rows`` (a mask or indices); they need not be contiguous."""
        return Docs(self.buf, self.starts[rows], self.ends[rows], self.fields, self.types[rows], self.values[rows])

    def raw(self, i: int) -> bytes:
        return self.buf[self.starts[i]:self.ends[i]].tobytes()

    def contiguous(self) -> bool:
        return len(self) == 0 or bool(np.all(self.starts[1:] == self.ends[:-1]))

    def block(self) -> memoryview:
        """The bytes of all documents (they are contiguous in buf)."""
        if len(self) == 0:
            return memoryview(b"")
        return memoryview(self.buf[self.starts[0]:self.ends[-1]])


def _name_table(fields: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = [f.encode() for f in fields]
    width = max([len(e) for e in enc] + [1])
    names = np.zeros((len(enc), width), np.uint8)
    lens = np.zeros(len(enc), np.int64)
    for i, e in enumerate(enc):
        names[i, :len(e)] = np.frombuffer(e, np.uint8)
        lens[i] = len(e)
    return names, lens


def scan(buf, fields: Sequence[str], start: int = 0, end: int | None = None, *, final: bool = True,
         max_docs: int | None = None) -> tuple[Docs, int, ScanError | None]:
    """Split ``buf[start:end]`` into documents and extract ``fields``.

    Returns (docs, stop, error): ``stop`` is where scanning stopped (the start of an incomplete
    trailing document when ``final`` is false). ``error`` describes bad bytes at ``stop``.
    """
    a = np.frombuffer(buf, np.uint8) if not isinstance(buf, np.ndarray) else buf
    end = len(a) if end is None else end
    if max_docs is None:
        max_docs = max(1, (end - start) // 5 + 1)
    names, lens = _name_table(fields)
    nf = len(fields)
    cap = max_docs
    starts = np.empty(cap, np.int64)
    types = np.empty((cap, nf), np.uint8)
    vpos = np.empty((cap, nf), np.int64)
    n, stop, code, at = _scan(a, start, end, final, names, lens, max_docs, starts, types, vpos)
    starts = starts[:n]
    types = types[:n]
    values = np.empty((n, nf), np.int64)
    _gather(a, types, vpos[:n], values)
    ends = np.empty(n, np.int64)
    if n:
        ends[:-1] = starts[1:]
        ends[-1] = stop
    err = None
    if code != OK:
        remaining = end - stop
        length = int(_i32(a, stop)) if remaining >= 4 else -1
        err = ScanError(code, stop, at, length, remaining)
    return Docs(a, starts, ends, tuple(fields), types, values), stop, err


def iter_docs(stream: BinaryIO, fields: Sequence[str], *, chunk_bytes: int = 8 << 20,
              max_docs: int = 200_000, start_offset: int = 0
              ) -> Iterator[tuple[int, Docs, ScanError | None]]:
    """Stream documents from a binary file object in bounded memory.

    Yields (offset, docs, error) where ``offset`` is the file offset of ``docs.buf[0]``; the last
    item carries the error, if any. At most ``max_docs`` documents per item. Memory stays near
    1.5 × ``chunk_bytes`` (more only for one document larger than that, at most 16 MiB).
    """
    chunk_bytes = max(int(chunk_bytes), 1)
    buf, pos, offset, eof, stalled = b"", 0, start_offset, False, False
    while True:
        # Refill when half a chunk is left (or the next document is incomplete): only the
        # unconsumed tail is copied, so each byte is copied about once, not once per batch.
        if not eof and (stalled or len(buf) - pos < (chunk_bytes + 1) // 2):
            rest = buf[pos:]
            offset += pos
            pos = 0
            need = max(chunk_bytes, 4, len(rest) + 1 if stalled else 0)
            if len(rest) >= 4:
                declared = int.from_bytes(rest[:4], "little", signed=True)
                if 5 <= declared <= MAX_DOC_BYTES:
                    need = max(need, declared)
            pieces, have = [rest], len(rest)
            while have < need:
                piece = stream.read(need - have)
                if not piece:
                    eof = True
                    break
                pieces.append(piece)
                have += len(piece)
            buf = b"".join(pieces) if len(pieces) > 1 else rest
        if pos >= len(buf):
            return
        docs, stop, err = scan(np.frombuffer(buf, np.uint8), fields, start=pos, final=eof,
                               max_docs=max_docs)
        if err is not None:
            yield offset, docs, err
            return
        stalled = stop == pos
        if len(docs):
            yield offset, docs, None
        pos = stop


# ----------------------------------------------------------------------------------------------
# writing

K_INT = 0        # int32 when it fits, else int64 (what pymongo writes for a Python int)
K_INT64 = 1
K_DOUBLE = 2     # NaN becomes null (None in the lab's data)
K_BOOL = 3
KINDS = {"int": K_INT, "int64": K_INT64, "double": K_DOUBLE, "bool": K_BOOL}


@njit(cache=True, nogil=True)
def _is_nan_bits(v):
    return (v & 0x7FF0000000000000) == 0x7FF0000000000000 and (v & 0x000FFFFFFFFFFFFF) != 0


@njit(cache=True, nogil=True)
def _encode(oids, vals, kinds, names, name_lens):
    n, nf = vals.shape
    has_oid = oids.shape[0] == n and n > 0
    sizes = np.empty(n, np.int64)
    for i in range(n):
        s = 5 + (17 if has_oid else 0)
        for f in range(nf):
            s += 2 + name_lens[f]
            k = kinds[f]
            v = vals[i, f]
            if k == K_INT:
                s += 4 if -2147483648 <= v < 2147483648 else 8
            elif k == K_INT64:
                s += 8
            elif k == K_DOUBLE:
                s += 0 if _is_nan_bits(v) else 8
            else:
                s += 1
        sizes[i] = s
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    for i in range(n):
        offs[i + 1] = offs[i] + sizes[i]
    out = np.empty(offs[n], np.uint8)
    for i in range(n):
        p = offs[i]
        s = sizes[i]
        for k in range(4):
            out[p + k] = (s >> (8 * k)) & 0xFF
        p += 4
        if has_oid:
            out[p] = 7
            out[p + 1] = 95   # _id
            out[p + 2] = 105
            out[p + 3] = 100
            out[p + 4] = 0
            p += 5
            for k in range(12):
                out[p + k] = oids[i, k]
            p += 12
        for f in range(nf):
            k = kinds[f]
            v = vals[i, f]
            if k == K_INT:
                t = 16 if -2147483648 <= v < 2147483648 else 18
                w = 4 if t == 16 else 8
            elif k == K_INT64:
                t = 18
                w = 8
            elif k == K_DOUBLE:
                if _is_nan_bits(v):
                    t = 10
                    w = 0
                else:
                    t = 1
                    w = 8
            else:
                t = 8
                w = 1
                v = 1 if v != 0 else 0
            out[p] = t
            p += 1
            for c in range(name_lens[f]):
                out[p + c] = names[f, c]
            p += name_lens[f]
            out[p] = 0
            p += 1
            for c in range(w):
                out[p + c] = (v >> (8 * c)) & 0xFF
            p += w
        out[p] = 0
    return out, offs


def encode(columns: dict[str, tuple[str, np.ndarray]], oids: np.ndarray | None = None) -> bytes:
    """Write documents from columns: ``{"name": (kind, values)}`` with kind in
    ``int``/``int64``/``double`` (NaN → null)/``bool``; ``oids`` (n, 12) uint8 become ``_id``."""
    names, lens = _name_table(list(columns))
    n = len(next(iter(columns.values()))[1]) if columns else (0 if oids is None else len(oids))
    lengths = {name: len(col) for name, (_, col) in columns.items()}
    if any(m != n for m in lengths.values()):
        raise ValueError(f"encode: columns differ in length: {lengths}")
    if oids is not None and len(oids) != n:
        raise ValueError(f"encode: {len(oids)} ObjectIds for {n} documents")
    unknown = [kind for kind, _ in columns.values() if kind not in KINDS]
    if unknown:
        raise ValueError(f"encode: unknown kind {unknown[0]!r}; use one of {sorted(KINDS)}")
    vals = np.empty((n, len(columns)), np.int64)
    kinds = np.empty(len(columns), np.int64)
    for j, (kind, col) in enumerate(columns.values()):
        kinds[j] = KINDS[kind]
        col = np.asarray(col)
        if kind == "double":
            vals[:, j] = col.astype(np.float64).view(np.int64)
        else:
            vals[:, j] = col.astype(np.int64)
    o = np.zeros((0, 12), np.uint8) if oids is None else np.ascontiguousarray(oids, np.uint8)
    out, _ = _encode(o, vals, kinds, names, lens)
    return out.tobytes()


def object_ids(n: int, rng: np.random.Generator, start_time: int = 1_500_000_000) -> np.ndarray:
    """``n`` ObjectIds as (n, 12) uint8 laid out as MongoDB makes them: a big-endian seconds
    timestamp, 5 random bytes per process, a big-endian counter."""
    out = np.empty((n, 12), np.uint8)
    secs = start_time + np.arange(n, dtype=np.int64) // 50_000
    out[:, 0:4] = secs.astype(">u4").view(np.uint8).reshape(n, 4)
    out[:, 4:9] = rng.integers(0, 256, 5, dtype=np.uint8)
    counter = (int(rng.integers(0, 1 << 23)) + np.arange(n, dtype=np.int64)) % (1 << 24)
    out[:, 9:12] = counter.astype(">u4").view(np.uint8).reshape(n, 4)[:, 1:]
    return out


@njit(cache=True, nogil=True)
def _append(buf, starts, ends, present, vals, names, name_lens, kinds, oid_prefix):
    n, nf = present.shape
    size = 0
    for i in range(n):
        size += ends[i] - starts[i]
        for f in range(nf):
            if present[i, f]:
                size += 2 + name_lens[f] + (12 if kinds[f] == 1 else 8)
    out = np.empty(size, np.uint8)
    new_starts = np.empty(n, np.int64)
    p = 0
    for i in range(n):
        s = starts[i]
        e = ends[i]
        new_starts[i] = p
        q = p
        for k in range(s, e - 1):
            out[q] = buf[k]
            q += 1
        for f in range(nf):
            if not present[i, f]:
                continue
            out[q] = 7 if kinds[f] == 1 else (18 if kinds[f] == 2 else 1)
            q += 1
            for c in range(name_lens[f]):
                out[q + c] = names[f, c]
            q += name_lens[f]
            out[q] = 0
            q += 1
            v = vals[i, f]
            if kinds[f] == 1:  # ObjectId: 4-byte prefix + 8-byte big-endian value
                for c in range(4):
                    out[q + c] = oid_prefix[c]
                for c in range(8):
                    out[q + 4 + c] = (v >> (8 * (7 - c))) & 0xFF
                q += 12
            else:
                for c in range(8):
                    out[q + c] = (v >> (8 * c)) & 0xFF
                q += 8
        out[q] = 0
        q += 1
        length = q - p
        for k in range(4):
            out[p + k] = (length >> (8 * k)) & 0xFF
        p = q
    return out, new_starts


_APPEND_KINDS = {"double": 0, "oid": 1, "int64": 2}


def append_fields(docs: Docs, columns: dict[str, tuple[str, np.ndarray]], present: np.ndarray,
                  oid_prefix: bytes = b"\0\0\0\0") -> Docs:
    """New documents with extra top-level fields appended (no decode/encode round trip).

    ``columns``: ``{"name": (kind, values)}`` with kind ``double``, ``int64`` or ``oid`` (an
    ObjectId of ``oid_prefix`` + the big-endian int64 value). Only ``present`` (n, k) cells are
    written. The returned Docs carries no field columns.
    """
    names, lens = _name_table(list(columns))
    kinds = np.array([_APPEND_KINDS[k] for k, _ in columns.values()], np.int64)
    vals = np.empty((len(docs), len(columns)), np.int64)
    for j, (kind, col) in enumerate(columns.values()):
        col = np.asarray(col)
        vals[:, j] = col.astype(np.float64).view(np.int64) if kind == "double" else col.astype(np.int64)
    out, new_starts = _append(docs.buf, docs.starts, docs.ends, np.ascontiguousarray(present),
                              vals, names, lens, kinds, np.frombuffer(oid_prefix, np.uint8))
    ends = np.empty_like(new_starts)
    if len(new_starts):
        ends[:-1] = new_starts[1:]
        ends[-1] = len(out)
    return Docs(out, new_starts, ends, (), np.empty((len(out), 0), np.uint8)[:len(new_starts)],
                np.empty((len(new_starts), 0), np.int64))

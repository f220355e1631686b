"""Raw BSON, vectorized: split a byte buffer into documents, pull chosen top-level fields out as
numpy columns, and write columns back as BSON — without building a Python object per document.

A mongodump ``.bson`` file is a plain concatenation of BSON documents, each starting with its int32
little-endian total length. :func:`scan` walks the documents *and every element in them*, embedded
documents and arrays included, so what the server (or pymongo) would reject is caught here, where
it is: lengths that lie, strings without their NUL or not UTF-8, bools other than 0/1, a name twice
in one document, nesting past MongoDB's limit. It records for each requested top-level field its
BSON type and value (ints as int64, doubles as raw bits), and lists the other top-level names.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numba import njit


class Readable(Protocol):
    """What the streaming reader needs of a file: ``read``; ``readinto`` is used when the class
    that defines ``read`` defines it too."""

    def read(self, size: int = -1, /) -> bytes: ...


class Limited:
    """The next ``n`` bytes of a stream (a byte range of a file, read through :func:`iter_docs`)."""

    def __init__(self, stream, n: int):
        self.stream, self.left = stream, n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.read(size) if size else b""
        self.left -= len(data)
        return data


# BSON element types used here
T_MISSING = 0
T_DOUBLE = 1
T_STRING = 2
T_DOCUMENT = 3
T_ARRAY = 4
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

MAX_DEPTH = 100     # MongoDB's limit on nested documents and arrays
EXTRA_NAMES = 64    # distinct unrequested top-level names a scan remembers (see Docs.extras)

# scan() error codes
OK = 0
ERR_LENGTH = 1      # a length prefix out of range
ERR_TYPE = 2        # an unknown element type byte
ERR_OVERRUN = 3     # an element runs past the document's declared end
ERR_TERMINATOR = 4  # the elements end somewhere other than where the length prefix says
ERR_CSTRING = 5     # an element name without its NUL
ERR_STRLEN = 6      # a string/binary/embedded document length out of range
ERR_TRUNCATED = 7   # the data ends inside a document
ERR_STRING = 8      # a string value without its terminating NUL
ERR_UTF8 = 9        # a string value that is not valid UTF-8
ERR_NAME_UTF8 = 10  # an element name that is not valid UTF-8
ERR_BOOL = 11       # a bool byte other than 0 or 1
ERR_DUPLICATE = 12  # the same name twice in one document (top level or embedded)
ERR_DEPTH = 13      # documents and arrays nested deeper than MAX_DEPTH

ERROR_TEXT = {
    ERR_LENGTH: "length prefix {length} is not a valid BSON document length (5 .. 16 MiB)",
    ERR_TYPE: "unknown BSON element type byte at byte {at}{inside}",
    ERR_OVERRUN: "an element at byte {at} runs past {where}'s declared length {length}",
    ERR_TERMINATOR: "the length prefix says {length} bytes but {where}'s elements end at byte {at}",
    ERR_CSTRING: "an element name starting at byte {at}{inside} has no terminating NUL",
    ERR_STRLEN: "a string, binary or embedded document value at byte {at}{inside} declares an impossible length",
    ERR_TRUNCATED: "the data ends inside a document: {remaining} bytes remain of a declared {length}",
    ERR_STRING: "the string `{field}` at byte {at} has no terminating NUL",
    ERR_UTF8: "the string `{field}` at byte {at} is not valid UTF-8",
    ERR_NAME_UTF8: "the field name `{field}` at byte {at} is not valid UTF-8",
    ERR_BOOL: "the bool `{field}` at byte {at} has the byte value {value} (a bool is 0 or 1)",
    ERR_DUPLICATE: "the field `{field}` appears twice in one document (again at byte {at}), so readers "
                   "disagree on its value (MongoDB matches the first)",
    ERR_DEPTH: "`{field}` at byte {at} nests documents and arrays deeper than MongoDB's limit of "
               f"{MAX_DEPTH} levels",
}
# errors inside one document whose length and boundaries are intact
ELEMENT_ERRORS = (ERR_STRING, ERR_UTF8, ERR_NAME_UTF8, ERR_BOOL, ERR_DUPLICATE, ERR_DEPTH)


@njit(inline="always")
def _u32(b, p):
    q = np.uint64(p)  # an unsigned index skips numba's negative-index fix-up: the loads fuse
    return (np.int64(b[q]) | (np.int64(b[q + np.uint64(1)]) << 8) | (np.int64(b[q + np.uint64(2)]) << 16)
            | (np.int64(b[q + np.uint64(3)]) << 24))


@njit(inline="always")
def _i32(b, p):
    v = _u32(b, p)
    if v >= 2147483648:
        v -= 4294967296
    return v


@njit(inline="always")
def _i64(b, p):
    return _u32(b, p) | (_u32(b, p + 4) << 32)  # int64 wraparound gives two's complement


def _py_key(name: bytes) -> tuple[int, int]:
    """A name's key as _scan computes it: its first and last 8 bytes as int64s (4 bytes, or the
    bytes, when shorter). Equal lengths and keys mean equal names up to 16 bytes: two compares
    instead of a loop over the bytes."""
    n = len(name)
    if n >= 8:
        return (int.from_bytes(name[:8], "little", signed=True),
                int.from_bytes(name[-8:], "little", signed=True))
    if n >= 4:
        return int.from_bytes(name[:4], "little"), int.from_bytes(name[-4:], "little")
    return int.from_bytes(name, "little"), 0


@njit(cache=True, nogil=True)
def _utf8_ok(b, p, e):
    """Is ``b[p:e]`` valid UTF-8, as strictly as Python decodes it (no overlongs, no surrogates)?"""
    while p < e:
        c = b[p]
        if c < 0x80:
            p += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        need = 1 if c < 0xE0 else (2 if c < 0xF0 else 3)
        if p + need >= e:
            return False
        lo, hi = 0x80, 0xBF  # the second byte's range, narrower after E0, ED, F0, F4
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
        elif c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
        if not lo <= b[p + 1] <= hi:
            return False
        for k in range(2, need + 1):
            if not 0x80 <= b[p + k] <= 0xBF:
                return False
        p += need + 1
    return True


@njit(cache=True, nogil=True)
def _same(b, p, q, n):
    for k in range(n):  # a loop: numba compiles no generator into all()
        if b[p + k] != b[q + k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _same_name(b, p, names, f, n):
    for k in range(n):
        if b[p + k] != names[f, k]:
            return False
    return True


@njit(inline="always")
def _hash(b, p, nl):
    h = np.uint64(14695981039346656037)  # FNV-1a
    for k in range(nl):
        h = (h ^ np.uint64(b[p + k])) * np.uint64(1099511628211)
    return h


# The name set, for the names not checked for repeats otherwise (those in embedded documents,
# and top-level ones beyond EXTRA_NAMES): open addressing over rows (name offset, name length,
# container start, container end). A row whose container does not hold the current position
# belongs to a closed container and counts as free, so nothing is ever cleared: the rows a probe
# passes belong to containers still open (the current one or an ancestor), so lookups stay right.
@njit(inline="always")
def _slot_live(hs, i, cur):
    return hs[i, 2] <= cur <= hs[i, 3]


@njit(cache=True, nogil=True)
def _set_put(b, hs, p, nl, start, last):
    """Add name ``b[p:p+nl]`` of the container ``b[start:last+1]``; False if it is there already."""
    mask = hs.shape[0] - 1
    i = np.int64(_hash(b, p, nl) & np.uint64(mask))
    while _slot_live(hs, i, p):
        if hs[i, 2] == start and hs[i, 1] == nl and _same(b, hs[i, 0], p, nl):
            return False
        i = (i + 1) & mask
    hs[i, 0], hs[i, 1], hs[i, 2], hs[i, 3] = p, nl, start, last
    return True


@njit(cache=True, nogil=True)
def _set_add(b, hs, p, nl, depth, state, path):
    """(name set, fresh): add a name of the container at ``path[depth]``, growing the set to
    keep it at most half full (``state[2]`` counts the rows of open containers)."""
    if 2 * (state[2] + 1) > hs.shape[0]:
        grown = np.full((2 * hs.shape[0], 4), -2, np.int64)
        for i in range(hs.shape[0]):
            if _slot_live(hs, i, p):
                _set_put(b, grown, hs[i, 0], hs[i, 1], hs[i, 2], hs[i, 3])
        hs = grown
    fresh = _set_put(b, hs, p, nl, path[depth, 2], path[depth, 5])
    if fresh:
        state[2] += 1
        path[depth, 4] += 1
    return hs, fresh


@njit(cache=True, nogil=True)
def _string_size(b, v, last):
    """(code, size) of a string value at ``v`` (int32 length, UTF-8 bytes, NUL) before ``last``."""
    if v + 4 > last:
        return ERR_OVERRUN, 0
    sl = _i32(b, v)
    if sl < 1 or v + 4 + sl > last:
        return ERR_STRLEN, 0
    if b[v + 3 + sl] != 0:
        return ERR_STRING, 0
    if not _utf8_ok(b, v + 4, v + 3 + sl):
        return ERR_UTF8, 0
    return OK, 4 + sl


@njit(cache=True, nogil=True)
def _cstring_size(b, v, last):
    """(code, size) of a NUL-terminated UTF-8 string at ``v`` before ``last``."""
    q = v
    while q < last and b[q] != 0:
        q += 1
    if q >= last:
        return ERR_OVERRUN, 0
    if not _utf8_ok(b, v, q):
        return ERR_UTF8, 0
    return OK, q + 1 - v


@njit(cache=True, nogil=True)
def _variable_size(b, t, v, last):
    """(code, at, size) of a string, binary, regex or DBPointer value at ``v``; ``at`` is the byte
    at fault, 0 when it is the element itself."""
    if t == 5:  # int32 length, subtype, bytes; the old subtype 2 repeats the length inside
        if v + 4 > last:
            return ERR_OVERRUN, v, 0
        sl = _i32(b, v)
        if sl < 0:
            return ERR_STRLEN, v, 0
        if v + 5 + sl > last:
            return ERR_OVERRUN, v, 0
        if b[v + 4] == 2 and (sl < 4 or _i32(b, v + 5) != sl - 4):
            return ERR_STRLEN, v, 0
        return OK, 0, 5 + sl
    if t == 11:  # regex: pattern and options, two C strings
        code, size = _cstring_size(b, v, last)
        if code == OK:
            code, more = _cstring_size(b, v + size, last)
            size += more
    else:        # string, code, symbol; DBPointer is a string and 12 bytes
        code, size = _string_size(b, v, last)
        size += 12 if t == 12 else 0
    if code in (ERR_STRING, ERR_UTF8):
        return code, 0, 0
    return code, v, size


@njit(inline="always")
def _fixed_size(t):
    """Bytes of a fixed-size value of type ``t``; -1 for the types sized by their content."""
    if t == 1 or t == 9 or t == 17 or t == 18:
        return 8
    if t == 16:
        return 4
    if t == 7:
        return 12
    if t == 8:
        return 1
    if t == 10 or t == 6 or t == 255 or t == 127:
        return 0
    if t == 19:
        return 16
    return -1


@njit(cache=True, nogil=True)
def _container(b, t, v, last):
    """(code, at, start, end) of the document an element of type 3, 4 or 15 at ``v`` opens,
    from ``start`` to its terminating NUL at ``end``; code with scope is checked up to its scope."""
    if v + 4 > last:
        return ERR_OVERRUN, v, 0, 0
    size = _i32(b, v)
    if size < (14 if t == 15 else 5):
        return ERR_STRLEN, v, 0, 0
    if v + size > last:
        return ERR_OVERRUN, v, 0, 0
    start = v
    if t == 15:  # int32 total, the code as a string, then the scope document filling the rest
        code, sl = _string_size(b, v + 4, v + size - 1)
        if code in (ERR_STRING, ERR_UTF8):
            return code, 0, 0, 0
        start = v + 4 + sl
        if code != OK or start + 5 > v + size or _i32(b, start) != v + size - start:
            return ERR_STRLEN, v, 0, 0
    return OK, 0, start, v + size - 1


@njit(cache=True, nogil=True)
def _scan(buf, pos, end, final, names, name_lens, keys, max_docs, starts, types, vpos, extra, state, path):
    """Walk documents in ``buf[pos:end]`` and every element in them, at every depth; returns
    (n_docs, pos, error, error_at, error_depth, on_element).

    ``keys`` are the requested names' :func:`_py_key`. ``extra`` rows (offset, length, first
    document, first element, key, key) are the distinct top-level names that are not requested;
    ``state`` is [extra rows used, first document with such a name that did not fit (-1: none),
    name set rows of open containers]. ``path`` rows (name offset, name length, start, type, name
    set rows, end) are the open containers, row 0 the document; on an error ``error_depth`` is the
    container's row and, when ``on_element``, row ``error_depth + 1`` names the element.

    One long loop on purpose: the common elements (names, numbers, bools, ObjectIds) are handled
    inline, since a call per element (or numba's reference counting around inlined helpers that
    take arrays) costs more than the whole scan; rare values go through helpers.
    """
    nf = names.shape[0]
    seen = np.full(extra.shape[0], -1, np.int64)  # the document each extra name was last seen in
    hs = np.full((64, 4), -2, np.int64)           # the name set (all rows free)
    n = 0
    while n < max_docs:
        if pos >= end:
            return n, pos, OK, pos, 0, False
        if end - pos < 4:
            return n, pos, ERR_TRUNCATED if final else OK, pos, 0, False
        length = _i32(buf, pos)
        if length < 5 or length > MAX_DOC_BYTES:
            return n, pos, ERR_LENGTH, pos, 0, False
        if pos + length > end:
            return n, pos, ERR_TRUNCATED if final else OK, pos, 0, False
        for f in range(nf):
            types[n, f] = 0
        depth = 0
        last = pos + length - 1  # where the current container's terminating NUL must be
        path[0, 2], path[0, 3], path[0, 4], path[0, 5] = pos, 3, 0, last
        p = pos + 4
        while True:
            if p > last:
                return n, pos, ERR_OVERRUN, p, depth, False
            t = buf[p]
            if t == 0:
                if p != last:
                    return n, pos, ERR_TERMINATOR, p, depth, False
                state[2] -= path[depth, 4]
                if depth == 0:
                    break
                depth -= 1
                p = last + 1
                last = path[depth, 5]
                continue
            el = p
            p += 1
            q = p
            hi = 0  # the OR of the name's bytes: below 0x80 it is ASCII, valid UTF-8
            while q < last and buf[q] != 0:
                hi |= buf[q]
                q += 1
            if q >= last:
                return n, pos, ERR_CSTRING, p, depth, False
            nl = q - p
            path[depth + 1, 0], path[depth + 1, 1] = p, nl
            if t > 19 and t != 127 and t != 255:
                return n, pos, ERR_TYPE, el, depth, True
            if hi >= 0x80 and not _utf8_ok(buf, p, q):
                return n, pos, ERR_NAME_UTF8, el, depth, True
            v = q + 1
            # repeated names: requested fields by their column, other top-level names by their
            # extra row, the rest through the name set (array keys are positional: not checked)
            fresh = True
            to_set = depth > 0 and path[depth, 3] != 4
            if depth == 0:
                if nl >= 8:  # the key (see _py_key); inline, as a helper taking buf costs more
                    head, tail = _i64(buf, p), _i64(buf, p + nl - 8)
                elif nl >= 4:
                    head, tail = _u32(buf, p), _u32(buf, p + nl - 4)
                else:  # the 4 bytes ending at the name's NUL, shifted down to the name's
                    head, tail = _u32(buf, q - 3) >> (8 * (3 - nl)), 0
                field = -1
                for f in range(nf):
                    if (name_lens[f] == nl and keys[f, 0] == head and keys[f, 1] == tail
                            and (nl <= 16 or _same_name(buf, p, names, f, nl))):
                        field = f
                        break
                if field >= 0:
                    fresh = types[n, field] == 0
                    types[n, field] = t
                    vpos[n, field] = v
                else:
                    j = -1
                    for k in range(state[0]):
                        if (extra[k, 1] == nl and extra[k, 4] == head and extra[k, 5] == tail
                                and (nl <= 16 or _same(buf, extra[k, 0], p, nl))):
                            j = k
                            break
                    if j < 0 and state[0] < extra.shape[0]:
                        j = state[0]
                        extra[j, 0], extra[j, 1], extra[j, 2], extra[j, 3], extra[j, 4], extra[j, 5] = (
                            p, nl, n, el, head, tail)
                        state[0] += 1
                    if j >= 0:
                        fresh = seen[j] != n
                        seen[j] = n
                    else:
                        if state[1] < 0:
                            state[1] = n
                        to_set = True
            if to_set:
                hs, fresh = _set_add(buf, hs, p, nl, depth, state, path)
            if not fresh:
                return n, pos, ERR_DUPLICATE, el, depth, True
            size = _fixed_size(t)
            if size >= 0:
                pass
            elif t == 3 or t == 4 or t == 15:
                code, at, start, sub_last = _container(buf, t, v, last)
                if code != OK:
                    return n, pos, code, (at if at else el), depth, True
                if depth == MAX_DEPTH:
                    return n, pos, ERR_DEPTH, el, depth, True
                depth += 1
                path[depth, 2], path[depth, 3], path[depth, 4], path[depth, 5] = start, t, 0, sub_last
                last = sub_last
                p = start + 4
                continue
            else:
                code, at, size = _variable_size(buf, t, v, last)
                if code != OK:
                    return n, pos, code, (at if at else el), depth, True
            if v + size > last:
                return n, pos, ERR_OVERRUN, v, depth, True
            if t == 8 and buf[v] > 1:
                return n, pos, ERR_BOOL, el, depth, True
            p = v + size
        starts[n] = pos
        n += 1
        pos += length
    return n, pos, OK, pos, 0, False


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
    at: int          # offset of the offending byte (or element) in the buffer
    length: int      # the declared length of the document (or embedded one) at fault, when readable
    remaining: int   # bytes left from doc_offset to the end of the data
    field: str = ""  # dotted path of the element at fault ("" when it is the document itself)
    where: str = "the document"  # the container at fault: the document or an embedded one
    value: int = -1  # the offending byte, for a bad bool

    def describe(self, base: int = 0) -> str:
        inside = "" if self.where == "the document" else f" in {self.where}"
        return ERROR_TEXT[self.code].format(length=self.length, at=base + self.at, remaining=self.remaining,
                                            field=self.field, where=self.where, inside=inside,
                                            value=self.value)


@dataclass
class Docs:
    """A run of whole documents in ``buf`` with the requested fields' types and values."""

    buf: np.ndarray      # uint8
    starts: np.ndarray   # int64 offset of each document in buf
    ends: np.ndarray     # int64 end (exclusive) of each document
    fields: tuple[str, ...]
    types: np.ndarray    # uint8 (n, n_fields): BSON type per field, 0 = missing
    values: np.ndarray   # int64 (n, n_fields): ints as values, doubles as bit patterns
    # Per scan (not kept by take()): the distinct top-level names that are not in ``fields``, as
    # (name, first document index, offset in buf of its first element) ...
    extras: tuple[tuple[str, int, int], ...] = ()
    # ... complete unless this is >= 0: the first document with such a name beyond EXTRA_NAMES
    unlisted_from: int = -1

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

    def column(self, field: str, dtype: str) -> np.ndarray:
        """The field as a typed column: ``float64`` (see :meth:`floats`), ``bool``, or an integer
        dtype (``uint64`` ids keep their bits)."""
        if dtype == "float64":
            return self.floats(field)
        if dtype == "bool":
            return self.ints(field).astype(bool)
        return self.ints(field).astype(dtype, copy=False)

    def take(self, rows: np.ndarray | slice) -> Docs:
        """The documents at ``rows`` (a mask, indices or a slice); they need not be contiguous."""
        return Docs(self.buf, self.starts[rows], self.ends[rows], self.fields, self.types[rows], self.values[rows])

    def element_offset(self, i: int, field: str) -> int:
        """Offset in buf of document ``i``'s top-level ``field`` element (its type byte), -1 if it
        is not found: a scan of that one document, for messages (value offsets are not kept, as
        holding them per batch costs the allocator more than the whole check)."""
        one, _, _ = scan(self.raw(i), ())
        at = next((at for name, _, at in one.extras if name == field), -1)
        return -1 if at < 0 else int(self.starts[i]) + at

    def raw(self, i: int) -> bytes:
        return self.buf[self.starts[i]:self.ends[i]].tobytes()

    def contiguous(self) -> bool:
        return len(self) == 0 or bool(np.all(self.starts[1:] == self.ends[:-1]))

    def block(self) -> memoryview:
        """The bytes of all documents (they are contiguous in buf)."""
        if len(self) == 0:
            return memoryview(b"")
        return self.buf[self.starts[0]:self.ends[-1]].data


def value_offsets(docs: Docs, field: str) -> np.ndarray:
    """Offset in ``docs.buf`` of the value of each document's top-level ``field`` (0 when absent):
    a walk of documents the scanner has already checked, for the few callers that need raw
    values (the scan does not keep offsets: holding them per batch costs more than the check)."""
    out = np.zeros(len(docs), np.int64)
    name = np.frombuffer(field.encode(), np.uint8)
    _value_offsets(docs.buf, docs.starts, docs.ends, name, out)
    return out


@njit(cache=True, nogil=True)
def _value_offsets(buf, starts, ends, name, out):
    nl = name.shape[0]
    for i in range(starts.shape[0]):
        p = starts[i] + 4
        end = ends[i] - 1
        while p < end:
            t = buf[p]
            p += 1
            q = p
            while buf[q] != 0:
                q += 1
            hit = q - p == nl
            for k in range(nl if hit else 0):
                if buf[p + k] != name[k]:
                    hit = False
                    break
            p = q + 1
            if hit:
                out[i] = p
                break
            size = _fixed_size(t)
            if size < 0:
                if t == 3 or t == 4 or t == 15:
                    size = _i32(buf, p)
                else:
                    _, _, size = _variable_size(buf, t, p, end)
            p += size


def columns(batches: Sequence[Docs], spec: dict[str, str]) -> dict[str, np.ndarray]:
    """Scanned batches concatenated into typed columns, ``spec`` = ``{field: dtype}`` (see
    :meth:`Docs.column`)."""
    return {name: np.concatenate([d.column(name, dtype) for d in batches]) if batches else np.empty(0, dtype)
            for name, dtype in spec.items()}


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
    keys = np.array([_py_key(f.encode()) for f in fields], np.int64).reshape(len(fields), 2)
    nf = len(fields)
    cap = max_docs
    starts = np.empty(cap, np.int64)
    types = np.empty((cap, nf), np.uint8)
    vpos = np.empty((cap, nf), np.int64)
    extra = np.empty((EXTRA_NAMES, 6), np.int64)
    state = np.array([0, -1, 0], np.int64)
    path = np.zeros((MAX_DEPTH + 2, 6), np.int64)
    n, stop, code, at, depth, on_element = _scan(a, start, end, final, names, lens, keys, max_docs, starts,
                                                 types, vpos, extra, state, path)
    starts = starts[:n]
    types = types[:n]
    values = np.empty((n, nf), np.int64)
    _gather(a, types, vpos[:n], values)
    ends = np.empty(n, np.int64)
    if n:
        ends[:-1] = starts[1:]
        ends[-1] = stop
    extras = tuple((_text(a, int(r[0]), int(r[1])), int(r[2]), int(r[3])) for r in extra[:state[0]])
    err = None if code == OK else _scan_error(a, code, stop, at, end, path, depth, on_element)
    return Docs(a, starts, ends, tuple(fields), types, values, extras, int(state[1])), stop, err


def _text(a: np.ndarray, offset: int, length: int) -> str:
    return bytes(a[offset:offset + length]).decode("utf-8", "backslashreplace")


def _scan_error(a: np.ndarray, code: int, stop: int, at: int, end: int, path: np.ndarray, depth: int,
                on_element: bool) -> ScanError:
    """The ScanError for what _scan returned: the path of names down to the element at fault."""
    remaining = end - stop
    names = [_text(a, int(o), int(k)) for o, k in path[1:depth + 1 + on_element, :2]]
    where = "the document"
    if depth:
        what = "array" if path[depth, 3] == T_ARRAY else "document"
        where = f"the embedded {what} `{'.'.join(names[:depth])}`"
        length = int(path[depth, 5] - path[depth, 2] + 1)
    else:
        length = int(_i32(a, stop)) if remaining >= 4 else -1
    value = -1
    if code == ERR_BOOL:
        value = int(a[at + 2 + int(path[depth + 1, 1])])
    return ScanError(code, stop, at, length, remaining, ".".join(names), where, value)


def _refill(stream: Any, rest: memoryview, need: int) -> tuple[memoryview, bool]:
    """(``rest`` then more of ``stream``, ``need`` bytes in all unless it ends: eof)."""
    if _reads_into(stream):  # one buffer read into: no joined copy, half the large allocations
        out = memoryview(bytearray(need))
        out[:len(rest)] = rest
        have = len(rest)
        while have < need:
            got = stream.readinto(out[have:])
            if not got:
                return out[:have], True
            have += got
        return out, False
    pieces: list[bytes | memoryview] = [rest]
    have, eof = len(rest), False
    while have < need:
        piece = stream.read(need - have)
        if not piece:
            eof = True
            break
        pieces.append(piece)
        have += len(piece)
    return memoryview(b"".join(pieces)), eof


def _reads_into(stream: Readable) -> bool:
    """Is ``readinto`` as good as ``read``: does the class defining ``read`` define it too? (A
    subclass overriding only ``read``, say to check the file at its end, is read through ``read``.)"""
    def owner(name: str):
        return next((c for c in type(stream).__mro__ if name in vars(c)), None)

    return owner("readinto") is not None and owner("readinto") is owner("read")


def iter_docs(stream: Readable, fields: Sequence[str], *, chunk_bytes: int = 8 << 20,
              max_docs: int = 200_000, start_offset: int = 0
              ) -> Iterator[tuple[int, Docs, ScanError | None]]:
    """Stream documents from a binary file object in bounded memory.

    Yields (offset, docs, error) where ``offset`` is the file offset of ``docs.buf[0]``; the last
    item carries the error, if any. At most ``max_docs`` documents per item. Memory stays near
    1.5 × ``chunk_bytes`` (more only for one document larger than that, at most 16 MiB).
    """
    chunk_bytes = max(int(chunk_bytes), 1)
    buf, pos, offset, eof, stalled = memoryview(b""), 0, start_offset, False, False
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
            buf, eof = _refill(stream, rest, need)
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


@njit(cache=True, nogil=True)
def _walk(buf, pos, stop_at):
    end = buf.shape[0]
    n = 0
    while pos < stop_at and pos + 4 <= end:
        length = _i32(buf, pos)
        if length < 5 or length > MAX_DOC_BYTES:
            return pos, n, True
        if pos + length > end:
            break
        pos += length
        n += 1
    return pos, n, False


def walk_lengths(buf: np.ndarray, pos: int, stop_at: int) -> tuple[int, int, bool]:
    """Walk documents by their int32 length prefixes only (no element scan) from the document
    boundary ``pos`` of ``buf`` until a boundary at or past ``stop_at``, or the last document
    wholly in ``buf``. Returns (the boundary reached, documents walked, a length prefix out of
    range was met there). What splits a file at real document boundaries, at memory speed."""
    end, n, bad = _walk(buf, np.int64(pos), np.int64(stop_at))
    return int(end), int(n), bool(bad)


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


@njit(inline="always")
def _put_head(out, p, t, names, f, nl):
    """Write an element's type byte and its name ``names[f, :nl]`` with the NUL at ``p``; returns
    where the value goes."""
    out[p] = t
    for c in range(nl):
        out[p + 1 + c] = names[f, c]
    out[p + 1 + nl] = 0
    return p + 2 + nl


@njit(inline="always")
def _put_le(out, p, v, w):
    """Write the low ``w`` bytes of ``v`` little-endian at ``p``; returns the end."""
    for c in range(w):
        out[p + c] = (v >> (8 * c)) & 0xFF
    return p + w


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
            p = _put_head(out, p, t, names, f, name_lens[f])
            p = _put_le(out, p, v, w)
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
            q = _put_head(out, q, 7 if kinds[f] == 1 else (18 if kinds[f] == 2 else 1), names, f, name_lens[f])
            v = vals[i, f]
            if kinds[f] == 1:  # ObjectId: 4-byte prefix + 8-byte big-endian value
                for c in range(4):
                    out[q + c] = oid_prefix[c]
                for c in range(8):
                    out[q + 4 + c] = (v >> (8 * (7 - c))) & 0xFF
                q += 12
            else:
                q = _put_le(out, q, v, 8)
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

"""Field checks on scanned documents, vectorized: the first bad document gets a one-line message
naming the file, the document number, its byte offset, the field, what was found and the fix."""
from __future__ import annotations

import bson
import numpy as np

from . import bsonio
from .bsonio import T_DOUBLE, T_INT32, T_INT64, T_NULL, T_MISSING, TYPE_NAMES
from .schema import Kind

_INTS = (T_INT32, T_INT64)
_NUMBERS = (T_DOUBLE, T_INT32, T_INT64)


def endpoints(docs: bsonio.Docs, kind: Kind) -> tuple[str, ...]:
    """The integer fields this batch must carry: ``kind.integers``, or the alternative names
    (``source``/``target`` for skeleton edges) when the first document uses those."""
    if kind.alternative_integers and len(docs):
        first = kind.integers[0]
        alt = kind.alternative_integers[0]
        if docs.type_of(first)[0] == T_MISSING and docs.type_of(alt)[0] != T_MISSING:
            return kind.alternative_integers
    return kind.integers


def _describe(docs: bsonio.Docs, i: int, field: str) -> str:
    t = int(docs.type_of(field)[i])
    if t == T_MISSING:
        return f"has no field `{field}`"
    return f"has `{field}` of type {TYPE_NAMES.get(t, t)} ({_shown(docs, i, field)})"


def _shown(docs: bsonio.Docs, i: int, field: str, limit: int = 40) -> str:
    """The offending value as Python shows it (error path only: one document is decoded)."""
    try:
        value = bson.decode(docs.raw(i))[field]
    except Exception:  # the scanner accepted it; a codec quirk must not hide the real message
        return "?"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check(docs: bsonio.Docs, kind: Kind, *, file: str, base_offset: int, first_index: int,
          integers: tuple[str, ...] | None = None) -> str | None:
    """None if every document is fine, else the message for the first bad one."""
    if len(docs) == 0:
        return None
    problems: list[tuple[int, str]] = []
    rag = kind.name.startswith("rag_")
    for f in integers or kind.integers:
        t = docs.type_of(f)
        bad = ~np.isin(t, _INTS)
        if bad.any():
            i = int(np.argmax(bad))
            what = "fragment ids" if rag else "ids"
            problems.append((i, f"{_describe(docs, i, f)}; {what} must be int32/int64 integers"))
        elif rag:
            neg = docs.ints(f) < 0
            if neg.any():
                i = int(np.argmax(neg))
                problems.append((i, f"has a negative fragment id `{f}` = {docs.ints(f)[i]}; fragment ids are >= 0"))
    for f in kind.numbers:
        bad = ~np.isin(docs.type_of(f), _NUMBERS)
        if bad.any():
            i = int(np.argmax(bad))
            problems.append((i, f"{_describe(docs, i, f)}; positions must be numbers (double or int) in nm"))
    for f in kind.optional_numbers:
        bad = ~np.isin(docs.type_of(f), _NUMBERS + (T_NULL, T_MISSING))
        if bad.any():
            i = int(np.argmax(bad))
            problems.append((i, f"{_describe(docs, i, f)}; it must be a number or null"))
    if not problems:
        return None
    i, text = min(problems)
    return (f"{file}: document #{first_index + i} at byte {base_offset + int(docs.starts[i])} {text} "
            "— fix the file (or the program that wrote it) and rerun")


_GZIP, _ZIP, _ZSTD = b"\x1f\x8b", b"PK\x03\x04", b"\x28\xb5\x2f\xfd"


def structure_message(url: str, size: int, base: int, ndocs: int, err: bsonio.ScanError, buf) -> str:
    """The one line for bytes the scanner rejected: file, document number, byte offset, what is
    wrong and the fix (a compressed file, not BSON at all, truncated, corrupt)."""
    at = base + err.doc_offset
    head = bytes(buf[err.doc_offset:err.doc_offset + 4])
    first = ndocs == 0 and at == 0
    if first and head.startswith(_GZIP):
        fix = "the file is gzip-compressed: gunzip it first"
    elif first and (head.startswith(_ZIP) or head.startswith(_ZSTD)):
        fix = "the file is a compressed archive: extract the .bson file first"
    elif first and err.code in (bsonio.ERR_LENGTH, bsonio.ERR_TERMINATOR, bsonio.ERR_TYPE,
                                bsonio.ERR_CSTRING, bsonio.ERR_OVERRUN, bsonio.ERR_STRLEN):
        fix = "this does not look like a mongodump .bson file"
    elif first and err.code == bsonio.ERR_TRUNCATED and err.length > size:
        fix = (f"this does not look like a mongodump .bson file (its first 4 bytes declare a "
               f"{err.length}-byte document in a {size}-byte file)")
    elif err.code == bsonio.ERR_TRUNCATED:
        fix = "the file is incomplete (truncated): download it again"
    else:
        fix = "the file is corrupt from here on: download it again"
    return f"{url}: document #{ndocs} at byte {at}: {err.describe(base)} — {fix}"

"""Field checks on scanned documents, vectorized: the first bad document gets a one-line message
naming the file, the document number, its byte offset, the field, what was found and the fix.

The scanner (:mod:`bsonio`) already rejects malformed bytes (strings, UTF-8, bools, repeated
names, embedded documents); here the values are checked: types, finite positions and scores, and
field names one edit away from a field the kind knows (a flipped bit, a typo)."""
from __future__ import annotations

from functools import cache, lru_cache

import bson
import numpy as np

from lsdgraph._core import schema
from lsdgraph._core.schema import Kind
from lsdgraph._io import bsonio
from lsdgraph._io.bsonio import (
    T_DOUBLE,
    T_INT32,
    T_INT64,
    T_MISSING,
    T_NULL,
    TYPE_NAMES,
)


def _type_table(*types: int) -> np.ndarray:
    """A lookup table over the type byte: ``table[t]`` is one gather, cheaper than ``np.isin``."""
    table = np.zeros(256, bool)
    table[list(types)] = True
    return table


_INTS = _type_table(T_INT32, T_INT64)
_NUMBERS = _type_table(T_DOUBLE, T_INT32, T_INT64)
_NUMBERS_OR_NULL = _type_table(T_DOUBLE, T_INT32, T_INT64, T_NULL, T_MISSING)
# fields the lab's code writes that schema.json does not list (shared/data-format.md)
_BOOKKEEPING = {"rag_edges": ("agglomerated",)}
# Names this short are not checked for near misses, known or found: every 1- or 2-character name
# is one edit from `u`, `v`, `x`, `y`, `z` or `id` (any single letter is one substitution from
# `u`), and many from `u_x` and the like, so real extra fields (`t`, `ok`, `w`) would be false alarms.
_SHORTEST_CHECKED = 3
_POSITION_RULE = ("positions must be numbers (double or int) in nm", "positions must be finite numbers in nm")
_SCORE_RULE = ("it must be a number or null", "a merge score must be a finite number or null")
# dates outside Python's range decode as milliseconds instead of failing
_LENIENT: bson.CodecOptions = bson.CodecOptions(datetime_conversion=bson.DatetimeConversion.DATETIME_MS)

Problem = tuple[int, str]  # (row in the batch, what is wrong)


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


def _at(docs: bsonio.Docs, i: int, field: str, base_offset: int) -> str:
    """Where the element is, for the message ("" when it is not found)."""
    at = docs.element_offset(i, field)
    return "" if at < 0 else f" (element at byte {base_offset + at})"


def _shown(docs: bsonio.Docs, i: int, field: str, limit: int = 40) -> str:
    """The offending value as Python shows it (error path only: one document is decoded)."""
    try:
        value = bson.decode(docs.raw(i))[field]
    except Exception:  # the scanner accepted it; a codec quirk must not hide the real message
        return "?"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@cache
def known_fields(kind: Kind) -> tuple[str, ...]:
    """Every top-level field a document of ``kind`` may carry: what is validated, ``_id``, the
    edge positions (and ``copy_from_u`` fields) lsdgraph adds to edges, and the lab's bookkeeping."""
    names = ["_id", *kind.integers, *kind.alternative_integers, *kind.numbers, *kind.optional_numbers]
    join = schema.EDGE_JOINS.get(kind.name)
    if join is not None:
        names += [*schema.EDGE_POSITIONS["u"], *schema.EDGE_POSITIONS["v"], *join["copy_from_u"]]
    names += _BOOKKEEPING.get(kind.name, ())
    return tuple(dict.fromkeys(names))


def one_edit(a: str, b: str) -> bool:
    """Do ``a`` and ``b`` differ by exactly one substitution, insertion, deletion or transposition
    of adjacent characters?"""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1:]


@lru_cache(maxsize=4096)
def near_miss(name: str, known: tuple[str, ...]) -> str | None:
    """The known field ``name`` is one edit from, unless it is known itself (or far from all)."""
    if name in known or len(name) < _SHORTEST_CHECKED:
        return None
    return next((k for k in known if len(k) >= _SHORTEST_CHECKED and one_edit(name, k)), None)


def _first(bad: np.ndarray) -> int | None:
    return int(np.argmax(bad)) if bad.any() else None


def _non_finite(docs: bsonio.Docs, field: str) -> np.ndarray:
    """Doubles that are NaN, inf or -inf (integers are always finite)."""
    j = docs.col(field)
    return (docs.types[:, j] == T_DOUBLE) & ~np.isfinite(docs.values[:, j].view(np.float64))


_T_REGEX = 11


def _key_problem(docs: bsonio.Docs) -> Problem | None:
    """MongoDB refuses an array or a regular expression as ``_id`` (and the local store follows it)."""
    if "_id" not in docs.fields:
        return None
    t = docs.type_of("_id")
    i = _first((t == bsonio.T_ARRAY) | (t == _T_REGEX))
    if i is None:
        return None
    return i, f"has an `_id` that is {'an array' if t[i] == bsonio.T_ARRAY else 'a regular expression'}, which " \
              "MongoDB refuses as a key"


def _id_problem(docs: bsonio.Docs, kind: Kind, integers: tuple[str, ...]) -> Problem | None:
    rag = kind.name.startswith("rag_")
    for f in integers:
        i = _first(~_INTS[docs.type_of(f)])
        if i is not None:
            what = "fragment ids" if rag else "ids"
            return i, f"{_describe(docs, i, f)}; {what} must be int32/int64 integers"
        if rag:
            values = docs.ints(f)
            i = _first(values < 0)
            if i is not None:
                return i, f"has a negative fragment id `{f}` = {values[i]}; fragment ids are >= 0"
    return None


def _number_problem(docs: bsonio.Docs, field: str, allowed: np.ndarray, rule: tuple[str, str],
                    base_offset: int) -> Problem | None:
    """A value of a type not ``allowed`` (``rule[0]`` says what is), or a double that is NaN or
    infinite (``rule[1]``)."""
    i = _first(~allowed[docs.type_of(field)])
    if i is not None:
        return i, f"{_describe(docs, i, field)}; {rule[0]}"
    i = _first(_non_finite(docs, field))
    if i is not None:
        return i, f"has `{field}` = {_shown(docs, i, field)}{_at(docs, i, field, base_offset)}; {rule[1]}"
    return None


def _misspelt(name: str, known: str, at: str) -> str:
    return f"has a field `{name}`{at}, one edit from `{known}`: a corrupt or misspelt field name"


def _name_problem(docs: bsonio.Docs, kind: Kind, base_offset: int) -> Problem | None:
    """The first top-level name one edit from a known field, from the scan's list of the names it
    met (a handful per batch, each looked up once)."""
    known = known_fields(kind)
    found = [(first, _misspelt(name, k, f" (element at byte {base_offset + at})"))
             for name, first, at in docs.extras if (k := near_miss(name, known)) is not None]
    if docs.unlisted_from >= 0:
        hit = _decoded_name_problem(docs, docs.unlisted_from, known)
        if hit is not None:
            found.append(hit)
    return min(found) if found else None


def _decoded_name_problem(docs: bsonio.Docs, start: int, known: tuple[str, ...]) -> Problem | None:
    """Names the scan had no room to list (a batch with more than EXTRA_NAMES distinct names):
    decode those documents, slow but only on such unusual files."""
    for i in range(start, len(docs)):
        try:
            names = bson.decode(docs.raw(i), _LENIENT)
        except Exception:  # the scanner accepted it; a codec quirk must not stop the load
            continue
        for name in names:
            k = near_miss(name, known)
            if k is not None:
                return i, _misspelt(name, k, "")
    return None


def check(docs: bsonio.Docs, kind: Kind, *, file: str, base_offset: int, first_index: int,
          integers: tuple[str, ...] | None = None) -> str | None:
    """None if every document is fine, else the message for the first bad one."""
    if len(docs) == 0:
        return None
    # in one document a misspelt name ranks first: it explains the field that then seems missing;
    # collections of kind "other" hold arbitrary fields, so no name is a near miss there
    problems = [_key_problem(docs), None if kind.name == "other" else _name_problem(docs, kind, base_offset),
                _id_problem(docs, kind, integers or kind.integers)]
    problems += [_number_problem(docs, f, _NUMBERS, _POSITION_RULE, base_offset) for f in kind.numbers]
    problems += [_number_problem(docs, f, _NUMBERS_OR_NULL, _SCORE_RULE, base_offset)
                 for f in kind.optional_numbers]
    found = [(p[0], rank, p[1]) for rank, p in enumerate(problems) if p is not None]
    if not found:
        return None
    i, _, text = min(found)
    return (f"{file}: document #{first_index + i} at byte {base_offset + int(docs.starts[i])} {text} "
            "— fix the file (or the program that wrote it) and rerun")


_GZIP, _ZIP, _ZSTD = b"\x1f\x8b", b"PK\x03\x04", b"\x28\xb5\x2f\xfd"


def structure_message(url: str, size: int, base: int, ndocs: int, err: bsonio.ScanError, buf) -> str:
    """The one line for bytes the scanner rejected: file, document number, byte offset, what is
    wrong and the fix (a compressed file, not BSON at all, truncated, corrupt from here on, or
    one corrupt document)."""
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
    elif err.code == bsonio.ERR_DUPLICATE:
        fix = "a field may appear once per document: fix the program that wrote the file"
    elif err.code in bsonio.ELEMENT_ERRORS or err.where != "the document":
        # the document's own length holds, so only this document is known to be bad
        fix = (f"the document is corrupt at byte {base + err.at}: download the file again, or fix the "
               "program that wrote it")
    elif err.code == bsonio.ERR_TRUNCATED:
        fix = "the file is incomplete (truncated): download it again"
    else:
        fix = "the file is corrupt from here on: download it again"
    return f"{url}: document #{ndocs} at byte {at}: {err.describe(base)} — {fix}"

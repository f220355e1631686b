"""lsdgraph._io.bsonio: the raw BSON scanner, the streaming reader and the columnar writer, checked
against pymongo's own ``bson`` codec."""
from __future__ import annotations

import datetime
import io
import re
import struct
import tracemalloc

import bson
import numpy as np
import pytest
from bson.binary import Binary
from bson.code import Code
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.timestamp import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from lsdgraph._io import bsonio


def _docs_bytes(docs: list[dict]) -> bytes:
    return b"".join(bson.encode(d) for d in docs)


def _read_all(data: bytes, fields=("u",), **kw):
    """(absolute offsets, raw documents, error, error offset) from iter_docs."""
    offsets, raws, err, err_at = [], [], None, None
    for base, docs, e in bsonio.iter_docs(io.BytesIO(data), fields, **kw):
        for i in range(len(docs)):
            offsets.append(base + int(docs.starts[i]))
            raws.append(docs.raw(i))
        if e is not None:
            err, err_at = e, base + e.doc_offset
    return offsets, raws, err, err_at


# ---------------------------------------------------------------------------------------------
# writing


def test_encode_is_byte_identical_to_pymongo():
    rng = np.random.default_rng(3)
    n = 50
    oids = bsonio.object_ids(n, rng)
    ints = np.array([0, 1, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 77322656252, 2**62] * 6)[:n]
    small = np.arange(n)
    score = rng.random(n)
    score[::4] = np.nan
    flag = rng.random(n) < 0.5
    data = bsonio.encode({"id": ("int", ints), "big": ("int64", small), "merge_score": ("double", score),
                          "agglomerated": ("bool", flag)}, oids)
    expected = _docs_bytes([
        {"_id": ObjectId(oids[i].tobytes()), "id": int(ints[i]), "big": Int64(int(small[i])),
         "merge_score": None if np.isnan(score[i]) else float(score[i]), "agglomerated": bool(flag[i])}
        for i in range(n)])
    assert data == expected


def test_encode_without_ids_and_int_width():
    data = bsonio.encode({"u": ("int", np.array([5, 2**40]))})
    docs = bson.decode_all(data)
    assert docs == [{"u": 5}, {"u": 2**40}]
    a, _, _ = bsonio.scan(data, ["u"])
    assert a.type_of("u").tolist() == [bsonio.T_INT32, bsonio.T_INT64]


@pytest.mark.parametrize("columns, oids, message", [
    ({"u": ("int", np.arange(3)), "v": ("int", np.arange(4))}, None, "differ in length"),
    ({"u": ("int", np.arange(3))}, np.zeros((2, 12), np.uint8), "ObjectIds for 3"),
    ({"u": ("float32", np.arange(3))}, None, "unknown kind"),
])
def test_encode_rejects_inconsistent_input(columns, oids, message):
    with pytest.raises(ValueError, match=message):
        bsonio.encode(columns, oids)


def test_object_ids_look_like_mongodb_ones():
    rng = np.random.default_rng(0)
    o = bsonio.object_ids(120_000, rng, start_time=1_600_000_000)
    assert o.shape == (120_000, 12) and o.dtype == np.uint8
    assert len({bytes(r) for r in o}) == len(o)
    first, last = ObjectId(o[0].tobytes()), ObjectId(o[-1].tobytes())
    assert first.generation_time.timestamp() == 1_600_000_000
    assert last.generation_time.timestamp() == 1_600_000_002  # a new second every 50k ids
    assert (o[:, 4:9] == o[0, 4:9]).all()  # one "process" part, as one writer makes


def test_append_fields_adds_doubles_int64s_and_object_ids():
    data = _docs_bytes([{"u": 1, "v": 2}, {"_id": 7, "u": 3, "v": 4}, {"u": 5, "v": 6}])
    docs, _, _ = bsonio.scan(data, ["_id", "u", "v"])
    present = np.array([[True, True, True], [True, False, True], [False, True, False]])
    big = 2**62 + 1  # not representable as a double: must arrive exactly
    out = bsonio.append_fields(docs, {"u_z": ("double", np.array([1.5, 2.5, 3.5])),
                                      "_id": ("oid", np.array([10, 11, 12])),
                                      "neuron_id": ("int64", np.array([big, -3, 0]))},
                               present, oid_prefix=b"\x01\x02\x03\x04")
    got = bson.decode_all(out.block().tobytes())
    assert got[0] == {"u": 1, "v": 2, "u_z": 1.5, "_id": ObjectId(b"\x01\x02\x03\x04" + (10).to_bytes(8, "big")),
                      "neuron_id": big}
    assert got[1] == {"_id": 7, "u": 3, "v": 4, "u_z": 2.5, "neuron_id": -3}
    assert got[2] == {"u": 5, "v": 6, "_id": ObjectId(b"\x01\x02\x03\x04" + (12).to_bytes(8, "big"))}
    assert out.starts.tolist() == [0, len(bson.encode(got[0])), len(bson.encode(got[0])) + len(bson.encode(got[1]))]
    assert out.contiguous() and len(out) == 3


# ---------------------------------------------------------------------------------------------
# scanning


def test_scan_types_and_values():
    docs_in = [{"id": 5, "center_z": 1.25, "center_y": 7, "center_x": Int64(9), "s": None},
               {"id": Int64(2**40), "center_z": "12", "center_x": -0.0, "s": True},
               {"center_y": 3.0, "id": -4, "junk": [1, 2, {"id": 99}]}]
    docs, stop, err = bsonio.scan(_docs_bytes(docs_in), ["id", "center_z", "center_y", "center_x", "s"])
    assert err is None and stop == len(_docs_bytes(docs_in)) and len(docs) == 3
    assert docs.type_of("id").tolist() == [bsonio.T_INT32, bsonio.T_INT64, bsonio.T_INT32]
    assert docs.ints("id").tolist() == [5, 2**40, -4]  # the nested id is not a top-level field
    assert docs.type_of("center_z").tolist() == [bsonio.T_DOUBLE, bsonio.T_STRING, bsonio.T_MISSING]
    z = docs.floats("center_z")
    assert z[0] == 1.25 and np.isnan(z[1:]).all()
    assert docs.floats("center_y")[:1].tolist() == [7.0] and docs.floats("center_y")[2] == 3.0
    assert docs.floats("center_x").tolist()[:2] == [9.0, -0.0]
    assert docs.type_of("s").tolist() == [bsonio.T_NULL, bsonio.T_BOOL, bsonio.T_MISSING]
    assert docs.ints("s")[1] == 1


def test_scan_walks_every_bson_type():
    every = {"_id": ObjectId(), "double": 1.5, "string": "héllo", "doc": {"a": {"b": 1}}, "array": [1, "x"],
             "binary": Binary(b"\x00\x01\x02", 5), "bool": False,
             "date": datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc), "null": None,
             "regex": re.compile("^a.*b$", re.I), "code": Code("x = 1"), "scoped": Code("y", {"y": 2}),
             "int32": 3, "ts": Timestamp(5, 6), "int64": Int64(7), "dec": Decimal128("1.5"),
             "min": MinKey(), "max": MaxKey(), "u": 42}
    data = bson.encode(every) * 3
    docs, stop, err = bsonio.scan(data, ["u", "scoped", "dec", "regex"])
    assert err is None and len(docs) == 3 and stop == len(data)
    assert docs.ints("u").tolist() == [42] * 3
    assert docs.type_of("scoped")[0] == 15 and docs.type_of("dec")[0] == 19 and docs.type_of("regex")[0] == 11


def test_scan_max_docs_and_partial_tail():
    data = _docs_bytes([{"u": i} for i in range(10)])
    docs, stop, err = bsonio.scan(data, ["u"], max_docs=4)
    assert len(docs) == 4 and stop == 4 * 12 and err is None
    docs, stop, err = bsonio.scan(data[:-5], ["u"], final=False)
    assert len(docs) == 9 and stop == 9 * 12 and err is None  # the cut document waits for more bytes


def _doc(*elements: bytes) -> bytes:
    body = b"".join(elements) + b"\x00"
    return struct.pack("<i", 4 + len(body)) + body


def _int32(name: str, v: int) -> bytes:
    return b"\x10" + name.encode() + b"\x00" + struct.pack("<i", v)


def _with_length(doc: bytes, length: int) -> bytes:
    return struct.pack("<i", length) + doc[4:]


GOOD = _doc(_int32("u", 1))  # 12 bytes


@pytest.mark.parametrize("bad, code, text", [
    (_with_length(GOOD, 3), bsonio.ERR_LENGTH, "length prefix 3 is not a valid"),
    (_with_length(GOOD, -20), bsonio.ERR_LENGTH, "length prefix -20"),
    (b"\xff\xff\xff\x7f" + b"\x00" * 20, bsonio.ERR_LENGTH, "2147483647"),
    (_doc(b"\x42u\x00" + struct.pack("<i", 1)), bsonio.ERR_TYPE, "unknown BSON element type byte at byte"),
    # the prefix says 12 but the int64 element needs 16: it runs past the declared end
    (_with_length(_doc(b"\x12u\x00" + struct.pack("<q", 1)), 12) + b"\x00" * 4, bsonio.ERR_OVERRUN,
     "runs past the document's declared length 12"),
    # the prefix says 14 but the elements end (with the terminating NUL) at 12: followed by GOOD
    (_with_length(GOOD, 14) + GOOD, bsonio.ERR_TERMINATOR, "says 14 bytes but the document's elements end"),
    (struct.pack("<i", 9) + b"\x10abc\x00", bsonio.ERR_CSTRING, "has no terminating NUL"),
    (_doc(b"\x02s\x00" + struct.pack("<i", 0) + b"\x00"), bsonio.ERR_STRLEN, "impossible length"),
    (_doc(b"\x02s\x00" + struct.pack("<i", 1000) + b"x\x00"), bsonio.ERR_STRLEN, "impossible length"),
    (GOOD[:9], bsonio.ERR_TRUNCATED, "9 bytes remain of a declared 12"),
    (GOOD[:3], bsonio.ERR_TRUNCATED, "the data ends inside a document"),
], ids=["short", "negative", "huge", "type", "overrun", "terminator", "cstring", "strlen0", "strlen-big",
        "truncated", "truncated-prefix"])
def test_every_scanner_error(bad, code, text):
    prefix = GOOD * 3
    docs, stop, err = bsonio.scan(prefix + bad, ["u"])
    assert len(docs) == 3 and stop == len(prefix)  # the good documents before it are kept
    assert err is not None and err.code == code and err.doc_offset == len(prefix)
    assert text in err.describe()
    # through the stream reader the error comes at the same absolute offset, in small chunks too
    for chunk in (5, 16, 1 << 20):
        offsets, _raws, e, at = _read_all(prefix + bad, chunk_bytes=chunk)
        assert offsets == [0, 12, 24] and e is not None and e.code == code and at == len(prefix)


def test_error_offsets_are_absolute_in_a_long_stream():
    n = 5000
    data = bsonio.encode({"u": ("int", np.arange(n)), "v": ("int64", np.arange(n))})
    size = len(data) // n
    bad_at = 4321 * size
    corrupt = data[:bad_at] + b"\x00\x00\x00\x00" + data[bad_at + 4:]
    offsets, raws, err, at = _read_all(corrupt, chunk_bytes=1000, max_docs=333)
    assert len(raws) == 4321 and offsets[-1] == bad_at - size
    assert err.code == bsonio.ERR_LENGTH and at == bad_at
    assert err.length == 0 and err.describe().startswith("length prefix 0")


# ---------------------------------------------------------------------------------------------
# every element checked, at every depth


def _el(t: int, name: bytes, value: bytes) -> bytes:
    return bytes([t]) + name + b"\x00" + value


def _str(name: bytes, raw: bytes, t: int = 2) -> bytes:
    """A string element whose bytes (``raw``, NUL included) are given as they are."""
    return _el(t, name, struct.pack("<i", len(raw)) + raw)


def _sub(name: bytes, *elements: bytes, t: int = 3) -> bytes:
    return _el(t, name, _doc(*elements))


def _nested(levels: int) -> bytes:
    d = _doc()
    for _ in range(levels):
        d = _doc(_el(3, b"a", d))
    return d


_U = _int32("u", 1)  # 7 bytes: the element after it starts at byte 11 of its document
_CHILD_TOO_LONG = _doc(_el(3, b"m", _with_length(_doc(_int32("a", 1)), 13)), _int32("b", 2))


@pytest.mark.parametrize("bad, code, at, field, text", [
    (_doc(_U, _str(b"s", b"abc")), bsonio.ERR_STRING, 11, "s", "the string `s` at byte 11 has no terminating NUL"),
    (_doc(_U, _str(b"s", b"a\xffb\x00")), bsonio.ERR_UTF8, 11, "s", "the string `s` at byte 11 is not valid UTF-8"),
    (_doc(_U, _str(b"s", b"\xc0\xaf\x00")), bsonio.ERR_UTF8, 11, "s", "not valid UTF-8"),          # overlong
    (_doc(_U, _str(b"s", b"\xed\xa0\x80\x00")), bsonio.ERR_UTF8, 11, "s", "not valid UTF-8"),      # surrogate
    (_doc(_U, _str(b"s", b"\xe2\x82\x00")), bsonio.ERR_UTF8, 11, "s", "not valid UTF-8"),          # cut short
    (_doc(_U, _str(b"s", b"\xf4\x90\x80\x80\x00")), bsonio.ERR_UTF8, 11, "s", "not valid UTF-8"),  # > U+10FFFF
    (_doc(_U, _str(b"c", b"x\xff\x00", t=13)), bsonio.ERR_UTF8, 11, "c", "not valid UTF-8"),       # JS code
    (_doc(_U, _el(11, b"r", b"a\xff\x00i\x00")), bsonio.ERR_UTF8, 11, "r", "not valid UTF-8"),     # regex
    (_doc(_U, _el(16, b"n\xffme", struct.pack("<i", 1))), bsonio.ERR_NAME_UTF8, 11, "n\\xffme",
     "the field name `n\\xffme` at byte 11 is not valid UTF-8"),
    (_doc(_U, _el(8, b"flag", b"\x02")), bsonio.ERR_BOOL, 11, "flag",
     "the bool `flag` at byte 11 has the byte value 2"),
    (_doc(_U, _int32("u", 2)), bsonio.ERR_DUPLICATE, 11, "u", "the field `u` appears twice in one document "
                                                              "(again at byte 11)"),
    (_doc(_int32("w", 1), _U, _int32("w", 2)), bsonio.ERR_DUPLICATE, 18, "w", "`w` appears twice"),
    (_doc(_U, _sub(b"m", _int32("a", 1), _int32("b", 2), _int32("a", 3))), bsonio.ERR_DUPLICATE, 32, "m.a",
     "the field `m.a` appears twice"),
    (_doc(_U, _sub(b"m", _sub(b"k", _el(8, b"x", b"\x01"), _el(8, b"y", b"\x07")))), bsonio.ERR_BOOL, 29, "m.k.y",
     "the bool `m.k.y`"),
    (_doc(_U, _sub(b"arr", _str(b"0", b"ok\x00"), _str(b"1", b"no"), t=4)), bsonio.ERR_STRING, 30, "arr.1",
     "the string `arr.1` at byte 30"),
    (_CHILD_TOO_LONG, bsonio.ERR_TERMINATOR, 18, "m",
     "the length prefix says 13 bytes but the embedded document `m`'s elements end at byte 18"),
    (_doc(_U, _el(3, b"m", struct.pack("<i", 4) + b"\x00")), bsonio.ERR_STRLEN, 14, "m", "impossible length"),
    (_doc(_U, _el(4, b"m", _doc(_el(42, b"0", b"")))), bsonio.ERR_TYPE, 18, "m.0",
     "unknown BSON element type byte at byte 18 in the embedded array `m`"),
    (_nested(bsonio.MAX_DEPTH + 1), bsonio.ERR_DEPTH, 4 + 7 * bsonio.MAX_DEPTH, "a." * bsonio.MAX_DEPTH + "a",
     "deeper than MongoDB's limit of 100 levels"),
    # code with scope: the scope document must fill what the total length leaves
    (_doc(_U, _el(15, b"cs", struct.pack("<i", 4 + 6 + 5 + 1) + struct.pack("<i", 2) + b"x\x00" + _doc() + b"\x00")),
     bsonio.ERR_STRLEN, 15, "cs", "impossible length"),
    # old binary subtype 2 repeats the length inside: pymongo rejects a mismatch, so must we
    (_doc(_U, _el(5, b"bin", struct.pack("<i", 8) + b"\x02" + struct.pack("<i", 9) + b"abcd")), bsonio.ERR_STRLEN,
     16, "bin", "impossible length"),
], ids=["string-nul", "utf8", "utf8-overlong", "utf8-surrogate", "utf8-cut", "utf8-too-big", "utf8-code",
        "utf8-regex", "name-utf8", "bool", "repeat-field", "repeat-other", "repeat-embedded", "bool-embedded",
        "string-in-array", "embedded-length", "embedded-too-short", "type-in-array", "depth", "code-scope",
        "binary-old"])
def test_every_element_is_checked(bad, code, at, field, text):
    prefix = GOOD * 3
    docs, stop, err = bsonio.scan(prefix + bad, ["u"])
    assert len(docs) == 3 and stop == len(prefix)
    assert err is not None and err.code == code and err.doc_offset == len(prefix)
    assert err.at == len(prefix) + at and err.field == field
    assert f"at byte {len(prefix) + at}" in err.describe()
    assert text in err.describe(base=-len(prefix))  # offsets as if the document came first
    with pytest.raises(bson.errors.InvalidBSON) if code not in (bsonio.ERR_DUPLICATE, bsonio.ERR_DEPTH) \
            else _nothing():
        bson.decode_all(prefix + bad)  # pymongo rejects the same bytes (it keeps the last of a repeat)
    for chunk in (5, 16, 1 << 20):
        offsets, _, e, e_at = _read_all(prefix + bad, chunk_bytes=chunk)
        assert offsets == [0, 12, 24] and e.code == code and e_at == len(prefix)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_nesting_up_to_the_limit_is_fine():
    data = _nested(bsonio.MAX_DEPTH)
    docs, _stop, err = bsonio.scan(data, ["a"])
    assert err is None and len(docs) == 1 and docs.type_of("a")[0] == 3


def test_repeats_are_per_document_and_array_keys_are_positional():
    docs_in = [{"m": {"a": 1, "b": [{"a": 1}, {"a": 2}]}, "w": 1, "u": 1} for _ in range(3)]
    data = _docs_bytes(docs_in) + _doc(_sub(b"arr", _int32("0", 1), _int32("0", 2), t=4))
    docs, _stop, err = bsonio.scan(data, ["u"])
    assert err is None and len(docs) == 4  # the same names in sibling and later documents are no repeat


def test_large_embedded_documents_grow_the_name_set():
    wide = {f"k{i}": i for i in range(5000)}
    data = bson.encode({"u": 1, "m": wide, "n": [dict(wide)] * 3})
    docs, _, err = bsonio.scan(data, ["u"])
    assert err is None and len(docs) == 1
    raw = bytearray(data)
    k = raw.index(b"k4999\x00")
    raw[k:k + 5] = b"k1234"  # the last key of the first embedded document repeats an earlier one
    _, _, err = bsonio.scan(bytes(raw), ["u"])
    assert err.code == bsonio.ERR_DUPLICATE and err.field == "m.k1234" and err.at == k - 1


@pytest.mark.parametrize("fields", [("u",), ("merge_score",), ("a" * 16,), ("b" * 17,), ("x" * 8 + "yz" + "x" * 8,),
                                    ("ab", "abc", "abcd", "abcdefg", "abcdefgh", "abcdefghi")])
def test_field_names_match_exactly_whatever_their_length(fields):
    names = list(fields)
    near = [n[:-1] + "!" for n in names] + [n[:len(n) // 2] + "!" + n[len(n) // 2 + 1:] for n in names]
    doc = {n: i for i, n in enumerate(names)} | {n: -1 for n in near if n not in names}
    docs, _, err = bsonio.scan(bson.encode(doc), names)
    assert err is None
    assert [docs.ints(n)[0] for n in names] == list(range(len(names)))
    assert {name for name, _, _ in docs.extras} == set(doc) - set(names)


def test_extras_list_the_unrequested_names_with_where_they_first_appear():
    docs_in = [{"u": 1, "agglomerated": True}, {"u": 2, "agglomerated": False, "size": 5}, {"u": 3, "size": 1}]
    data = _docs_bytes(docs_in)
    docs, _, err = bsonio.scan(data, ["u"])
    second = len(bson.encode(docs_in[0]))
    assert err is None and docs.unlisted_from == -1
    assert docs.extras == (("agglomerated", 0, 11), ("size", 1, second + 11 + 15))
    assert docs.element_offset(1, "u") == second + 4 and docs.element_offset(2, "size") > 2 * second
    assert docs.take([1]).element_offset(0, "size") == second + 26 and docs.element_offset(0, "size") == -1


def test_more_distinct_names_than_the_list_holds_are_still_checked_for_repeats():
    n = bsonio.EXTRA_NAMES + 10
    docs_in = [{"u": i, f"f{i}": i} for i in range(n)]
    data = _docs_bytes(docs_in)
    docs, _, err = bsonio.scan(data, ["u"])
    assert err is None and len(docs) == n
    assert len(docs.extras) == bsonio.EXTRA_NAMES and docs.unlisted_from == bsonio.EXTRA_NAMES
    bad = data + _doc(_int32("u", 1), _int32("late", 1), _int32("late", 2))
    docs, _, err = bsonio.scan(bad, ["u"])
    assert len(docs) == n and err.code == bsonio.ERR_DUPLICATE and err.field == "late"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12))
def test_utf8_check_agrees_with_python(raw):
    try:
        raw.decode("utf-8")
        ok = True
    except UnicodeDecodeError:
        ok = False
    assert bsonio._utf8_ok(np.frombuffer(raw, np.uint8), 0, len(raw)) == ok


_KEYS = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=5)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=8),
                     st.binary(max_size=6).map(Binary), st.just(Code("f()", {"x": 1})), st.just(MinKey()),
                     st.just(re.compile("^a", re.I)))
_VALUES = st.recursive(_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                        st.dictionaries(_KEYS, kids, max_size=4)), max_leaves=12)
_DOCS = st.lists(st.dictionaries(_KEYS, _VALUES, max_size=5), min_size=1, max_size=4)
_LENIENT = bson.CodecOptions(datetime_conversion=bson.DatetimeConversion.DATETIME_MS)


@settings(max_examples=150, deadline=None)
@given(_DOCS)
def test_whatever_pymongo_writes_scans(docs_in):
    data = _docs_bytes(docs_in)
    docs, stop, err = bsonio.scan(data, [""])
    assert err is None and stop == len(data) and len(docs) == len(docs_in)


@settings(max_examples=400, deadline=None)
@given(_DOCS, st.data())
def test_the_scanner_is_at_least_as_strict_as_pymongo(docs_in, data):
    raw = bytearray(_docs_bytes(docs_in))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    docs, _stop, err = bsonio.scan(bytes(raw), [""])
    if err is None:  # what the scanner passes, pymongo (and so the server) must read
        assert len(bson.decode_all(bytes(raw), _LENIENT)) == len(docs)


# ---------------------------------------------------------------------------------------------
# streaming


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({"u": st.integers(-(2**63), 2**63 - 1),
                                       "pad": st.text(max_size=30)}), min_size=0, max_size=40),
       st.integers(1, 300), st.integers(1, 12), st.integers(0, 5))
def test_iter_docs_any_chunking_gives_the_same_documents(docs_in, chunk, max_docs, skip):
    data = _docs_bytes(docs_in)
    lengths = [len(bson.encode(d)) for d in docs_in]
    starts = np.concatenate([[0], np.cumsum(lengths)])[:-1].tolist() if lengths else []
    skip = min(skip, len(docs_in))
    start = starts[skip] if skip < len(starts) else len(data)
    stream = io.BytesIO(data)
    stream.seek(start)
    offsets, raws = [], []
    for base, docs, err in bsonio.iter_docs(stream, ["u"], chunk_bytes=chunk, max_docs=max_docs,
                                            start_offset=start):
        assert err is None and len(docs) <= max_docs
        assert docs.ints("u").tolist() == [d["u"] for d in docs_in[skip + len(offsets):][:len(docs)]]
        offsets += (base + docs.starts).tolist()
        raws += [docs.raw(i) for i in range(len(docs))]
    assert offsets == starts[skip:]
    assert b"".join(raws) == data[start:]


def test_iter_docs_document_bigger_than_a_chunk():
    big = {"u": 1, "pad": "x" * 100_000}
    data = _docs_bytes([{"u": 0}, big, {"u": 2}])
    _offsets, raws, err, _ = _read_all(data, chunk_bytes=64)
    assert err is None and len(raws) == 3 and bson.decode(raws[1]) == big


class _CheckedAtEnd(io.BufferedReader):
    """Like ingest's local stream: ``read`` is overridden to do more than read."""

    reads = 0

    def read(self, n=-1):
        type(self).reads += 1
        return super().read(n)


@pytest.mark.parametrize("make, through_read", [
    (lambda data: io.BytesIO(data), False),
    (lambda data: io.BufferedReader(io.BytesIO(data)), False),
    (lambda data: _CheckedAtEnd(io.BytesIO(data)), True),
    (lambda data: _Repeating(data, len(data)), True),  # a raw stream with read only
])
def test_iter_docs_reads_into_its_buffer_only_where_that_equals_read(make, through_read):
    data = bsonio.encode({"u": ("int", np.arange(3000))})
    _CheckedAtEnd.reads = 0
    stream = make(data)
    got = [docs.ints("u") for _, docs, _ in bsonio.iter_docs(stream, ["u"], chunk_bytes=1000)]
    assert np.concatenate(got).tolist() == list(range(3000))
    assert bsonio._reads_into(stream) is not through_read
    assert (_CheckedAtEnd.reads > 0) == isinstance(stream, _CheckedAtEnd)


def test_iter_docs_empty_stream():
    assert list(bsonio.iter_docs(io.BytesIO(b""), ["u"])) == []


class _Repeating(io.RawIOBase):
    """A virtual file of ``total`` bytes: one block of whole documents over and over."""

    def __init__(self, block: bytes, total: int):
        self.block, self.total, self.pos = block, total, 0

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.total - self.pos if n is None or n < 0 else min(n, self.total - self.pos)
        k = self.pos % len(self.block)
        out = (self.block[k:] + self.block * (n // len(self.block) + 1))[:n]
        self.pos += len(out)
        return out


def test_iter_docs_memory_is_bounded_whatever_the_size():
    n = 1000
    block = bsonio.encode({"u": ("int", np.arange(n)), "v": ("int", np.arange(n) + 1),
                           "merge_score": ("double", np.linspace(0, 1, n))},
                          bsonio.object_ids(n, np.random.default_rng(0)))
    copies = (48 << 20) // len(block)
    chunk = 1 << 20
    tracemalloc.start()
    try:
        count = 0
        for _, docs, err in bsonio.iter_docs(_Repeating(block, copies * len(block)), ("_id", "u", "v"),
                                             chunk_bytes=chunk, max_docs=20_000):
            assert err is None
            count += len(docs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == copies * n  # ~48 MB streamed ...
    assert peak < 8 * chunk     # ... holding a few MB at most


def test_value_offsets_walk_every_value_type_to_the_field():
    docs = [{"a": "text", "b": {"n": [1, 2]}, "c": bson.Binary(b"xyz", 0), "d": 1.5, "e": True, "_id": 7},
            {"_id": bson.ObjectId(), "x": 1},
            {"x": None, "y": bson.Int64(3)}]
    raw = b"".join(bson.encode(d) for d in docs)
    scanned, _, err = bsonio.scan(raw, ["x"])
    assert err is None
    at = bsonio.value_offsets(scanned, "_id")
    buf = np.frombuffer(raw, np.uint8)
    assert int.from_bytes(buf[at[0]:at[0] + 4].tobytes(), "little") == 7
    assert buf[at[1]:at[1] + 12].tobytes() == docs[1]["_id"].binary
    assert at[2] == 0  # no _id

"""lsdgraph.bsonio: the raw BSON scanner, the streaming reader and the columnar writer, checked
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
from hypothesis import given, settings, strategies as st

from lsdgraph import bsonio


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
        offsets, raws, e, at = _read_all(prefix + bad, chunk_bytes=chunk)
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
    offsets, raws, err, _ = _read_all(data, chunk_bytes=64)
    assert err is None and len(raws) == 3 and bson.decode(raws[1]) == big


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

"""Documents validated completely: every bad document a fault suite found loading (or failing
later on the server) is one line naming the file, the document number, its byte offset, the bad
element's offset and the field, in process and through the CLI; well-formed documents still load."""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import bson
import pytest
from bson.int64 import Int64

from lsdgraph import _ingest as ingest_mod
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io import bsonio, validate
from lsdgraph._stores import mongo as store_mod

from conftest import run_cli

N, K, BATCH = 30, 17, 10  # the bad document is #17 of 30, in the second batch of 10


def _rag_edges(n: int = N) -> list[dict]:
    return [{"_id": bson.ObjectId(), "u": 10 * i + 1, "v": 10 * i + 2, "merge_score": i / n,
             "agglomerated": i % 2 == 0} for i in range(n)]


def _rag_nodes(n: int = N) -> list[dict]:
    return [{"_id": bson.ObjectId(), "id": 1000 + i, "center_z": 8.0 * i, "center_y": 4.5 * i,
             "center_x": 1.25 * i} for i in range(n)]


def _skeleton_nodes(n: int = N) -> list[dict]:
    return [{"_id": bson.ObjectId(), "id": i + 1, "neuron_id": 7, "x": 1.0 * i, "y": 2.0 * i, "z": 3.0 * i}
            for i in range(n)]


def _skeleton_edges(n: int = N) -> list[dict]:
    return [{"_id": bson.ObjectId(), "u": i + 1, "v": i + 2} for i in range(n)]


FILES = {"edges_mean.bson": _rag_edges, "nodes.bson": _rag_nodes, "zebrafinch.nodes.bson": _skeleton_nodes,
         "zebrafinch.edges.bson": _skeleton_edges}


@dataclass
class Case:
    file: str                          # the dump's name, which sets its kind
    change: dict                       # fields set (None: removed) in document K
    surgery: tuple[bytes, bytes] = (b"", b"")  # then these bytes of it replaced (same length)
    element: bytes = b""               # the bad element: its type byte and name, as in the file
    last: bool = False                 # ... its last occurrence in the document (a repeat)
    field: str = ""                    # the field as the message names it
    also: str = ""                     # more text the message must hold

    def documents(self) -> list[bytes]:
        docs = FILES[self.file]()
        for k, v in self.change.items():
            if v is None:
                docs[K].pop(k)
            else:
                docs[K][k] = v
        raws = [bson.encode(d) for d in docs]
        old, new = self.surgery
        assert len(old) == len(new) and (not old or raws[K].count(old) == 1)
        raws[K] = raws[K].replace(old, new)
        return raws

    def expected(self, raws: list[bytes]) -> tuple[int, int]:
        """(byte offset of document K, byte offset of its bad element)."""
        doc_at = sum(len(r) for r in raws[:K])
        find = raws[K].rindex if self.last else raws[K].index
        return doc_at, doc_at + find(self.element + b"\x00")


_NOTE = {"note": "abc"}
CASES = {
    "string-without-nul": Case("edges_mean.bson", _NOTE, (b"abc\x00", b"abcd"), b"\x02note", field="note",
                               also="has no terminating NUL"),
    "string-bad-utf8": Case("edges_mean.bson", _NOTE, (b"abc\x00", b"a\xffc\x00"), b"\x02note", field="note",
                            also="is not valid UTF-8"),
    "name-bad-utf8": Case("edges_mean.bson", {"nxte": 1}, (b"nxte\x00", b"n\xffte\x00"), b"\x10n\xffte",
                          field="n\\xffte", also="is not valid UTF-8"),
    "bool-is-2": Case("edges_mean.bson", {"agglomerated": True}, (b"agglomerated\x00\x01", b"agglomerated\x00\x02"),
                      b"\x08agglomerated", field="agglomerated", also="byte value 2"),
    "two-ids": Case("nodes.bson", {"iq": 5}, (b"\x10iq\x00", b"\x10id\x00"), b"\x10id", last=True, field="id",
                    also="appears twice"),
    "two-other-fields": Case("edges_mean.bson", {"size": 1, "sizf": 2}, (b"sizf", b"size"), b"\x10size", last=True,
                             field="size", also="appears twice"),
    "two-embedded-keys": Case("edges_mean.bson", {"meta": {"alpha": 1, "alphb": 2}}, (b"alphb", b"alpha"),
                              b"\x10alpha", last=True, field="meta.alpha", also="appears twice"),
    "embedded-length": Case("edges_mean.bson", {"meta": {"alpha": 1}, "size": 3},
                            (b"\x03meta\x00\x10\x00\x00\x00", b"\x03meta\x00\x11\x00\x00\x00"), b"\x00\x10size",
                            field="meta", also="the embedded document `meta`"),
    "embedded-string": Case("edges_mean.bson", {"meta": {"tags": ["x", "abc"]}}, (b"abc\x00", b"abcd"), b"\x021",
                            field="meta.tags.1", also="has no terminating NUL"),
    "embedded-bool": Case("edges_mean.bson", {"flags": [True, False]}, (b"\x081\x00\x00", b"\x081\x00\x02"),
                          b"\x081", field="flags.1", also="byte value 2"),
    "nan-position": Case("nodes.bson", {"center_y": math.nan}, element=b"\x01center_y", field="center_y",
                         also="= nan"),
    "inf-position": Case("zebrafinch.nodes.bson", {"x": -math.inf}, element=b"\x01x", field="x", also="= -inf"),
    "nan-score": Case("edges_mean.bson", {"merge_score": math.nan}, element=b"\x01merge_score",
                      field="merge_score", also="finite number or null"),
    "inf-score": Case("edges_mean.bson", {"merge_score": math.inf}, element=b"\x01merge_score",
                      field="merge_score", also="= inf"),
    "flipped-bit": Case("edges_mean.bson", {"merge_score": None, "merge_sgore": 0.25}, element=b"\x01merge_sgore",
                        field="merge_sgore", also="one edit from `merge_score`: a corrupt or misspelt field name"),
    "transposed": Case("nodes.bson", {"center_x": None, "centre_x": 2.0}, element=b"\x01centre_x",
                       field="centre_x", also="one edit from `center_x`"),
    "inserted": Case("edges_mean.bson", {"agglomerateed": True}, element=b"\x08agglomerateed",
                     field="agglomerateed", also="one edit from `agglomerated`"),
    "deleted": Case("zebrafinch.edges.bson", {"neuronid": 3}, element=b"\x10neuronid", field="neuronid",
                    also="one edit from `neuron_id`"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_document_is_one_line_naming_file_document_offset_and_field(name, tmp_path, mock_uri):
    case = CASES[name]
    raws = case.documents()
    path = tmp_path / case.file
    path.write_bytes(b"".join(raws))
    doc_at, element_at = case.expected(raws)
    with pytest.raises(LsdgraphError) as e:
        ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=BATCH)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: document #{K} at byte {doc_at}"), msg
    assert f"byte {element_at}" in msg and f"`{case.field}`" in msg and case.also in msg, msg
    assert "server" not in msg.lower() and "fix the" in msg
    r = run_cli("ingest", str(path), "--db", str(path.parent / "store"), "--name", "x", "--batch-docs", str(BATCH))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert msg in r.stderr


def _loaded(uri: str, collection: str) -> list[dict]:
    return list(store_mod.connect(uri).db("x")[collection].find({}, {"_id": 0}).sort("u"))


GOOD = {  # changes to documents K-2 .. K+1 (None: the field removed)
    "nested": lambda d: {"meta": {"alpha": [1, {"beta": "x", "gamma": None}], "delta": {"eps": 1.5}},
                         "hist": [[0.1], []]},
    "unicode": lambda d: {"note": "héllo wörld ✓ 🧠", "größe": 3, "tags": ["ü", "日本"]},
    "null-score": lambda d: {"merge_score": None} if d["u"] % 20 == 1 else {},
    "missing-score": lambda d: {"merge_score": None, "extra": None},
    "far-and-short-names": lambda d: {"size": 12, "t": 1, "ok": True, "ux": 3, "w": 0, "sources": 2},
    "int-mix": lambda d: {"u": Int64(d["u"]), "v": d["v"] + 2**40, "size": Int64(1)},
    "lsdgraph-export": lambda d: {"u_z": 1.0, "u_y": 2.0, "u_x": 3.0, "v_z": 4.0, "v_y": 5.0, "v_x": 6.0},
    "repeated-keys-in-siblings": lambda d: {"parts": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "same": {"a": {"a": 1}}},
}


@pytest.mark.parametrize("name", list(GOOD))
def test_well_formed_documents_still_load(name, tmp_path, mock_uri):
    docs = _rag_edges()
    for d in docs[K - 2:K + 2]:
        for k, v in GOOD[name](d).items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
    path = tmp_path / "edges_mean.bson"
    path.write_bytes(b"".join(bson.encode(d) for d in docs))
    (report,) = ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=BATCH)
    assert report.status == "complete" and report.loaded == N
    stored = {d["u"]: d for d in _loaded(mock_uri, "edges_mean")}
    for d in docs[K - 2:K + 2]:
        got = stored[d["u"]]
        assert {k: got.get(k) for k in d if k != "_id"} == {k: v for k, v in d.items() if k != "_id"}


def test_near_misses_are_found_in_files_with_many_distinct_names(tmp_path, mock_uri):
    """More distinct field names in a batch than the scanner lists: the rest are still checked."""
    batch = 2 * bsonio.EXTRA_NAMES
    docs = _rag_edges(2 * batch)
    for i, d in enumerate(docs):
        d[f"feature_{i}"] = i
    path = tmp_path / "edges_mean.bson"
    path.write_bytes(b"".join(bson.encode(d) for d in docs))
    (report,) = ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=batch)
    assert report.status == "complete"
    late = batch + bsonio.EXTRA_NAMES + 5  # past what the scan lists of the second batch
    docs[late]["merge_scor"] = docs[late].pop("merge_score")
    path.write_bytes(b"".join(bson.encode(d) for d in docs))
    offset = sum(len(bson.encode(d)) for d in docs[:late])
    with pytest.raises(LsdgraphError, match=rf"document #{late} at byte {offset} has a field `merge_scor`, "
                                            "one edit from `merge_score`"):
        ingest_mod.ingest(str(path), db=mock_uri, name="y", quiet=True, batch_docs=batch)


def test_a_repeat_of_a_position_field_is_caught_before_it_is_read(tmp_path, mock_uri):
    """The old scanner kept the last of two `center_z`; MongoDB would match the first."""
    docs = _rag_nodes()
    raws = [bson.encode(d) for d in docs]
    raws[K] = raws[K][:-1] + b"\x01center_z\x00" + struct.pack("<d", -1.0) + b"\x00"
    raws[K] = struct.pack("<i", len(raws[K])) + raws[K][4:]
    path = tmp_path / "nodes.bson"
    path.write_bytes(b"".join(raws))
    with pytest.raises(LsdgraphError, match=rf"document #{K} at byte {sum(map(len, raws[:K]))}: the field "
                                            "`center_z` appears twice"):
        ingest_mod.ingest(str(path), db=mock_uri, name="x", quiet=True, batch_docs=BATCH)


@pytest.mark.parametrize("a, b, near", [
    ("merge_score", "merge_sgore", True), ("merge_score", "mrege_score", True), ("merge_score", "merge_scor", True),
    ("merge_score", "merge_scoore", True), ("merge_score", "xmerge_score", True), ("ab", "ba", True),
    ("merge_score", "merge_score", False), ("merge_score", "merge_sxore_", False), ("abc", "bca", False),
    ("abc", "abcde", False), ("center_x", "center_y", True),
])
def test_one_edit(a, b, near):
    assert validate.one_edit(a, b) is near and validate.one_edit(b, a) is near


def test_known_fields_and_near_misses_per_kind():
    edges, skel_edges = schema.kind("rag_edges"), schema.kind("skeleton_edges")
    assert set(validate.known_fields(edges)) == {"_id", "u", "v", "merge_score", "agglomerated", "u_z", "u_y", "u_x",
                                                 "v_z", "v_y", "v_x"}
    assert {"source", "target", "neuron_id"} <= set(validate.known_fields(skel_edges))
    known = validate.known_fields(edges)
    assert validate.near_miss("merge_sgore", known) == "merge_score"
    assert validate.near_miss("u_w", known) == "u_z"
    # short names on either side are never near misses; known names and far names are fine
    assert [validate.near_miss(n, known) for n in ("w", "uu", "ux", "vz", "u_z", "agglomerated", "size")] == [None] * 7

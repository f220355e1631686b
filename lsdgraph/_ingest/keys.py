"""Keys of a load: indexes by kind, documents sharing a unique key, documents sharing an ``_id``,
and the exact count of repeated ``_id``s in a file."""
from __future__ import annotations

import itertools
from functools import partial
from typing import TYPE_CHECKING, Any

import bson
import numpy as np
from numba import njit
from pymongo import errors as perr

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io import bsonio
from lsdgraph._io.sources import SourceFile
from lsdgraph._stores.mongo import Store

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Coll


def create_indexes(store: Store, coll: Coll, kind: schema.Kind, endpoint_fields: tuple[str, ...],
                   unique_only: bool = False, what: str | None = None) -> None:
    """The kind's indexes on ``coll``, keyed by the endpoint fields the collection stores."""
    store.create_indexes(coll, kind.name, rename=dict(zip(kind.integers, endpoint_fields, strict=True))
                         if kind.name == "skeleton_edges" else None, unique_only=unique_only, what=what)


def _find_ids(coll: Coll, ids: list) -> list[dict]:
    return list(coll.find({"_id": {"$in": ids}}))


def _strip_id(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "_id"}


def _id_order(value):
    return (type(value).__name__, value)


def comparable(doc: dict, drop: tuple[str, ...] = ()) -> dict:
    """A document as raw values per field (NaN equals NaN, int32 differs from int64 only in type
    as BSON says), leaving out ``drop`` (fields ingest added)."""
    return {k: bson.encode({"v": v}) for k, v in doc.items() if k not in drop}


def _resolve_duplicates(store: Store, coll: Coll, kind: schema.Kind, on_duplicate: str, clash) -> int:
    """Documents sharing a unique key (node ``id``, edge ``(u, v)``): identical ones (but for
    ``_id``) keep one copy, the smallest ``_id``; differing ones are an error (``clash(key, id_a,
    id_b)`` gives the message) unless ``on_duplicate == 'skip'``. Returns how many were removed."""
    group = {"_id": {f: f"${f}" for f in kind.unique}, "ids": {"$push": "$_id"}, "n": {"$sum": 1}}
    pipeline: list[dict[str, Any]] = [{"$group": group}, {"$match": {"n": {"$gt": 1}}}]
    groups = store.retry(
        lambda: list(coll.aggregate(pipeline, allowDiskUse=True)), f"{coll.name}: finding repeated keys"
    )
    removed = 0
    for start in itertools.count(0, 1000):  # one find and one delete per 1000 keys
        chunk = groups[start : start + 1000]
        if not chunk:
            return removed
        wanted = [i for g in chunk for i in g["ids"]]
        docs = {
            d["_id"]: comparable(_strip_id(d))
            for d in store.retry(partial(_find_ids, coll, wanted), f"{coll.name}: reading repeated keys")
        }
        drop = []
        for g in chunk:
            ids = sorted(g["ids"], key=_id_order)
            differ = [i for i in ids[1:] if docs.get(i) != docs.get(ids[0])]
            if differ and on_duplicate != "skip":
                raise LsdgraphError(clash(g["_id"], ids[0], differ[0]))
            drop += ids[1:]
        store.retry(partial(coll.delete_many, {"_id": {"$in": drop}}), f"{coll.name}: removing repeated keys")
        removed += len(drop)
    return removed


def locate(f: SourceFile, match, limit: int = 2, fields: tuple[str, ...] = ()) -> list[tuple[int, int]]:
    """(document number, byte offset) of the first ``limit`` documents of ``f`` for which
    ``match(docs) -> mask`` holds: a second read of the file, on the error path only, so a message
    can say where clashing documents are. Best effort: [] when the file cannot be read again."""
    found: list[tuple[int, int]] = []
    index = 0
    try:
        stream = f.open(0)
    except LsdgraphError:
        return found
    try:
        for base, docs, err in bsonio.iter_docs(stream, fields, max_docs=100_000):
            if len(docs):
                for i in np.flatnonzero(match(docs))[: limit - len(found)]:
                    found.append((index + int(i), base + int(docs.starts[i])))
                index += len(docs)
            if len(found) >= limit or err is not None:
                break
    except (LsdgraphError, OSError, KeyError, TypeError, ValueError):
        return found
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    return found


def key_clash_message(f: SourceFile, kind: schema.Kind):
    """``message(key, id_a, id_b)`` for two documents sharing a unique key with other content."""

    def message(key: dict, id_a, id_b) -> str:
        shown = ", ".join(f"{k} = {v}" for k, v in key.items())

        def match(docs):
            hit = np.ones(len(docs), bool)
            for k in kind.unique:
                hit &= np.isin(docs.type_of(k), (bsonio.T_INT32, bsonio.T_INT64))
                hit &= docs.ints(k) == int(key[k])
            return hit

        where = locate(f, match, fields=kind.unique)
        if len(where) == 2:
            (i, a), (j, b) = where
            docs = f"documents #{i} (byte {a}) and #{j} (byte {b})"
        else:
            docs = f"documents with _id {id_a} and _id {id_b}"
        return (
            f"{f.url}: {docs} share {shown} with different content; fix the file, or pass "
            "on_duplicate='skip' to keep one of them"
        )

    return message


def build_unique_indexes(
    store: Store, coll, kind, endpoint_fields, f: SourceFile, on_duplicate: str, unique_only: bool = False
) -> int:
    """Create the kind's indexes (only the unique ones with ``unique_only``); a unique index that
    fails on repeated keys gets them resolved (see :func:`_resolve_duplicates`) and is built again.
    Returns documents removed."""
    removed = 0
    for _ in range(3):
        try:
            create_indexes(store, coll, kind, endpoint_fields, unique_only, f"{f.url}: building indexes")
            return removed
        except perr.OperationFailure as e:  # DuplicateKeyError included
            if e.code != 11000:
                raise LsdgraphError(f"{f.url}: building indexes failed: {short(e)}") from None
            removed += _resolve_duplicates(store, coll, kind, on_duplicate, key_clash_message(f, kind))
    raise LsdgraphError(f"{f.url}: could not build the unique indexes after removing duplicates")


def short(e: Exception, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------------------------------
# _id clashes


def id_clashes(store: Store, coll: Coll, sent: bsonio.Docs, rows: np.ndarray, added: tuple[str, ...]) -> list[int]:
    """Of the batch rows the server refused as duplicate ``_id``s, those whose stored document
    differs from the one sent (ignoring the fields ingest adds, which depend on the nodes)."""
    if len(rows) == 0:
        return []
    mine = [bson.decode(sent.raw(int(i))) for i in rows]
    ids = [d["_id"] for d in mine]
    stored = {}
    for k in range(0, len(ids), 500):  # bounded $in: servers scan long ones slowly
        part = ids[k : k + 500]
        found = store.retry(partial(_find_ids, coll, part), f"{coll.name}: reading repeated _ids")
        stored.update({bson.encode({"v": d["_id"]}): d for d in found})
    out = []
    for row, doc in zip(rows.tolist(), mine, strict=True):
        other = stored.get(bson.encode({"v": doc["_id"]}))
        if other is None or comparable(other, added) != comparable(doc, added):
            out.append(row)
    return out


def id_clash_message(f: SourceFile, row_index: int, row_offset: int, doc_id) -> str:
    """Two documents with one ``_id`` and different content: where both are."""
    want = bson.encode({"_id": doc_id})

    def match(docs):
        return np.array(
            [bson.encode({"_id": bson.decode(docs.raw(i)).get("_id")}) == want for i in range(len(docs))], bool
        )

    where = [w for w in locate(f, match, limit=2) if w[0] != row_index][:1]
    first = f"documents #{where[0][0]} (byte {where[0][1]}) and " if where else "a document already stored and "
    return (
        f"{f.url}: {first}#{row_index} (byte {row_offset}) share _id {doc_id!r} with different content; "
        "fix the file, or pass on_duplicate='skip' to keep the first"
    )


# ---------------------------------------------------------------------------------------------
# the exact count of repeated _ids in a file


@njit(cache=True, nogil=True)
def _id_keys(buf, starts, ends, types, vpos, out):
    """Two 64-bit words per document that equal exactly when the ``_id``s do for ObjectId, int
    and double ids (the values themselves), and by a 128-bit hash for other types."""
    for i in range(types.shape[0]):
        t = types[i, 0]
        p = vpos[i, 0]
        a = np.uint64(0)
        b = np.uint64(t) << np.uint64(56)
        if t == 7:
            for k in range(8):
                a |= np.uint64(buf[p + k]) << np.uint64(8 * k)
            for k in range(4):
                b |= np.uint64(buf[p + 8 + k]) << np.uint64(8 * k)
        elif t == 16:
            for k in range(4):
                a |= np.uint64(buf[p + k]) << np.uint64(8 * k)
        elif t == 18 or t == 1:
            for k in range(8):
                a |= np.uint64(buf[p + k]) << np.uint64(8 * k)
        elif t != 0:
            # hash the rest of the document from the value on: it starts with the whole value
            h1 = np.uint64(14695981039346656037)
            h2 = np.uint64(1099511628211) * np.uint64(31)
            for k in range(p, ends[i]):
                h1 = (h1 ^ np.uint64(buf[k])) * np.uint64(1099511628211)
                h2 = (h2 ^ np.uint64(buf[k])) * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
            a = h1
            b |= h2 >> np.uint64(8)
        out[i, 0] = a
        out[i, 1] = b


def id_keys(docs: bsonio.Docs) -> np.ndarray:
    """(n, 2) uint64 keys of the documents that have an ``_id`` (see :func:`_id_keys`)."""
    out = np.empty((len(docs), 2), np.uint64)
    _id_keys(docs.buf, docs.starts, docs.ends, docs.types[:, :1], bsonio.value_offsets(docs, "_id")[:, None], out)
    return out[docs.type_of("_id") != bsonio.T_MISSING]


def count_repeats(parts: list[np.ndarray]) -> int:
    """How many keys repeat an earlier one."""
    if not parts:
        return 0
    k = np.concatenate(parts)
    k = k[np.lexsort((k[:, 1], k[:, 0]))]
    return int(np.count_nonzero((k[1:, 0] == k[:-1, 0]) & (k[1:, 1] == k[:-1, 1])))


def repeated_ids(f: SourceFile, chunk_bytes: int = 8 << 20) -> int:
    """How many documents of ``f`` repeat an ``_id`` of an earlier document (documents without
    one never do: ingest gives them one of their own). One read of the file, 16 bytes per
    document: used only when a batch may have gone in twice, so the server's duplicate reports
    may count it twice."""
    parts = []
    stream = f.open(0)
    try:
        for _, docs, err in bsonio.iter_docs(stream, ("_id",), chunk_bytes=chunk_bytes, max_docs=1 << 20):
            if len(docs):
                parts.append(id_keys(docs))
            if err is not None:
                raise LsdgraphError(f"{f.url}: the file changed while it was being checked; rerun")
    finally:
        stream.close()
    return count_repeats(parts)

"""Bulk-load mongodump ``.bson`` files (local or S3) into MongoDB: streaming, validated,
resumable and idempotent.

Each file goes to a staging collection (``lsdgraph_staging.<name>``) batch by batch, raw BSON
passed through; a record in ``lsdgraph_meta`` holds the committed byte offset, document count and
running CRC-32 after every batch, so a rerun resumes where the last acknowledged batch ended (a
replayed batch's documents come back as duplicate ``_id`` and are skipped). Indexes are built after
the load, then the staging collection is renamed: a collection under its real name is complete.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from pymongo import errors as perr

from . import bsonio, schema, validate
from .errors import LsdgraphError, ServerLost
from .progress import Progress
from .sources import S3Options, SourceFile, human_bytes, is_s3, list_files
from .store import Store, connect

__all__ = ["IngestReport", "ingest", "plan", "nodes_for", "default_db_name", "node_table", "add_edge_positions"]

VERSION = "0.1.0"


@dataclass
class IngestReport:
    """What happened to one file."""

    file: str
    collection: str
    kind: str
    status: str              # complete | already-complete | skipped | failed
    documents: int = 0       # documents in the file
    loaded: int = 0          # documents in the collection
    duplicates: int = 0      # documents skipped as duplicates
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.status == "failed":
            return f"FAILED  {self.error}"
        if self.status == "skipped":
            return f"{'skipped':<15} {self.collection:<28} {human_bytes(self.bytes):>9}; " + "; ".join(self.notes)
        word = "already loaded" if self.status == "already-complete" else "loaded"
        dup = f", {self.duplicates:,} duplicates skipped" if self.duplicates else ""
        rate = (f" in {self.seconds:.1f} s ({self.documents / max(self.seconds, 1e-9):,.0f} docs/s)"
                if self.status == "complete" else "")
        notes = "".join(f"; {n}" for n in self.notes)
        return (f"{word:<15} {self.collection:<28} {self.loaded:>12,} docs "
                f"{human_bytes(self.bytes):>9}{dup}{rate}{notes}")


def default_db_name(source: str) -> str:
    """A database name from the source's last path component (MongoDB forbids ``/\\. "$``)."""
    path = str(source) if is_s3(source) else Path(source).expanduser().resolve().as_posix()
    tail = PurePosixPath(path.rstrip("/")).name or "lsdgraph"
    if tail.endswith(".bson"):
        tail = PurePosixPath(path.rstrip("/")).parent.name or "lsdgraph"
    return re.sub(r'[/\\. "$*<>:|?]', "_", tail)[:63]


def _skip_reason(collection: str) -> str | None:
    """Why a dump file is not loaded: ``system.*`` as mongorestore, and lsdgraph's own bookkeeping
    (``lsdgraph_meta``, ``lsdgraph_staging.*``), which a dump of an lsdgraph database carries."""
    if collection.startswith("system."):
        return "system collection (mongorestore skips these too)"
    if collection == schema.META or collection.startswith(schema.STAGING_PREFIX):
        return "lsdgraph's own bookkeeping, rebuilt by the load"
    return None


def plan(files: list[SourceFile]) -> list[tuple[SourceFile, str, schema.Kind]]:
    """(file, collection, kind) in load order: RAG nodes first (edges copy their positions).

    Collection = file name without ``.bson``, as mongorestore does; when two files below a folder
    share a name, each is named by its relative path instead (``a/b/nodes.bson`` → ``a.b.nodes``).
    The kind always comes from the file name, so a renamed ``a.b.nodes`` is still RAG nodes.
    """
    stems: dict[str, int] = {}
    for f in files:
        stems[schema.collection_name(f.name)] = stems.get(schema.collection_name(f.name), 0) + 1
    out = []
    for f in files:
        stem = schema.collection_name(f.name)
        name = schema.collection_name(f.rel).replace("/", ".") if stems[stem] > 1 else stem
        out.append((f, name, schema.kind_of(stem)))
    order = {"rag_nodes": 0, "skeleton_nodes": 1}
    return sorted(out, key=lambda t: (order.get(t[2].name, 2), t[1]))


def nodes_for(planned: list[tuple[SourceFile, str, schema.Kind]]) -> dict[str, str]:
    """For each edges collection, the nodes collection its joined fields come from: for a RAG the
    nodes file in the same folder, else ``nodes`` (loaded earlier into the same database); for
    skeletons ``<prefix>.nodes``."""
    def folder(f: SourceFile) -> str:
        return f.rel.rsplit("/", 1)[0] if "/" in f.rel else ""

    nodes = {folder(f): name for f, name, k in planned if k.name == "rag_nodes"}
    out = {name: nodes.get(folder(f), "nodes") for f, name, k in planned if k.name == "rag_edges"}
    out.update({name: name[:-len("edges")] + "nodes" for f, name, k in planned if k.name == "skeleton_edges"})
    return out


def _now():
    return _dt.datetime.now(_dt.timezone.utc)


@dataclass
class NodeTable:
    """Endpoint lookup for edges: node ids (sorted int64), their positions (n, 3) and the extra
    integer fields copied from ``u`` (``neuron_id`` for skeletons)."""

    ids: np.ndarray
    positions: np.ndarray
    extra: dict[str, np.ndarray]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index, found) per key."""
        if len(self.ids) == 0:
            return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
        i = np.searchsorted(self.ids, keys).clip(0, len(self.ids) - 1)
        return i, self.ids[i] == keys


def node_table(store: Store, db, nodes: str = "nodes", edges_kind: str = "rag_edges") -> NodeTable | None:
    """What edges of ``edges_kind`` copy from ``nodes`` (schema ``edge_joins``), or None when that
    collection is not there."""
    if nodes not in db.list_collection_names():
        return None
    join = schema.EDGE_JOINS[edges_kind]
    position = schema.kind(join["nodes_kind"]).position
    extra = tuple(join["copy_from_u"])
    fields = ("id",) + position + extra
    parts = list(store.find_raw(db[nodes], {}, fields))
    if not parts:
        return NodeTable(np.empty(0, np.int64), np.empty((0, 3)), {f: np.empty(0, np.int64) for f in extra})
    ids = np.concatenate([d.ints("id") for d in parts])
    order = np.argsort(ids, kind="stable")
    pos = np.stack([np.concatenate([d.floats(f) for d in parts]) for f in position], axis=1)
    cols = {f: np.concatenate([d.ints(f) for d in parts])[order] for f in extra}
    return NodeTable(ids[order], pos[order], cols)


def _joined(table: NodeTable, u: np.ndarray, v: np.ndarray) -> tuple[dict, np.ndarray]:
    """The columns an edge batch gets from its endpoints, and which cells are present."""
    iu, uok = table.lookup(u)
    iv, vok = table.lookup(v)
    cols, present = {}, []
    for end, i, ok in (("u", iu, uok), ("v", iv, vok)):
        for j, f in enumerate(schema.EDGE_POSITIONS[end]):
            cols[f] = ("double", table.positions[i, j])
            present.append(ok)
    for f, values in table.extra.items():
        cols[f] = ("int64", values[iu])
        present.append(uok)
    return cols, np.stack(present, axis=1)


def _with_joins(docs: bsonio.Docs, table: NodeTable, endpoints: tuple[str, str]) -> bsonio.Docs:
    cols, present = _joined(table, docs.ints(endpoints[0]), docs.ints(endpoints[1]))
    return bsonio.append_fields(docs, cols, present)


def _with_ids(docs: bsonio.Docs, first_index: int, prefix: bytes) -> bsonio.Docs:
    """Give documents without ``_id`` a deterministic one (file prefix + document number), so a
    replayed batch is recognised as duplicates instead of being inserted twice."""
    missing = docs.type_of("_id") == bsonio.T_MISSING
    if not missing.any():
        return docs
    numbers = first_index + np.arange(len(docs), dtype=np.int64)
    out = bsonio.append_fields(docs, {"_id": ("oid", numbers)}, missing[:, None], oid_prefix=prefix)
    # keep the scanned columns (they describe the same documents)
    return bsonio.Docs(out.buf, out.starts, out.ends, docs.fields, docs.types, docs.values)


def _create_indexes(coll, kind: schema.Kind, endpoint_fields: tuple[str, ...], unique_only: bool = False) -> None:
    from pymongo import IndexModel

    models = []
    for spec in schema.indexes(kind.name):
        if unique_only and not spec.get("unique"):
            continue
        key = [(f, d) for f, d in spec["key"]]
        if kind.name == "skeleton_edges" and endpoint_fields != kind.integers:
            rename = dict(zip(kind.integers, endpoint_fields))
            key = [(rename.get(f, f), d) for f, d in key]
        models.append(IndexModel(key, name=spec["name"], unique=spec.get("unique", False)))
    if models:
        coll.create_indexes(models)


def _strip_id(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "_id"}


def _id_order(value):
    return (type(value).__name__, value)


def _resolve_duplicates(coll, kind: schema.Kind, on_duplicate: str, clash) -> int:
    """Documents sharing a unique key (node ``id``, edge ``(u, v)``): identical ones (but for
    ``_id``) keep one copy, the smallest ``_id``; differing ones are an error (``clash(key, id_a,
    id_b)`` gives the message) unless ``on_duplicate == 'skip'``. Returns how many were removed."""
    group = {"_id": {f: f"${f}" for f in kind.unique}, "ids": {"$push": "$_id"}, "n": {"$sum": 1}}
    groups = coll.aggregate([{"$group": group}, {"$match": {"n": {"$gt": 1}}}], allowDiskUse=True)
    removed = 0
    while True:
        chunk = list(itertools.islice(groups, 1000))  # one find and one delete per 1000 keys
        if not chunk:
            return removed
        wanted = [i for g in chunk for i in g["ids"]]
        docs = {d["_id"]: _strip_id(d) for d in coll.find({"_id": {"$in": wanted}})}
        drop = []
        for g in chunk:
            ids = sorted(g["ids"], key=_id_order)
            differ = [i for i in ids[1:] if docs.get(i) != docs.get(ids[0])]
            if differ and on_duplicate != "skip":
                raise LsdgraphError(clash(g["_id"], ids[0], differ[0]))
            drop += ids[1:]
        coll.delete_many({"_id": {"$in": drop}})
        removed += len(drop)


def _locate(f: SourceFile, fields: tuple[str, ...], key: dict, limit: int = 2) -> list[tuple[int, int]]:
    """(document number, byte offset) of the first ``limit`` documents of ``f`` whose ``fields``
    equal ``key``: a second read of the file, on the error path only, so the message can say
    where the clashing documents are. Best effort: [] when the file cannot be read again."""
    found: list[tuple[int, int]] = []
    index = 0
    try:
        stream = f.open(0)
    except LsdgraphError:
        return found
    try:
        for base, docs, err in bsonio.iter_docs(stream, fields, max_docs=100_000):
            if len(docs):
                hit = np.ones(len(docs), bool)
                for k in fields:
                    hit &= np.isin(docs.type_of(k), (bsonio.T_INT32, bsonio.T_INT64))
                    hit &= docs.ints(k) == int(key[k])
                for i in np.flatnonzero(hit)[:limit - len(found)]:
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


def _clash_message(f: SourceFile, kind: schema.Kind):
    def message(key: dict, id_a, id_b) -> str:
        shown = ", ".join(f"{k} = {v}" for k, v in key.items())
        where = _locate(f, kind.unique, key)
        if len(where) == 2:
            (i, a), (j, b) = where
            docs = f"documents #{i} (byte {a}) and #{j} (byte {b})"
        else:
            docs = f"documents with _id {id_a} and _id {id_b}"
        return (f"{f.url}: {docs} share {shown} with different content; fix the file, or pass "
                "--on-duplicate skip to keep one of them")
    return message


def _build_indexes(store: Store, coll, kind, endpoint_fields, f: SourceFile, on_duplicate,
                   unique_only: bool = False) -> int:
    """Create the kind's indexes (only the unique ones with ``unique_only``); a unique index that
    fails on repeated keys gets them resolved (see :func:`_resolve_duplicates`) and is built again.
    Returns documents removed."""
    removed = 0
    for _ in range(3):
        try:
            store.retry(lambda: _create_indexes(coll, kind, endpoint_fields, unique_only),
                        f"{f.url}: building indexes")
            return removed
        except perr.OperationFailure as e:  # DuplicateKeyError included
            if e.code != 11000:
                raise LsdgraphError(f"{f.url}: building indexes failed: {_short(e)}") from None
            removed += _resolve_duplicates(coll, kind, on_duplicate, _clash_message(f, kind))
    raise LsdgraphError(f"{f.url}: could not build the unique indexes after removing duplicates")


def _short(e: Exception, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _server_error(store: Store, f: SourceFile, e: Exception) -> LsdgraphError:
    lost = isinstance(e, (perr.AutoReconnect, perr.ConnectionFailure, perr.ServerSelectionTimeoutError))
    cls = ServerLost if lost else LsdgraphError
    return cls(f"{f.url}: MongoDB at {store.uri} failed ({type(e).__name__}: {_short(e)}); "
               "nothing is marked complete: rerun the same command to resume")


def _load_file(store: Store, db, f: SourceFile, coll_name: str, kind: schema.Kind, *, on_duplicate: str,
               drop: bool, quiet: bool, progress: bool | None, batch_docs: int, chunk_bytes: int,
               nodes: str = "nodes") -> IngestReport:
    """Load one file; any failure leaves a ``failed`` meta record (when the server can still be
    reached) and raises :class:`LsdgraphError`."""
    try:
        return _load(store, db, f, coll_name, kind, on_duplicate=on_duplicate, drop=drop, quiet=quiet,
                     progress=progress, batch_docs=batch_docs, chunk_bytes=chunk_bytes, nodes=nodes)
    except LsdgraphError as e:
        _mark_failed(db, coll_name, str(e))
        raise
    except perr.PyMongoError as e:
        err = _server_error(store, f, e)
        _mark_failed(db, coll_name, str(err))
        raise err from None


def _load(store: Store, db, f: SourceFile, coll_name: str, kind: schema.Kind, *, on_duplicate: str,
          drop: bool, quiet: bool, progress: bool | None, batch_docs: int, chunk_bytes: int,
          nodes: str) -> IngestReport:
    t0 = time.monotonic()
    report = IngestReport(f.url, coll_name, kind.name, "failed", bytes=f.size)
    meta = db[schema.META]
    staging_name = schema.STAGING_PREFIX + coll_name
    rec = meta.find_one({"_id": coll_name})
    existing = set(db.list_collection_names())

    if rec and rec.get("status") == "complete" and not drop:
        if rec.get("fingerprint") == f.fingerprint and coll_name in existing:
            report.status = "already-complete"
            report.documents, report.loaded = rec.get("documents", 0), rec.get("loaded", 0)
            report.duplicates = rec.get("duplicates", 0)
            return report
        if coll_name in existing:
            raise LsdgraphError(f"{f.url}: collection {coll_name!r} already holds a complete load of "
                                f"{rec.get('source')} ({rec.get('size')} bytes) that differs from this file; "
                                "pass --drop to replace it")
    if coll_name in existing and not drop and not (rec and rec.get("status") != "complete"):
        raise LsdgraphError(f"{f.url}: collection {coll_name!r} already exists and was not loaded by "
                            "lsdgraph (daisy?); pass --drop to replace it, or --name another database")
    unfinished = bool(rec and rec.get("status") in ("loading", "failed") and not drop
                      and rec.get("fingerprint") == f.fingerprint)
    if (unfinished and coll_name in existing and staging_name not in existing
            and rec.get("offset") == f.size and rec.get("documents")):
        # stopped between the rename and the last meta update: the collection is complete
        report.notes.append("finished an interrupted load")
        return _complete(store, db, f, coll_name, kind, report, int(rec["documents"]), int(rec["crc32"]),
                         bool(rec.get("positions")), 0, t0, tuple(rec.get("endpoints") or kind.integers))
    resume = unfinished and staging_name in existing

    table = None
    joins = kind.name in schema.EDGE_JOINS
    if joins:
        table = node_table(store, db, nodes, kind.name)
        if resume and not rec.get("positions"):
            table = None  # earlier batches went in without positions: all get them after the load
        if table is None:
            report.notes.append(f"edge positions are added once {nodes!r} is loaded")
    if resume:
        offset, ndocs, crc = int(rec["offset"]), int(rec["documents"]), int(rec["crc32"])
        endpoint_fields = tuple(rec.get("endpoints") or kind.integers)
    else:
        db[staging_name].drop()
        offset, ndocs, crc = 0, 0, 0
        endpoint_fields = kind.integers
    meta.replace_one({"_id": coll_name}, {
        "_id": coll_name, "collection": coll_name, "kind": kind.name, "source": f.url, "file": f.rel,
        "size": f.size, "fingerprint": f.fingerprint, "status": "loading", "offset": offset,
        "bytes_loaded": offset, "documents": ndocs, "crc32": crc, "checksum": None, "loaded": None,
        "duplicates": None, "endpoints": list(endpoint_fields),
        "nodes": nodes if joins else None, "positions": (table is not None) if joins else None,
        "stats": rec.get("stats") if resume else None, "error": None, "started": rec.get("started") if resume else _now(), "updated": _now(),
        "finished": None, "lsdgraph_version": VERSION}, upsert=True)
    if resume:
        report.notes.append(f"resumed at byte {offset:,}")
    stats = (rec.get("stats") if resume else None) or {}
    return _stream_into(store, db, f, coll_name, kind, report, offset, ndocs, crc, endpoint_fields, table, stats,
                        on_duplicate=on_duplicate, quiet=quiet, progress=progress,
                        batch_docs=batch_docs, chunk_bytes=chunk_bytes, t0=t0)


def _batch_stats(kind: schema.Kind, docs: bsonio.Docs, stats: dict) -> dict:
    """Running statistics kept with the load record, for `info` and range checks without a scan:
    the bounding box of node positions, the range and null count of merge scores."""
    out = dict(stats)
    if kind.name == "rag_nodes":
        pos = np.stack([docs.floats(f) for f in kind.position], axis=1)
        lo, hi = pos.min(0).tolist(), pos.max(0).tolist()
        if "bbox" in out:
            lo = np.minimum(lo, out["bbox"]["min"]).tolist()
            hi = np.maximum(hi, out["bbox"]["max"]).tolist()
        out["bbox"] = {"min": lo, "max": hi}
    elif kind.name == "rag_edges":
        sc = docs.floats(schema.SCORE)
        ok = ~np.isnan(sc)
        prev = out.get("scores", {"min": None, "max": None, "nulls": 0, "scored": 0})
        lo = [x for x in (prev["min"], float(sc[ok].min()) if ok.any() else None) if x is not None]
        hi = [x for x in (prev["max"], float(sc[ok].max()) if ok.any() else None) if x is not None]
        out["scores"] = {"min": min(lo) if lo else None, "max": max(hi) if hi else None,
                         "nulls": prev["nulls"] + int((~ok).sum()), "scored": prev["scored"] + int(ok.sum())}
    return out


def _stream_into(store, db, f, coll_name, kind, report, offset, ndocs, crc, endpoint_fields, table, stats, *,
                 on_duplicate, quiet, progress, batch_docs, chunk_bytes, t0) -> IngestReport:
    meta = db[schema.META]
    staging = db[schema.STAGING_PREFIX + coll_name]
    if f.size == 0:
        raise LsdgraphError(f"{f.url}: the file is empty (0 bytes), so there is nothing to load; "
                            "check the download, or remove the file if the collection was empty")

    id_prefix = zlib.crc32(f"{db.name}/{coll_name}".encode()).to_bytes(4, "big")
    bar = Progress(coll_name, f.size, enabled=False if quiet else progress, done_bytes=offset)
    stream = f.open(offset)
    try:
        for base, docs, err in bsonio.iter_docs(stream, kind.fields, chunk_bytes=chunk_bytes,
                                                 max_docs=batch_docs, start_offset=offset):
            if len(docs) and ndocs == 0 and kind.alternative_integers:
                endpoint_fields = validate.endpoints(docs, kind)
                if endpoint_fields != kind.integers:
                    report.notes.append(f"edges use {'/'.join(endpoint_fields)} instead of "
                                        f"{'/'.join(kind.integers)}")
                    meta.update_one({"_id": coll_name}, {"$set": {"endpoints": list(endpoint_fields)}})
            msg = validate.check(docs, kind, file=f.url, base_offset=base, first_index=ndocs,
                                 integers=endpoint_fields)
            if msg:
                raise LsdgraphError(msg)
            if err is not None and not len(docs):
                raise LsdgraphError(validate.structure_message(f.url, f.size, base, ndocs, err, docs.buf))
            if len(docs):
                source_bytes = docs.block()
                out = _with_ids(docs, ndocs, id_prefix)
                if table is not None:
                    out = _with_joins(out, table, endpoint_fields)
                store.insert_docs(staging, out, f"{f.url} at byte {base + int(docs.starts[0])}")
                crc = zlib.crc32(source_bytes, crc)
                stats = _batch_stats(kind, docs, stats)
                consumed = int(docs.ends[-1])
                offset, ndocs = base + consumed, ndocs + len(docs)
                store.retry(lambda: meta.update_one({"_id": coll_name}, {"$set": {
                    "offset": offset, "bytes_loaded": offset, "documents": ndocs, "crc32": crc,
                    "stats": stats, "updated": _now()}}), f"{f.url}: recording progress")
                bar.update(consumed - int(docs.starts[0]), len(docs))
            if err is not None:
                raise LsdgraphError(validate.structure_message(f.url, f.size, base, ndocs, err, docs.buf))
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
        bar.close()
    if offset != f.size:
        raise LsdgraphError(f"{f.url}: read {offset} of {f.size} bytes: the file changed or the stream "
                            "ended early; rerun to resume")
    if ndocs == 0:
        raise LsdgraphError(f"{f.url}: no documents in the file; is it a .bson dump?")

    # unique keys are checked (and duplicates resolved) before the collection takes its real name;
    # the other indexes are built after the rename, which some servers pay per index entry
    removed = _build_indexes(store, staging, kind, endpoint_fields, f, on_duplicate, unique_only=True)
    if coll_name in db.list_collection_names():
        db[coll_name].drop()  # only reachable with --drop or when replacing an unfinished target
    staging.rename(coll_name)
    return _complete(store, db, f, coll_name, kind, report, ndocs, crc, table is not None, removed, t0,
                     endpoint_fields)


def _complete(store, db, f, coll_name, kind, report, ndocs, crc, positions, removed, t0,
              endpoint_fields) -> IngestReport:
    """Build the remaining indexes of a collection in place under its real name (all its documents
    in, unique keys checked) and record the load as complete."""
    store.retry(lambda: _create_indexes(db[coll_name], kind, endpoint_fields), f"{f.url}: building indexes")
    loaded = db[coll_name].count_documents({})
    report.status = "complete"
    report.documents, report.loaded, report.duplicates = ndocs, loaded, ndocs - loaded
    if removed:
        report.notes.append(f"{removed:,} documents with a repeated key removed")
    db[schema.META].update_one({"_id": coll_name}, {"$set": {
        "status": "complete", "offset": f.size, "bytes_loaded": f.size, "loaded": loaded,
        "duplicates": ndocs - loaded, "checksum": f"crc32:{crc:08x}",
        "positions": positions if kind.name in schema.EDGE_JOINS else None,
        "finished": _now(), "updated": _now(), "seconds": time.monotonic() - t0}})
    report.seconds = time.monotonic() - t0
    return report


def _mark_failed(db, coll_name: str, error: str) -> None:
    try:
        db[schema.META].update_one({"_id": coll_name, "status": {"$ne": "complete"}},
                                   {"$set": {"status": "failed", "error": error, "updated": _now()}})
    except perr.PyMongoError:
        pass  # the server is gone: the record stays "loading", which is not "complete" either


def _ensure_daisy_meta(db) -> bool:
    """daisy's MongoDbGraphProvider reads the first document of ``meta`` and needs ``directed``.
    Returns True when it was written now."""
    if db[schema.DAISY_META].find_one() is None:
        db[schema.DAISY_META].insert_one({"directed": False})
        return True
    return False


def add_edge_positions(store: Store, db, edges: str, table: NodeTable | None = None, batch: int = 10_000,
                       nodes: str | None = None) -> int:
    """Copy what edges take from their endpoint nodes (positions; ``neuron_id`` for skeletons)
    onto every edge of a collection loaded before its nodes, or written by daisy, so ROI reads are
    one indexed query. Idempotent. Returns the number of edges updated."""
    from pymongo import UpdateOne

    kind = schema.kind_of(edges) if schema.kind_of(edges).name in schema.EDGE_JOINS else schema.kind("rag_edges")
    rec = db[schema.META].find_one({"_id": edges}) or {}
    nodes = nodes or rec.get("nodes") or ("nodes" if kind.name == "rag_edges" else edges[:-len("edges")] + "nodes")
    endpoints = tuple(rec.get("endpoints") or kind.integers)
    table = table if table is not None else node_table(store, db, nodes, kind.name)
    if table is None:
        raise LsdgraphError(f"{db.name}: no {nodes!r} collection, so positions cannot be added to {edges}")
    coll = db[edges]
    n = 0

    def flush(ops: list[tuple]) -> int:
        if store.mock:  # mongomock's bulk_write does not take current pymongo operations
            for flt, upd in ops:
                coll.update_one(flt, upd)
        else:
            models = [UpdateOne(flt, upd) for flt, upd in ops]
            store.retry(lambda: coll.bulk_write(models, ordered=False), f"{db.name}.{edges}: adding positions")
        return len(ops)

    for docs in store.find_raw(coll, {}, ("_id",) + endpoints):
        cols, present = _joined(table, docs.ints(endpoints[0]), docs.ints(endpoints[1]))
        names = list(cols)
        values = [c.tolist() for _, c in cols.values()]
        ops = []
        for i, oid in enumerate(_object_ids(docs)):
            s = {k: values[j][i] for j, k in enumerate(names) if present[i, j]}
            if s:
                ops.append(({"_id": oid}, {"$set": s}))
            if len(ops) >= batch:
                n += flush(ops)
                ops = []
        if ops:
            n += flush(ops)
    _create_indexes(coll, kind, endpoints)
    db[schema.META].update_one({"_id": edges}, {"$set": {"positions": True, "nodes": nodes}})
    return n


def _object_ids(docs: bsonio.Docs) -> list:
    import bson

    return [bson.decode(docs.raw(i))["_id"] for i in range(len(docs))]


def _finish_database(store: Store, db) -> list[str]:
    """After the files: positions for complete edges whose nodes are now loaded, and daisy's
    ``meta`` once a RAG is there. Both are idempotent, so a rerun finishes what a kill cut."""
    lines = []
    existing = set(db.list_collection_names())
    for rec in db[schema.META].find({"kind": {"$in": list(schema.EDGE_JOINS)}, "status": "complete",
                                     "positions": {"$ne": True}}):
        nodes = rec.get("nodes") or "nodes"
        if rec["_id"] in existing and nodes in existing:
            n = add_edge_positions(store, db, rec["_id"], nodes=nodes)
            lines.append(f"{'positions added':<15} {rec['_id']:<28} {n:>12,} docs  from {nodes}")
    if db[schema.META].find_one({"kind": {"$in": ["rag_nodes", "rag_edges"]}, "status": "complete"}):
        _ensure_daisy_meta(db)
    return lines


def reindex(store: Store, db) -> list[str]:
    """Give a database that lsdgraph did not load (mongorestore, daisy) what ingest would have:
    every collection's indexes by kind, endpoint positions on edges, daisy's ``meta``. Idempotent;
    returns one line per action."""
    lines = []
    names = sorted(n for n in db.list_collection_names() if not n.startswith(schema.STAGING_PREFIX))
    for name in names:
        kind = schema.kind_of(name)
        if kind.name in schema.EDGE_JOINS:
            rec = db[schema.META].find_one({"_id": name}) or {}
            nodes = rec.get("nodes") or ("nodes" if kind.name == "rag_edges" else name[:-len("edges")] + "nodes")
            has = db[name].find_one({schema.EDGE_POSITIONS["u"][0]: {"$exists": True}}, {"_id": 1})
            if nodes in names and not (rec.get("positions") or has):
                n = add_edge_positions(store, db, name, nodes=nodes)
                lines.append(f"{'positions added':<15} {name:<28} {n:>12,} docs  from {nodes}")
                continue
        if schema.indexes(kind.name):
            doc = db[name].find_one({}) or {}
            ends = tuple(kind.alternative_integers) if kind.alternative_integers and kind.integers[0] not in doc \
                and kind.alternative_integers[0] in doc else kind.integers
            store.retry(lambda: _create_indexes(db[name], kind, ends), f"{db.name}.{name}: building indexes")
            lines.append(f"{'indexed':<15} {name:<28} " + ", ".join(sp["name"] for sp in schema.indexes(kind.name)))
    if "nodes" in names and _ensure_daisy_meta(db):
        lines.append(f"{'daisy meta':<15} {schema.DAISY_META:<28} {{directed: false}}")
    return lines


def ingest(source: str, *, db: str | None = None, name: str | None = None, on_duplicate: str = "error",
           drop: bool = False, quiet: bool = False, progress: bool | None = None,
           profile: str | None = None, endpoint_url: str | None = None, batch_docs: int = 20_000,
           chunk_bytes: int = 8 << 20, store: Store | None = None, out=None) -> list[IngestReport]:
    """Load every ``.bson`` file at ``source`` into database ``name`` at ``db`` (a URI).

    Returns one report per file; raises :class:`LsdgraphError` (after loading what it could) when
    any file failed. Prints one line per file to ``out`` (stdout) unless ``quiet``.
    """
    if on_duplicate not in ("error", "skip"):
        raise LsdgraphError(f"--on-duplicate {on_duplicate!r}: use 'error' or 'skip'")
    if batch_docs < 1:
        raise LsdgraphError(f"--batch-docs {batch_docs}: use 1 or more")
    out = out or sys.stdout
    files = list_files(source, s3=S3Options(profile=profile, endpoint_url=endpoint_url))
    if not files:
        raise LsdgraphError(f"{source}: no .bson files there; list what is there with `lsdgraph ls`")
    store = store or connect(db)
    name = name or default_db_name(source)
    database = store.db(name)
    planned = plan(files)
    nodes_of = nodes_for(planned)
    reports = []
    for f, coll_name, kind in planned:
        why = _skip_reason(coll_name)
        if why:
            r = IngestReport(f.url, coll_name, kind.name, "skipped", bytes=f.size, notes=[why])
        else:
            try:
                r = _load_file(store, database, f, coll_name, kind, on_duplicate=on_duplicate, drop=drop,
                               quiet=quiet, progress=progress, batch_docs=batch_docs,
                               chunk_bytes=chunk_bytes, nodes=nodes_of.get(coll_name, "nodes"))
            except LsdgraphError as e:
                r = IngestReport(f.url, coll_name, kind.name, "failed", bytes=f.size, error=str(e))
                if isinstance(e, ServerLost):  # the next files would only wait for it too
                    reports.append(r)
                    if not quiet:
                        print(r.line(), file=out, flush=True)
                    raise
        reports.append(r)
        if not quiet:
            print(r.line(), file=out, flush=True)
    failed = [r for r in reports if r.status == "failed"]
    try:
        lines = _finish_database(store, database)
    except (perr.PyMongoError, LsdgraphError) as e:
        if failed:
            lines = []  # the first file error is the one to report
        else:
            raise LsdgraphError(f"{source}: MongoDB at {store.uri} failed while adding edge positions "
                                f"({type(e).__name__}: {_short(e)}); rerun the same command to finish") from None
    if not quiet:
        for line in lines:
            print(line, file=out, flush=True)
    if failed:
        more = f" (and {len(failed) - 1} more failed files)" if len(failed) > 1 else ""
        raise LsdgraphError(failed[0].error + more)
    return reports

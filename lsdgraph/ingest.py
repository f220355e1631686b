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
import re
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

import numpy as np
from pymongo import errors as perr

from . import bsonio, schema, validate
from .errors import LsdgraphError
from .progress import Progress
from .sources import S3Options, SourceFile, human_bytes, is_s3, list_files
from .store import Store, connect

__all__ = ["IngestReport", "ingest", "plan", "default_db_name", "node_table", "add_edge_positions"]

VERSION = "0.1.0"


@dataclass
class IngestReport:
    """What happened to one file."""

    file: str
    collection: str
    kind: str
    status: str              # complete | already-complete | failed
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
        word = "already loaded" if self.status == "already-complete" else "loaded"
        dup = f", {self.duplicates:,} duplicates skipped" if self.duplicates else ""
        rate = (f" in {self.seconds:.1f} s ({self.documents / max(self.seconds, 1e-9):,.0f} docs/s)"
                if self.status == "complete" else "")
        notes = "".join(f"; {n}" for n in self.notes)
        return (f"{word:<15} {self.collection:<28} {self.loaded:>12,} docs "
                f"{human_bytes(self.bytes):>9}{dup}{rate}{notes}")


def default_db_name(source: str) -> str:
    """A database name from the source's last path component (MongoDB forbids ``/\\. "$``)."""
    tail = PurePosixPath(str(source).rstrip("/")).name or "lsdgraph"
    if tail.endswith(".bson"):
        tail = PurePosixPath(str(source).rstrip("/")).parent.name or "lsdgraph"
    return re.sub(r'[/\\. "$*<>:|?]', "_", tail)[:63]


def plan(files: list[SourceFile]) -> list[tuple[SourceFile, str, schema.Kind]]:
    """(file, collection, kind) in load order: RAG nodes first (edges copy their positions).

    Collection = file name without ``.bson``, as mongorestore does; when two files below a folder
    share a name, each is named by its relative path instead (``a/b/nodes.bson`` → ``a.b.nodes``).
    """
    stems: dict[str, int] = {}
    for f in files:
        stems[schema.collection_name(f.name)] = stems.get(schema.collection_name(f.name), 0) + 1
    out = []
    for f in files:
        name = schema.collection_name(f.name)
        if stems[name] > 1:
            name = schema.collection_name(f.rel).replace("/", ".")
        out.append((f, name, schema.kind_of(name)))
    order = {"rag_nodes": 0, "skeleton_nodes": 1}
    return sorted(out, key=lambda t: (order.get(t[2].name, 2), t[1]))


def _now():
    return _dt.datetime.now(_dt.timezone.utc)


def node_table(store: Store, db, nodes: str = "nodes") -> tuple[np.ndarray, np.ndarray] | None:
    """All fragment ids (sorted int64) and centres (n, 3) of a nodes collection, or None."""
    if nodes not in db.list_collection_names():
        return None
    fields = ("id",) + schema.NODE_POSITION
    ids, pos = [], []
    for docs in store.find_raw(db[nodes], {}, fields):
        ids.append(docs.ints("id"))
        pos.append(np.stack([docs.floats(f) for f in schema.NODE_POSITION], axis=1))
    if not ids:
        return np.empty(0, np.int64), np.empty((0, 3))
    ids, pos = np.concatenate(ids), np.concatenate(pos)
    order = np.argsort(ids, kind="stable")
    return ids[order], pos[order]


def _lookup(table, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, pos = table
    if len(ids) == 0:
        return np.zeros((len(keys), 3)), np.zeros(len(keys), bool)
    i = np.searchsorted(ids, keys).clip(0, len(ids) - 1)
    found = ids[i] == keys
    return pos[i], found


def _with_positions(docs: bsonio.Docs, table) -> bsonio.Docs:
    upos, uok = _lookup(table, docs.ints("u"))
    vpos, vok = _lookup(table, docs.ints("v"))
    fields = schema.EDGE_POSITIONS["u"] + schema.EDGE_POSITIONS["v"]
    values = np.concatenate([upos, vpos], axis=1)
    present = np.concatenate([np.repeat(uok[:, None], 3, 1), np.repeat(vok[:, None], 3, 1)], axis=1)
    return bsonio.append_fields(docs, fields, values, present)


def _with_ids(docs: bsonio.Docs, first_index: int, prefix: bytes) -> bsonio.Docs:
    """Give documents without ``_id`` a deterministic one (file prefix + document number), so a
    replayed batch is recognised as duplicates instead of being inserted twice."""
    missing = docs.type_of("_id") == bsonio.T_MISSING
    if not missing.any():
        return docs
    numbers = (first_index + np.arange(len(docs), dtype=np.int64)).astype(np.float64)
    out = bsonio.append_fields(docs, ["_id"], numbers[:, None], missing[:, None], oid_field="_id",
                               oid_prefix=prefix)
    # keep the scanned columns (they describe the same documents)
    return bsonio.Docs(out.buf, out.starts, out.ends, docs.fields, docs.types, docs.values)


def _create_indexes(coll, kind: schema.Kind, endpoint_fields: tuple[str, ...]) -> None:
    from pymongo import IndexModel

    models = []
    for spec in schema.indexes(kind.name):
        key = [(f, d) for f, d in spec["key"]]
        if kind.name == "skeleton_edges" and endpoint_fields != kind.integers:
            rename = dict(zip(kind.integers, endpoint_fields))
            key = [(rename.get(f, f), d) for f, d in key]
        models.append(IndexModel(key, name=spec["name"], unique=spec.get("unique", False)))
    if models:
        coll.create_indexes(models)


def _resolve_duplicates(coll, kind: schema.Kind, file: str, on_duplicate: str) -> int:
    """Documents sharing a unique key (node ``id``, edge ``(u, v)``): identical ones (but for
    ``_id``) keep one copy; differing ones are an error unless ``on_duplicate == 'skip'`` (keep the
    first). Returns how many documents were removed."""
    group = {"_id": {f: f"${f}" for f in kind.unique}, "ids": {"$push": "$_id"}, "n": {"$sum": 1}}
    removed = 0
    for g in coll.aggregate([{"$group": group}, {"$match": {"n": {"$gt": 1}}}], allowDiskUse=True):
        ids = sorted(g["ids"])
        docs = {d["_id"]: d for d in coll.find({"_id": {"$in": ids}})}
        first = {k: v for k, v in docs[ids[0]].items() if k != "_id"}
        differ = [i for i in ids[1:] if {k: v for k, v in docs[i].items() if k != "_id"} != first]
        if differ and on_duplicate != "skip":
            key = ", ".join(f"{k} = {v}" for k, v in g["_id"].items())
            raise LsdgraphError(f"{file}: {len(ids)} documents share {key} with different content "
                                f"(_id {ids[0]} and _id {differ[0]}); fix the file, or pass "
                                "--on-duplicate skip to keep the first")
        coll.delete_many({"_id": {"$in": ids[1:]}})
        removed += len(ids) - 1
    return removed


def _build_indexes(store: Store, coll, kind, endpoint_fields, file, on_duplicate) -> int:
    removed = 0
    for _ in range(3):
        try:
            store.retry(lambda: _create_indexes(coll, kind, endpoint_fields), f"{file}: building indexes")
            return removed
        except (perr.DuplicateKeyError, perr.OperationFailure) as e:
            if getattr(e, "code", None) != 11000 and not isinstance(e, perr.DuplicateKeyError):
                raise LsdgraphError(f"{file}: building indexes failed: {e}") from None
            removed += _resolve_duplicates(coll, kind, file, on_duplicate)
    raise LsdgraphError(f"{file}: could not build the unique indexes after removing duplicates")


def _load_file(store: Store, db, f: SourceFile, coll_name: str, kind: schema.Kind, *, on_duplicate: str,
               drop: bool, quiet: bool, progress: bool | None, batch_docs: int, chunk_bytes: int,
               ) -> IngestReport:
    t0 = time.monotonic()
    report = IngestReport(f.url, coll_name, kind.name, "failed", bytes=f.size)
    meta = db[schema.META]
    staging_name = schema.STAGING_PREFIX + coll_name
    staging = db[staging_name]
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
    resume = bool(rec and rec.get("status") in ("loading", "failed") and rec.get("fingerprint") == f.fingerprint
                  and not drop and staging_name in existing)
    if resume:
        offset, ndocs, crc = int(rec["offset"]), int(rec["documents"]), int(rec["crc32"])
        endpoint_fields = tuple(rec.get("endpoints") or kind.integers)
    else:
        staging.drop()
        offset, ndocs, crc = 0, 0, 0
        endpoint_fields = kind.integers
    meta.replace_one({"_id": coll_name}, {
        "_id": coll_name, "collection": coll_name, "kind": kind.name, "source": f.url, "file": f.rel,
        "size": f.size, "fingerprint": f.fingerprint, "status": "loading", "offset": offset,
        "bytes_loaded": offset, "documents": ndocs, "crc32": crc, "checksum": None, "loaded": None,
        "duplicates": None, "endpoints": list(endpoint_fields), "positions": None, "error": None,
        "started": rec.get("started") if resume else _now(), "updated": _now(), "finished": None,
        "lsdgraph_version": VERSION}, upsert=True)
    if resume:
        report.notes.append(f"resumed at byte {offset:,}")
    try:
        return _stream_into(store, db, f, coll_name, kind, report, offset, ndocs, crc, endpoint_fields,
                            on_duplicate=on_duplicate, quiet=quiet, progress=progress,
                            batch_docs=batch_docs, chunk_bytes=chunk_bytes, t0=t0)
    except LsdgraphError as e:
        _mark_failed(db, coll_name, str(e))
        raise


def _stream_into(store, db, f, coll_name, kind, report, offset, ndocs, crc, endpoint_fields, *,
                 on_duplicate, quiet, progress, batch_docs, chunk_bytes, t0) -> IngestReport:
    meta = db[schema.META]
    staging = db[schema.STAGING_PREFIX + coll_name]
    if f.size == 0:
        raise LsdgraphError(f"{f.url}: the file is empty (0 bytes), so there is nothing to load; "
                            "check the download (an empty collection needs no load)")

    table = node_table(store, db) if kind.name == "rag_edges" else None
    if kind.name == "rag_edges" and table is None:
        report.notes.append("no nodes collection yet: edge positions are added when nodes are loaded")
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
                raise LsdgraphError(_structure_message(f, base, ndocs, err))
            if len(docs):
                source_bytes = docs.block()
                out = _with_ids(docs, ndocs, id_prefix)
                if table is not None:
                    out = _with_positions(out, table)
                store.insert_docs(staging, out, f"{f.url} at byte {base + int(docs.starts[0]):,}")
                crc = zlib.crc32(source_bytes, crc)
                consumed = int(docs.ends[-1])
                offset, ndocs = base + consumed, ndocs + len(docs)
                store.retry(lambda: meta.update_one({"_id": coll_name}, {"$set": {
                    "offset": offset, "bytes_loaded": offset, "documents": ndocs, "crc32": crc,
                    "updated": _now()}}), f"{f.url}: recording progress")
                bar.update(consumed, len(docs))
            if err is not None:
                raise LsdgraphError(_structure_message(f, base, ndocs, err))
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
        bar.close()
    if offset != f.size:
        raise LsdgraphError(f"{f.url}: read {offset:,} of {f.size:,} bytes: the file changed or the stream "
                            "ended early; rerun to resume")
    if ndocs == 0:
        raise LsdgraphError(f"{f.url}: no documents in the file; is it a .bson dump?")

    removed = _build_indexes(store, staging, kind, endpoint_fields, f.url, on_duplicate)
    loaded = staging.count_documents({})
    if coll_name in db.list_collection_names():
        db[coll_name].drop()  # only reachable with --drop or when replacing an unfinished target
    staging.rename(coll_name)
    report.status = "complete"
    report.documents, report.loaded, report.duplicates = ndocs, loaded, ndocs - loaded
    if removed:
        report.notes.append(f"{removed:,} documents with a repeated key removed")
    meta.update_one({"_id": coll_name}, {"$set": {
        "status": "complete", "loaded": loaded, "duplicates": ndocs - loaded, "checksum": f"crc32:{crc:08x}",
        "positions": table is not None if kind.name == "rag_edges" else None,
        "finished": _now(), "updated": _now(), "seconds": time.monotonic() - t0}})
    report.seconds = time.monotonic() - t0
    return report


def _structure_message(f: SourceFile, base: int, ndocs: int, err: bsonio.ScanError) -> str:
    at = base + err.doc_offset
    if err.code == bsonio.ERR_TRUNCATED:
        fix = "the file is incomplete: download it again"
    elif ndocs == 0 and err.code in (bsonio.ERR_LENGTH, bsonio.ERR_TERMINATOR, bsonio.ERR_TYPE):
        fix = "this does not look like a mongodump .bson file"
    else:
        fix = "the file is corrupt from here on: download it again"
    return f"{f.url}: document #{ndocs} at byte {at:,}: {err.describe(base)} — {fix}"


def _mark_failed(db, coll_name: str, error: str) -> None:
    try:
        db[schema.META].update_one({"_id": coll_name}, {"$set": {"status": "failed", "error": error,
                                                                 "updated": _now()}})
    except perr.PyMongoError:
        pass  # the server is gone: the record stays "loading", which is not "complete" either


def _ensure_daisy_meta(db) -> None:
    """daisy's MongoDbGraphProvider reads the first document of ``meta`` and needs ``directed``."""
    if db[schema.DAISY_META].find_one() is None:
        db[schema.DAISY_META].insert_one({"directed": False})


def add_edge_positions(store: Store, db, edges: str, table=None, batch: int = 10_000) -> int:
    """Copy endpoint centres onto every edge of a collection loaded before its nodes (or written by
    daisy), so ROI reads are one indexed query. Returns the number of edges updated."""
    from pymongo import UpdateOne

    table = table if table is not None else node_table(store, db)
    if table is None:
        raise LsdgraphError(f"{db.name}: no nodes collection, so edge positions cannot be added")
    fu, fv = schema.EDGE_POSITIONS["u"], schema.EDGE_POSITIONS["v"]
    n = 0
    for docs in store.find_raw(db[edges], {}, ("_id", "u", "v")):
        upos, uok = _lookup(table, docs.ints("u"))
        vpos, vok = _lookup(table, docs.ints("v"))
        ops = []
        for i, oid in enumerate(_object_ids(docs)):
            s = {}
            if uok[i]:
                s.update(zip(fu, upos[i].tolist()))
            if vok[i]:
                s.update(zip(fv, vpos[i].tolist()))
            if s:
                ops.append(UpdateOne({"_id": oid}, {"$set": s}))
            if len(ops) >= batch:
                db[edges].bulk_write(ops, ordered=False)
                n += len(ops)
                ops = []
        if ops:
            db[edges].bulk_write(ops, ordered=False)
            n += len(ops)
    _create_indexes(db[edges], schema.kind("rag_edges"), schema.kind("rag_edges").integers)
    db[schema.META].update_one({"_id": edges}, {"$set": {"positions": True}})
    return n


def _object_ids(docs: bsonio.Docs) -> list:
    import bson

    return [bson.decode(docs.raw(i))["_id"] for i in range(len(docs))]


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
    out = out or sys.stdout
    files = list_files(source, s3=S3Options(profile=profile, endpoint_url=endpoint_url))
    if not files:
        raise LsdgraphError(f"{source}: no .bson files there; list what is there with `lsdgraph ls`")
    store = store or connect(db)
    name = name or default_db_name(source)
    database = store.db(name)
    reports = []
    for f, coll_name, kind in plan(files):
        try:
            r = _load_file(store, database, f, coll_name, kind, on_duplicate=on_duplicate, drop=drop,
                           quiet=quiet, progress=progress, batch_docs=batch_docs, chunk_bytes=chunk_bytes)
            if r.status == "complete" and kind.name == "rag_nodes":
                _ensure_daisy_meta(database)
                for other in _edges_without_positions(database):
                    add_edge_positions(store, database, other)
                    r.notes.append(f"added positions to {other}")
        except LsdgraphError as e:
            r = IngestReport(f.url, coll_name, kind.name, "failed", bytes=f.size, error=str(e))
        reports.append(r)
        if not quiet:
            print(r.line(), file=out, flush=True)
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        more = f" (and {len(failed) - 1} more failed files)" if len(failed) > 1 else ""
        raise LsdgraphError(failed[0].error + more)
    return reports


def _edges_without_positions(db) -> list[str]:
    return [r["_id"] for r in db[schema.META].find({"kind": "rag_edges", "status": "complete",
                                                     "positions": False})]


def load_report(db) -> list[dict]:
    """The ``lsdgraph_meta`` records of a database."""
    return [{k: v for k, v in r.items() if k not in ("crc32",)} for r in db[schema.META].find()]


def as_dict(report: IngestReport) -> dict:
    return asdict(report)

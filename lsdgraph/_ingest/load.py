"""One file's load as a state machine over its ``lsdgraph_meta`` record.

    lease ─▶ decide ─┬─▶ already complete (same fingerprint, or same bytes)
                     ├─▶ finish (renamed, not yet recorded complete)
                     ├─▶ resume (staging there, the loaded prefix still has its CRC-32)
                     ├─▶ resume ranges (a parallel load's split, the file unchanged: :mod:`.parallel`)
                     └─▶ fresh ─▶ stream batches ─▶ verify counts (repair a shortfall)
                         │        ─▶ unique keys ─▶ rename ─▶ indexes, count again ─▶ complete
                         └─▶ split ─▶ ranges in worker processes ─▶ (as one streamed file) verify ─▶ …

Every state change is a write to the record conditional on holding the lease (see :mod:`.lease`),
so two ingests never write one staging collection, and a collection under its real name always
holds every document of its file: the count is checked against the file's documents less the
``_id``s the file itself repeats before the rename and again after it.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pymongo import errors as perr

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError, ServerLost
from lsdgraph._core.progress import Progress, human_bytes
from lsdgraph._core.version import VERSION
from lsdgraph._ingest import joins, keys
from lsdgraph._ingest.lease import Lease, acquire, now
from lsdgraph._io import bsonio, validate
from lsdgraph._io.sources import S3Options, SourceFile
from lsdgraph._stores.mongo import Store

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Coll, Db


@dataclass
class IngestReport:
    """What happened to one file."""

    file: str
    collection: str
    kind: str
    status: str              # complete | already-complete | skipped | failed
    documents: int = 0       # documents in the file
    loaded: int = 0          # documents in the collection
    duplicates: int = 0      # documents not loaded: repeats of an earlier _id or unique key
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


@dataclass
class Options:
    """How files are loaded (the ``ingest`` keywords)."""

    on_duplicate: str = "error"
    drop: bool = False
    quiet: bool = False
    progress: bool | None = None
    batch_docs: int = 20_000
    chunk_bytes: int = 8 << 20
    wait: float | None = None
    say: Callable[[str], None] = print
    workers: int = 1                     # processes loading the ranges of a large file
    range_bytes: int = 64 << 20          # files larger than this are split (see ranges.count_for)
    uri: str | None = None               # the server URI worker processes connect to
    s3: S3Options | None = None          # how worker processes list the source again


@dataclass
class FileLoad:
    """One file's load: where it goes and how far it got (mirrored in its meta record)."""

    store: Store
    db: Db
    file: SourceFile
    collection: str
    kind: schema.Kind
    opts: Options
    lease: Lease                         # held for the whole load
    nodes: str | None = None             # the nodes collection edges take positions from
    offset: int = 0                      # bytes of the file committed to staging
    documents: int = 0                   # documents committed
    duplicates: int = 0                  # of those, refused as an _id already there
    crc: int = 0                         # CRC-32 of the committed bytes
    endpoints: tuple[str, ...] = ()
    stats: dict = field(default_factory=dict)
    table: joins.NodeTable | None = None
    replayed: bool = False               # a batch may have gone in twice: duplicates over-count
    id_keys: list[np.ndarray] | None = None  # _id keys of every document so far, kept on a resume
    removed: int = 0                     # documents removed for repeating a unique key
    clashes: list | None = None          # a range's refused _ids stored with other content (skip)
    report: IngestReport = field(init=False)
    t0: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.endpoints = self.endpoints or self.kind.integers
        self.report = IngestReport(self.file.url, self.collection, self.kind.name, "failed", bytes=self.file.size)

    @property
    def staging(self) -> Coll:
        return self.db[schema.STAGING_PREFIX + self.collection]

    @property
    def target(self) -> Coll:
        return self.db[self.collection]

    @property
    def joins(self) -> bool:
        return self.kind.name in schema.EDGE_JOINS

    def call(self, fn, what: str):
        return self.store.retry(fn, f"{self.file.url}: {what}")

    def names(self) -> set[str]:
        return set(self.call(self.db.list_collection_names, "listing collections"))

    def record(self, fields: dict, what: str = "recording progress") -> None:
        self.lease.write({"$set": {**fields, "updated": now()}}, f"{self.file.url}: {what}")


def run(store: Store, db: Db, f: SourceFile, collection: str, kind: schema.Kind, opts: Options,
        nodes: str | None = None) -> IngestReport:
    """Load one file under its lease. Any failure leaves a ``failed`` record (when the server can
    still be reached) and raises :class:`LsdgraphError`; the lease is always given back."""
    lease, rec = acquire(store, db, collection, wait=opts.wait, say=opts.say)
    load = FileLoad(store, db, f, collection, kind, opts, lease, nodes=nodes)
    return under_lease(load, _decide, rec)


def under_lease(load: FileLoad, step, *args):
    """``step(load, *args)`` with the load's lease: a failure leaves a ``failed`` record (when the
    server can still be reached) and raises :class:`LsdgraphError`; an interruption leaves the
    record ``loading``, to be taken over at once; the lease is always given back."""
    try:
        out = step(load, *args)
    except LsdgraphError as e:
        _fail(load, str(e))
        raise
    except perr.PyMongoError as e:
        err = server_error(load.store, load.file, e)
        _fail(load, str(err))
        raise err from None
    except BaseException:
        load.lease.release()  # interrupted: the record stays "loading", resumable at once
        raise
    load.lease.release()
    return out


def _fail(load: FileLoad, error: str) -> None:
    if load.lease.lost:
        return  # the record is someone else's now
    load.lease.release({"$set": {"status": "failed", "error": error, "updated": now()}})


def server_error(store: Store, f: SourceFile, e: Exception) -> LsdgraphError:
    """A pymongo failure as the one line a load ends with."""
    lost = isinstance(e, (perr.AutoReconnect, perr.ConnectionFailure, perr.ServerSelectionTimeoutError))
    cls = ServerLost if lost else LsdgraphError
    return cls(f"{f.url}: MongoDB at {store.uri} failed ({type(e).__name__}: {keys.short(e)}); "
               "nothing is marked complete: rerun the same command to resume")


# ---------------------------------------------------------------------------------------------
# decide


def _decide(load: FileLoad, rec: dict) -> IngestReport:
    f, opts, report = load.file, load.opts, load.report
    existing = load.names()
    status = rec.get("status")
    here = load.collection in existing
    staged = load.staging.name in existing

    if status == "complete" and not opts.drop and here:
        if already_complete(f, rec, load.collection, report):
            load.record({"fingerprint": f.fingerprint, "source": f.url}, "recording the file's new date")
        return report
    unfinished = status in ("loading", "failed") and not opts.drop
    if here and not opts.drop and not unfinished:
        raise LsdgraphError(f"{f.url}: collection {load.collection!r} already exists and was not loaded by "
                            "lsdgraph (daisy?); pass drop=True to replace it, or another name=")
    if unfinished and here and not staged and rec.get("phase") == "renaming":
        if rec.get("fingerprint") == f.fingerprint or _same_bytes(f, rec):
            # stopped between the rename and the last record update: all its documents are in
            _restore(load, rec)
            report.notes.append("finished an interrupted load")
            return _complete(load)
        raise LsdgraphError(f"{f.url}: collection {load.collection!r} holds an earlier version of this file "
                            "whose load was interrupted; pass drop=True to replace it")
    if unfinished and staged and rec.get("ranges"):
        from lsdgraph._ingest import parallel

        done = parallel.resume(load, rec)
        if done is not None:
            return done
        return _fresh(load, rec)
    if unfinished and staged and rec.get("offset") is not None:
        prefix_keys = _prefix_keys(load, int(rec["offset"]), int(rec.get("crc32") or 0))
        if prefix_keys is not None:
            load.id_keys = prefix_keys
            return _resume(load, rec)
        report.notes.append(f"the file changed since the interrupted load (its first {int(rec['offset']):,} "
                            "bytes differ): loaded again from the start")
    return _fresh(load, rec)


def already_complete(f: SourceFile, rec: dict, collection: str, report: IngestReport) -> bool:
    """``report`` says the file is loaded already (its complete load in ``rec`` has the file's
    fingerprint, or its size and CRC-32); True when only the date or copy changed, so the record
    should take the new fingerprint. A different file is an error: it needs ``--drop``. Both stores."""
    if rec.get("fingerprint") != f.fingerprint and not _same_bytes(f, rec):
        raise LsdgraphError(f"{f.url}: collection {collection!r} already holds a complete load of "
                            f"{rec.get('source')} ({rec.get('size')} bytes) that differs from this file; "
                            "pass drop=True to replace it")
    report.status = "already-complete"
    report.documents, report.loaded = rec.get("documents", 0), rec.get("loaded", 0)
    report.duplicates = (rec.get("duplicates") or 0) + (rec.get("removed") or 0)
    moved = rec.get("fingerprint") != f.fingerprint
    if moved:
        report.notes.append("same content as the complete load (only the file's date or copy changed)")
    return moved


def _same_bytes(f: SourceFile, rec: dict) -> bool:
    """The file has the size and CRC-32 of the load the record describes (one read of it)."""
    checksum = rec.get("checksum") or ""
    if rec.get("size") != f.size or not checksum.startswith("crc32:"):
        return False
    return prefix_matches(f, f.size, int(checksum[len("crc32:"):], 16))


def prefix_matches(f: SourceFile, nbytes: int, crc: int, chunk: int = 8 << 20) -> bool:
    """The CRC-32 of the file's first ``nbytes`` is ``crc`` (a shorter file does not match)."""
    if nbytes > f.size:
        return False
    stream = f.open(0)
    got, left = 0, nbytes
    try:
        while left > 0:
            piece = stream.read(min(chunk, left))
            if not piece:
                return False
            got = zlib.crc32(piece, got)
            left -= len(piece)
    finally:
        stream.close()
    return got == crc


def _prefix_keys(load: FileLoad, nbytes: int, crc: int) -> list[np.ndarray] | None:
    """The ``_id`` keys of the documents in the file's first ``nbytes`` if those bytes still have
    the CRC-32 ``crc`` (the bytes a resume builds on), else None. One read of the prefix."""
    f = load.file
    if nbytes > f.size:
        return None
    got, parts = 0, []
    stream = f.open(0)
    try:
        for _base, docs, err in bsonio.iter_docs(bsonio.Limited(stream, nbytes), ("_id",),
                                                 chunk_bytes=load.opts.chunk_bytes, max_docs=1 << 20):
            if err is not None:
                return None
            got = zlib.crc32(docs.block(), got)
            parts.append(keys.id_keys(docs))
    finally:
        stream.close()
    return parts if got == crc else None


def _restore(load: FileLoad, rec: dict) -> None:
    load.offset, load.documents, load.crc = int(rec["offset"]), int(rec["documents"]), int(rec["crc32"])
    load.duplicates, load.removed = int(rec.get("duplicates") or 0), int(rec.get("removed") or 0)
    load.endpoints = tuple(rec.get("endpoints") or load.kind.integers)
    load.stats = rec.get("stats") or {}


def _fresh(load: FileLoad, rec: dict) -> IngestReport:
    load.lease.check(f"{load.file.url}: starting the load")
    if rec.get("ranges") or load.opts.workers > 1:
        from lsdgraph._ingest import parallel

        parallel.forget_ranges(load)  # an earlier split's range records: each taken from its holder first
    load.call(load.staging.drop, "clearing the staging collection")
    if load.joins:
        load.table = joins.node_table(load.store, load.db.name, load.nodes or "nodes", load.kind.name)
    if load.opts.workers > 1:
        from lsdgraph._ingest import parallel

        cut = parallel.split_for(load)
        if cut is not None:
            _start_record(load, rec, resumed=False)
            return parallel.load_ranges(load, cut, fresh=True)
    _start_record(load, rec, resumed=False)
    return _stream(load)


def _resume(load: FileLoad, rec: dict) -> IngestReport:
    _restore(load, rec)
    load.replayed = True  # the batch after the committed offset may be in already
    if load.joins and rec.get("positions"):
        load.table = joins.node_table(load.store, load.db.name, load.nodes or "nodes", load.kind.name)
    # with positions False, earlier batches went in without them: all get them after the load
    _start_record(load, rec, resumed=True)
    load.report.notes.append(f"resumed at byte {load.offset:,}")
    return _stream(load)


def _start_record(load: FileLoad, rec: dict, resumed: bool) -> None:
    f = load.file
    if load.joins and load.table is None:
        load.report.notes.append(f"edge positions are added once {load.nodes or 'nodes'!r} is loaded")
    load.record({
        "collection": load.collection, "kind": load.kind.name, "source": f.url, "file": f.rel,
        "size": f.size, "fingerprint": f.fingerprint, "status": "loading", "phase": "loading",
        "offset": load.offset, "bytes_loaded": load.offset, "documents": load.documents,
        "duplicates": load.duplicates, "removed": 0, "crc32": load.crc, "checksum": None, "loaded": None,
        "endpoints": list(load.endpoints), "nodes": (load.nodes or "nodes") if load.joins else None,
        "positions": (load.table is not None) if load.joins else None,
        "nodes_checksum": load.table.checksum if load.table is not None else None,
        "stats": load.stats or None, "error": None, "ranges": None,
        "started": rec.get("started") if resumed else now(), "finished": None, "lsdgraph_version": VERSION,
    }, "starting the load")


# ---------------------------------------------------------------------------------------------
# stream


def _stream(load: FileLoad) -> IngestReport:
    f, opts = load.file, load.opts
    if f.size == 0:
        raise LsdgraphError(f"{f.url}: the file is empty (0 bytes), so there is nothing to load; "
                            "check the download, or remove the file if the collection was empty")
    bar = Progress(load.collection, f.size, enabled=False if opts.quiet else opts.progress, done_bytes=load.offset)
    try:
        stream_batches(load, f.size, bar.update)
    finally:
        bar.close()
    return finish_stream(load)


def stream_batches(load: FileLoad, end: int, progress: Callable[[int, int], None] | None = None) -> None:
    """Insert the file's documents from ``load.offset`` to byte ``end`` (a document boundary: the
    file's end, or a range's) into staging batch by batch, recording the offset, count, CRC-32 and
    statistics reached after each batch. ``load.documents`` is the file index of the next document
    (the ``_id`` numbering and error messages count from it)."""
    f = load.file
    for docs, base in _batches(load, load.offset, end=end):
        sent = _prepare(load, docs)
        where = f"{f.url} at byte {base + int(docs.starts[0])}"
        res = load.store.insert_docs(load.staging, sent, where)
        load.replayed |= res.replayed
        _judge_duplicates(load, sent, res.duplicates, base, docs)
        load.duplicates += len(res.duplicates)
        load.crc = zlib.crc32(docs.block(), load.crc)
        if load.id_keys is not None:
            load.id_keys.append(keys.id_keys(docs))
        load.stats = batch_stats(load.kind, docs, load.stats)
        consumed = int(docs.ends[-1])
        load.offset, load.documents = base + consumed, load.documents + len(docs)
        load.record({"offset": load.offset, "bytes_loaded": load.offset, "documents": load.documents,
                     "duplicates": load.duplicates, "crc32": load.crc, "stats": load.stats})
        if progress is not None:
            progress(consumed - int(docs.starts[0]), len(docs))


def finish_stream(load: FileLoad) -> IngestReport:
    """After the whole file went in (in one stream, or in ranges): the count checked, unique keys,
    rename, complete."""
    f = load.file
    if load.offset != f.size:
        raise LsdgraphError(f"{f.url}: read {load.offset} of {f.size} bytes: the file changed or the stream "
                            "ended early; rerun to resume")
    if load.documents == 0:
        raise LsdgraphError(f"{f.url}: no documents in the file; is it a .bson dump?")
    _verify_staging(load)
    return _rename(load)


def _batches(load: FileLoad, offset: int, check: bool = True, end: int | None = None):
    """(docs, base) per batch of the file from ``offset`` (to byte ``end``, a document boundary),
    validated; bad bytes or a bad document raise the one-line error after the good documents
    before them were yielded."""
    f, kind = load.file, load.kind
    ndocs = load.documents if check else 0
    stream = f.open(offset)
    reader = stream if end is None or end >= f.size else bsonio.Limited(stream, end - offset)
    try:
        for base, docs, err in bsonio.iter_docs(reader, kind.fields, chunk_bytes=load.opts.chunk_bytes,
                                                 max_docs=load.opts.batch_docs, start_offset=offset):
            if check and len(docs) and ndocs == 0 and kind.alternative_integers:
                load.endpoints = validate.endpoints(docs, kind)
                if load.endpoints != kind.integers:
                    load.report.notes.append(f"edges use {'/'.join(load.endpoints)} instead of "
                                             f"{'/'.join(kind.integers)}")
                    load.record({"endpoints": list(load.endpoints)})
            if check:
                msg = validate.check(docs, kind, file=f.url, base_offset=base, first_index=ndocs,
                                     integers=load.endpoints)
                if msg:
                    raise LsdgraphError(msg)
            if err is not None and not len(docs):
                raise LsdgraphError(validate.structure_message(f.url, f.size, base, ndocs, err, docs.buf))
            if len(docs):
                yield docs, base
                ndocs += len(docs)
            if err is not None:
                raise LsdgraphError(validate.structure_message(f.url, f.size, base, ndocs, err, docs.buf))
    finally:
        stream.close()


def _prepare(load: FileLoad, docs: bsonio.Docs) -> bsonio.Docs:
    """The documents as they go to the server: a deterministic ``_id`` where the file has none
    (file prefix + document number, so a replayed batch is recognised), endpoint fields appended."""
    out = _with_ids(docs, load.documents, zlib.crc32(f"{load.db.name}/{load.collection}".encode()).to_bytes(4, "big"))
    out = joins.with_node_blocks(out, load.kind)
    if load.table is not None:
        out = joins.with_joins(out, load.table, load.endpoints)
    return out


def prepared(load: FileLoad, docs: bsonio.Docs) -> bsonio.Docs:
    """The documents as a load sends them (see :func:`_prepare`)."""
    return _prepare(load, docs)


def _with_ids(docs: bsonio.Docs, first_index: int, prefix: bytes) -> bsonio.Docs:
    missing = docs.type_of("_id") == bsonio.T_MISSING
    if not missing.any():
        return docs
    numbers = first_index + np.arange(len(docs), dtype=np.int64)
    out = bsonio.append_fields(docs, {"_id": ("oid", numbers)}, missing[:, None], oid_prefix=prefix)
    # keep the scanned columns (they describe the same documents)
    return bsonio.Docs(out.buf, out.starts, out.ends, docs.fields, docs.types, docs.values)


def _judge_duplicates(load: FileLoad, sent: bsonio.Docs, rows: np.ndarray, base: int, docs: bsonio.Docs) -> None:
    """A refused ``_id`` is a repeat within the file (skipped, as mongorestore does) or this batch
    going in again; either way the stored document must be the same as this one."""
    if len(rows) == 0:
        return
    clashes = keys.id_clashes(load.store, load.staging, sent, rows, joins.joined_fields(load.kind))
    if clashes and load.opts.on_duplicate != "skip":
        import bson

        row = clashes[0]
        doc_id = bson.decode(sent.raw(row))["_id"]
        raise LsdgraphError(keys.id_clash_message(load.file, load.documents + row, base + int(docs.starts[row]),
                                                  doc_id))
    if clashes and load.clashes is not None:
        import bson

        # ranges load out of file order: the parent puts the file's first document back (see parallel)
        load.clashes += [bson.decode(sent.raw(int(row)))["_id"] for row in clashes]


def batch_stats(kind: schema.Kind, docs: bsonio.Docs, stats: dict) -> dict:
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


# ---------------------------------------------------------------------------------------------
# verify, rename, complete


def _count(load: FileLoad, coll: Coll) -> int:
    return load.call(lambda: coll.count_documents({}), f"counting {coll.name}")


def _verify_staging(load: FileLoad) -> None:
    """Staging must hold exactly the file's documents less the ``_id``s the file repeats. The
    server's duplicate reports give that count unless a batch may have gone in twice; then (and
    whenever the count is off) the repeats are counted from the file itself. A shortfall (the
    server lost acknowledged writes, someone deleted documents) is repaired by sending the whole
    file again; anything else is a clean failure, never ``complete``."""
    n = _count(load, load.staging)
    if not load.replayed and n == load.documents - load.duplicates:
        return
    load.duplicates = (keys.count_repeats(load.id_keys) if load.id_keys is not None
                       else keys.repeated_ids(load.file, load.opts.chunk_bytes))
    expected = load.documents - load.duplicates
    if n < expected:
        _reload(load)
        again = _count(load, load.staging)
        if again != expected:
            raise LsdgraphError(f"{load.file.url}: staging holds {again:,} of the file's {expected:,} documents "
                                f"even after sending them all again; is the server losing writes? rerun to retry")
        load.report.notes.append(f"{expected - n:,} documents missing from staging were loaded again")
    elif n > expected:
        load.call(load.staging.drop, "clearing the staging collection")
        load.record({"offset": 0, "bytes_loaded": 0, "documents": 0, "duplicates": 0, "crc32": 0})
        raise LsdgraphError(f"{load.file.url}: staging held {n:,} documents but the file has {expected:,} "
                            f"(less {load.duplicates:,} repeated _ids): something else wrote into it; rerun to "
                            "load the file again from the start")
    load.record({"duplicates": load.duplicates}, "recording the verified count")


def _reload(load: FileLoad) -> None:
    """Send every document of the file again: those already there come back as duplicates."""
    first, load.documents, crc = load.documents, 0, 0
    try:
        for docs, _ in _batches(load, 0, check=False):
            load.store.insert_docs(load.staging, _prepare(load, docs), f"{load.file.url}: reloading")
            load.documents += len(docs)
            crc = zlib.crc32(docs.block(), crc)
            load.lease.check(f"{load.file.url}: reloading")
    finally:
        load.documents = first
    if crc != load.crc:
        raise LsdgraphError(f"{load.file.url}: the file changed while it was being loaded; rerun to load it again")


def _rename(load: FileLoad) -> IngestReport:
    """Unique keys checked (and repeats resolved) on staging, then staging takes the real name;
    the other indexes are built after the rename, which some servers pay per index entry."""
    load.removed = keys.build_unique_indexes(load.store, load.staging, load.kind, load.endpoints, load.file,
                                             load.opts.on_duplicate, unique_only=True)
    load.record({"phase": "renaming", "duplicates": load.duplicates, "removed": load.removed},
                "recording the rename")
    existing = load.names()
    if load.collection in existing:
        load.call(load.target.drop, "replacing the old collection")  # --drop, or an unfinished target
    staging_name, target = load.staging.name, load.collection

    def rename():
        try:
            load.db[staging_name].rename(target)
        except perr.OperationFailure as e:
            names = set(load.db.list_collection_names())
            if target in names and staging_name not in names:
                return  # an earlier try went through before the connection dropped
            raise LsdgraphError(f"{load.file.url}: renaming {staging_name} to {target} failed: "
                                f"{keys.short(e)}") from None

    load.call(rename, f"renaming {staging_name}")
    return _complete(load)


def _complete(load: FileLoad) -> IngestReport:
    """Build the remaining indexes under the real name, count again, and record the load complete."""
    f, report = load.file, load.report
    keys.create_indexes(load.store, load.target, load.kind, load.endpoints, what=f"{f.url}: building indexes")
    loaded = _count(load, load.target)
    expected = load.documents - load.duplicates - load.removed
    if loaded != expected:
        load.call(lambda: load.target.rename(load.staging.name), "taking the collection back to staging")
        raise LsdgraphError(
            f"{f.url}: {load.collection} holds {loaded:,} documents after the rename, not "
            f"{expected:,}; it is back in staging: rerun to repair it"
        )
    report.status = "complete"
    # every document of the file is loaded or a duplicate: of an _id, or of a unique key
    report.documents, report.loaded, report.duplicates = load.documents, loaded, load.duplicates + load.removed
    if load.removed:
        report.notes.append(f"{load.removed:,} documents with a repeated key removed")
    load.record(
        {
            "status": "complete",
            "phase": "complete",
            "offset": f.size,
            "bytes_loaded": f.size,
            "loaded": loaded,
            "duplicates": load.duplicates,
            "removed": load.removed,
            "checksum": f"crc32:{load.crc:08x}",
            "finished": now(),
            "seconds": time.monotonic() - load.t0,
        },
        "recording the load complete",
    )
    report.seconds = time.monotonic() - load.t0
    return report

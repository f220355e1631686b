"""Parallel ingest: a large file's ranges (:mod:`.ranges`) loaded at once by worker processes, with
every guarantee of the one-process load (:mod:`.load`).

The parent holds the file's lease throughout, as a one-process load does. It splits the file
(one read: boundaries, document indexes, CRC-32s) and keeps the split in the file's record
(``ranges``), so every worker and every rerun loads the same ranges. Each range is loaded by a
worker process under a lease of its own: a record ``<collection>$range<k>`` in ``lsdgraph_meta``
(``$`` cannot be in a collection name, so it is never a collection's record) holding the range's
committed offset, next document index, duplicates, CRC-32 and statistics after every batch, as
the file's record does for a one-process load. All ranges write into the file's one staging
collection; ``_id``s of documents without one come from the file index of the document (the
range's first index plus its position), so they are the ones a one-process load gives.

A killed worker leaves its range record ``loading`` under a lease whose process is gone; the
rerun takes it over at once and resumes at the committed offset (the batch after it may be in
already, so the range counts as replayed). When every range is done and has the CRC-32 it had
at the split, the file's record is written as if one stream had loaded the whole file (offset =
size, the file's CRC-32, the summed counts, the merged statistics) and the range records are
removed; verify → unique keys → rename → complete then run once, in the parent, as they do for a
one-process load (and a crash from there on is resumed by that path). Duplicate ``_id``s across
ranges: of the m documents sharing one, m - 1 are refused whatever the order, so the summed
refusals are the file's repeats unless a range was replayed; then the repeats are counted from
the file, as a one-process load does after a replayed batch.

A rerun of a file whose record holds a split checks the file: the same fingerprint (S3 ETag, or
size and mtime), or the same bytes (the split made again gives the same ranges and CRC-32s), and
the same nodes for an edges file that copies their positions; anything else loads the file again
from the start and says so. Workers are spawned processes (``ProcessPoolExecutor``, spawn
context); each lists the source again and refuses a file whose fingerprint changed, connects to
the server URI itself and reads the node table once per process for edge positions (nodes load
first, see :mod:`.plan`); the pool serves every file of one ``ingest`` call. Being spawned, they
import the caller's main module, so a script calling ``ingest(workers=N)`` needs the usual
``if __name__ == "__main__":`` guard (the CLI has it). mongomock and the local store live in one
process, so ``workers > 1`` is refused there with one line; with ``workers=1`` the ranges of an
interrupted parallel load run here, one after another.
"""
from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.progress import Progress
from lsdgraph._ingest import joins, keys, ranges
from lsdgraph._ingest.lease import Holder, acquire
from lsdgraph._ingest.load import (
    FileLoad,
    IngestReport,
    Options,
    finish_stream,
    prepared,
    stream_batches,
    under_lease,
)
from lsdgraph._io import bsonio, validate
from lsdgraph._io.sources import S3Options, SourceChanged, SourceFile, list_files
from lsdgraph._stores.mongo import Store, connect

# Run in each worker process as it starts: (function, arguments), importable by reference (the
# tests' fault hooks). None in normal use.
WORKER_INIT: tuple[Callable[..., Any], tuple] | None = None

_POOL: dict[str, Any] = {}                                  # the pool one ingest call shares (see shared_pool)
_STORES: dict[str, Store] = {}                              # per worker process: one client per URI
_TABLES: dict[tuple[str, str, str, str | None], joins.NodeTable] = {}


def range_id(collection: str, index: int) -> str:
    return f"{collection}$range{index}"


@dataclass(frozen=True)
class Job:
    """One range to load, as a worker process is given it (picklable)."""

    uri: str | None               # None: in this process, on the parent's store
    db: str
    url: str
    fingerprint: str
    s3: S3Options | None
    collection: str
    kind: str
    nodes: str | None
    positions: bool               # copy node positions onto edges (the nodes were there at the start)
    nodes_checksum: str | None
    endpoints: tuple[str, ...]
    plan: str
    range: ranges.Range
    on_duplicate: str
    batch_docs: int
    chunk_bytes: int
    wait: float | None
    quiet: bool


@dataclass(frozen=True)
class Done:
    """What a range's load did."""

    index: int
    duplicates: int
    replayed: bool                # a batch may have gone in twice: the summed duplicates over-count
    stats: dict
    resumed_at: int | None        # the byte a taken-over range went on from (None: a range begun afresh)
    clashes: tuple = ()           # _ids it found stored with other content (on_duplicate='skip')


# ---------------------------------------------------------------------------------------------
# the parent: split, run the ranges, join them


def refusal(store_kind: str, workers: int) -> str:
    """Why ``workers > 1`` cannot be used with a store of one process."""
    return (f"workers={workers}: {store_kind} lives in this one process, which worker processes cannot reach; "
            "load with workers=1, or into a MongoDB server (db=mongodb://...)")


def split_for(load: FileLoad) -> ranges.Split | None:
    """The file's split for a parallel load, or None when it loads as one stream (small, few
    documents, or a structure the walk stops at: the stream then says exactly what and where)."""
    f, opts = load.file, load.opts
    n = ranges.count_for(f.size, opts.workers, opts.range_bytes)
    if n < 2:
        return None
    if load.store.mock:
        raise LsdgraphError(refusal("mongomock://", opts.workers))
    if opts.uri is None:
        raise LsdgraphError(f"workers={opts.workers}: pass db= (the URI the worker processes connect to)")
    _first_endpoints(load)
    return ranges.split(f, n, chunk_bytes=opts.chunk_bytes, min_documents=opts.batch_docs)


def _first_endpoints(load: FileLoad) -> None:
    """The endpoint names every range uses, from the file's first document (as a stream decides)."""
    kind = load.kind
    if not kind.alternative_integers:
        return
    stream = load.file.open(0)
    try:
        for _, docs, _err in bsonio.iter_docs(stream, kind.fields, chunk_bytes=1 << 16, max_docs=1):
            if len(docs):
                load.endpoints = validate.endpoints(docs, kind)
                if load.endpoints != kind.integers:
                    load.report.notes.append(f"edges use {'/'.join(load.endpoints)} instead of "
                                             f"{'/'.join(kind.integers)}")
            break
    finally:
        stream.close()


def resume(load: FileLoad, rec: dict) -> IngestReport | None:
    """Go on with an interrupted parallel load (its split in ``rec``), or None (with a note) when
    the file or its nodes changed since: the caller loads it again from the start."""
    f, kind = load.file, load.kind
    cut = ranges.Split.of(rec["ranges"])
    if rec.get("fingerprint") != f.fingerprint:
        again = ranges.split(f, int(rec["ranges"]["n"]), chunk_bytes=load.opts.chunk_bytes,
                             min_documents=int(rec["ranges"]["min_documents"]))
        if again is None or not cut.same_bytes(again):
            load.report.notes.append("the file changed since the interrupted load: loaded again from the start")
            return None
        load.report.notes.append("same content as the interrupted load (only the file's date or copy changed)")
    positions = bool(load.joins and rec.get("positions"))
    nodes = load.nodes or "nodes"
    if positions and joins.nodes_checksum(load.store, load.db.name, nodes) != rec.get("nodes_checksum"):
        load.report.notes.append(f"{nodes!r} changed since the interrupted load: loaded again from the start")
        return None
    load.endpoints = tuple(rec.get("endpoints") or kind.integers)
    if positions:
        load.table = joins.node_table(load.store, load.db.name, nodes, kind.name)
    load.record({"status": "loading", "phase": "ranges", "fingerprint": f.fingerprint, "source": f.url,
                 "error": None, "finished": None}, "resuming the load")
    return load_ranges(load, cut, fresh=False, recorded=rec["ranges"])


def load_ranges(load: FileLoad, cut: ranges.Split, *, fresh: bool, recorded: dict | None = None) -> IngestReport:
    """Load every range of ``cut`` (worker processes, or here when one worker), then the file's
    one verify → unique keys → rename → complete."""
    opts = load.opts
    if recorded is None:
        n = ranges.count_for(load.file.size, opts.workers, opts.range_bytes)
        recorded = {**cut.record(), "n": n, "min_documents": opts.batch_docs}
        load.record({"phase": "ranges", "ranges": recorded}, "recording the file's ranges")
    positions = load.table is not None
    jobs = [_job(load, cut, r, positions) for r in cut.ranges]
    workers = min(max(opts.workers, 1), len(jobs))
    done = _run_here(load, jobs) if workers == 1 else _run_pool(load, cut, jobs, workers)
    return _join(load, cut, done, workers, fresh)


def _job(load: FileLoad, cut: ranges.Split, r: ranges.Range, positions: bool) -> Job:
    opts = load.opts
    return Job(opts.uri, load.db.name, load.file.url, load.file.fingerprint, opts.s3, load.collection,
               load.kind.name, load.nodes or "nodes", positions,
               load.table.checksum if load.table is not None else None, tuple(load.endpoints), cut.plan, r,
               opts.on_duplicate, opts.batch_docs, opts.chunk_bytes, opts.wait, opts.quiet)


def _run_here(load: FileLoad, jobs: list[Job]) -> list[Done]:
    out = []
    for job in jobs:
        out.append(load_range(job, store=load.store, source=load.file))
        load.lease.check(f"{load.file.url}: loading its ranges")
    return out


@contextlib.contextmanager
def shared_pool() -> Iterator[None]:
    """Keep the worker processes for every file of one ingest call (each costs seconds to start:
    a new interpreter importing numpy, numba and pymongo); shut down when the call ends."""
    _POOL["active"] = True
    try:
        yield
    finally:
        _POOL.pop("active", None)
        _drop_pool()


def _drop_pool() -> None:
    pool = _POOL.pop("pool", None)
    _POOL.pop("workers", None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _executor(workers: int) -> tuple[ProcessPoolExecutor, bool]:
    """(a pool of ``workers`` spawned processes, whether the caller shuts it down)."""
    if _POOL.get("pool") is not None and _POOL.get("workers") == workers:
        return _POOL["pool"], False
    _drop_pool()
    init, args = WORKER_INIT or (None, ())
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=init,
                               initargs=args)
    if not _POOL.get("active"):
        return pool, True
    _POOL["pool"], _POOL["workers"] = pool, workers
    return pool, False


def _run_pool(load: FileLoad, cut: ranges.Split, jobs: list[Job], workers: int) -> list[Done]:
    """The ranges in ``workers`` spawned processes. The first failure (in file order) is raised
    once the ranges already running have stopped; what they committed is kept for a rerun."""
    f, opts = load.file, load.opts
    results: dict[int, Done] = {}
    errors: dict[int, BaseException] = {}
    bar = Progress(load.collection, f.size, enabled=False if opts.quiet else opts.progress)
    shown = 0
    pool, own = _executor(opts.workers)
    futures: dict[Future, int] = {}
    try:
        futures = {pool.submit(load_range, job): job.range.index for job in jobs}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
            for fut in finished:
                if fut.cancelled():
                    continue
                try:
                    results[futures[fut]] = fut.result()
                except BaseException as e:  # a worker's failure, raised below
                    errors[futures[fut]] = e
            if errors:
                for fut in pending:
                    fut.cancel()
            done_bytes, done_docs = _committed(load, cut)
            if done_bytes > shown:
                bar.update(done_bytes - shown, done_docs - bar.docs)
                shown = done_bytes
                load.record({"bytes_loaded": done_bytes})
    finally:
        # on any way out, queued ranges are dropped and running ones stop at a range's end
        for fut in futures:
            fut.cancel()
        wait(futures)
        bar.close()
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
        elif any(isinstance(e, BrokenProcessPool) for e in errors.values()):
            _drop_pool()  # a broken pool takes no more work: the next file starts another
    if errors:
        raise _first_error(f, cut, errors)
    return [results[r.index] for r in cut.ranges]


def _committed(load: FileLoad, cut: ranges.Split) -> tuple[int, int]:
    """Bytes and documents the ranges have committed so far (their records), for the bar and ``info``."""
    recs = load.call(lambda: list(load.db[schema.META].find({"range_of": load.collection, "plan": cut.plan},
                                                            {"offset": 1, "start": 1, "documents": 1, "first": 1})),
                     "reading range progress")
    return (sum(int(r.get("offset") or 0) - int(r.get("start") or 0) for r in recs),
            sum(int(r.get("documents") or 0) - int(r.get("first") or 0) for r in recs))


def _first_error(f: SourceFile, cut: ranges.Split, errors: dict[int, BaseException]) -> BaseException:
    k = min(errors)
    e = errors[k]
    if isinstance(e, BrokenProcessPool):
        return LsdgraphError(f"{f.url}: a worker process loading its ranges stopped without a word (killed, out "
                             "of memory, or a script calling ingest without `if __name__ == '__main__':`?); every "
                             "range keeps what it committed: rerun the same command to resume")
    if isinstance(e, LsdgraphError):
        return e
    r = cut.ranges[k]
    return LsdgraphError(f"{f.url}: the worker loading bytes {r.start:,}–{r.end:,} failed "
                         f"({type(e).__name__}: {e}); rerun the same command to resume")


def _join(load: FileLoad, cut: ranges.Split, done: list[Done], workers: int, fresh: bool) -> IngestReport:
    """Every range in: the file's record as one stream would leave it, then verify and rename."""
    f = load.file
    stats: dict = {}
    for d in done:
        stats = merge_stats(stats, d.stats)
    load.offset, load.documents, load.crc, load.stats = f.size, cut.documents, cut.crc, stats
    load.duplicates = sum(d.duplicates for d in done)
    load.replayed = load.replayed or any(d.replayed for d in done)
    load.id_keys = None  # the repeats are counted from the file if a range was replayed
    clashes = [i for d in done for i in d.clashes]
    if clashes:
        _first_wins(load, clashes)
    load.record({"offset": f.size, "bytes_loaded": f.size, "documents": load.documents,
                 "duplicates": load.duplicates, "crc32": load.crc, "stats": load.stats or None,
                 "phase": "loading", "ranges": None}, "recording the ranges loaded")
    forget_ranges(load)
    resumed = [d for d in done if d.resumed_at is not None]
    by = f"{workers} worker processes" if workers > 1 else "this process"
    load.report.notes.append(f"{len(cut.ranges)} ranges loaded by {by}")
    if resumed and not fresh:
        load.report.notes.append(f"{len(resumed)} interrupted ranges taken over at their committed bytes")
    return finish_stream(load)


def _first_wins(load: FileLoad, ids: list) -> None:
    """For each ``_id`` that documents of different content share (kept by ``on_duplicate='skip'``),
    store the file's first such document, as a load in file order keeps it. One more read of the
    file, on this rare path only."""
    import bson

    fixed = all(isinstance(i, (bson.ObjectId, int, float)) and not isinstance(i, bool) for i in ids)

    def tokens(docs: bsonio.Docs) -> list[tuple[int, object]]:
        """(row, what identifies its _id): the 16-byte keys for fixed-size ids, else the value."""
        if fixed:
            rows = np.flatnonzero(docs.type_of("_id") != bsonio.T_MISSING).tolist()
            return [(r, (int(a), int(b))) for r, (a, b) in zip(rows, keys.id_keys(docs).tolist(), strict=True)]
        return [(r, bson.encode({"v": bson.decode(docs.raw(r)).get("_id")})) for r in range(len(docs))]

    wanted = {t for i in ids for _, t in tokens(bsonio.scan(bson.encode({"_id": i}), ("_id",))[0])}
    seen: set = set()
    index, first = 0, load.documents
    try:
        for docs, _ in _file_batches(load):
            for row, token in tokens(docs):
                if token not in wanted or token in seen:
                    continue
                seen.add(token)
                load.documents = index + row
                one = prepared(load, docs.take(np.array([row])))
                doc_id = bson.decode(one.raw(0))["_id"]
                load.call(lambda doc_id=doc_id: load.staging.delete_one({"_id": doc_id}),
                          "putting back the first of documents sharing an _id")
                load.store.insert_docs(load.staging, one, f"{load.file.url}: document #{index + row}")
            index += len(docs)
            if len(seen) == len(wanted):
                break
    finally:
        load.documents = first
    load.report.notes.append(f"{len(seen):,} _ids shared by documents of different content: the first kept")


def _file_batches(load: FileLoad) -> Iterator[tuple[bsonio.Docs, int]]:
    stream = load.file.open(0)
    try:
        for base, docs, err in bsonio.iter_docs(stream, load.kind.fields, chunk_bytes=load.opts.chunk_bytes,
                                                 max_docs=load.opts.batch_docs):
            if len(docs):
                yield docs, base
            if err is not None:
                raise LsdgraphError(f"{load.file.url}: the file changed while it was being loaded; rerun")
    finally:
        stream.close()


def merge_stats(a: dict, b: dict) -> dict:
    """Two ranges' running statistics (see :func:`.load.batch_stats`) as one: what one stream over
    both would have kept (min, max and sums do not depend on the order)."""
    if not a or not b:
        return dict(a or b)
    out = dict(a)
    if "bbox" in a and "bbox" in b:
        out["bbox"] = {"min": [min(x, y) for x, y in zip(a["bbox"]["min"], b["bbox"]["min"], strict=True)],
                       "max": [max(x, y) for x, y in zip(a["bbox"]["max"], b["bbox"]["max"], strict=True)]}
    if "scores" in a and "scores" in b:
        sa, sb = a["scores"], b["scores"]
        lo = [x for x in (sa["min"], sb["min"]) if x is not None]
        hi = [x for x in (sa["max"], sb["max"]) if x is not None]
        out["scores"] = {"min": min(lo) if lo else None, "max": max(hi) if hi else None,
                         "nulls": sa["nulls"] + sb["nulls"], "scored": sa["scored"] + sb["scored"]}
    return out


def forget_ranges(load: FileLoad) -> None:
    """Remove the file's range records, each first taken from a live holder (waited for, as the
    file's lease is), so no worker of an earlier run writes on into a new load."""
    meta = load.db[schema.META]
    recs = load.call(lambda: list(meta.find({"range_of": load.collection}, {"lease": 1})), "reading range records")
    for rec in recs:
        if Holder.of(rec) is None:
            load.call(lambda rid=rec["_id"]: meta.delete_one({"_id": rid, "lease": None}), "removing range records")
            continue
        lease, _ = acquire(load.store, load.db, rec["_id"], wait=load.opts.wait, say=load.opts.say)
        try:
            load.call(lambda rid=rec["_id"], owner=lease.owner: meta.delete_one({"_id": rid, "lease.owner": owner}),
                      "removing range records")
        finally:
            lease.release()


# ---------------------------------------------------------------------------------------------
# a worker: one range under its lease


def load_range(job: Job, store: Store | None = None, source: SourceFile | None = None) -> Done:
    """Load one range (in a worker process, or here with ``store`` and ``source``). Raises
    :class:`LsdgraphError` with the one line a one-process load would give; the range's lease is
    always given back (a failure is recorded in its record)."""
    store = store or _store(job.uri)
    db = store.db(job.db)
    f = source or _source(job)
    quiet = job.quiet
    opts = Options(on_duplicate=job.on_duplicate, quiet=True, progress=False, batch_docs=job.batch_docs,
                   chunk_bytes=job.chunk_bytes, wait=job.wait, say=(lambda line: None) if quiet else print)
    lease, rec = acquire(store, db, range_id(job.collection, job.range.index), wait=job.wait, say=opts.say)
    load = FileLoad(store, db, f, job.collection, schema.kind(job.kind), opts, lease, nodes=job.nodes,
                    endpoints=job.endpoints)
    return under_lease(load, _load_range, job, rec)


def _load_range(load: FileLoad, job: Job, rec: dict) -> Done:
    r, f = job.range, load.file
    file_rec = load.call(lambda: load.db[schema.META].find_one({"_id": job.collection}, {"ranges.plan": 1}),
                         "reading the file's record")
    if ((file_rec or {}).get("ranges") or {}).get("plan") != job.plan:
        raise LsdgraphError(f"{f.url}: the load was started again by another process; this worker leaves "
                            f"bytes {r.start:,}–{r.end:,} to it")
    same = rec.get("plan") == job.plan
    if same and rec.get("status") == "done":
        return Done(r.index, int(rec.get("duplicates") or 0), bool(rec.get("replayed")), rec.get("stats") or {},
                    None, tuple(rec.get("clashes") or ()))
    if same and int(rec.get("offset") or r.start) > r.start:
        load.offset, load.documents, load.crc = int(rec["offset"]), int(rec["documents"]), int(rec["crc32"])
        load.duplicates, load.stats = int(rec.get("duplicates") or 0), rec.get("stats") or {}
        load.clashes = list(rec.get("clashes") or [])
    else:
        load.offset, load.documents, load.crc, load.duplicates, load.stats = r.start, r.first, 0, 0, {}
        load.clashes = []
    # a record of this split means an earlier try may have stored a batch it did not record
    load.replayed = same and rec.get("status") is not None
    resumed_at = load.offset if load.replayed else None
    if job.positions:
        load.table = _table(load, job)
    load.record({"range_of": job.collection, "plan": job.plan, "index": r.index, "status": "loading",
                 "source": f.url, "size": r.end, "start": r.start, "end": r.end, "first": r.first,
                 "offset": load.offset, "bytes_loaded": load.offset, "documents": load.documents,
                 "duplicates": load.duplicates, "crc32": load.crc, "stats": load.stats or None,
                 "replayed": load.replayed, "clashes": load.clashes, "error": None}, "starting a range")
    stream_batches(load, r.end)
    if load.offset != r.end or load.documents != r.first + r.documents or load.crc != r.crc:
        raise LsdgraphError(f"{f.url}: bytes {r.start:,}–{r.end:,} are not what they were when the file was "
                            "split (it changed while it was being loaded); rerun to load it again")
    load.record({"status": "done", "replayed": load.replayed, "clashes": load.clashes}, "recording a range done")
    return Done(r.index, load.duplicates, load.replayed, load.stats, resumed_at, tuple(load.clashes or ()))


def _store(uri: str | None) -> Store:
    if uri is None:
        raise LsdgraphError("a worker process needs the server URI (internal)")
    if uri not in _STORES:
        _STORES[uri] = connect(uri)
    return _STORES[uri]


def _source(job: Job) -> SourceFile:
    """The file as this process lists it, pinned to the fingerprint the load started with."""
    listed = list_files(job.url, s3=job.s3)
    found = [x for x in listed if x.url == job.url] or (listed if len(listed) == 1 else [])
    if not found or found[0].fingerprint != job.fingerprint:
        now_is = found[0].fingerprint if found else "gone"
        raise SourceChanged(f"{job.url}: the file changed since the load listed it ({job.fingerprint} → "
                            f"{now_is}); rerun to load the new version")
    return found[0]


def _table(load: FileLoad, job: Job) -> joins.NodeTable:
    """The node table, read once per process for the nodes' load the edges started with."""
    key = (job.uri or "", job.db, job.nodes or "nodes", job.nodes_checksum)
    table = _TABLES.get(key)
    if table is None:
        table = joins.node_table(load.store, job.db, job.nodes or "nodes", job.kind)
        if table is None or table.checksum != job.nodes_checksum:
            raise LsdgraphError(f"{load.file.url}: {job.nodes!r} changed while its edges were being loaded; "
                                "rerun to load them again")
        _TABLES.clear()  # one table per process: a new nodes load replaces the old one
        _TABLES[key] = table
    return table

"""Bulk-load mongodump ``.bson`` files (local or S3) into MongoDB, or into the local Parquet
store (:mod:`.local`): streaming, validated, resumable, idempotent, one owner per collection.

Each file goes to a staging collection (``lsdgraph_staging.<name>``) batch by batch, raw BSON
passed through, under a lease in its ``lsdgraph_meta`` record (:mod:`.lease`); the record holds the
committed byte offset, document count and running CRC-32 after every batch, so a rerun resumes
where the last acknowledged batch ended once the bytes before it still check. The count is checked
exactly, unique keys are built, then staging is renamed: a collection under its real name is
complete (:mod:`.load`). With ``workers > 1`` a large file is split at document boundaries into
byte ranges loaded at once by worker processes, each range under a lease of its own and
resumable, the count, unique keys and rename done once for the whole file (:mod:`.parallel`).
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

from pymongo import errors as perr

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError, ServerLost
from lsdgraph._ingest import joins, keys
from lsdgraph._ingest.copy import copy_database, local_database
from lsdgraph._ingest.joins import (
    NodeTable,
    add_edge_positions,
    default_nodes,
    node_table,
    nodes_checksum,
)
from lsdgraph._ingest.lease import acquire
from lsdgraph._ingest.load import VERSION, IngestReport, Options, run
from lsdgraph._ingest.local import run_local
from lsdgraph._ingest.parallel import refusal, shared_pool
from lsdgraph._ingest.plan import default_db_name, nodes_for, plan, skip_reason
from lsdgraph._io.sources import S3Options, list_files
from lsdgraph._stores.api import Backend, check_database_name, connect, default_uri, is_local
from lsdgraph._stores.mongo import Store

if TYPE_CHECKING:
    from lsdgraph._stores.local_db import LocalBackend
    from lsdgraph._stores.mongo import Db

__all__ = [
    "VERSION",
    "IngestReport",
    "NodeTable",
    "add_edge_positions",
    "default_db_name",
    "ingest",
    "node_table",
    "nodes_for",
    "plan",
    "reindex",
]


def ingest(source: str, *, db: str | None = None, name: str | None = None, on_duplicate: str = "error",
           drop: bool = False, quiet: bool = False, progress: bool | None = None,
           profile: str | None = None, endpoint_url: str | None = None, batch_docs: int = 20_000,
           chunk_bytes: int = 8 << 20, wait: float | None = None, store: Backend | None = None,
           workers: int = 1, range_bytes: int = 64 << 20, out=None) -> list[IngestReport]:
    """Load every ``.bson`` file at ``source`` into database ``name`` at ``db`` (a URI).

    With ``workers`` > 1 (a MongoDB server only), each file larger than ``range_bytes`` is split
    at document boundaries into at least ``workers`` byte ranges of at most ``range_bytes``,
    loaded at once by that many processes; the result is the one-process load's (same ``_id``s,
    counts, indexes and record), and a stopped load resumes range by range. The workers are
    spawned processes: a script calling this needs ``if __name__ == "__main__":``.

    A collection another process is loading is waited for (``wait`` seconds at most; None: as long
    as that process is alive). Returns one report per file; raises :class:`LsdgraphError` (after
    loading what it could) when any file failed. Prints one line per file to ``out`` (stdout)
    unless ``quiet``.
    """
    if on_duplicate not in ("error", "skip"):
        raise LsdgraphError(f"on_duplicate={on_duplicate!r}: use 'error' or 'skip'")
    if batch_docs < 1:
        raise LsdgraphError(f"batch_docs={batch_docs}: use 1 or more")
    if wait is not None and wait < 0:
        raise LsdgraphError(f"wait={wait}: use 0 (fail at once) or more seconds")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LsdgraphError(f"workers={workers!r}: use a whole number of worker processes, 1 or more")
    if isinstance(range_bytes, bool) or not isinstance(range_bytes, int) or range_bytes < 1:
        raise LsdgraphError(f"range_bytes={range_bytes!r}: use a whole number of bytes, 1 or more")
    out = out or sys.stdout

    def say(line: str) -> None:
        if not quiet:
            print(line, file=out, flush=True)

    from_store = local_database(source)
    if from_store is not None:  # a database of a local store: copied as it is
        store = store or connect(db)
        src = connect(from_store[0])
        lines = copy_database(src, from_store[1], store, name or from_store[1], say=say,
                              progress=False if quiet else progress)
        if not store.local:
            ensure_daisy_meta(cast("Store", store), cast("Store", store).db(name or from_store[1]))
        return [IngestReport(f"{src.uri}/{from_store[1]}", line.split()[1], "copy", "complete") for line in lines
                if line.startswith("copied")]
    s3 = S3Options(profile=profile, endpoint_url=endpoint_url)
    uri = db or (default_uri() if store is None else None)
    if workers > 1:
        _check_workers(store, uri, workers)
    files = list_files(source, s3=s3)
    if not files:
        raise LsdgraphError(f"{source}: no .bson files there; list what is there with `lsdgraph ls`")
    store = store or connect(db)
    if workers > 1:
        _check_workers(store, uri, workers)
    name = check_database_name(store, name or default_db_name(source))
    database = None if store.local else cast("Store", store).db(name)
    opts = Options(on_duplicate=on_duplicate, drop=drop, quiet=quiet, progress=progress, batch_docs=batch_docs,
                   chunk_bytes=chunk_bytes, wait=wait, say=say, workers=workers, range_bytes=range_bytes,
                   uri=uri, s3=s3)
    planned = plan(files)
    nodes_of = nodes_for(planned)
    failed_nodes: set[str] = set()
    reports: list[IngestReport] = []
    with shared_pool():  # worker processes (workers > 1) serve every file of this call
        for f, coll_name, kind in planned:
            why = skip_reason(coll_name)
            nodes = nodes_of.get(coll_name)
            if why:
                r = IngestReport(f.url, coll_name, kind.name, "skipped", bytes=f.size, notes=[why])
            elif nodes in failed_nodes:
                # its positions would come from whatever the nodes collection now holds
                r = IngestReport(f.url, coll_name, kind.name, "failed", bytes=f.size,
                                 error=f"{f.url}: not loaded: its nodes ({nodes}) failed above and it takes its "
                                       "positions from them; fix that file and rerun")
            else:
                try:
                    if database is None:
                        r = run_local(cast("LocalBackend", store), name, f, coll_name, kind, opts, nodes=nodes)
                    else:
                        r = run(cast("Store", store), database, f, coll_name, kind, opts, nodes=nodes)
                except LsdgraphError as e:
                    r = IngestReport(f.url, coll_name, kind.name, "failed", bytes=f.size, error=str(e))
                    if kind.name in ("rag_nodes", "skeleton_nodes"):
                        failed_nodes.add(coll_name)
                    if isinstance(e, ServerLost):  # the next files would only wait for it too
                        reports.append(r)
                        say(_line(r, reports))
                        raise
            reports.append(r)
            say(_line(r, reports))
    failed = [r for r in reports if r.status == "failed"]
    if database is None:  # the local store joins positions during the load; daisy does not read it
        lines = []
    else:
        lines = _finish(cast("Store", store), database, source, failed, wait, say)
    for line in lines:
        say(line)
    if failed:
        more = f" (and {len(failed) - 1} more failed files)" if len(failed) > 1 else ""
        raise LsdgraphError(f"{failed[0].error}{more}")
    return reports


def _check_workers(store: Backend | None, uri: str | None, workers: int) -> None:
    """``workers > 1`` needs a server that other processes reach, and its URI (before any work)."""
    if store is None and uri is not None:
        if is_local(uri):
            raise LsdgraphError(refusal("the local store", workers))
        if uri.startswith("mongomock://"):
            raise LsdgraphError(refusal("mongomock://", workers))
        return
    if store is not None and store.local:
        raise LsdgraphError(refusal("the local store", workers))
    if store is not None and cast("Store", store).mock:
        raise LsdgraphError(refusal("mongomock://", workers))
    if uri is None:
        raise LsdgraphError(f"workers={workers}: pass db= too (the URI the worker processes connect to)")


def _line(r: IngestReport, reports: list[IngestReport]) -> str:
    """A file's line; the first failure is the error the command ends with, so it is said there."""
    if r.status == "failed" and sum(x.status == "failed" for x in reports) == 1:
        return f"{'FAILED':<15} {r.collection:<28} (the error below)"
    return r.line()


def _finish(store: Store, database: Db, source: str, failed: list, wait: float | None, say) -> list[str]:
    try:
        return finish_database(store, database, wait=wait, say=say)
    except (perr.PyMongoError, LsdgraphError) as e:
        if failed:
            return []  # the first file error is the one to report
        raise LsdgraphError(f"{source}: MongoDB at {store.uri} failed while adding edge positions "
                            f"({type(e).__name__}: {keys.short(e)}); rerun the same command to finish") from None


def finish_database(store: Store, db: Db, *, wait: float | None = None, say=lambda line: None) -> list[str]:
    """After the files: positions for complete edges whose nodes are now loaded (or were replaced
    since the edges took theirs), and daisy's ``meta`` once a RAG is there. Idempotent, so a rerun
    finishes what a kill cut; each edges collection is updated under its load lease."""
    lines = []
    existing = set(store.retry(db.list_collection_names, f"{db.name}: listing collections"))
    records = store.retry(lambda: list(db[schema.META].find({"kind": {"$in": list(schema.EDGE_JOINS)},
                                                             "status": "complete"})),
                          f"{db.name}: reading load records")
    for rec in records:
        nodes = rec.get("nodes") or "nodes"
        if rec["_id"] not in existing or nodes not in existing:
            continue
        stale = rec.get("positions") is True and rec.get("nodes_checksum") != nodes_checksum(store, db.name, nodes)
        if rec.get("positions") is True and not stale:
            continue
        lease, _ = acquire(store, db, rec["_id"], wait=wait, say=say)
        try:
            n = add_edge_positions(store, db, rec["_id"], nodes=nodes)
        finally:
            lease.release()
        what = "positions renewed" if stale else "positions added"
        lines.append(f"{what:<15} {rec['_id']:<28} {n:>12,} docs  from {nodes}")
    has_rag = store.retry(lambda: db[schema.META].find_one({"kind": {"$in": ["rag_nodes", "rag_edges"]},
                                                            "status": "complete"}), f"{db.name}: reading load records")
    if has_rag:
        ensure_daisy_meta(store, db)
    return lines


def ensure_daisy_meta(store: Store, db: Db) -> bool:
    """daisy's MongoDbGraphProvider reads the first document of ``meta`` and needs ``directed``.
    Written under a fixed ``_id`` so two ingests finishing at once write it once. Returns True
    when it was written now."""
    coll = db[schema.DAISY_META]
    if store.retry(coll.find_one, f"{db.name}.{schema.DAISY_META}: reading") is not None:
        return False

    def write():
        try:
            r = coll.update_one({"_id": "lsdgraph"}, {"$setOnInsert": {"directed": False}}, upsert=True)
            return r.upserted_id is not None
        except perr.DuplicateKeyError:
            return False

    return store.retry(write, f"{db.name}.{schema.DAISY_META}: writing daisy's meta")


def reindex(store: Store, db: Db) -> list[str]:
    """Give a database that lsdgraph did not load (mongorestore, daisy) what ingest would have:
    every collection's indexes by kind, endpoint positions on edges, daisy's ``meta``. Idempotent;
    returns one line per action."""
    lines = []
    names = sorted(n for n in db.list_collection_names() if not n.startswith(schema.STAGING_PREFIX))
    for name in names:
        kind = schema.kind_of(name)
        if kind.name in schema.EDGE_JOINS:
            rec = db[schema.META].find_one({"_id": name}) or {}
            nodes = rec.get("nodes") or default_nodes(name, kind)
            if nodes in names and joins.needs_joins(db[name], kind, rec):
                n = add_edge_positions(store, db, name, nodes=nodes)
                lines.append(f"{'positions added':<15} {name:<28} {n:>12,} docs  from {nodes}")
                continue
        if kind.name == "rag_nodes" and joins.needs_node_blocks(db[name]):
            n = joins.add_node_blocks(store, db, name)
            lines.append(f"{'blocks added':<15} {name:<28} {n:>12,} docs")
        if schema.indexes(kind.name):
            doc = db[name].find_one({}) or {}
            ends = tuple(kind.alternative_integers) if kind.alternative_integers and kind.integers[0] not in doc \
                and kind.alternative_integers[0] in doc else kind.integers
            keys.create_indexes(store, db[name], kind, ends)
            lines.append(f"{'indexed':<15} {name:<28} " + ", ".join(sp["name"] for sp in schema.indexes(kind.name)))
    if "nodes" in names and ensure_daisy_meta(store, db):
        lines.append(f"{'daisy meta':<15} {schema.DAISY_META:<28} {{directed: false}}")
    return lines

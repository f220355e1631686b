"""The local store: a folder of databases, each collection a Parquet dataset read through Arrow's
dataset scanner (predicate pushdown, row-group statistics). No server; plain files that pandas,
polars and DuckDB read as they are.

Layout of a store rooted at ``ROOT`` (``--db file:ROOT``, or a path such as ``./store``)::

    ROOT/<db>/<collection>                  symlink → .versions/<collection>.<uuid>   (what readers open)
    ROOT/<db>/.versions/<collection>.<uuid>/part-NNNNN.parquet   one complete version (lz4)
    ROOT/<db>/.versions/<collection>.<uuid>/.readers             shared flock held by each scan
    ROOT/<db>/.meta/<collection>.json       the collection's record (as in MongoDB's lsdgraph_meta)
    ROOT/<db>/.staging/<collection>.<uuid>/ a writer's work: runs/ (sorted spills), out/ (the version)
    ROOT/<db>/.locks/<collection>.lock      fcntl.flock of the one writer; JSON {pid, host, started}

Collection names may hold dots (``zebrafinch.nodes``); names beginning with ``.`` are refused, so
the four dot-folders never clash with one. Everything hidden starts with ``.``, which Arrow,
pandas and DuckDB's ``*.parquet`` globs skip.

Publishing is atomic (POSIX cannot rename a folder over a non-empty one, so the swap is of a
symlink): a writer builds ``out/`` in ``.staging``, fsyncs it, renames it into
``.versions`` and replaces the collection's symlink with ``os.replace`` of a fresh one (then fsyncs
the folder). A reader resolves the symlink once and reads that version to the end; no reader ever
sees a half-written dataset, and a writer that fails, aborts or is killed leaves the current
version as it was (the next writer of the collection deletes the stale staging).

Old versions are deleted when they are no longer current AND (a) no scan of this library holds
their ``.readers`` lock (a scan takes it shared; deletion takes it exclusively without waiting, so a
long scan is never broken) AND (b) they were retired more than ``grace`` seconds ago (default 10
minutes: covers readers that do not take the lock — pandas, DuckDB — and the instant between
resolving the link and locking). Clean-up runs at each commit and drop (under the collection's
lock) and on :meth:`LocalStore.gc`. ``drop`` deletes at once what no scan holds.

Records are written atomically too (temp file, fsync, ``os.replace``); datetimes round-trip as
``{"$date": ISO-8601}``. Locks are ``fcntl.flock``: the OS releases a dead process's lock. The
store needs a local (or flock-capable) filesystem.

Columns are int64, uint64, float64, bool or string; a NaN float is stored as a Parquet null (no
filter such as ``merge_score <= t`` keeps it) and reads back as NaN. Filters are Arrow expressions
(:func:`roi_filter` builds the ROI box); compare uint64 columns with ``pa.scalar(v, pa.uint64())``.

This module holds the store (names, layout, publishing, clean-up); the rest lives in
``local_write`` (DatasetWriter), ``local_merge`` (the external sort's range phase), ``local_read``
(scans, statistics), ``local_lock`` (flock locks), ``local_records`` and ``local_keys``
(ROI filters, Morton block keys).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._stores import local_read, local_records
from lsdgraph._stores.local_keys import block_key, roi_filter
from lsdgraph._stores.local_lock import CollectionLock, LockHeld, pin_version, try_retire
from lsdgraph._stores.local_write import CHECKPOINT, DatasetWriter, check_schema, fsync_path, load_checkpoint

__all__ = ["DatasetWriter", "LocalStore", "LockHeld", "block_key", "is_local_uri", "local_root", "roi_filter"]

GRACE_SECONDS = 600.0
_UUID = re.compile(r"^(?P<name>.+)\.(?P<uuid>[0-9a-f]{32})$")
_PATH_STARTS = ("/", "./", "../", "~/")


def is_local_uri(uri: str) -> bool:
    """``file:PATH`` (also ``file:///abs``), or a path starting with ``/``, ``./``, ``../``, ``~/``."""
    return isinstance(uri, str) and (uri.startswith("file:") or uri.startswith(_PATH_STARTS)
                                     or uri in (".", "..", "~"))


def local_root(uri: str | os.PathLike) -> Path:
    """The store's folder for a local URI or path: ``~`` expanded, absolute."""
    text = os.fspath(uri)
    if text.startswith("file://"):
        text = text[len("file://"):]
        if not text.startswith("/"):
            raise LsdgraphError(f"{uri}: a file:// URI names a path on this machine; write file:///abs/path "
                                "or file:relative/path")
    elif text.startswith("file:"):
        text = text[len("file:"):]
    if not text:
        raise LsdgraphError(f"{uri!r}: no folder given; write file:PATH or a path such as ./store")
    return Path(os.path.abspath(os.path.expanduser(text)))


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        problem = "is empty" if isinstance(name, str) else "is not a string"
    elif "/" in name or "\\" in name or "\0" in name:
        problem = "contains '/', '\\' or NUL"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif len(name.encode()) > 200:
        problem = "is longer than 200 bytes"
    else:
        return name
    raise LsdgraphError(f"{what} name {name!r} {problem}; give a plain name without '/' that does not start "
                        "with '.' (e.g. 'hemi_roi1')")


class LocalStore:
    """A local store at ``uri`` (``file:PATH`` or a path); ``grace`` seconds before a retired version
    may be deleted."""

    def __init__(self, uri: str | os.PathLike, *, grace: float = GRACE_SECONDS):
        self.root = local_root(uri)
        self.uri = "file:" + str(self.root)
        self.grace = float(grace)
        if self.root.exists() and not self.root.is_dir():
            raise LsdgraphError(f"{self.root} is a file, not a store folder; give a folder path")

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    # -- paths and names ------------------------------------------------------------------------

    def _db(self, db: str) -> Path:
        return self.root / check_name(db, "database")

    def _link(self, db: str, coll: str) -> Path:
        return self._db(db) / check_name(coll, "collection")

    def _entries(self, folder: Path, coll: str) -> list[Path]:
        """``<coll>.<uuid>`` entries of a dot-folder (versions or staging) of one collection."""
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return [folder / n for n in names if (m := _UUID.match(n)) and m["name"] == coll]

    def _missing(self, db: str, coll: str | None = None) -> LsdgraphError:
        if coll is None or not self._db(db).is_dir():
            dbs = self.databases()
            there = f"databases there: {', '.join(dbs)}" if dbs else "it holds no databases yet"
            return LsdgraphError(f"database {db!r} not found in {self.root}; {there} (check name=, or ingest it first)")
        colls = self.collections(db)
        there = f"collections there: {', '.join(colls)}" if colls else "it holds no collections yet"
        return LsdgraphError(f"collection {coll!r} not found in {self.root / db}; {there} (check the name, "
                             "or ingest it first)")

    def _version_link(self, db: str, coll: str) -> Path:
        link = self._link(db, coll)
        if not link.is_symlink():
            if link.exists():
                raise LsdgraphError(f"{link} is not a collection this store published (not a symlink to "
                                    ".versions/); move it out of {self.root / db}")
            raise self._missing(db, coll)
        return link

    # -- databases, collections, drops ----------------------------------------------------------

    def databases(self) -> list[str]:
        """The databases (folders) in the store, sorted."""
        try:
            return sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def collections(self, db: str) -> list[str]:
        """The published collections of ``db``, sorted (what is being written does not show)."""
        try:
            return sorted(e.name for e in os.scandir(self._db(db)) if e.is_symlink() and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def drop(self, db: str, coll: str, *, wait: float | None = None) -> None:
        """Remove a collection and its record (nothing happens if it does not exist). Versions under
        a running scan of this library stay until a later clean-up."""
        link = self._link(db, coll)
        if not self._db(db).is_dir():
            return
        with self.lock(db, coll, wait=wait):
            if link.is_symlink():
                os.unlink(link)
                fsync_path(link.parent)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._record_path(db, coll))
            self._collect(db, coll, grace=0.0)
            self._clean_staging(db, coll)

    def drop_database(self, db: str, *, wait: float | None = None) -> None:
        """Remove a database folder and everything in it, once no writer holds one of its collections."""
        folder = self._db(db)
        if not folder.is_dir():
            return
        names = set(self.collections(db)) | set(self.records(db))
        with contextlib.suppress(FileNotFoundError):
            names |= {n[:-5] for n in os.listdir(folder / ".locks") if n.endswith(".lock")}
        with contextlib.ExitStack() as held:
            for name in sorted(names):
                held.enter_context(self.lock(db, name, wait=wait))
            trash = self.root / f".dropped.{uuid.uuid4().hex}"
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def gc(self, db: str | None = None) -> int:
        """Delete retired versions past the grace period and stale staging of collections no writer
        holds; returns how many versions were deleted."""
        done = 0
        for name in [db] if db is not None else self.databases():
            folder = self._db(name)
            seen = {m["name"] for sub in (".versions", ".staging") if (folder / sub).is_dir()
                    for n in os.listdir(folder / sub) if (m := _UUID.match(n))}
            for coll in sorted(seen):
                with contextlib.suppress(LockHeld), self.lock(name, coll, wait=0):
                    done += self._collect(name, coll, grace=self.grace)
                    self._clean_staging(name, coll)
        return done

    def _collect(self, db: str, coll: str, grace: float) -> int:
        """Delete the versions of ``coll`` that are not current, retired more than ``grace`` s ago and
        not under a scan. Caller holds the collection lock."""
        link = self._link(db, coll)
        current = os.path.realpath(link) if link.is_symlink() else None
        now, removed = time.time(), 0
        for version in self._entries(self._db(db) / ".versions", coll):
            if str(version) == current:
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - version.stat().st_mtime >= grace and try_retire(version):
                    local_read.forget(version)
                    removed += 1
        return removed

    def _clean_staging(self, db: str, coll: str, keep: Path | None = None) -> None:
        """Delete what killed writers of ``coll`` left in ``.staging`` (but ``keep``). Caller holds the
        collection lock."""
        for stale in self._entries(self._db(db) / ".staging", coll):
            if stale != keep:
                shutil.rmtree(stale, ignore_errors=True)

    def _resumable(self, db: str, coll: str, schema: pa.Schema) -> Path | None:
        """The newest staging folder of ``coll`` with a usable checkpoint for ``schema``."""
        found = [p for p in self._entries(self._db(db) / ".staging", coll) if load_checkpoint(p, schema) is not None]
        return max(found, key=lambda p: (p / CHECKPOINT).stat().st_mtime) if found else None

    # -- records --------------------------------------------------------------------------------

    def _record_path(self, db: str, coll: str) -> Path:
        return self._db(db) / ".meta" / f"{check_name(coll, 'collection')}.json"

    def record(self, db: str, coll: str) -> dict | None:
        """The collection's record, or None."""
        return local_records.load(self._record_path(db, coll))

    def records(self, db: str) -> dict[str, dict]:
        """Every record of ``db`` by collection name (published or not, as in ``lsdgraph_meta``)."""
        try:
            names = sorted(os.listdir(self._db(db) / ".meta"))
        except FileNotFoundError:
            return {}
        out = {}
        for n in names:
            if n.endswith(".json") and not n.startswith("."):
                rec = self.record(db, n[:-5])
                if rec is not None:
                    out[n[:-5]] = rec
        return out

    def write_record(self, db: str, coll: str, rec: dict) -> None:
        """Replace the collection's record, atomically (temp file, fsync, rename)."""
        path = self._record_path(db, coll)
        local_records.write(path, local_records.dumps(rec, f"record of {db}.{coll}"))

    def update_record(self, db: str, coll: str, fields: dict, *, wait: float | None = None) -> dict:
        """Set ``fields`` in the record (dotted keys set nested fields, as MongoDB's ``$set``), under
        the collection lock; creates ``{"_id": coll}`` when there is none. Returns the new record."""
        with self.lock(db, coll, wait=wait):
            rec = local_records.set_fields(self.record(db, coll) or {"_id": coll}, fields)
            self.write_record(db, coll, rec)
            return rec

    # -- locks and writers ----------------------------------------------------------------------

    def lock(self, db: str, coll: str, *, wait: float | None = None) -> CollectionLock:
        """The collection's writer lock, as a context manager: ``wait=None`` blocks until it is free,
        ``0`` fails at once (naming the holder's pid and host), ``s`` fails after ``s`` seconds."""
        check_name(coll, "collection")
        return CollectionLock(self._db(db) / ".locks" / f"{coll}.lock", f"{db}.{coll} in {self.root}", wait)

    def writer(self, db: str, coll: str, schema: pa.Schema, *, cluster_by: str | None = None,
               row_group_rows: int = 32_768, memory_rows: int = 2_000_000, file_rows: int = 1 << 22,
               wait: float | None = None, resume: bool = False) -> DatasetWriter:
        """A writer of the collection's next version; it holds the collection lock until commit/abort.
        ``cluster_by`` names a uint64 column (e.g. :func:`block_key`) the rows are sorted by. With
        ``resume``, the writer continues the last checkpoint a stopped writer of the same schema left
        (``writer.resumed`` holds the state it saved; None: it starts empty)."""
        what = f"{db}.{coll} in {self.root}"
        link = self._link(db, coll)
        sch = check_schema(schema, cluster_by, what)
        if link.exists() and not link.is_symlink():
            raise LsdgraphError(f"{link} is not a collection this store published; move it out of {self.root / db}")
        lock = self.lock(db, coll, wait=wait)
        lock.acquire()
        try:
            kept = self._resumable(db, coll, sch) if resume and cluster_by is not None else None
            self._clean_staging(db, coll, keep=kept)
            folder = kept or self._db(db) / ".staging" / f"{coll}.{uuid.uuid4().hex}"

            def publish(out: Path, rows: int, record: dict | None) -> None:
                self._publish(db, coll, out, record)

            return DatasetWriter(folder=folder, schema=sch, what=what, publish=publish, release=lock.release,
                                 cluster_by=cluster_by, row_group_rows=row_group_rows, memory_rows=memory_rows,
                                 file_rows=file_rows)
        except BaseException:
            lock.release()
            raise

    def _publish(self, db: str, coll: str, out: Path, record: dict | None) -> None:
        """Make ``out`` the collection's current version (the writer holds the lock)."""
        if record is not None:
            local_records.dumps(record, f"record of {db}.{coll}")  # what cannot be stored fails before publishing
        folder = self._db(db)
        versions = folder / ".versions"
        versions.mkdir(exist_ok=True)
        name = f"{coll}.{uuid.uuid4().hex}"
        os.rename(out, versions / name)
        fsync_path(versions)
        link = folder / coll
        old = os.path.realpath(link) if link.is_symlink() else None
        tmp = out.parent / "link"
        os.symlink(os.path.join(".versions", name), tmp)
        os.replace(tmp, link)
        fsync_path(folder)
        if old is not None and os.path.isdir(old):
            os.utime(old)  # retired now: the grace period starts here
        if record is not None:
            self.write_record(db, coll, record)
        self._collect(db, coll, grace=self.grace)

    # -- reads ----------------------------------------------------------------------------------

    def scan(self, db: str, coll: str, columns: Sequence[str] | None, filter: pc.Expression | None = None,
             batch_rows: int = 1_000_000) -> Iterator[dict[str, np.ndarray]]:
        """Batches of at least ``batch_rows`` rows (dicts of numpy columns; ``columns=None``: all) of
        the rows ``filter`` keeps. The version is fixed when ``scan`` is called and stays readable
        (and unchanged) until the iterator ends or is closed."""
        return _Scan(self, db, coll, columns, filter, batch_rows)

    @contextlib.contextmanager
    def _pinned(self, db: str, coll: str) -> Iterator[tuple[Path, str]]:
        what = f"{db}.{coll} in {self.root}"
        with pin_version(self._version_link(db, coll), what) as version:
            yield version, what

    def read(self, db: str, coll: str, columns: Sequence[str] | None, filter: pc.Expression | None = None
             ) -> dict[str, np.ndarray]:
        """All rows ``filter`` keeps, as numpy columns (uint64 ids stay uint64, a null float is NaN)."""
        with self._pinned(db, coll) as (version, what):
            return local_read.read(version, what, columns, filter)

    def count(self, db: str, coll: str, filter: pc.Expression | None = None) -> int:
        with self._pinned(db, coll) as (version, what):
            return local_read.count(version, what, filter)

    def column_range(self, db: str, coll: str, column: str) -> tuple[float, float] | None:
        """(min, max) of a numeric column from Parquet statistics (no data read); None if it holds no
        value. Integer columns give ints (exact above 2**53)."""
        with self._pinned(db, coll) as (version, what):
            return local_read.column_range(version, what, column)

    def schema(self, db: str, coll: str) -> pa.Schema:
        with self._pinned(db, coll) as (version, what):
            return local_read.schema(version, what)

    def explain(self, db: str, coll: str, filter: pc.Expression | None = None) -> dict:
        """Row groups (and rows) in all vs. those whose statistics ``filter`` keeps."""
        with self._pinned(db, coll) as (version, what):
            return local_read.explain(version, what, filter)


class _Scan:
    """The iterator :meth:`LocalStore.scan` returns: it holds the version's reader lock from the
    call until it is exhausted, closed (``close()``, ``with``) or garbage-collected."""

    def __init__(self, store: LocalStore, db: str, coll: str, columns: Sequence[str] | None,
                 filter: pc.Expression | None, batch_rows: int):
        self._stack = contextlib.ExitStack()
        try:
            version, what = self._stack.enter_context(store._pinned(db, coll))
            self.version = version
            self._it = local_read.scan(version, what, columns, filter, batch_rows)
        except BaseException:
            self._stack.close()
            raise

    def __iter__(self) -> _Scan:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        try:
            return next(self._it)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
        self._stack.close()

    def __enter__(self) -> _Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

"""Ingest one dump file into the local store: the same validation and error lines as into MongoDB,
streamed in bounded memory into a Parquet dataset that is published only when complete.

Each batch is scanned and validated like a MongoDB load; its columns (and, for edges, the
endpoints' positions joined from the nodes collection already in the store) go to the dataset
writer, which sorts rows by the Morton key of their block (``schema.json`` ``local``: nodes by
their position, edges by their ``u`` end) so an ROI read opens few row groups. Repeated unique keys
(``id`` for nodes, ``(u, v)`` for edges, ``_id`` otherwise) are judged as MongoDB's unique indexes
are: identical rows are duplicates kept once, different ones an error unless ``on_duplicate`` is
``skip``. The collection's writer lock serialises two ingests; a run that stops publishes nothing.
Every ``CHECKPOINT_ROWS`` rows the writer's sorted runs, the keys so far and the file's byte offset
and CRC-32 are made durable, so a rerun continues from the last checkpoint when the file's first
bytes still check (else it loads the file again from the start); an unchanged, complete file is
recognised and not loaded twice.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError, redact_record
from lsdgraph._core.progress import Progress
from lsdgraph._ingest import joins, keys
from lsdgraph._ingest.lease import now
from lsdgraph._ingest.load import VERSION, IngestReport, Options, already_complete, batch_stats, prefix_matches
from lsdgraph._io import bsonio, validate
from lsdgraph._io.sources import SourceFile
from lsdgraph._stores.local import DatasetWriter, LockHeld, block_key
from lsdgraph._stores.local_db import ARROW_TYPES, BLOCK_KEY, LocalBackend

_EXTRA_TYPES = {bsonio.T_DOUBLE: "float64", bsonio.T_INT32: "int64", bsonio.T_INT64: "int64", 8: "bool"}
_MIX = np.uint64(0x9E3779B97F4A7C15)
CHECKPOINT_ROWS = 1_000_000  # rows between checkpoints: what a killed load loads again at most


def run_local(store: LocalBackend, db: str, f: SourceFile, collection: str, kind: schema.Kind, opts: Options,
              nodes: str | None = None) -> IngestReport:
    """Load ``f`` into ``db.collection`` of the local store; raises :class:`LsdgraphError` on bad input."""
    report = IngestReport(f.url, collection, kind.name, "failed", bytes=f.size)
    t0 = time.monotonic()
    rec = store.record(db, collection)
    if rec and rec.get("status") == "complete" and not opts.drop and collection in store.collections(db):
        if already_complete(f, rec, collection, report):
            store.put_record(db, collection, {**rec, "fingerprint": f.fingerprint, "source": f.url})
        return report
    load = _Load(store, db, f, collection, kind, opts, nodes)
    try:
        note = None if opts.drop else load.resume()
        if note:
            report.notes.append(note)
        load.stream(skip=None)
        if load.joins and load.table is None:
            raise LsdgraphError(f"{f.url}: the local store needs {load.nodes_name!r} before {collection!r} (edges "
                                "take their endpoints' positions from it); ingest the folder with its nodes file")
        repeats, conflicts = load.judge()
        if conflicts and opts.on_duplicate != "skip":
            a, b = conflicts[0]
            raise LsdgraphError(f"{f.url}: documents #{a} and #{b} share {load.key_name} with different "
                                "content; fix the file, or pass on_duplicate='skip' to keep the first")
        if len(repeats):
            load.restart()
            load.stream(skip=repeats)
        report.documents, report.duplicates = load.documents, len(repeats)
        report.loaded = load.documents - len(repeats)
        report.status = "complete"
        report.seconds = time.monotonic() - t0
        load.commit(redact_record({
            "_id": collection, "collection": collection, "kind": kind.name, "source": f.url, "file": f.rel,
            "size": f.size, "fingerprint": f.fingerprint, "status": "complete", "documents": load.documents,
            "duplicates": len(repeats), "removed": 0, "loaded": report.loaded, "checksum": f"crc32:{load.crc:08x}",
            "crc32": load.crc, "endpoints": list(load.endpoints), "nodes": load.nodes_name,
            "positions": True if load.table is not None else None,
            "nodes_checksum": load.table.checksum if load.table is not None else None,
            "stats": load.stats or None, "error": None, "started": load.started, "finished": now(),
            "lsdgraph_version": VERSION, "store": "local"}))
    except LockHeld as e:
        load.abort()
        raise LsdgraphError(f"{f.url}: {e}") from None
    except LsdgraphError as e:
        load.abort()
        if not (rec and rec.get("status") == "complete"):  # `info` shows it, as for a MongoDB load
            store.put_record(db, collection, {"collection": collection, "kind": kind.name, "source": f.url,
                                              "size": f.size, "fingerprint": f.fingerprint, "status": "failed",
                                              "error": str(e), "finished": now(), "store": "local"})
        raise
    except BaseException:
        load.abort()
        raise
    return report


class _Load:
    """One file's pass(es) into a dataset writer."""

    def __init__(self, store: LocalBackend, db: str, f: SourceFile, collection: str, kind: schema.Kind,
                 opts: Options, nodes: str | None):
        self.store, self.db, self.f, self.collection, self.kind, self.opts = store, db, f, collection, kind, opts
        self.started = now()
        self.joins = kind.name in schema.EDGE_JOINS
        self.nodes_name = (nodes or joins.default_nodes(collection, kind)) if self.joins else None
        # None: the nodes are not in the store; the file is still read through, so a bad document is
        # named first, then the load is refused
        self.table = joins.node_table(store, db, self.nodes_name or "nodes", kind.name) if self.joins else None
        head, first = self._probe()
        self.fields, self.extra = self._fields(head, first)
        # the endpoint fields the documents use (skeleton edges may say source/target)
        self.endpoints = validate.endpoints(first, kind)
        self.key_name = {"rag_nodes": "id", "rag_edges": "(u, v)"}.get(kind.name, "_id")
        self.writer: DatasetWriter | None = None
        self.restart(resume=not opts.drop)

    # -- set-up ---------------------------------------------------------------------------------
    def _probe(self) -> tuple[bytes, bsonio.Docs]:
        """The file's first MiB and its whole documents, scanned for the kind's fields and checked (a
        misspelt field must be named as such, not taken for an extra one)."""
        stream = self.f.open(0)
        try:
            head = stream.read(1 << 20)
        finally:
            stream.close()
        first, _, _ = bsonio.scan(np.frombuffer(head, np.uint8), self.kind.fields, final=False)
        msg = validate.check(first, self.kind, file=self.f.url, base_offset=0, first_index=0,
                             integers=validate.endpoints(first, self.kind))
        if msg:
            raise LsdgraphError(msg)
        return head, first

    def _fields(self, head: bytes, first: bsonio.Docs) -> tuple[tuple[str, ...], dict[str, str]]:
        """The kind's fields, and the other numeric top-level fields the first documents carry."""
        base = self.kind.fields
        names = tuple(n for n, _, _ in first.extras if n not in schema.EDGE_POSITIONS["u"] + schema.EDGE_POSITIONS["v"]
                      and n != BLOCK_KEY)
        if not names:
            return base, {}
        typed, _, _ = bsonio.scan(np.frombuffer(head, np.uint8), base + names, final=False)
        extra = {}
        for n in names:
            t = typed.type_of(n)
            t = t[t != bsonio.T_MISSING]
            if len(t) and int(t[0]) in _EXTRA_TYPES:
                extra[n] = _EXTRA_TYPES[int(t[0])]
        return base + tuple(extra), extra


    def restart(self, resume: bool = False) -> None:
        """A new writer: empty, or (``resume``) continuing the last checkpoint of a stopped load."""
        if self.writer is not None:
            self.writer.abort()

        def writer(wait: float | None) -> DatasetWriter:
            return self.store.engine.writer(self.db, self.collection, self._schema(), cluster_by=BLOCK_KEY,
                                            row_group_rows=schema.LOCAL["row_group_rows"], wait=wait, resume=resume)

        try:
            self.writer = writer(0)
        except LockHeld as e:  # another ingest writes this collection: say so, then wait as asked
            if self.opts.wait == 0:
                raise
            self.opts.say(f"waiting: {str(e).split('; wait for it')[0]}")
            self.writer = writer(self.opts.wait)
        self.documents, self.crc, self.offset = 0, 0, 0
        self.stats: dict = {}
        self.keys: list[np.ndarray] = []
        self.digests: list[np.ndarray] = []
        self.saved = 0          # key batches already in the writer's folder (checkpointed)
        self.since = 0          # rows appended since the last checkpoint

    def resume(self) -> str | None:
        """Continue from the checkpoint of a stopped load of this file (its first bytes unchanged);
        returns the note to report, None when there is nothing to continue."""
        assert self.writer is not None
        state = self.writer.resumed
        if not state:
            return None
        if state.get("fingerprint") != self.f.fingerprint or not prefix_matches(self.f, state["offset"], state["crc"]):
            self.restart()
            return (f"the file changed since the interrupted load (its first {state['offset']:,} bytes differ): "
                    "loaded again from the start")
        self.documents, self.crc, self.offset = state["documents"], state["crc"], state["offset"]
        self.stats = state["stats"]
        parts = [np.load(self.writer.folder / f"keys-{i:05d}.npz") for i in range(state["saved"])]
        self.keys = [p["keys"] for p in parts]
        self.digests = [p["digests"] for p in parts]
        self.saved = state["saved"]
        return f"resumed at byte {self.offset:,}"

    def checkpoint(self) -> None:
        """Keys so far next to the writer's runs, then the writer's checkpoint with where the file stands."""
        assert self.writer is not None
        if self.saved < len(self.keys):
            np.savez(self.writer.folder / f"keys-{self.saved:05d}.npz",
                     keys=np.concatenate(self.keys[self.saved:]), digests=np.concatenate(self.digests[self.saved:]))
            self.keys[self.saved:] = [np.concatenate(self.keys[self.saved:])]
            self.digests[self.saved:] = [np.concatenate(self.digests[self.saved:])]
            self.saved += 1
        self.writer.checkpoint({"fingerprint": self.f.fingerprint, "offset": self.offset, "crc": self.crc,
                                "documents": self.documents, "stats": self.stats, "saved": self.saved})
        self.since = 0

    def _types(self) -> dict[str, str]:
        ids = "uint64" if self.kind.name.startswith("rag_") else "int64"
        out = {f: ids for f in self.kind.integers}
        if self.kind.name == "skeleton_edges":
            out = {f: ids for f in self.endpoints}
        out.update({f: "float64" for f in self.kind.numbers + self.kind.optional_numbers})
        out.update({f: "int64" for f in self.kind.integers if f not in self.endpoints and f != "id"})
        if "id" in self.kind.integers:
            out["id"] = ids
        out.update(self.extra)
        if self.joins:
            out.update({f: "float64" for end in ("u", "v") for f in schema.EDGE_POSITIONS[end]})
            out.update({f: "int64" for f in schema.EDGE_JOINS[self.kind.name]["copy_from_u"]})
        out[BLOCK_KEY] = "uint64"
        return out

    def _schema(self) -> pa.Schema:
        return pa.schema([(k, ARROW_TYPES[t]) for k, t in self._types().items()])

    # -- passes ---------------------------------------------------------------------------------
    def _batches(self) -> Iterator[tuple[int, bsonio.Docs]]:
        stream = self.f.open(self.offset)
        try:
            for base, docs, err in bsonio.iter_docs(stream, self.fields, chunk_bytes=self.opts.chunk_bytes,
                                                    max_docs=self.opts.batch_docs, start_offset=self.offset):
                msg = validate.check(docs, self.kind, file=self.f.url, base_offset=base, first_index=self.documents,
                                     integers=self.endpoints)
                if msg:
                    raise LsdgraphError(msg)
                if len(docs):
                    yield base, docs
                    self.documents += len(docs)
                if err is not None:
                    raise LsdgraphError(validate.structure_message(self.f.url, self.f.size, base, self.documents,
                                                                   err, docs.buf))
        finally:
            stream.close()

    def stream(self, skip: np.ndarray | None) -> None:
        """One pass over the file into the writer, leaving out the rows ``skip`` (sorted) lists."""
        types = self._types()
        bar = Progress(self.collection, self.f.size, enabled=False if self.opts.quiet else self.opts.progress)
        try:
            self._stream(types, skip, bar)
        finally:
            bar.close()

    def _stream(self, types: dict[str, str], skip: np.ndarray | None, bar: Progress) -> None:
        for base, docs in self._batches():
            if len(docs):
                bar.update(int(docs.ends[-1] - docs.starts[0]), len(docs))
                self.crc = zlib.crc32(docs.block(), self.crc)
                self.offset = base + int(docs.ends[-1])
                self.stats = batch_stats(self.kind, docs, self.stats)
            cols = {f: docs.column(f, t) for f, t in types.items() if f not in (BLOCK_KEY,) and f in self.fields}
            if self.joins and self.table is not None:
                added, present = joins.joined(self.table, docs.ints(self.endpoints[0]), docs.ints(self.endpoints[1]))
                for j, (name, (_, values)) in enumerate(added.items()):
                    v = values.astype(types[name])
                    if v.dtype.kind == "f":
                        v = np.where(present[:, j], v, np.nan)
                    cols[name] = v
            fields = schema.EDGE_POSITIONS["u"] if self.joins else self.kind.position
            pos = [cols.get(p, np.full(len(docs), np.nan)) for p in fields]  # no nodes yet: refused at the end
            # a collection of no known kind has no position: one block, in file order
            cols[BLOCK_KEY] = (block_key(pos[0], pos[1], pos[2], schema.LOCAL["block_size_nm"]) if pos
                               else np.zeros(len(docs), np.uint64))
            if skip is None:
                self.keys.append(self._keys(docs, cols))
                self.digests.append(_digest(cols))
            else:
                rows = np.arange(self.documents, self.documents + len(docs))
                keep = ~np.isin(rows, skip, assume_unique=True)
                cols = {k: c[keep] for k, c in cols.items()}
            assert self.writer is not None
            if not self.joins or self.table is not None:  # without nodes only checked: refused at the end
                self.writer.append(cols)
                self.since += len(docs)
                if skip is None and self.since >= CHECKPOINT_ROWS:
                    self.checkpoint()

    def _keys(self, docs: bsonio.Docs, cols: dict[str, np.ndarray]) -> np.ndarray:
        """(n, 2) uint64 unique keys of a batch; rows without one (no ``_id``) get a key of their own."""
        if self.kind.name == "rag_nodes":
            return np.stack([cols["id"].view(np.uint64), np.zeros(len(docs), np.uint64)], 1)
        if self.kind.name == "rag_edges":
            return np.stack([cols["u"].view(np.uint64), cols["v"].view(np.uint64)], 1)
        out = np.empty((len(docs), 2), np.uint64)
        has = docs.type_of("_id") != bsonio.T_MISSING
        out[has] = keys.id_keys(docs)
        rows = np.arange(self.documents, self.documents + len(docs), dtype=np.uint64)
        out[~has] = np.stack([rows[~has], np.full((~has).sum(), 2**64 - 1, np.uint64)], 1)
        return out

    def judge(self) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Rows repeating an earlier row's key (to leave out), and pairs of rows whose key is the same
        but whose content differs."""
        if not self.keys:
            return np.empty(0, np.int64), []
        k = np.concatenate(self.keys)
        d = np.concatenate(self.digests)
        order = np.lexsort((np.arange(len(k)), k[:, 1], k[:, 0]))
        ks, ds = k[order], d[order]
        same = (ks[1:, 0] == ks[:-1, 0]) & (ks[1:, 1] == ks[:-1, 1])
        if not same.any():
            return np.empty(0, np.int64), []
        start = np.r_[True, ~same]          # first row of each run of one key
        first = order[np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))]
        repeat = ~start
        differ = repeat & (ds != d[first])
        conflicts = [(int(a), int(b)) for a, b in zip(first[differ][:1], order[differ][:1], strict=True)]
        return np.sort(order[repeat]), conflicts

    def commit(self, record: dict) -> None:
        assert self.writer is not None
        self.writer.commit(record)
        self.writer = None

    def abort(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.abort()
            self.writer = None


def _digest(cols: dict[str, np.ndarray]) -> np.ndarray:
    """A 64-bit digest of each row's stored values (NaN and null alike), to tell repeats apart."""
    n = len(next(iter(cols.values())))
    h = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for name in sorted(cols):
            if name == BLOCK_KEY:
                continue
            c = cols[name]
            if c.dtype.kind == "f":
                c = np.where(np.isnan(c), np.inf, c)  # one bit pattern for every NaN
            bits = np.ascontiguousarray(c).astype(np.float64 if c.dtype.kind == "f" else np.int64,
                                                  copy=False).view(np.uint64)
            h = (h ^ bits) * _MIX
            h ^= h >> np.uint64(29)
    return h

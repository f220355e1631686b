"""The MongoDB connection: a real server (``mongodb://``) or the in-process mongomock store
(``mongomock://``), with raw-BSON inserts, retries, and raw-batch reads into numpy columns."""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import bson
import numpy as np
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import errors as perr

from lsdgraph._core import retry, schema
from lsdgraph._core.errors import LsdgraphError, ServerLost, redact_record, redact_uri
from lsdgraph._io import bsonio
from lsdgraph._stores.api import default_uri

if TYPE_CHECKING:  # the handles lsdgraph passes around; mongomock's clients stand in for them
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.database import Database

    Client = MongoClient[Any]
    Db = Database[Any]
    Coll = Collection[Any]

_RAW = CodecOptions(document_class=RawBSONDocument)
_TRANSIENT = (perr.AutoReconnect, perr.ConnectionFailure, perr.NetworkTimeout,
              perr.ServerSelectionTimeoutError, perr.WaitQueueTimeoutError)
_mock_clients: dict[str, Any] = {}
T = TypeVar("T")


@dataclass(frozen=True)
class Inserted:
    """What one batch insert did: documents stored, rows (in the batch) whose ``_id`` was already
    there, and whether the batch was sent more than once (a retry after a cut connection)."""

    inserted: int
    duplicates: np.ndarray
    replayed: bool


@dataclass
class Store:
    """A connected client and what kind of server it talks to."""

    client: Client
    uri: str          # redacted, safe to print
    mock: bool
    policy: retry.RetryPolicy = retry.DEFAULT
    _indexes: dict[tuple[str, str], set[str]] = dc_field(default_factory=dict, repr=False)

    local = False  # the store interface (see lsdgraph._stores.api): MongoDB or mongomock

    def db(self, name: str) -> Db:
        return self.client[name]

    # -- the store interface: what the query layer and the jobs call (the local store has the same)

    def databases(self) -> list[str] | None:
        """The user databases (None: no privilege to list them)."""
        try:
            names = self.client.list_database_names()
        except perr.PyMongoError:
            return None
        return [n for n in names if n not in ("admin", "local", "config")]

    def collections(self, db: str) -> list[str]:
        """Collections of ``db`` (staging ones left out)."""
        names = self.retry(self.db(db).list_collection_names, f"{db}: listing collections")
        return sorted(n for n in names if not n.startswith(schema.STAGING_PREFIX))

    def record(self, db: str, coll: str) -> dict | None:
        """The ``lsdgraph_meta`` record of ``coll``."""
        return self.db(db)[schema.META].find_one({"_id": coll})

    def records(self, db: str) -> dict[str, dict]:
        return {r["_id"]: r for r in self.db(db)[schema.META].find({})}

    def put_record(self, db: str, coll: str, rec: dict) -> None:
        self.db(db)[schema.META].replace_one({"_id": coll}, redact_record({**rec, "_id": coll}), upsert=True)

    def count(self, db: str, coll: str) -> int:
        return int(self.db(db)[coll].estimated_document_count())

    def hint(self, db: str, coll: str, role: tuple[str, str] | None) -> str | None:
        """The index ``role`` (kind, use) names when ``coll`` has it (a database daisy wrote may
        lack ours), else None; index lists are cached per store."""
        if role is None:
            return None
        name = schema.index_name(*role)
        if (db, coll) not in self._indexes:
            self._indexes[db, coll] = set(self.db(db)[coll].index_information())
        return name if name in self._indexes[db, coll] else None

    def read(self, db: str, coll: str, filter: dict, spec: dict[str, str], *,
             role: tuple[str, str] | None = None) -> dict[str, np.ndarray]:
        """The documents ``filter`` matches as typed columns (``spec`` = ``{field: dtype}``), one find."""
        hint = self.hint(db, coll, role)
        batches = self.retry(lambda: list(self.find_raw(self.db(db)[coll], filter, list(spec), hint=hint)),
                             f"{db}.{coll}: reading")
        return bsonio.columns(batches, spec)

    def batches(self, db: str, coll: str, filter: dict, spec: dict[str, str], *,
                role: tuple[str, str] | None = None, batch_rows: int = 500_000) -> Iterator[dict[str, np.ndarray]]:
        """:meth:`read` in batches of at most ``batch_rows`` documents."""
        for d in self.find_raw(self.db(db)[coll], filter, list(spec), hint=self.hint(db, coll, role),
                               batch_size=batch_rows):
            yield bsonio.columns([d], spec)

    def field_types(self, db: str, coll: str) -> dict[str, str]:
        """Numeric and bool fields of a sample document (``int64``, ``float64``, ``bool``)."""
        doc = self.db(db)[coll].find_one({}) or {}
        out = {}
        for k, v in doc.items():
            if k == "_id":
                continue
            if isinstance(v, bool):
                out[k] = "bool"
            elif isinstance(v, int):
                out[k] = "int64"
            elif isinstance(v, float) or v is None:
                out[k] = "float64"
        return out

    def exists(self, db: str, coll: str, filter: dict) -> bool:
        return self.db(db)[coll].find_one(filter, {"_id": 1}) is not None

    def value_range(self, db: str, coll: str, field: str, *, role: tuple[str, str] | None = None
                    ) -> tuple[float, float] | None:
        """(min, max) numeric value of ``field`` (None: none stored), by two sorted one-document finds."""
        c, h = self.db(db)[coll], self.hint(db, coll, role)
        q = {field: {"$gte": -math.inf}}
        ends = []
        for direction in (1, -1):
            cur = c.find(q, {field: 1}).sort(field, direction).limit(1)
            ends.append(list(cur.hint(h) if h else cur))
        lo, hi = ends
        return (float(lo[0][field]), float(hi[0][field])) if lo else None

    def histogram(self, db: str, coll: str, field: str, bounds: Sequence[float], *,
                  role: tuple[str, str] | None = None) -> list[int]:
        """Documents per bin ``[bounds[i], bounds[i+1])`` of a numeric ``field``, by the server ($bucket)."""
        h = self.hint(db, coll, role)
        stages: list[dict[str, Any]] = [{"$match": {field: {"$gte": -math.inf}}},
                  {"$bucket": {"groupBy": f"${field}", "boundaries": list(bounds), "output": {"n": {"$sum": 1}}}}]
        kw: dict[str, Any] = {"hint": h} if h else {}
        got = {r["_id"]: r["n"] for r in self.db(db)[coll].aggregate(stages, **kw)}
        return [int(got.get(b, 0)) for b in list(bounds)[:-1]]

    def count_where(self, db: str, coll: str, filter: dict, *, role: tuple[str, str] | None = None) -> int:
        h = self.hint(db, coll, role)
        kw: dict[str, Any] = {"hint": h} if h else {}
        return int(self.db(db)[coll].count_documents(filter, **kw))

    def field_bounds(self, db: str, coll: str, fields: Sequence[str]) -> tuple[list[float], list[float]] | None:
        """(mins, maxs) of numeric ``fields`` over the collection (None: empty), one $group."""
        group: dict[str, object] = {"_id": None}
        for i, f in enumerate(fields):
            group[f"lo{i}"] = {"$min": f"${f}"}
            group[f"hi{i}"] = {"$max": f"${f}"}
        r = next(iter(self.db(db)[coll].aggregate([{"$group": group}])), None)
        if r is None:
            return None
        return [float(r[f"lo{i}"]) for i in range(len(fields))], [float(r[f"hi{i}"]) for i in range(len(fields))]

    def explain_read(self, db: str, coll: str, filter: dict, *, role: tuple[str, str] | None = None) -> dict:
        """How a :meth:`read` runs: the hint, the index the server used (None: a collection scan),
        documents and keys examined, returned (empty figures on mongomock, which has no planner)."""
        hint = self.hint(db, coll, role)
        ex = self.explain(self.db(db)[coll], filter, hint)
        st = ex.get("executionStats", {})
        index = _plan_index((ex.get("queryPlanner") or {}).get("winningPlan"))
        return {"collection": coll, "hint": hint, "index": index, "filter": filter,
                "docs_examined": st.get("totalDocsExamined"), "keys_examined": st.get("totalKeysExamined"),
                "returned": st.get("nReturned")}

    def replace(self, db: str, coll: str, chunks: Iterable[dict[str, tuple[str, np.ndarray]]], index_kind: str
                ) -> int:
        """Replace ``coll`` with one document per row of each chunk of columns (``{field: (bson kind,
        array)}``) and the indexes of ``index_kind``; returns the documents. Built under the staging
        name and renamed over ``coll`` at the end, so a run that stops leaves the previous collection
        whole (and the staging one out of every listing)."""
        d = self.db(db)
        staging = d[schema.STAGING_PREFIX + coll]
        self.retry(staging.drop, f"{db}.{staging.name}: dropping")
        n = sum(self.insert_columns(staging, columns, f"{db}.{coll}") for columns in chunks)
        self.create_indexes(staging, index_kind)
        if staging.name not in self.retry(d.list_collection_names, f"{db}: listing collections"):
            self.retry(lambda: d.create_collection(staging.name), f"{db}.{coll}: creating")  # no rows, no indexes

        def rename() -> None:
            try:
                staging.rename(coll, dropTarget=True)
            except perr.OperationFailure:
                names = set(d.list_collection_names())
                if not (coll in names and staging.name not in names):
                    raise
                # else an earlier try went through before the connection dropped

        self.retry(rename, f"{db}.{coll}: renaming {staging.name}")
        self._indexes.pop((db, coll), None)
        return n

    def inventory(self, db: str) -> list[tuple[str, int, list[str]]]:
        """(name, documents, index names) of every collection, staging ones included."""
        d = self.db(db)
        names = sorted(self.retry(d.list_collection_names, f"{db}: listing collections"))
        return [(n, int(d[n].estimated_document_count()), sorted(d[n].index_information())) for n in names]

    def find_value(self, db: str, coll: str, filter: dict, field: str, *, role: tuple[str, str] | None = None):
        """``field`` of one document ``filter`` matches (None: no match)."""
        h = self.hint(db, coll, role)
        cur = self.db(db)[coll].find(filter, {"_id": 0, field: 1}).limit(1)
        doc = next(iter(cur.hint(h) if h else cur), None)
        return None if doc is None else doc.get(field)

    def drop_database(self, db: str) -> None:
        self.client.drop_database(db)
        self._indexes = {k: v for k, v in self._indexes.items() if k[0] != db}

    def insert_docs(self, coll: Coll, docs: bsonio.Docs, what: str) -> Inserted:
        """Insert documents as they are (raw bytes) with an unordered bulk insert.

        A document whose ``_id`` is already there is not inserted (the server says so per
        document; mongorestore skips these too): their rows come back in ``Inserted.duplicates``
        for the caller to judge. A try that the connection cut may have stored part of the batch
        before the retry, so ``replayed`` says the duplicates may include this batch's own
        documents. Any other refusal is a one-line error.
        """
        if len(docs) == 0:
            return Inserted(0, np.empty(0, np.int64), False)
        payload = bson.decode_all(docs.block(), None if self.mock else _RAW)
        tries = []

        def once() -> Inserted:
            tries.append(1)
            try:
                coll.insert_many(payload, ordered=False)
                return Inserted(len(payload), np.empty(0, np.int64), len(tries) > 1)
            except perr.BulkWriteError as e:
                errs = e.details.get("writeErrors", [])
                other = [x for x in errs if x.get("code") != 11000]
                if other:
                    x = other[0]
                    raise LsdgraphError(f"{what}: the server refused document #{x.get('index')} of a batch: "
                                        f"{x.get('errmsg')}") from None
                rows = np.array(sorted(int(x["index"]) for x in errs), np.int64)
                return Inserted(e.details.get("nInserted", 0), rows, len(tries) > 1)

        return self.retry(once, what)

    def insert_columns(self, coll: Coll, columns: dict[str, tuple[str, np.ndarray]], what: str,
                       batch: int = 200_000) -> int:
        """Insert one new document per row of equal-length ``{field: (bson type, array)}`` columns
        (see :func:`bsonio.encode`), ``batch`` rows at a time; returns the rows."""
        n = len(next(iter(columns.values()))[1]) if columns else 0
        for i in range(0, n, batch):
            raw = bsonio.encode({k: (kind, a[i:i + batch]) for k, (kind, a) in columns.items()})
            docs, _, _ = bsonio.scan(raw, ["_id"])
            self.insert_docs(coll, docs, what)
        return n

    def create_indexes(self, coll: Coll, kind_name: str, *, rename: dict[str, str] | None = None,
                       unique_only: bool = False, what: str | None = None) -> None:
        """The indexes ``schema.json`` lists for ``kind_name`` (fields renamed by ``rename``, e.g.
        skeleton edges stored with ``source``/``target``), under the retry policy. Idempotent."""
        from pymongo import IndexModel

        rename = rename or {}
        models = [IndexModel([(rename.get(f, f), d) for f, d in spec["key"]], name=spec["name"],
                             unique=spec.get("unique", False))
                  for spec in schema.indexes(kind_name) if spec.get("unique") or not unique_only]
        if models:
            self.retry(lambda: coll.create_indexes(models), what or f"{coll.full_name}: building indexes")

    def retry(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` under the one retry policy (:mod:`lsdgraph.retry`): a server that went away is
        waited for, then a one-line :class:`ServerLost`."""
        def give_up(e: BaseException) -> ServerLost:
            return ServerLost(f"{what}: lost MongoDB at {self.uri} after {self.policy.retries} retries "
                              f"({type(e).__name__}); nothing is marked complete: rerun the same command "
                              "to resume")

        return retry.call(fn, transient=_TRANSIENT, give_up=give_up, policy=self.policy)

    def find_raw(self, coll: Coll, filter: dict, fields: Sequence[str], *, hint: str | None = None,
                 batch_size: int = 100_000) -> Iterator[bsonio.Docs]:
        """Stream matching documents as raw batches, scanned into ``fields`` columns.

        One query (plus getMores) per call. mongomock has no raw batches and a slow per-document
        query engine, so there the stored documents are encoded once and the filter (the simple
        shapes lsdgraph sends: ranges, ``$in``, ``$exists``, equality) is applied to the columns.
        """
        if self.mock:
            yield from _mock_find_raw(coll, filter, fields, batch_size)
            return
        projection = {f: 1 for f in fields}
        if "_id" not in fields:
            projection["_id"] = 0
        cur = coll.find_raw_batches(filter, projection, batch_size=batch_size)
        if hint:
            cur = cur.hint(hint)
        try:
            for raw in cur:
                docs, _, err = bsonio.scan(raw, fields)
                if err is not None:
                    raise LsdgraphError(f"{coll.name}: the server sent malformed BSON ({err.describe()})")
                yield docs
        finally:  # a reader that stops early ends the server's cursor now, not whenever it is collected
            cur.close()

    def explain(self, coll: Coll, filter: dict, hint: str | None = None) -> dict:
        """executionStats of a find on a real server (mongomock has no planner: empty dict)."""
        if self.mock:
            return {}
        cmd = {"find": coll.name, "filter": filter}
        if hint:
            cmd["hint"] = hint
        return coll.database.command("explain", cmd, verbosity="executionStats")


def _plan_index(stage: dict | None) -> str | None:
    """The index the winning plan scans (None: a collection scan)."""
    while stage:
        if stage.get("stage") == "IXSCAN":
            return stage.get("indexName")
        stage = stage.get("inputStage") or (stage.get("inputStages") or [None])[0]
    return None


_NUMBER_TYPES = (bsonio.T_DOUBLE, bsonio.T_INT32, bsonio.T_INT64)
_RANGE = {"$gte": np.greater_equal, "$gt": np.greater, "$lte": np.less_equal, "$lt": np.less}


def _mock_match(docs: bsonio.Docs, filter: dict) -> np.ndarray | None:
    """Which documents match ``filter`` (numbers only), or None for a shape not handled here."""
    keep = np.ones(len(docs), bool)
    for field, cond in filter.items():
        if field.startswith("$"):
            return None
        t = docs.type_of(field)
        number = np.isin(t, _NUMBER_TYPES)
        if isinstance(cond, dict):
            for op, arg in cond.items():
                if op in _RANGE and isinstance(arg, (int, float)) and not isinstance(arg, bool):
                    keep &= number & _RANGE[op](docs.floats(field), float(arg))
                elif op == "$in" and all(isinstance(x, int) and not isinstance(x, bool) for x in arg):
                    keep &= np.isin(t, (bsonio.T_INT32, bsonio.T_INT64)) & np.isin(docs.ints(field), list(arg))
                elif op == "$exists" and isinstance(arg, bool):
                    keep &= (t != bsonio.T_MISSING) == arg
                else:
                    return None
        elif isinstance(cond, (int, float)) and not isinstance(cond, bool):
            keep &= number & (docs.floats(field) == float(cond))
        else:
            return None
    return keep


def _mock_find_raw(coll: Coll, filter: dict, fields: Sequence[str], batch_size: int) -> Iterator[bsonio.Docs]:
    need = list(dict.fromkeys(list(fields) + [f for f in filter if not f.startswith("$")]))
    stored = getattr(getattr(coll, "_store", None), "documents", None)
    docs = None
    if stored is not None:
        raw = b"".join(bson.encode(d) for d in stored)
        docs = bsonio.scan(raw, need)[0]
        keep = _mock_match(docs, filter)
        docs = None if keep is None else docs.take(keep)
    if docs is None:  # a shape the column filter does not handle: mongomock's own engine
        projection = {f: 1 for f in fields}
        raw = b"".join(bson.encode(d) for d in coll.find(filter, projection))
        docs = bsonio.scan(raw, need)[0]
    for i in range(0, max(len(docs), 1), batch_size):
        part = docs.take(slice(i, i + batch_size))
        if len(part):
            yield part


def mock_exists(uri: str) -> bool:
    """Whether this process already holds the in-process store ``uri`` (a script made it)."""
    return uri in _mock_clients


def connect(uri: str | None = None, *, timeout_ms: int | None = None) -> Store:
    """Connect and check the server answers; ``mongomock://`` gives the process-wide in-memory store."""
    uri = uri or default_uri()
    shown = redact_uri(uri)
    if uri.startswith("mongomock://"):
        import mongomock

        client = _mock_clients.get(uri)
        if client is None:
            client = _mock_clients[uri] = mongomock.MongoClient()
        return Store(cast("Client", client), shown, True)
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise LsdgraphError(f"db={shown}: not a MongoDB URI; use mongodb://host:port, or a path such as "
                            "./lsdgraph-data for the local store (no server)")
    import pymongo

    timeout = timeout_ms or int(os.environ.get("LSDGRAPH_SERVER_TIMEOUT_MS", "5000"))
    try:
        with warnings.catch_warnings():
            # pymongo warns of an unknown URI option, then often fails on it: one line, not two
            warnings.simplefilter("error", UserWarning)
            client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout)
        client.admin.command("ping")
    except (perr.ConfigurationError, perr.InvalidURI, ValueError, TypeError, UserWarning) as e:
        raise LsdgraphError(f"db={shown}: not a usable MongoDB URI ({e}); write it as "
                            "mongodb://[user:password@]host:port/ with the password percent-escaped") from None
    except perr.OperationFailure as e:
        raise LsdgraphError(f"MongoDB at {shown} refused us: {e.details.get('errmsg', e) if e.details else e}; "
                            "check the user and password in the URI") from None
    except perr.PyMongoError as e:
        raise LsdgraphError(f"cannot reach MongoDB at {shown} ({type(e).__name__}); start one with "
                            "`docker compose up -d` (see README) or set LSDGRAPH_MONGO_URI; without a server, "
                            "use the local store: db=./lsdgraph-data") from None
    return Store(client, shown, False)

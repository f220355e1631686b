"""The MongoDB connection: a real server (``mongodb://``) or the in-process mongomock store
(``mongomock://``), with raw-BSON inserts, retries, and raw-batch reads into numpy columns."""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import bson
import numpy as np
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import errors as perr

from lsdgraph._core import retry, schema
from lsdgraph._core.errors import LsdgraphError, ServerLost, redact_uri
from lsdgraph._io import bsonio

if TYPE_CHECKING:  # the handles lsdgraph passes around; mongomock's clients stand in for them
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.database import Database

    Client = MongoClient[Any]
    Db = Database[Any]
    Coll = Collection[Any]

DEFAULT_URI = "mongodb://localhost:27017"
ENV_URI = "LSDGRAPH_MONGO_URI"
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


def default_uri() -> str:
    return os.environ.get(ENV_URI) or DEFAULT_URI


@dataclass
class Store:
    """A connected client and what kind of server it talks to."""

    client: Client
    uri: str          # redacted, safe to print
    mock: bool
    policy: retry.RetryPolicy = retry.DEFAULT

    def db(self, name: str) -> Db:
        return self.client[name]

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
        for raw in cur:
            docs, _, err = bsonio.scan(raw, fields)
            if err is not None:
                raise LsdgraphError(f"{coll.name}: the server sent malformed BSON ({err.describe()})")
            yield docs

    def explain(self, coll: Coll, filter: dict, hint: str | None = None) -> dict:
        """executionStats of a find on a real server (mongomock has no planner: empty dict)."""
        if self.mock:
            return {}
        cmd = {"find": coll.name, "filter": filter}
        if hint:
            cmd["hint"] = hint
        return coll.database.command("explain", cmd, verbosity="executionStats")


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
        raise LsdgraphError(f"--db {shown}: not a MongoDB URI; use mongodb://host:port, or mongomock:// "
                            "for the in-process store")
    import pymongo

    timeout = timeout_ms or int(os.environ.get("LSDGRAPH_SERVER_TIMEOUT_MS", "5000"))
    try:
        with warnings.catch_warnings():
            # pymongo warns of an unknown URI option, then often fails on it: one line, not two
            warnings.simplefilter("error", UserWarning)
            client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout)
        client.admin.command("ping")
    except (perr.ConfigurationError, perr.InvalidURI, ValueError, TypeError, UserWarning) as e:
        raise LsdgraphError(f"--db {shown}: not a usable MongoDB URI ({e}); write it as "
                            "mongodb://[user:password@]host:port/ with the password percent-escaped") from None
    except perr.OperationFailure as e:
        raise LsdgraphError(f"MongoDB at {shown} refused us: {e.details.get('errmsg', e) if e.details else e}; "
                            "check the user and password in the URI") from None
    except perr.PyMongoError as e:
        raise LsdgraphError(f"cannot reach MongoDB at {shown} ({type(e).__name__}); start one with "
                            "`docker compose up -d` (see README), set LSDGRAPH_MONGO_URI, or use "
                            "--db mongomock:// for an in-process store") from None
    return Store(client, shown, False)

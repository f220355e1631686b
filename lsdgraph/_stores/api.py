"""The store interface: what the query layer, ingest's finishing steps and the jobs call, the same
for MongoDB (:class:`lsdgraph._stores.mongo.Store`, a server or mongomock) and for the local
Parquet store (:class:`lsdgraph._stores.local_db.LocalBackend`), and :func:`connect`, which picks
one from a ``--db`` value.

Reads take MongoDB's filter shapes, restricted to what lsdgraph sends (the same as ``queries/*.js``):
per-field ``$gte``/``$gt``/``$lte``/``$lt`` bounds, ``$in`` lists of integers, ``$exists`` and
equality. A read names the index it is shaped for by its role (``(kind, use)`` in ``schema.json``):
MongoDB hints it, the local store has row-group statistics instead.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np

from lsdgraph._core.errors import LsdgraphError, redact_uri

Role = tuple[str, str] | None
ENV_URI = "LSDGRAPH_MONGO_URI"
DEFAULT_URI = "mongodb://localhost:27017"


class Backend(Protocol):
    """A store holding databases of collections and their ``lsdgraph_meta`` records."""

    @property
    def uri(self) -> str: ...    # redacted, safe to print
    @property
    def local(self) -> bool: ...  # the local Parquet store (no server)

    def databases(self) -> list[str] | None: ...
    def collections(self, db: str) -> list[str]: ...
    def record(self, db: str, coll: str) -> dict | None: ...
    def records(self, db: str) -> dict[str, dict]: ...
    def put_record(self, db: str, coll: str, rec: dict) -> None: ...
    def count(self, db: str, coll: str) -> int: ...
    def read(self, db: str, coll: str, filter: dict, spec: dict[str, str], *, role: Role = None
             ) -> dict[str, np.ndarray]: ...
    def batches(self, db: str, coll: str, filter: dict, spec: dict[str, str], *, role: Role = None,
                batch_rows: int = 500_000) -> Iterator[dict[str, np.ndarray]]: ...
    def field_types(self, db: str, coll: str) -> dict[str, str]: ...
    def exists(self, db: str, coll: str, filter: dict) -> bool: ...
    def value_range(self, db: str, coll: str, field: str, *, role: Role = None) -> tuple[float, float] | None: ...
    def histogram(self, db: str, coll: str, field: str, bounds: Sequence[float], *, role: Role = None
                  ) -> list[int]: ...
    def count_where(self, db: str, coll: str, filter: dict, *, role: Role = None) -> int: ...
    def field_bounds(self, db: str, coll: str, fields: Sequence[str]) -> tuple[list[float], list[float]] | None: ...
    def explain_read(self, db: str, coll: str, filter: dict, *, role: Role = None) -> dict: ...
    def replace(self, db: str, coll: str, chunks: Iterable[dict[str, tuple[str, np.ndarray]]], index_kind: str
                ) -> int: ...
    def inventory(self, db: str) -> list[tuple[str, int, list[str]]]: ...
    def find_value(self, db: str, coll: str, filter: dict, field: str, *, role: Role = None): ...
    def drop_database(self, db: str) -> None: ...


def default_uri() -> str:
    return os.environ.get(ENV_URI) or DEFAULT_URI


def is_local(uri: str) -> bool:
    """``file:PATH`` or a path (``/``, ``./``, ``../``, ``~/``): the local store."""
    from lsdgraph._stores.local import is_local_uri

    return is_local_uri(uri)


def connect(uri: str | None = None, *, timeout_ms: int | None = None) -> Backend:
    """The store a ``--db`` value names: ``mongodb://…`` (a server), ``mongomock://`` (in-process),
    or ``file:PATH`` / a path (the local Parquet store, created on first write)."""
    uri = uri or default_uri()
    if is_local(uri):
        from lsdgraph._stores.local_db import LocalBackend

        return LocalBackend.open(uri)
    if "://" not in uri:
        raise LsdgraphError(f"db={redact_uri(uri)}: not a store; write mongodb://{redact_uri(uri)} for a MongoDB "
                            "server, or a path such as ./lsdgraph-data for the local store (no server)")
    from lsdgraph._stores.mongo import connect as connect_mongo

    return connect_mongo(uri, timeout_ms=timeout_ms)


_MONGO_BAD = set('/\\. "$\0')


def check_database_name(store: Backend, name: str, param: str = "name") -> str:
    """``name`` when the store can hold a database of that name, else one line saying why (MongoDB
    refuses ``/\\. "$``, NUL and names of 64 bytes or more; the local store a path)."""
    if store.local:
        from lsdgraph._stores.local import check_name

        return check_name(name, "database")
    bad = sorted(_MONGO_BAD & set(name or ""))
    if not name or bad or len(name.encode()) >= 64:
        why = ("is empty" if not name else f"holds {' '.join(repr(c) for c in bad)}" if bad
               else "is 64 bytes or longer")
        raise LsdgraphError(f"{param}={name!r}: a MongoDB database name that {why}; give a plain name such as "
                            "'hemi_roi1'")
    return name


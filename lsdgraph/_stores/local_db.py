"""The local store behind the store interface (:mod:`lsdgraph._stores.api`): MongoDB's filter
shapes become Arrow expressions for the dataset scanner (so predicates are pushed down and row-group
statistics skip what an ROI cannot hold), and results come back as typed numpy columns."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError, redact_record
from lsdgraph._stores.api import Role
from lsdgraph._stores.local import LocalStore

_RANGE = {"$gte": pc.greater_equal, "$gt": pc.greater, "$lte": pc.less_equal, "$lt": pc.less}
# column types by numpy dtype name and by BSON kind (bsonio.encode's names)
ARROW_TYPES = {"int64": pa.int64(), "uint64": pa.uint64(), "float64": pa.float64(), "double": pa.float64(),
               "bool": pa.bool_()}
BLOCK_KEY = schema.LOCAL["block_key"]


def arrow_filter(filter: dict, names: pa.Schema, what: str) -> pc.Expression | None:
    """``filter`` (lsdgraph's MongoDB shapes) as an Arrow expression over a dataset of ``names``;
    a condition on a column the dataset lacks matches nothing (``$exists: false`` everything), and a
    null cell counts as a missing field (``merge_score`` null included, which no range keeps)."""
    terms: list[pc.Expression] = []
    for name, cond in filter.items():
        if name.startswith("$"):
            raise LsdgraphError(f"{what}: the filter operator {name} is not one the local store reads")
        have = name in names.names
        f = pc.field(name)
        conds = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, arg in conds.items():
            if op == "$exists":  # a null cell is a field the document did not have
                if have:
                    terms.append(f.is_valid() if arg else f.is_null())
                elif arg:
                    terms.append(pc.scalar(False))
                continue
            if not have:
                terms.append(pc.scalar(False))
            elif op in _RANGE:
                terms.append(_RANGE[op](f, pc.scalar(float(arg))))
            elif op == "$eq":
                terms.append(f == _scalar(arg, names.field(name).type))
            elif op == "$in":
                terms.append(f.isin(pa.array([int(v) for v in arg], names.field(name).type)))
            else:
                raise LsdgraphError(f"{what}: the filter operator {op} is not one the local store reads")
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = out & t
    return out


def _scalar(value, kind: pa.DataType) -> pa.Scalar:
    if pa.types.is_integer(kind) and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return pa.scalar(int(value) % 2**64 if kind == pa.uint64() else int(value), kind)
    return pa.scalar(value)


def _cast(col: np.ndarray, dtype: str) -> np.ndarray:
    """A stored column as the dtype a read asks for (ids keep their 64 bits either way)."""
    if dtype == "float64":
        return col.astype(np.float64, copy=False)
    if dtype == "bool":
        return col.astype(bool, copy=False)
    want = np.dtype(dtype)
    if col.dtype.kind in "iu" and col.dtype.itemsize == 8 and want.itemsize == 8:
        return col.view(want)
    return col.astype(want)


def _missing(n: int, dtype: str) -> np.ndarray:
    """What MongoDB reads give for a field no document has: NaN for floats, 0 otherwise."""
    return np.full(n, np.nan) if dtype == "float64" else np.zeros(n, np.dtype(dtype))


@dataclass
class LocalBackend:
    """The store interface over a :class:`LocalStore` folder."""

    engine: LocalStore
    local = True

    @classmethod
    def open(cls, uri: str | os.PathLike) -> LocalBackend:
        return cls(LocalStore(uri))

    @property
    def uri(self) -> str:
        return self.engine.uri

    def _what(self, db: str, coll: str) -> str:
        return f"{db}.{coll} in {self.engine.root}"

    def databases(self) -> list[str] | None:
        return self.engine.databases()

    def collections(self, db: str) -> list[str]:
        return self.engine.collections(db)

    def record(self, db: str, coll: str) -> dict | None:
        return self.engine.record(db, coll)

    def records(self, db: str) -> dict[str, dict]:
        return self.engine.records(db)

    def put_record(self, db: str, coll: str, rec: dict) -> None:
        self.engine.write_record(db, coll, redact_record({**rec, "_id": coll}))  # records never hold a secret

    def count(self, db: str, coll: str) -> int:
        return self.engine.count(db, coll)

    def _plan(self, db: str, coll: str, filter: dict, spec: Iterable[str]):
        sch = self.engine.schema(db, coll)
        expr = arrow_filter(filter, sch, self._what(db, coll))
        return expr, [c for c in spec if c in sch.names]

    def _typed(self, cols: dict[str, np.ndarray], spec: dict[str, str]) -> dict[str, np.ndarray]:
        n = len(next(iter(cols.values()))) if cols else 0
        return {k: _cast(cols[k], d) if k in cols else _missing(n, d) for k, d in spec.items()}

    def read(self, db: str, coll: str, filter: dict, spec: dict[str, str], *, role: Role = None
             ) -> dict[str, np.ndarray]:
        expr, present = self._plan(db, coll, filter, spec)
        if not present:  # no stored column asked for: only the row count matters
            n = self.engine.count(db, coll, expr)
            return {k: _missing(n, d) for k, d in spec.items()}
        return self._typed(self.engine.read(db, coll, present, expr), spec)

    def batches(self, db: str, coll: str, filter: dict, spec: dict[str, str], *, role: Role = None,
                batch_rows: int = 500_000) -> Iterator[dict[str, np.ndarray]]:
        expr, present = self._plan(db, coll, filter, spec)
        for cols in self.engine.scan(db, coll, present, expr, batch_rows=batch_rows):
            yield self._typed(cols, spec)

    def field_types(self, db: str, coll: str) -> dict[str, str]:
        out = {}
        for f in self.engine.schema(db, coll):
            if f.name in ("_id", BLOCK_KEY):
                continue
            if pa.types.is_boolean(f.type):
                out[f.name] = "bool"
            elif pa.types.is_integer(f.type):
                out[f.name] = "int64"
            elif pa.types.is_floating(f.type):
                out[f.name] = "float64"
        return out

    def exists(self, db: str, coll: str, filter: dict) -> bool:
        return self.count_where(db, coll, filter) > 0

    def value_range(self, db: str, coll: str, field: str, *, role: Role = None) -> tuple[float, float] | None:
        if field not in self.engine.schema(db, coll).names:
            return None
        got = self.engine.column_range(db, coll, field)
        return None if got is None else (float(got[0]), float(got[1]))

    def histogram(self, db: str, coll: str, field: str, bounds: Sequence[float], *, role: Role = None
                  ) -> list[int]:
        """Rows per bin ``[bounds[i], bounds[i+1])``, as MongoDB's ``$bucket`` counts them."""
        edges = np.asarray(bounds, float)
        x = self.read(db, coll, {field: {"$gte": float(edges[0]), "$lt": float(edges[-1])}}, {field: "float64"})[field]
        bins = np.searchsorted(edges, x, side="right") - 1
        return np.bincount(bins, minlength=len(edges) - 1)[: len(edges) - 1].astype(int).tolist()

    def count_where(self, db: str, coll: str, filter: dict, *, role: Role = None) -> int:
        expr, _ = self._plan(db, coll, filter, ())
        return self.engine.count(db, coll, expr)

    def field_bounds(self, db: str, coll: str, fields: Sequence[str]) -> tuple[list[float], list[float]] | None:
        found = [self.value_range(db, coll, f) for f in fields]
        if any(r is None for r in found):
            return None
        return [r[0] for r in found if r], [r[1] for r in found if r]

    def explain_read(self, db: str, coll: str, filter: dict, *, role: Role = None) -> dict:
        """The row groups a read opens (those whose statistics the filter cannot rule out)."""
        expr, _ = self._plan(db, coll, filter, ())
        return {"collection": coll, "filter": filter, **self.engine.explain(db, coll, expr)}

    def replace(self, db: str, coll: str, chunks: Iterable[dict[str, tuple[str, np.ndarray]]], index_kind: str
                ) -> int:
        """Replace ``coll`` with the rows of each chunk of columns (``{name: (bson kind, array)}``),
        published at once when the last chunk is written; rows with a block key are sorted by it
        (``index_kind`` needs no index here: row-group statistics serve the reads)."""
        writer = None
        try:
            for columns in chunks:
                if writer is None:
                    sch = pa.schema([(k, ARROW_TYPES[kind]) for k, (kind, _) in columns.items()])
                    writer = self.engine.writer(db, coll, sch, cluster_by=BLOCK_KEY if BLOCK_KEY in columns else None,
                                                row_group_rows=schema.LOCAL["row_group_rows"])
                writer.append({k: a for k, (_, a) in columns.items()})
            if writer is None:
                self.engine.drop(db, coll)
                return 0
            return writer.commit()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    def inventory(self, db: str) -> list[tuple[str, int, list[str]]]:
        """(name, rows, how reads select) of every published collection."""
        out = []
        for n in self.engine.collections(db):
            meta = self.engine.schema(db, n).metadata or {}
            order = json.loads(meta.get(b"lsdgraph", b"{}")).get("cluster_by")
            out.append((n, self.engine.count(db, n), [f"sorted by {order}"] if order else []))
        return out

    def find_value(self, db: str, coll: str, filter: dict, field: str, *, role: Role = None):
        sch = self.engine.schema(db, coll)
        if field not in sch.names:
            return None
        col = self.engine.read(db, coll, [field], arrow_filter(filter, sch, self._what(db, coll)))[field]
        return col[0].item() if len(col) else None

    def drop(self, db: str, coll: str) -> None:
        self.engine.drop(db, coll)

    def drop_database(self, db: str) -> None:
        self.engine.drop_database(db)

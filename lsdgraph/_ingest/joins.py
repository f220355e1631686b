"""What edges carry from their endpoint nodes: positions (and ``neuron_id`` for skeleton edges),
appended byte-level at ingest, or set afterwards on edges loaded before their nodes; and the
block keys of the sharded layout (:mod:`lsdgraph._core.blocks`) on MongoDB: ``blk`` on nodes (from
their own centre), ``blk_u``/``blk_v`` on RAG edges (from the joined endpoint positions). The
local store's clustering key is its own (:mod:`lsdgraph._stores.local_keys`): :func:`joined`, which
the local ingest uses, carries no block keys."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lsdgraph._core import blocks, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex
from lsdgraph._io import bsonio
from lsdgraph._stores.api import Backend
from lsdgraph._stores.mongo import Store

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Db


@dataclass
class NodeTable:
    """Endpoint lookup for edges: node ids (int64), their positions (n, 3), the extra
    integer fields copied from ``u`` (``neuron_id`` for skeletons), and the checksum of the nodes
    load it was read from (so edges can tell when their nodes were replaced)."""

    ids: np.ndarray
    positions: np.ndarray
    extra: dict[str, np.ndarray]
    checksum: str | None = None
    edges_kind: str = "rag_edges"        # the kind of edges that join with these nodes
    _index: IdIndex | None = field(default=None, repr=False, compare=False)
    _blocks: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def blocks(self) -> np.ndarray | None:
        """Block key per node row (RAG nodes only: skeleton edges carry none)."""
        if self.edges_kind != "rag_edges":
            return None
        if self._blocks is None:
            self._blocks = blocks.encode(self.positions) if len(self.ids) else np.empty(0, np.int64)
        return self._blocks

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index, found) per key; a missing key gets row 0, masked by ``found``."""
        if self._index is None:
            self._index = IdIndex(self.ids, "node ids", sort=False)
        i = self._index.lookup(keys)
        found = i >= 0
        return np.maximum(i, 0), found


def nodes_checksum(store: Backend, db: str, nodes: str) -> str | None:
    """The checksum of the complete lsdgraph load of ``nodes`` (None when lsdgraph did not load it)."""
    rec = store.record(db, nodes)
    return None if not rec or rec.get("status") != "complete" else f"{rec.get('checksum')}/{rec.get('loaded')}"


def default_nodes(edges: str, kind: schema.Kind) -> str:
    """The nodes collection an edges collection joins with when no record says otherwise."""
    return "nodes" if kind.name == "rag_edges" else edges[:-len("edges")] + "nodes"


def node_table(store: Backend, db: str, nodes: str = "nodes", edges_kind: str = "rag_edges") -> NodeTable | None:
    """What edges of ``edges_kind`` copy from ``nodes`` (schema ``edge_joins``), from either store,
    or None when that collection is not there."""
    if nodes not in store.collections(db):
        return None
    join = schema.EDGE_JOINS[edges_kind]
    position = schema.kind(join["nodes_kind"]).position
    extra = tuple(join["copy_from_u"])
    cols = store.read(db, nodes, {}, {"id": "int64", **{f: "float64" for f in position}, **{f: "int64" for f in extra}})
    pos = np.stack([cols.pop(f) for f in position], axis=1)
    return NodeTable(cols.pop("id"), pos, cols, nodes_checksum(store, db, nodes), edges_kind)


def joined(table: NodeTable, u: np.ndarray, v: np.ndarray, with_blocks: bool = False) -> tuple[dict, np.ndarray]:
    """The columns an edge batch gets from its endpoints, and which cells are present; with
    ``with_blocks`` (MongoDB) also ``blk_u``/``blk_v`` for RAG edges."""
    iu, uok = table.lookup(u)
    iv, vok = table.lookup(v)
    cols, present = {}, []
    for end, i, ok in (("u", iu, uok), ("v", iv, vok)):
        for j, f in enumerate(schema.EDGE_POSITIONS[end]):
            cols[f] = ("double", table.positions[i, j])
            present.append(ok)
    for f, values in table.extra.items():
        cols[f] = ("int64", values[iu])
        present.append(uok)
    codes = table.blocks if with_blocks else None
    if codes is not None:
        for end, i, ok in (("u", iu, uok), ("v", iv, vok)):
            cols[blocks.EDGE_FIELDS[end]] = ("int64", codes[i] if len(codes) else np.zeros(len(i), np.int64))
            present.append(ok)
    return cols, np.stack(present, axis=1)


def joined_fields(kind: schema.Kind) -> tuple[str, ...]:
    """The field names ingest adds to documents of ``kind`` on MongoDB (nodes: their block key)."""
    if kind.name == "rag_nodes":
        return (blocks.NODE_FIELD,)
    if kind.name not in schema.EDGE_JOINS:
        return ()
    out = schema.EDGE_POSITIONS["u"] + schema.EDGE_POSITIONS["v"] + tuple(schema.EDGE_JOINS[kind.name]["copy_from_u"])
    return out + ((blocks.EDGE_FIELDS["u"], blocks.EDGE_FIELDS["v"]) if kind.name == "rag_edges" else ())


def with_joins(docs: bsonio.Docs, table: NodeTable, endpoints: tuple[str, ...]) -> bsonio.Docs:
    cols, present = joined(table, docs.ints(endpoints[0]), docs.ints(endpoints[1]), with_blocks=True)
    return bsonio.append_fields(docs, cols, present)


def with_node_blocks(docs: bsonio.Docs, kind: schema.Kind) -> bsonio.Docs:
    """RAG node documents with their block key ``blk`` appended (byte-level, as positions are
    appended to edges); documents of other kinds as they are."""
    if kind.name != "rag_nodes" or not len(docs):
        return docs
    codes = blocks.encode(np.stack([docs.floats(f) for f in kind.position], axis=1))
    return bsonio.append_fields(docs, {blocks.NODE_FIELD: ("int64", codes)}, np.ones((len(docs), 1), bool))


def add_node_blocks(store: Store, db: Db, nodes: str = "nodes", batch: int = 10_000) -> int:
    """Set ``blk`` on every node of a collection loaded without it (an older lsdgraph, mongorestore,
    daisy) and build its indexes, so ROI reads and a sharded layout can use it. Idempotent (a key
    is a function of the node's centre). Returns the number of nodes updated."""
    from lsdgraph._ingest.keys import create_indexes

    kind = schema.kind("rag_nodes")
    coll = db[nodes]
    n = 0
    parts = store.retry(lambda: list(store.find_raw(coll, {}, ("_id",) + kind.position)),
                        f"{db.name}.{nodes}: reading nodes")
    for docs in parts:
        codes = blocks.encode(np.stack([docs.floats(f) for f in kind.position], axis=1)).tolist()
        ops = [({"_id": oid}, {"$set": {blocks.NODE_FIELD: c}}) for oid, c in zip(_object_ids(docs), codes,
                                                                                   strict=True)]
        for i in range(0, len(ops), batch):
            n += _update(store, coll, ops[i:i + batch], f"{db.name}.{nodes}: adding block keys")
    create_indexes(store, coll, kind, kind.integers)
    return n


def needs_node_blocks(coll) -> bool:
    """Whether some node of ``coll`` lacks its block key."""
    return coll.find_one({blocks.NODE_FIELD: {"$exists": False}}, {"_id": 1}) is not None


def needs_joins(coll, kind: schema.Kind, rec: dict) -> bool:
    """Whether ``lsdgraph index`` should copy endpoint fields onto the edges of ``coll``: none
    there yet (RAG edges: no block key, so also edges an older lsdgraph gave positions only)."""
    if kind.name == "rag_edges":
        return coll.find_one({blocks.EDGE_FIELDS["u"]: {"$exists": True}}, {"_id": 1}) is None
    has = coll.find_one({schema.EDGE_POSITIONS["u"][0]: {"$exists": True}}, {"_id": 1})
    return not (rec.get("positions") or has)


def _update(store: Store, coll, ops: list[tuple], what: str) -> int:
    from pymongo import UpdateOne

    if store.mock:  # mongomock's bulk_write does not take current pymongo operations
        for flt, upd in ops:
            coll.update_one(flt, upd)
    elif ops:
        models = [UpdateOne(flt, upd) for flt, upd in ops]
        store.retry(lambda: coll.bulk_write(models, ordered=False), what)
    return len(ops)


def add_edge_positions(store: Store, db: Db, edges: str, table: NodeTable | None = None, batch: int = 10_000,
                       nodes: str | None = None) -> int:
    """Copy what edges take from their endpoint nodes (positions and block keys; ``neuron_id`` for
    skeletons) onto every edge of a collection loaded before its nodes, or written by daisy, so ROI
    reads are one indexed query. Idempotent. Returns the number of edges updated."""
    from lsdgraph._ingest.keys import create_indexes

    kind = schema.kind_of(edges) if schema.kind_of(edges).name in schema.EDGE_JOINS else schema.kind("rag_edges")
    rec = db[schema.META].find_one({"_id": edges}) or {}
    nodes = nodes or rec.get("nodes") or default_nodes(edges, kind)
    endpoints = tuple(rec.get("endpoints") or kind.integers)
    table = table if table is not None else node_table(store, db.name, nodes, kind.name)
    if table is None:
        raise LsdgraphError(f"{db.name}: no {nodes!r} collection, so positions cannot be added to {edges}")
    coll = db[edges]
    n = 0

    def flush(ops: list[tuple]) -> int:
        return _update(store, coll, ops, f"{db.name}.{edges}: adding positions")

    parts = store.retry(
        lambda: list(store.find_raw(coll, {}, ("_id",) + endpoints)), f"{db.name}.{edges}: reading edges"
    )
    for docs in parts:
        cols, present = joined(table, docs.ints(endpoints[0]), docs.ints(endpoints[1]), with_blocks=True)
        names = list(cols)
        values = [c.tolist() for _, c in cols.values()]
        ops = []
        for i, oid in enumerate(_object_ids(docs)):
            s = {k: values[j][i] for j, k in enumerate(names) if present[i, j]}
            if s:
                ops.append(({"_id": oid}, {"$set": s}))
            if len(ops) >= batch:
                n += flush(ops)
                ops = []
        if ops:
            n += flush(ops)
    create_indexes(store, coll, kind, endpoints)
    store.retry(
        lambda: db[schema.META].update_one(
            {"_id": edges}, {"$set": {"positions": True, "nodes": nodes, "nodes_checksum": table.checksum}}
        ),
        f"{db.name}.{edges}: recording positions",
    )
    return n


def _object_ids(docs: bsonio.Docs) -> list:
    import bson

    return [bson.decode(docs.raw(i))["_id"] for i in range(len(docs))]

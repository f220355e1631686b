"""``lsdgraph shard-plan``: the mongosh commands that shard a database lsdgraph loaded, on its
spatial block key (:mod:`lsdgraph._core.blocks`), split so each range holds as many documents.

Shard keys: ``{blk: 1, id: 1}`` on ``nodes``, ``{blk_u: 1, u: 1, v: 1}`` on each ``edges_*``
collection. Their indexes (``schema.json`` ``block`` / ``block_u``) are built at ingest and are
unique, because ROI reads on one server use them too and because MongoDB requires every unique
index of a sharded collection to start with the shard key: they are the unique keys "prefixed by
the shard key", and they are as strict as ``id`` / ``(u, v)`` (ingest checked those). What the plan
changes is only what MongoDB refuses: the unprefixed unique indexes (``id``, ``incident``) are
dropped and built again without ``unique`` under the same names, so lookups by id keep an index.
These commands are printed, never run: sharding is the cluster operator's step, and doing it at
ingest would cost every single-server user an index rebuild for nothing.

Split points come from a ``$sample`` of the shard key (the whole collection when the sample is
at least its size): the sampled keys in shard-key order, cut at every ``n / K`` th, so each of the K
ranges ``sh.splitAt`` makes holds the same number of sampled documents (±1); the balancer then
spreads the chunks over the shards. Because the key has ``id`` (or ``u, v``) after ``blk``, a block
heavier than 1/K of the data is split inside the block too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from lsdgraph._core import blocks, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.version import VERSION
from lsdgraph._query.rag import Rag, database
from lsdgraph._stores.api import Backend, connect

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Store

DEFAULT_SAMPLE = 100_000


@dataclass
class CollectionPlan:
    """How one collection is sharded."""

    collection: str
    kind: str
    key: tuple[str, ...]                           # the shard key's fields, in order
    documents: int
    sampled: int
    splits: list[tuple[int, ...]] = field(default_factory=list)  # K-1 split points (shard-key values)
    demote: list[dict] = field(default_factory=list)              # unique index specs made non-unique


@dataclass
class ShardPlan:
    """The plan for a database: :meth:`script` is what ``lsdgraph shard-plan`` prints."""

    database: str
    shards: int
    collections: list[CollectionPlan]

    def script(self) -> str:
        """mongosh commands, to run against the cluster's ``mongos``."""
        name = self.database
        lines = [
            f"// lsdgraph {VERSION} shard-plan: database {name} on {self.shards} shard(s), by the spatial block key",
            f"// (Morton code of {blocks.BLOCK_NM:g} nm blocks; docs/scale.md). Run it against the cluster's mongos:",
            "//   mongosh \"mongodb://MONGOS:27017\" --file plan.js",
            "// Unique indexes that do not start with the shard key are built again without `unique` (MongoDB",
            "// refuses to shard a collection with one); the shard key indexes are unique, built at ingest.",
            f"sh.enableSharding({_js(name)});",
        ]
        for c in self.collections:
            ns = f"{name}.{c.collection}"
            coll = f"db.getSiblingDB({_js(name)}).getCollection({_js(c.collection)})"
            lines.append(f"// {c.collection}: {c.documents:,} documents, {c.sampled:,} sampled; "
                         f"{len(c.splits) + 1} range(s) of equal counts")
            for spec in c.demote:
                lines.append(f"{coll}.dropIndex({_js(spec['name'])});")
                lines.append(f"{coll}.createIndex({_key(spec['key'])}, {{\"name\": {_js(spec['name'])}}});")
            lines.append(f"sh.shardCollection({_js(ns)}, {_key([[f, 1] for f in c.key])}, true);")
            for point in c.splits:
                value = ", ".join(f"{_js(f)}: NumberLong({_js(str(v))})" for f, v in zip(c.key, point, strict=True))
                lines.append(f"sh.splitAt({_js(ns)}, {{{value}}});")
        return "\n".join(lines) + "\n"


def _js(text: str) -> str:
    """A JavaScript string literal (JSON's is one)."""
    return json.dumps(text)


def _key(spec) -> str:
    return "{" + ", ".join(f"{_js(f)}: {int(d)}" for f, d in spec) + "}"


def shard_key(kind: str) -> tuple[str, ...]:
    """The shard key's fields of a kind (the key of its block index)."""
    spec = next(s for s in schema.indexes(kind) if s.get("use") == blocks.SHARD_KEYS[kind])
    return tuple(f for f, _ in spec["key"])


def demoted(kind: str) -> list[dict]:
    """The kind's unique indexes whose key does not start with the shard key."""
    key = shard_key(kind)
    return [s for s in schema.indexes(kind) if s.get("unique")
            and tuple(f for f, _ in s["key"])[:len(key)] != key]


def split_points(keys: np.ndarray, shards: int) -> list[tuple[int, ...]]:
    """``shards - 1`` split points of (n, k) int64 shard-key rows: the rows at every ``n / shards``
    th place in key order, so the ranges between them hold equal counts (duplicates and a point at
    the lowest key, which would make an empty range, left out)."""
    n = len(keys)
    if n == 0 or shards <= 1:
        return []
    order = np.lexsort(keys.T[::-1])
    rows = keys[order]
    out: list[tuple[int, ...]] = []
    for i in range(1, shards):
        point = tuple(int(x) for x in rows[(i * n) // shards])
        if point != tuple(int(x) for x in rows[0]) and (not out or point != out[-1]):
            out.append(point)
    return out


def _sample(store: Store, db: str, coll: str, key: tuple[str, ...], size: int) -> np.ndarray:
    """(n, k) int64 shard-key values of a ``$sample`` of ``coll`` (documents missing a key field,
    edges whose u is not a node, are left out: they sort first, in the lowest range)."""
    pipeline = [{"$sample": {"size": int(size)}}, {"$project": {"_id": 0, **{f: 1 for f in key}}}]
    docs = store.retry(lambda: list(store.db(db)[coll].aggregate(pipeline, allowDiskUse=True)),
                       f"{db}.{coll}: sampling the shard key")
    rows = [[int(d[f]) for f in key] for d in docs if all(isinstance(d.get(f), int) for f in key)]
    return np.array(rows, np.int64).reshape(-1, len(key))


def shard_plan(db: str | None = None, name: str | None = None, shards: int = 2, sample: int = DEFAULT_SAMPLE, *,
               store: Backend | None = None) -> ShardPlan:
    """The plan that shards database ``name`` over ``shards`` shards, split points from a sample of
    ``sample`` documents per collection (see the module's docstring)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise LsdgraphError(f"shards={shards!r}: give the number of shards, 1 or more")
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise LsdgraphError(f"sample={sample!r}: give how many documents to sample, 1 or more")
    store = store or connect(db)
    if store.local:
        raise LsdgraphError(f"db={store.uri} is a local store: sharding is for a MongoDB cluster; "
                            "give db=mongodb://HOST:PORT")
    name = database(store, name)
    names = store.collections(name)
    if "nodes" not in names:
        raise LsdgraphError(f"database {name!r} has no RAG (no 'nodes' collection); ingest one first, or check name=")
    mongo = cast("Store", store)
    plans = []
    edges = sorted(n for n in names if schema.kind_of(n).name == "rag_edges")
    for coll, kind in [("nodes", "rag_nodes")] + [(e, "rag_edges") for e in edges]:
        rag = Rag(store, name, "nodes", coll if kind == "rag_edges" else "")
        if not rag.has_blocks("nodes" if kind == "rag_nodes" else "edges"):
            raise LsdgraphError(f"{name}.{coll} has no block keys (loaded by an older lsdgraph, or not by "
                                f"lsdgraph); add them with `lsdgraph index --name {name}`, then plan again")
        key = shard_key(kind)
        keys = _sample(mongo, name, coll, key, sample)
        plans.append(CollectionPlan(coll, kind, key, store.count(name, coll), len(keys),
                                    split_points(keys, shards), demoted(kind)))
    return ShardPlan(name, shards, plans)

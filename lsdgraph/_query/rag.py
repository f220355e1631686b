"""Read a RAG (and skeletons) from a store by 3-D ROI and merge threshold: as numpy/pandas arrays
(vectorized: raw BSON batches, or Arrow batches, straight into columns) or as networkx graphs on
demand. Reads go through the store interface (:mod:`lsdgraph._stores.api`) with MongoDB's filter
shapes, which the local store translates for Arrow's scanner.

Query shapes (the same in ``queries/*.js``): nodes by a per-axis ``$gte``/``$lt`` box on the
``position`` index; edges by the same box on the endpoint positions copied onto every edge at ingest
(``u_position``/``v_position`` indexes, ``merge_score`` last so a threshold is an index bound too).
One find per ROI for nodes and one (two for ``either``) for edges, whatever the ROI holds: no ``$in``
of ids. On MongoDB, when the collection carries block keys (:mod:`lsdgraph._core.blocks`, stored
by ingest or ``lsdgraph index``), each ROI find also says ``blk`` / ``blk_u`` / ``blk_v`` ``$in``
the blocks the ROI touches, so a sharded cluster's ``mongos`` sends it only to the shards owning
those blocks (``blk_u`` is the edges' shard key; ``blk_v`` only narrows the v side's scan on each
shard). The box predicate stays: the blocks are a coarse superset of it.
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from lsdgraph._core import blocks, schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex
from lsdgraph._core.roi import Roi, as_roi, mongo_filter
from lsdgraph._stores.api import Backend, connect

if TYPE_CHECKING:
    import networkx as nx

    from lsdgraph._stores.mongo import Coll, Db, Store

__all__ = ["Rag", "SkeletonSet", "database", "open_rag", "open_skeletons", "to_networkx"]

_IN_CHUNK = 1000  # fallback for edges without positions: $in lists stay small
_SKEL_EDGES = schema.kind("skeleton_edges")


def database(store: Backend, name: str | None) -> str:
    """``name`` when the store holds that database, or a one-line error listing the ones it holds."""
    if not name:
        raise LsdgraphError("no database name: pass name= (the name the data was ingested under)")
    names = store.databases()
    if names is not None and name not in names:
        raise LsdgraphError(f"no database {name!r} at {store.uri} (databases: {', '.join(names) or 'none'}); "
                            "ingest it first, or check name=")
    return name


def _check_policy(policy: str) -> None:
    if policy not in schema.EDGE_POLICIES:
        raise LsdgraphError(f"edge policy {policy!r}: use one of {', '.join(schema.EDGE_POLICIES)}")


def _records(cols: dict[str, np.ndarray], keys: Sequence[str]) -> list[dict]:
    """Per-row attribute dicts for networkx (Python scalars; NaN scores become None as stored)."""
    lists = []
    for k in keys:
        c = cols[k]
        vals = c.tolist()
        if c.dtype.kind == "f" and np.isnan(c).any():
            vals = [None if x != x else x for x in vals]
        lists.append(vals)
    if not keys:
        return [{} for _ in range(len(next(iter(cols.values()))))]
    return [dict(zip(keys, row, strict=True)) for row in zip(*lists, strict=True)]


def _score_filter(t: float | None) -> dict:
    return {schema.SCORE: {"$lte": t}} if t is not None else {}


_NODE_ROI = ("rag_nodes", "roi")
_THRESHOLD = ("rag_edges", "threshold")
_NODE_BLOCK = ("rag_nodes", blocks.SHARD_KEYS["rag_nodes"])
_EDGE_BLOCK = ("rag_edges", blocks.SHARD_KEYS["rag_edges"])
_BLOCK_FIELDS = (blocks.NODE_FIELD, *blocks.EDGE_FIELDS.values())


@dataclass
class Rag:
    """A region adjacency graph in a store: one nodes collection and one edges collection of the
    database ``db`` (reads go through the store interface, so MongoDB and the local store agree)."""

    store: Backend
    db: str
    nodes_name: str = "nodes"
    edges_name: str = "edges_hist_quant_75"
    _node_attrs: dict | None = field(default=None, repr=False)
    _edge_attrs: dict | None = field(default=None, repr=False)
    _positions: bool | None = field(default=None, repr=False)
    _range: tuple | None = field(default=None, repr=False)
    _blocks: dict[str, bool] = field(default_factory=dict, repr=False)

    # -- what is stored ------------------------------------------------------------------------
    @property
    def nodes(self) -> Coll:
        """The nodes collection (MongoDB stores only)."""
        return self._mongo()[self.nodes_name]

    @property
    def edges(self) -> Coll:
        """The edges collection (MongoDB stores only)."""
        return self._mongo()[self.edges_name]

    def _mongo(self) -> Db:
        if self.store.local:
            raise LsdgraphError(f"{self.db} is in the local store {self.store.uri}: it has no MongoDB collections")
        return cast("Store", self.store).db(self.db)

    def node_spec(self) -> dict[str, str]:
        if self._node_attrs is None:
            hidden = ("id", *schema.NODE_POSITION, *_BLOCK_FIELDS)
            self._node_attrs = {k: t for k, t in self.store.field_types(self.db, self.nodes_name).items()
                                if k not in hidden}
        return {"id": "uint64", **{f: "float64" for f in schema.NODE_POSITION}, **self._node_attrs}

    def edge_spec(self) -> dict[str, str]:
        if self._edge_attrs is None:
            hidden = ("u", "v", schema.SCORE, *schema.EDGE_POSITIONS["u"], *schema.EDGE_POSITIONS["v"], *_BLOCK_FIELDS)
            self._edge_attrs = {k: t for k, t in self.store.field_types(self.db, self.edges_name).items()
                                if k not in hidden}
        return {"u": "uint64", "v": "uint64", schema.SCORE: "float64", **self._edge_attrs}

    def has_positions(self) -> bool:
        """Whether edges carry their endpoints' positions (added by ``lsdgraph ingest``/``index``)."""
        if self._positions is None:
            rec = self.store.record(self.db, self.edges_name) or {}
            if rec.get("positions") is not None:
                self._positions = bool(rec["positions"])
            else:
                first = schema.EDGE_POSITIONS["u"][0]
                self._positions = self.store.exists(self.db, self.edges_name, {first: {"$exists": True}})
        return self._positions

    def has_blocks(self, which: str = "nodes") -> bool:
        """Whether the ``nodes`` (or ``edges``) carry block keys at this version's block size, so ROI
        reads add the block predicate. MongoDB only (the local store clusters by its own key): the
        collection has the block index and its first keyed document (one index probe) has the key
        :func:`blocks.encode` gives its position; cached, like :meth:`has_positions`."""
        if which not in self._blocks:
            self._blocks[which] = self._probe_blocks(which)
        return self._blocks[which]

    def _probe_blocks(self, which: str) -> bool:
        if self.store.local:
            return False
        if which == "nodes":
            coll, role, key, pos = self.nodes_name, _NODE_BLOCK, blocks.NODE_FIELD, schema.NODE_POSITION
        else:
            coll, role, key, pos = self.edges_name, _EDGE_BLOCK, blocks.EDGE_FIELDS["u"], schema.EDGE_POSITIONS["u"]
        mongo = cast("Store", self.store)
        hint = mongo.hint(self.db, coll, role)
        if hint is None:
            return False
        def probe() -> dict | None:  # one document under limit 1: no cursor is left open
            cur = mongo.db(self.db)[coll].find({key: {"$gte": 0}}, {key: 1, **{f: 1 for f in pos}, "_id": 0})
            return next(iter((cur if mongo.mock else cur.hint(hint)).limit(1)), None)

        first = mongo.retry(probe, f"probing {coll}'s block keys")
        if not first or not all(isinstance(first.get(f), (int, float)) for f in pos):
            return False  # the index is there (a copy, `create_indexes.js`) but no document has the key
        at = np.array([[float(first[f]) for f in pos]])
        return not np.isnan(at).any() and int(blocks.encode(at)[0]) == int(first[key])

    def _block_filter(self, roi: Roi | None, which: str, end: str = "u") -> dict:
        if roi is None or not self.has_blocks(which):
            return {}
        return blocks.in_filter(roi, blocks.NODE_FIELD if which == "nodes" else blocks.EDGE_FIELDS[end])

    def score_range(self) -> tuple[float, float] | None:
        """(min, max) stored merge score, from the ingest record or the store (None: no scores)."""
        if self._range is None:
            rec = self.store.record(self.db, self.edges_name) or {}
            known = (rec.get("stats") or {}).get("scores") if rec.get("status") == "complete" else None
            if known:  # kept by ingest: no query
                self._range = (known["min"], known["max"]) if known["min"] is not None else ()
                return self._range or None
            self._range = self.store.value_range(self.db, self.edges_name, schema.SCORE, role=_THRESHOLD) or ()
        return self._range or None

    def check_threshold(self, t: float | None) -> float | None:
        """A clear error for a threshold that is not a number or lies outside the stored range
        (scores within [0, 1] admit any t in [0, 1])."""
        if t is None:
            return None
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise LsdgraphError(f"max score {t!r} is not a number") from None
        if math.isnan(t):
            raise LsdgraphError("max score is NaN; give a number")
        rng = self.score_range()
        if rng is None:
            raise LsdgraphError(f"{self.edges_name} has no merge scores at all (every score is null), "
                                "so no edge passes a threshold; read without max_score=")
        lo = 0.0 if rng[0] >= 0 else rng[0]
        hi = 1.0 if rng[1] <= 1 else rng[1]
        if not lo <= t <= hi:
            raise LsdgraphError(f"max score {t:g} is outside the stored range of {self.edges_name} "
                                f"(scores {rng[0]:g} .. {rng[1]:g}); pick a threshold in [{lo:g}, {hi:g}]")
        return t

    # -- reads ---------------------------------------------------------------------------------
    def _node_query(self, roi: Roi | None) -> tuple[dict, tuple[str, str] | None]:
        return ({**mongo_filter(roi, schema.NODE_POSITION), **self._block_filter(roi, "nodes")},
                _NODE_ROI if roi is not None else None)

    def _edge_queries(self, roi: Roi | None, t: float | None, policy: str
                      ) -> list[tuple[dict, tuple[str, str] | None, str]]:
        """(filter, index role, which end) for each find an edge read needs."""
        score = _score_filter(t)
        if roi is None:
            return [(score, _THRESHOLD if t is not None else None, "all")]
        ends = ["u"] if policy in ("u", "both") else ["u", "v"]
        return [({**mongo_filter(roi, schema.EDGE_POSITIONS[e]), **self._block_filter(roi, "edges", e), **score},
                 ("rag_edges", f"roi_{e}"), e) for e in ends]

    def read_arrays(
        self, roi=None, max_score: float | None = None, edges: str = schema.DEFAULT_EDGE_POLICY
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Nodes in ``roi`` and edges by ``edges`` policy with ``merge_score <= max_score``, as
        DataFrames (ids uint64, positions float64 nm, null scores NaN)."""
        roi = as_roi(roi)
        t = self.check_threshold(max_score)
        _check_policy(edges)
        nf, role = self._node_query(roi)
        ncols = self.store.read(self.db, self.nodes_name, nf, self.node_spec(), role=role)
        ecols = self._read_edges(roi, t, edges, ncols["id"])
        return pd.DataFrame(ncols), pd.DataFrame(ecols)

    def _read_edges(self, roi, t, policy, node_ids) -> dict[str, np.ndarray]:
        spec = self.edge_spec()
        if roi is not None and not self.has_positions():
            return self._read_edges_by_ids(t, policy, node_ids)
        pu, pv = schema.EDGE_POSITIONS["u"], schema.EDGE_POSITIONS["v"]
        parts = []
        for filt, role, end in self._edge_queries(roi, t, policy):
            fields = list(spec) + (list(pu) if end == "v" else []) + (list(pv) if policy == "both" else [])
            cols = self.store.read(self.db, self.edges_name, filt,
                                   {**spec, **{f: "float64" for f in fields if f not in spec}}, role=role)
            keep = None
            if end == "v":  # edges with u inside came with the first query
                keep = ~roi.contains(np.stack([cols[f] for f in pu], 1))
            if policy == "both":
                inside = roi.contains(np.stack([cols[f] for f in pv], 1))
                keep = inside if keep is None else keep & inside
            parts.append({k: (c if keep is None else c[keep]) for k, c in cols.items() if k in spec})
        return {k: np.concatenate([p[k] for p in parts]) for k in spec}

    def _read_edges_by_ids(self, t, policy, node_ids) -> dict[str, np.ndarray]:
        warnings.warn(
            f"{self.edges_name} has no endpoint positions, so ROI edge reads fall back to "
            "chunked $in queries; run `lsdgraph index --name DB` once to make them one indexed "
            "query",
            stacklevel=3,
        )
        spec = self.edge_spec()
        ids = np.sort(np.asarray(node_ids, np.uint64))
        known = IdIndex(ids, sort=False)
        parts = []
        for end in ["u"] if policy in ("u", "both") else ["u", "v"]:
            chunks = [self.store.read(self.db, self.edges_name,
                                      {end: {"$in": ids[i : i + _IN_CHUNK].tolist()}, **_score_filter(t)}, spec)
                      for i in range(0, len(ids), _IN_CHUNK)]
            cols = {k: np.concatenate([c[k] for c in chunks]) if chunks else np.empty(0, d) for k, d in spec.items()}
            keep = np.ones(len(cols["u"]), bool)
            if end == "v":  # edges with u among the nodes came with the first query
                keep = ~known.contains(cols["u"])
            elif policy == "both":
                keep = known.contains(cols["v"])
            parts.append({k: c[keep] for k, c in cols.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in spec}

    def read_graph(
        self, roi=None, max_score: float | None = None, edges: str = schema.DEFAULT_EDGE_POLICY, directed: bool = False
    ) -> nx.Graph:
        """A networkx graph: node keys Python ints with ``center_z/y/x`` (+ stored numeric attributes),
        edges with ``merge_score`` (None where null). Endpoints outside the ROI (policy ``u``/``either``)
        appear as nodes without attributes, as in daisy."""
        nodes, edges_df = self.read_arrays(roi, max_score, edges)
        return to_networkx(nodes, edges_df, directed=directed)

    def iter_blocks(
        self,
        roi,
        block_shape: Sequence[float],
        max_score: float | None = None,
        edges: str = schema.DEFAULT_EDGE_POLICY,
        as_graph: bool = True,
    ) -> Iterator[tuple[Roi, object]]:
        """Yield (block ROI, graph or (nodes, edges) DataFrames) block by block: memory bounded by a
        block. With the default policy every edge comes exactly once (with the block holding u)."""
        roi = as_roi(roi)
        if roi is None:
            raise LsdgraphError("iter_blocks needs an ROI; for the whole RAG use edge_arrays()")
        for block in roi.blocks(block_shape):
            if as_graph:
                yield block, self.read_graph(block, max_score, edges)
            else:
                yield block, self.read_arrays(block, max_score, edges)

    def iter_edge_batches(
        self, max_score: float | None = None, roi=None, batch_size: int = 500_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Stream (u, v, merge_score) arrays of the whole edges collection (or of the edges whose u
        lies in ``roi``), for batch jobs: uint64, uint64, float64 with NaN for null."""
        roi = as_roi(roi)
        t = self.check_threshold(max_score)
        spec = {"u": "uint64", "v": "uint64", schema.SCORE: "float64"}
        if roi is not None and not self.has_positions():
            nodes, _ = self.node_arrays(roi)
            cols = self._read_edges_by_ids(t, "u", nodes)
            yield cols["u"], cols["v"], cols[schema.SCORE]
            return
        for filt, role, _ in self._edge_queries(roi, t, "u"):
            for c in self.store.batches(self.db, self.edges_name, filt, spec, role=role, batch_rows=batch_size):
                yield c["u"], c["v"], c[schema.SCORE]

    def edge_arrays(self, max_score: float | None = None, roi=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (u, v, merge_score) as arrays (see :meth:`iter_edge_batches`)."""
        parts = list(self.iter_edge_batches(max_score, roi))
        if not parts:
            return np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0)
        u, v, s = (np.concatenate([p[i] for p in parts]) for i in range(3))
        return u, v, s

    def node_arrays(self, roi=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids uint64, positions (n, 3) float64 zyx nm) of the nodes in ``roi`` (all if None)."""
        nf, role = self._node_query(as_roi(roi))
        spec = {"id": "uint64", **{f: "float64" for f in schema.NODE_POSITION}}
        cols = self.store.read(self.db, self.nodes_name, nf, spec, role=role)
        return cols["id"], np.stack([cols[f] for f in schema.NODE_POSITION], 1) if len(cols["id"]) else np.empty((0, 3))

    def explain(self, roi=None, max_score: float | None = None, edges: str = schema.DEFAULT_EDGE_POLICY
                ) -> list[dict]:
        """How the reads of :meth:`read_arrays` run: per find the index used and what it examined
        (MongoDB), or the row groups the statistics kept (the local store)."""
        roi = as_roi(roi)
        t = self.check_threshold(max_score)
        _check_policy(edges)
        nf, role = self._node_query(roi)
        out = [self.store.explain_read(self.db, self.nodes_name, nf, role=role)]
        return out + [self.store.explain_read(self.db, self.edges_name, f, role=r)
                      for f, r, _ in self._edge_queries(roi, t, edges)]

    # -- summaries -------------------------------------------------------------------------------
    def threshold_stats(self, thresholds: Sequence[float] | None = None, bins: int = 20) -> dict:
        """Score histogram (``bins`` equal bins over the stored range), null count, and the number
        of edges with ``merge_score <= t`` for each threshold — computed by the store."""
        rng = self.score_range()
        total = self.store.count(self.db, self.edges_name)
        if rng is None:
            return {"edges": total, "scored": 0, "nulls": total, "histogram": [], "counts": []}
        lo, hi = (0.0, 1.0) if rng[0] >= 0 and rng[1] <= 1 else rng
        if hi <= lo:  # one score value outside [0, 1]: one bin holds it
            bins = 1
        width = (hi - lo) / bins if hi > lo else 1.0
        bounds = [lo + i * width for i in range(bins)] + [math.nextafter(hi, math.inf)]
        hist = self.store.histogram(self.db, self.edges_name, schema.SCORE, bounds, role=_THRESHOLD)
        scored = sum(hist)
        counts = [{"threshold": float(t), "edges": self.store.count_where(
                       self.db, self.edges_name, {schema.SCORE: {"$lte": float(t)}}, role=_THRESHOLD)}
                  for t in thresholds or []]
        return {
            "edges": total,
            "scored": scored,
            "nulls": total - scored,
            "min": rng[0],
            "max": rng[1],
            "histogram": [{"from": b, "to": e, "edges": n} for (b, e), n in zip(itertools.pairwise(bounds), hist,
                                                                               strict=True)],
            "counts": counts,
        }

    def bbox(self) -> Roi | None:
        """Bounding box of the node centres (from the ingest record when there, else the store)."""
        rec = self.store.record(self.db, self.nodes_name) or {}
        box = (rec.get("stats") or {}).get("bbox") if rec.get("status") == "complete" else None
        if box:
            lo, hi = box["min"], box["max"]
        else:
            found = self.store.field_bounds(self.db, self.nodes_name, schema.NODE_POSITION)
            if found is None:
                return None
            lo, hi = found
        begin = tuple(float(b) for b in lo)
        return Roi(begin, tuple(_cover(b, float(h)) for b, h in zip(begin, hi, strict=True)))

    def why_empty(self, roi) -> str | None:
        """Why a read of ``roi`` finds no node, when the reason is that it misses the data."""
        roi, box = as_roi(roi), self.bbox()
        if box is None:
            return f"{self.db}.{self.nodes_name} holds no nodes"
        if roi is not None and not roi.intersects(box):
            return f"roi {roi} lies outside the nodes' bounding box {box} (nm, zyx)"
        return None

    def read_skeletons(self, roi=None, neuron_ids=None, prefix: str | None = None) -> nx.Graph:
        """Skeletons stored in the same database (see :class:`SkeletonSet`)."""
        return SkeletonSet.open(self.store, self.db, prefix).read(roi, neuron_ids)


def _cover(begin: float, last: float) -> float:
    """The smallest shape with ``begin + shape > last``: a half-open box that holds ``last``."""
    shape = last - begin
    while begin + shape <= last:
        shape = math.nextafter(shape, math.inf)
    return shape


def to_networkx(
    nodes: pd.DataFrame, edges: pd.DataFrame, *, directed: bool = False, u: str = "u", v: str = "v"
) -> nx.Graph:
    """Build a networkx graph from node/edge DataFrames: keys as Python ints, attributes as
    Python scalars (about 3 µs and 400 bytes per edge: use the arrays for bulk work)."""
    import networkx as nx  # only graphs need it: array reads start faster without

    g = nx.DiGraph() if directed else nx.Graph()
    ncols = {c: nodes[c].to_numpy() for c in nodes.columns}
    nkeys = [c for c in nodes.columns if c != "id"]
    if len(nodes):
        g.add_nodes_from(zip(ncols["id"].tolist(), _records(ncols, nkeys), strict=True))
    ecols = {c: edges[c].to_numpy() for c in edges.columns}
    ekeys = [c for c in edges.columns if c not in (u, v)]
    if len(edges):
        g.add_edges_from(zip(ecols[u].tolist(), ecols[v].tolist(), _records(ecols, ekeys), strict=True))
    return g


# ------------------------------------------------------------------------------------------------
# skeletons


@dataclass
class SkeletonSet:
    """Ground-truth skeletons: ``<prefix>.nodes`` (id, neuron_id, z, y, x) and ``<prefix>.edges``."""

    store: Backend
    db: str
    prefix: str

    @classmethod
    def open(cls, store: Backend, db: str, prefix: str | None = None) -> SkeletonSet:
        names = store.collections(db)
        found = sorted(n[: -len(".nodes")] for n in names if schema.kind_of(n).name == "skeleton_nodes")
        if prefix is None:
            if not found:
                raise LsdgraphError(f"database {db!r} holds no skeletons; name the database you ingested them into "
                                    "with skeletons_name=DB")
            if len(found) > 1:
                raise LsdgraphError(f"database {db!r} holds {len(found)} skeleton sets ({', '.join(found)}); choose "
                                    "one with skeletons=PREFIX")
            prefix = found[0]
        if f"{prefix}.nodes" not in names or f"{prefix}.edges" not in names:
            raise LsdgraphError(
                f"skeletons={prefix!r}: database {db!r} has no {prefix}.nodes/{prefix}.edges "
                f"(skeleton sets: {', '.join(found) or 'none'}); ingest them first, or name their database with "
                "skeletons_name=DB")
        return cls(store, db, prefix)

    @property
    def nodes_name(self) -> str:
        return f"{self.prefix}.nodes"

    @property
    def edges_name(self) -> str:
        return f"{self.prefix}.edges"

    def endpoints(self) -> tuple[str, str]:
        rec = self.store.record(self.db, self.edges_name) or {}
        ends = rec.get("endpoints")
        if ends:
            return ends[0], ends[1]
        u, v = _SKEL_EDGES.integers
        alt = _SKEL_EDGES.alternative_integers
        has_alt = self.store.exists(self.db, self.edges_name, {alt[0]: {"$exists": True}})
        has_u = self.store.exists(self.db, self.edges_name, {u: {"$exists": True}})
        return (alt[0], alt[1]) if has_alt and not has_u else (u, v)

    def _queries(self, roi: Roi | None, neuron_ids) -> list[tuple[str, dict, tuple[str, str] | None]]:
        """(collection, filter, index role) of the nodes find and of the edges find."""
        kind = schema.kind("skeleton_nodes")
        filt = mongo_filter(roi, kind.position)
        role = ("skeleton_nodes", "roi") if roi is not None else None
        if neuron_ids is not None:
            filt["neuron_id"] = {"$in": [int(n) for n in np.atleast_1d(neuron_ids)]}
            role = role or ("skeleton_nodes", "neuron")
        efilt: dict = {}
        erole = None
        if self.has_joins():  # one indexed read, as for RAG edges
            if roi is not None:
                efilt, erole = mongo_filter(roi, schema.EDGE_POSITIONS["u"]), ("skeleton_edges", "roi_u")
            if neuron_ids is not None:
                efilt["neuron_id"] = filt["neuron_id"]
                erole = erole or ("skeleton_edges", "neuron")
        return [(self.nodes_name, filt, role), (self.edges_name, efilt, erole)]

    def arrays(self, roi=None, neuron_ids=None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Skeleton nodes (id, neuron_id, z, y, x) in ``roi`` / of ``neuron_ids``, and the edges
        between them (u, v node ids)."""
        (ncoll, filt, role), (ecoll, efilt, erole) = self._queries(as_roi(roi), neuron_ids)
        spec = {"id": "int64", "neuron_id": "int64", **{f: "float64" for f in schema.kind("skeleton_nodes").position}}
        nodes = self.store.read(self.db, ncoll, filt, spec, role=role)
        a, b = self.endpoints()
        edges = self.store.read(self.db, ecoll, efilt, {a: "int64", b: "int64"}, role=erole)
        known = IdIndex(nodes["id"], sort=False)
        keep = known.contains(edges[a]) & known.contains(edges[b])
        if neuron_ids is not None:  # an empty or short answer says why
            asked = np.unique(np.asarray(neuron_ids, np.int64).ravel())
            missing = np.setdiff1d(asked, nodes["neuron_id"])
            if len(missing) and roi is None:
                warnings.warn(f"neuron_ids: {', '.join(map(str, missing[:10].tolist()))}"
                              f"{' …' if len(missing) > 10 else ''} not in {self.db}.{self.nodes_name}", stacklevel=2)
        return pd.DataFrame(nodes), pd.DataFrame({"u": edges[a][keep], "v": edges[b][keep]})

    def explain(self, roi=None, neuron_ids=None) -> list[dict]:
        """The nodes and edges finds of :meth:`arrays`, explained (see :meth:`Rag.explain`)."""
        return [self.store.explain_read(self.db, c, f, role=r) for c, f, r in self._queries(as_roi(roi), neuron_ids)]

    def has_joins(self) -> bool:
        """Whether the edges carry their endpoints' positions and neuron ids (added by ingest)."""
        rec = self.store.record(self.db, self.edges_name) or {}
        if rec.get("positions") is not None:
            return bool(rec["positions"])
        return self.store.exists(self.db, self.edges_name, {"neuron_id": {"$exists": True}})

    def read(self, roi=None, neuron_ids=None) -> nx.Graph:
        """networkx graph: node keys Python ints with ``neuron_id``, ``z``, ``y``, ``x``."""
        nodes, edges = self.arrays(roi, neuron_ids)
        return to_networkx(nodes, edges)

    def summary(self, roi=None, neuron_ids=None) -> pd.DataFrame:
        """Per neuron: nodes, edges and cable length (nm, sum of edge lengths)."""
        nodes, edges = self.arrays(roi, neuron_ids)
        return skeleton_summary(nodes, edges)


def skeleton_summary(nodes: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """Per neuron_id: node count, edge count, cable length in nm (vectorized)."""
    kind = schema.kind("skeleton_nodes")
    index = IdIndex(nodes["id"].to_numpy(), "skeleton node ids", sort=False)
    pos = nodes[list(kind.position)].to_numpy(float)
    neuron = nodes["neuron_id"].to_numpy()
    iu = index.lookup(edges["u"].to_numpy())
    iv = index.lookup(edges["v"].to_numpy())
    length = np.linalg.norm(pos[iu] - pos[iv], axis=1) if len(edges) else np.empty(0)
    df_nodes = pd.Series(neuron).value_counts().rename("nodes")
    e = pd.DataFrame({"neuron_id": neuron[iu] if len(edges) else np.empty(0, np.int64), "length": length})
    agg = e.groupby("neuron_id").agg(edges=("length", "size"), cable_length_nm=("length", "sum"))
    out = pd.concat([df_nodes, agg], axis=1).fillna(0)
    out.index.name = "neuron_id"
    out["edges"] = out["edges"].astype(int)
    return out.reset_index().sort_values("neuron_id", ignore_index=True)


# ------------------------------------------------------------------------------------------------


def open_rag(
    uri: str | None = None,
    name: str | None = None,
    edges: str | None = None,
    nodes: str = "nodes",
    *,
    store: Backend | None = None,
) -> Rag:
    """Open a RAG that ``lsdgraph ingest`` (or daisy's MongoDbGraphProvider) wrote.

    ``edges``: the edges collection; by default the only one, else ``edges_hist_quant_75``
    (``schema.json`` ``default_edges``).
    """
    store = store or connect(uri)
    db = database(store, name)
    names = store.collections(db)
    if nodes not in names:
        raise LsdgraphError(
            f"database {name!r} has no {nodes!r} collection (collections: "
            f"{', '.join(sorted(names)) or 'none'}); ingest a RAG folder into it first"
        )
    edge_names = [n for n in names if schema.kind_of(n).name == "rag_edges"]
    if edges is not None and edges in names:  # any collection may be read as edges when named
        return Rag(store, db, nodes, edges)
    return Rag(store, db, nodes, schema.choose_edges(edge_names, edges, f"database {name!r}"))


def open_skeletons(
    uri: str | None = None, name: str | None = None, prefix: str | None = None, *, store: Backend | None = None
) -> SkeletonSet:
    """Open the skeletons ``<prefix>.nodes``/``<prefix>.edges`` in database ``name``."""
    store = store or connect(uri)
    return SkeletonSet.open(store, database(store, name), prefix)

"""The merge tree on a Dask cluster (``dask.distributed``): one task per spatial block reads that
block's fragments and the edges whose ``u`` lies in it with the ROI query, and reduces them to their
minimum spanning forest; a tree of merge tasks joins neighbouring blocks (the blocks come from
halving the region along its longest axis, so the merges undo the halvings and every merge joins
two touching boxes) until one forest is left, from which the driver builds the merge tree — the
same tree, array for array, as the single-machine path (see :mod:`lsdgraph._algorithms.forest`).

A block task holds its block's nodes and edges; a merge task the two forests (at most one edge
per fragment) and the edges that cross between blocks; the last merge and the driver hold one
forest of the whole RAG, which is what the tree itself needs."""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsdgraph._algorithms import forest
from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError, redact_uri
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._core.roi import Roi
from lsdgraph._ingest import ranges
from lsdgraph._io import dumps
from lsdgraph._io.sources import list_files
from lsdgraph._query.rag import Rag
from lsdgraph._stores.api import Backend, connect, default_uri, is_local

BLOCK_EDGES = 2_000_000  # edges per block task: ~50 MB of read columns and a forest of the rest
CONNECT_SECONDS = 10


def distributed():
    try:
        import distributed
    except ImportError:
        raise LsdgraphError("a Dask cluster needs dask.distributed: pip install 'lsdgraph[dask]'") from None
    return distributed


@contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[object | None]:
    """A client on the scheduler at ``scheduler`` (``tcp://HOST:PORT``), or on a local cluster of
    ``workers`` processes on 127.0.0.1 (closed on exit); None when neither is given."""
    if scheduler is not None and workers is not None:
        raise LsdgraphError(f"scheduler={scheduler!r} and workers={workers}: give one (a running scheduler, or "
                            "the number of local worker processes to start)")
    if scheduler is None and workers is None:
        yield None
        return
    dd = distributed()
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise LsdgraphError(f"workers={workers!r}: give a whole number of worker processes, 1 or more")
        cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        try:
            with dd.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    if not isinstance(scheduler, str) or "://" not in scheduler:
        raise LsdgraphError(f"scheduler={scheduler!r}: give the scheduler's address, e.g. tcp://10.0.0.5:8786")
    try:
        client = dd.Client(scheduler, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as e:
        raise LsdgraphError(f"scheduler={scheduler!r}: no Dask scheduler answered within {CONNECT_SECONDS} s "
                            f"({type(e).__name__}); start one (`dask scheduler`) or check the address") from None
    with client:
        yield client


def check_client(client) -> int:
    """The number of workers of a ``distributed.Client``; a clear error for anything else."""
    if not isinstance(client, distributed().Client):
        raise LsdgraphError(f"client={client!r}: pass a dask.distributed Client (or None to run in this process)")
    n = len(client.scheduler_info().get("workers", {}))
    if n == 0:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS * 3)
        n = len(client.scheduler_info().get("workers", {}))
    return n


def worker_uri(db: str | None, store: Backend) -> str:
    """The store URI the workers connect to (``db``, else the store's when it names it whole):
    refused for mongomock, whose data lives in this process."""
    uri = db or (store.uri if store.local else default_uri())
    if (db or store.uri).startswith("mongomock://"):
        raise LsdgraphError(f"db={db or store.uri}: an in-process store the cluster's workers cannot see; use a "
                            "MongoDB server (mongodb://…) or the local store (a path)")
    if db is None and not store.local and store.uri != redact_uri(uri):
        raise LsdgraphError(f"client= with a store at {store.uri}: pass db= too (its URI, which the workers "
                            "connect to)")
    return uri


# --------------------------------------------------------------------------- blocks

def _box(begin: Sequence[float], end: Sequence[float]) -> Roi:
    """The Roi with exactly these begin and end (shapes nudged by an ulp where ``b + (e - b)``
    rounds), so neighbouring blocks share their border value and no node is read twice or missed."""
    shape = []
    for b, e in zip(begin, end, strict=True):
        s = e - b
        while b + s < e:
            s = math.nextafter(s, math.inf)
        while b + s > e:
            s = math.nextafter(s, -math.inf)
        shape.append(s)
    return Roi(tuple(begin), tuple(shape))


def split_region(region: Roi, n: int) -> list[Roi]:
    """``n`` (a power of two) blocks tiling ``region``, by halving the longest axis at a whole
    nanometre; in depth-first order, so blocks 2k and 2k+1 are the halves of one box."""
    boxes = [(list(region.begin), list(region.end))]
    while len(boxes) < n:
        halves = []
        for b, e in boxes:
            axis = int(np.argmax(np.subtract(e, b)))
            mid = math.floor((b[axis] + e[axis]) / 2)
            if not b[axis] < mid < e[axis]:  # a box under 2 nm: keep it whole (its twin is empty)
                halves += [(b, e), (b, [*e[:axis], b[axis], *e[axis + 1:]])]
                continue
            halves += [(b, [*e[:axis], mid, *e[axis + 1:]]), ([*b[:axis], mid, *b[axis + 1:]], e)]
        boxes = halves
    return [_box(b, e) for b, e in boxes]


def region_of(rag: Rag, roi: Roi | None) -> Roi:
    """The box the blocks tile: the ROI, bounded by whole nanometres around the nodes' box."""
    box = rag.bbox()
    if box is None:
        raise LsdgraphError(f"nothing to agglomerate: {rag.db}.{rag.nodes_name} holds no nodes")
    lo = [math.floor(b) for b in box.begin]
    hi = [math.floor(e) + 1 for e in box.end]
    if roi is None:
        return _box(lo, hi)
    begin = [max(r, float(b)) for r, b in zip(roi.begin, lo, strict=True)]
    end = [min(r, float(e)) for r, e in zip(roi.end, hi, strict=True)]
    if roi.begin == tuple(begin) and roi.end == tuple(end):
        return roi
    return _box(begin, end)


# --------------------------------------------------------------------------- tasks

@functools.lru_cache(maxsize=4)
def _server(uri: str) -> Backend:
    return connect(uri)  # one connection pool per worker process and server


def _block(uri: str, db: str, nodes: str, edges: str, block: Roi, like_lab: bool) -> forest.Part:
    # a local store is opened per task: a long-lived worker must see what was loaded since
    rag = Rag(connect(uri) if is_local(uri) else _server(uri), db, nodes, edges)
    ids, _ = rag.node_arrays(block)
    u, v, s = rag.edge_arrays(roi=block)
    return forest.block_part(ids, u, v, s, like_lab)


def _merge(*parts: forest.Part) -> forest.Part:
    return forest.merge_parts(parts)


def reduce_parts(client, blocks: list, progress: bool | None = False) -> list[forest.Part]:
    """Merge the parts the ``blocks`` futures compute, in pairs (2k with 2k+1: neighbours when the
    blocks come from :func:`split_region`), down to two, which come back for the driver to join
    into the tree; the whole reduction is submitted at once, so a merge starts as soon as its pair
    is done."""
    level, tasks = list(blocks), list(blocks)
    while len(level) > 2:
        level = [client.submit(_merge, *level[i:i + 2], pure=False) for i in range(0, len(level), 2)]
        tasks += level
    bar = Progress("agglomerating on the cluster", len(tasks), enabled=progress, amount=count_of("tasks"),
                   unit="tasks")
    for _ in distributed().as_completed(tasks):
        bar.update(1, 1)
    bar.close()
    return client.gather(level)


@dataclass
class ClusterRun:
    """What a cluster build did."""

    blocks: int
    workers: int
    part_bytes: int  # bytes of the parts that went into merges and to the driver (at most shipped)
    seconds: float
    n_nan: int       # null scores read


def _run(blocks: int, workers: int, parts: list[forest.Part], t0: float) -> ClusterRun:
    return ClusterRun(blocks, workers, forest.parts_bytes(parts), time.perf_counter() - t0,
                      sum(p.n_nan for p in parts))


def _n_blocks(blocks: int | None, n_workers: int, n_edges: int) -> int:
    if blocks is not None and (isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1):
        raise LsdgraphError(f"blocks={blocks!r}: give a whole number of blocks, 1 or more")
    want = blocks or max(2 * n_workers, math.ceil(n_edges / BLOCK_EDGES))
    return 1 << max(0, math.ceil(math.log2(want)))


def cluster_tree(client, rag: Rag, uri: str, roi: Roi | None, *, like_lab: bool = False,
                 blocks: int | None = None, progress: bool | None = False,
                 log: Callable[[str], None] = lambda _: None) -> tuple[agglomerate.MergeTree, ClusterRun]:
    """The merge tree of ``rag`` (within ``roi``) built on the cluster behind ``client``; the workers
    connect to the store at ``uri``. ``blocks``: how many block tasks (rounded up to a power of
    two; default: enough for ``BLOCK_EDGES`` edges each and twice the workers)."""
    t0 = time.perf_counter()
    n_workers = check_client(client)
    if not rag.has_positions():
        raise LsdgraphError(f"{rag.db}.{rag.edges_name} has no endpoint positions, so blocks cannot be read by "
                            f"ROI; run `lsdgraph index --name {rag.db}` once")
    n_edges = rag.store.count(rag.db, rag.edges_name)
    n = _n_blocks(blocks, n_workers, n_edges)
    grid = split_region(region_of(rag, roi), n)
    log(f"agglomerating in {n} blocks on {n_workers} Dask worker{'s' if n_workers != 1 else ''}")
    args = (uri, rag.db, rag.nodes_name, rag.edges_name)
    parts = reduce_parts(client, [client.submit(_block, *args, b, like_lab, pure=False) for b in grid], progress)
    unread = 0
    if roi is None:  # the single-machine path reads every edge; those whose u is no node are unknown
        unread = n_edges - sum(p.n_edges for p in parts)
        n_nodes, n_read = rag.store.count(rag.db, rag.nodes_name), sum(p.ids.size for p in parts)
        if n_nodes != n_read:
            raise LsdgraphError(f"{rag.db}.{rag.nodes_name}: the blocks read {n_read:,} of {n_nodes:,} nodes "
                                "(nodes without a position?); agglomerate on one machine (no client=)")
    tree = forest.tree_of(parts, unread)
    return tree, _run(n, n_workers, parts, t0)


_BYTES_PER_EDGE = 90  # a dump's edge document with its scores, for sizing the ranges


Span = tuple[int, int | None, int]  # (start, end, first document index) of a byte range; end None: to the end


def _spans(path: Path, n: int) -> list[Span]:
    """``path`` cut at document boundaries into at most ``n`` ranges (the ingest's split, without
    reading the bytes twice); one range, the whole file, when it does not split."""
    cut = ranges.split(list_files(str(path))[0], n)
    return [(0, None, 0)] if cut is None else [(r.start, r.end, r.first) for r in cut.ranges]


def _dump_range(nodes: str, edges: str, node_span: Span, edge_span: Span, like_lab: bool) -> forest.Part:
    nk, ek = schema.kind("rag_nodes"), schema.kind("rag_edges")

    def read(path: str, kind: schema.Kind, fields: dict[str, str], span: Span) -> dict:
        start, end, first = span
        return dumps.read_columns(Path(path), kind, fields, start=start, end=end, first_index=first)

    ids = read(nodes, nk, {"id": "uint64"}, node_span)["id"]
    e = read(edges, ek, {"u": "uint64", "v": "uint64", schema.SCORE: "float64"}, edge_span)
    return forest.block_part(ids, e["u"], e["v"], e[schema.SCORE], like_lab)


def dump_tree(client, folder: Path, edges: str, *, like_lab: bool = False, blocks: int | None = None,
              progress: bool | None = False, log: Callable[[str], None] = lambda _: None
              ) -> tuple[agglomerate.MergeTree, ClusterRun]:
    """The merge tree of a RAG dump folder on the cluster: task k reads the k-th byte range of
    ``nodes.bson`` and of the edges file (cut at document boundaries). Any split gives the same
    tree; this one prunes well because the lab's dumps (daisy's block-wise writes) keep neighbours
    close in the files. The workers read the files at the same path (a shared file system)."""
    t0 = time.perf_counter()
    n_workers = check_client(client)
    nodes_path, edges_path = (folder / "nodes.bson").resolve(), dumps.edges_file(folder, edges).resolve()
    n = _n_blocks(blocks, n_workers, edges_path.stat().st_size // _BYTES_PER_EDGE)
    node_ranges, edge_ranges = _spans(nodes_path, n), _spans(edges_path, n)
    k = max(len(node_ranges), len(edge_ranges))  # a small file has fewer documents than ranges
    node_ranges += [(0, 0, 0)] * (k - len(node_ranges))  # empty ranges: no documents
    edge_ranges += [(0, 0, 0)] * (k - len(edge_ranges))
    log(f"agglomerating {folder.name} in {k} byte ranges on {n_workers} Dask worker{'s' if n_workers != 1 else ''}")
    futures = [client.submit(_dump_range, str(nodes_path), str(edges_path), a, b, like_lab, pure=False)
               for a, b in zip(node_ranges, edge_ranges, strict=True)]
    parts = reduce_parts(client, futures, progress)
    return forest.tree_of(parts), _run(k, n_workers, parts, t0)

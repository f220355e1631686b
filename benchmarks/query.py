"""Query benchmark: lsdgraph's ROI reads vs daisy 0.2.1's ``MongoDbGraphProvider.get_graph`` (the
store the LSD paper used), on the same server, the same data and the same ROIs, in the same run.

Data: ``lsdgraph synth --dataset hemi --size small`` (~21k fragments, ~70k edges); ``nodes`` and
``edges_hist_quant_75`` loaded once into a SecantusDB daemon this script starts. Its storage stays
in ``--storage`` (default ``~/.cache/lsdgraph/bench-query``), so a rerun skips the load.

(a) per ROI (centred boxes holding 1/64, 1/8, 1/4 and 1/2 of the volume): wall time of
    ``rag.read_graph``, ``rag.read_arrays`` and daisy's ``get_graph`` (medians of ``--runs``; daisy
    stops repeating a ROI once one run takes longer than ``--daisy-budget`` seconds), the server's
    share of it, round trips (find + getMore commands), documents examined / returned as the
    server's explain reports them, and a check that both give the same graph.
    Goal: read_graph ≥ 5× faster than daisy's get_graph.
(b) client-side decode: raw reply batches scanned into columns, apart from the server — the real
    edges collection fetched with ``find_raw_batches`` (timed separately), and a 1M-edge reply made
    with ``bsonio.encode``; ``bson.decode_all`` into dicts + numpy (daisy's path) for comparison.
    Goal: ≥ 2M edges/s.

Prints medians, ratios and PASS/FAIL per goal. Not a test (no timing in tests).

    python benchmarks/query.py [--runs 3] [--fractions 1/64,1/8,1/4,1/2] [--storage DIR] [--fresh]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import bson
import numpy as np
import pymongo
from pymongo import monitoring

from lsdgraph import _ingest as ingest
from lsdgraph._core import schema
from lsdgraph._io import bsonio
from lsdgraph._query import rag as query

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import secantus

from lsdgraph._synth import synth

NAME = "bench_query_hemi_small"
EDGES = "edges_hist_quant_75"
POSITION = list(schema.NODE_POSITION)


class Commands(monitoring.CommandListener):
    """find/getMore commands and their server time, from every client in this process (daisy
    makes its own), between two :meth:`reset` calls."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.trips, self.server = 0, 0.0

    def started(self, event):
        if event.command_name in ("find", "getMore"):
            self.trips += 1

    def succeeded(self, event):
        if event.command_name in ("find", "getMore"):
            self.server += event.duration_micros / 1e6

    def failed(self, event):
        self.succeeded(event)


COMMANDS = Commands()
monitoring.register(COMMANDS)


def load(uri: str, storage: Path) -> None:
    """Synthesize (deterministic, fast) and load nodes + edges unless the server already holds them."""
    r = synth(storage / "synth", "hemi", "small", seed=0, fragments=False)
    with pymongo.MongoClient(uri) as c:
        db = c[NAME]
        done = {d["_id"] for d in db[schema.META].find({"status": "complete"}, {"_id": 1})}
        if {"nodes", EDGES} <= done and db.nodes.estimated_document_count() == r.n_fragments \
                and db[EDGES].estimated_document_count() == r.n_edges:
            print(f"data: {r.n_fragments:,} fragments, {r.n_edges:,} edges (already loaded in {storage})")
            return
    folder = storage / "load"
    folder.mkdir(parents=True, exist_ok=True)
    for f in ("nodes.bson", f"{EDGES}.bson"):
        shutil.copy(r.rag_dir / f, folder / f)
    t0 = time.perf_counter()
    ingest.ingest(str(folder), db=uri, name=NAME, drop=True, quiet=True)
    print(f"data: {r.n_fragments:,} fragments, {r.n_edges:,} edges (loaded in {time.perf_counter() - t0:.0f} s)")


def centred_rois(box, fractions):
    """Integer boxes (daisy's coordinates are integers) in the middle of ``box``, each holding
    ``fraction`` of its volume."""
    import daisy

    begin, shape = np.array(box.begin), np.array(box.shape)
    for f in fractions:
        side = shape * float(f) ** (1 / 3)
        offset = np.floor(begin + (shape - side) / 2).astype(int)
        yield str(f), daisy.Roi(tuple(offset.tolist()), tuple(np.ceil(side).astype(int).tolist()))


def timed(fn):
    COMMANDS.reset()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, COMMANDS.server, COMMANDS.trips


def daisy_examined(uri: str, roi, node_ids) -> str:
    """daisy's two queries, explained: the node box (executionStats: examined / returned and the
    plan) and ``u $in`` (the plan only: running it again would take as long as daisy's read)."""
    with pymongo.MongoClient(uri) as c:
        db = c[NAME]
        box = {f: {"$gte": b, "$lt": e} for f, b, e in zip(POSITION, roi.get_begin(), roi.get_end(), strict=True)}
        nodes = db.command("explain", {"find": "nodes", "filter": box}, verbosity="executionStats")
        edges = db.command("explain", {"find": EDGES, "filter": {"u": {"$in": node_ids[:10]}}},
                           verbosity="queryPlanner")
    st = nodes["executionStats"]
    plan = [query._plan_index(ex["queryPlanner"]["winningPlan"]) or "COLLSCAN" for ex in (nodes, edges)]
    return f"{st['totalDocsExamined'] / max(st['nReturned'], 1):.1f} ({plan[0]}) · $in on {plan[1]}"


def same_graph(theirs, ours) -> bool:
    return ({int(n) for n in theirs.nodes} == set(ours.nodes)
            and {frozenset(map(int, e)) for e in theirs.edges} == {frozenset(e) for e in ours.edges})


def part_a(uri: str, runs: int, fractions, budget: float) -> None:
    from daisy.persistence import MongoDbGraphProvider

    rag = query.open_rag(uri, NAME, edges=EDGES)
    provider = MongoDbGraphProvider(NAME, uri, mode="r", nodes_collection="nodes", edges_collection=EDGES,
                                    position_attribute=POSITION)
    rois = list(centred_rois(rag.bbox(), fractions))
    rag.read_graph(rois[0][1])  # warm: numba's cache, the reader's collection facts
    provider.get_graph(rois[0][1])
    rows = []
    for label, roi in rois:
        lg, la, dg = [], [], []
        for i in range(runs):  # interleaved, so drift on a shared machine hits both alike
            g, *m = timed(lambda roi=roi: rag.read_graph(roi))
            lg.append(m)
            (nodes, edges), *m = timed(lambda roi=roi: rag.read_arrays(roi))
            la.append(m)
            if i == 0 or dg[-1][0] <= budget:
                theirs, *m = timed(lambda roi=roi: provider.get_graph(roi))
                dg.append(m)
        assert same_graph(theirs, g), f"daisy and lsdgraph disagree on ROI {label}"
        ex = rag.explain(roi)
        lsd_ratio = sum(r["docs_examined"] for r in ex) / max(sum(r["returned"] for r in ex), 1)
        daisy_ex = daisy_examined(uri, roi, nodes["id"].astype(np.int64).tolist())
        med = lambda ms, k: statistics.median(m[k] for m in ms)  # noqa: E731
        rows.append(dict(label=label, nodes=len(nodes), edges=len(edges), graph=med(lg, 0), arrays=med(la, 0),
                         daisy=med(dg, 0), daisy_runs=len(dg), graph_server=med(lg, 1), daisy_server=med(dg, 1),
                         trips=(lg[-1][2], la[-1][2], dg[-1][2]), lsd_ratio=lsd_ratio, daisy_ex=daisy_ex))
    print(f"(a) ROI reads, {NAME} on SecantusDB, median of {runs} (daisy: runs shown)")
    print(f"    {'ROI':>5} {'nodes':>6} {'edges':>6} | {'read_graph':>10} {'read_arrays':>11} {'daisy':>9} "
          f"{'runs':>4} | {'speed-up':>8} {'≥5×':>4} | {'server s lsd/daisy':>18} | {'client s lsd/daisy':>18} | "
          f"{'round trips g/a/daisy':>21} "
          f"| examined/returned lsd · daisy nodes · daisy edges")
    for r in rows:
        ratio = r["daisy"] / r["graph"]
        print(f"    {r['label']:>5} {r['nodes']:>6,} {r['edges']:>6,} | {r['graph']:>8.3f} s {r['arrays']:>9.3f} s "
              f"{r['daisy']:>7.3f} s {r['daisy_runs']:>4} | {ratio:>7.1f}× {verdict(ratio >= 5):>4} | "
              f"{r['graph_server']:>7.2f} / {r['daisy_server']:>7.2f} | "
              f"{r['graph'] - r['graph_server']:>7.3f} / {r['daisy'] - r['daisy_server']:>7.3f} | "
              f"{'/'.join(map(str, r['trips'])):>21} | "
              f"{r['lsd_ratio']:.2f} · {r['daisy_ex']}")
    print("    notes: SecantusDB serves a hinted find by walking the WHOLE index (secantus/storage.py "
          "_candidates_from_hint) and answers a multi-field range without a hint with a collection scan, so "
          "lsdgraph's server time here grows with the collection, not the ROI; on mongod the same hinted "
          "box is a bounded index scan. Its explain reports docsExamined = nReturned for any IXSCAN "
          "(commands.py), so the lsdgraph ratio shows the plan, not the work. daisy's `u $in [ids]` grows "
          "with the ROI's node count on every server (a big $in is SecantusDB's slowest shape).")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------------------------------------
# (b) client-side decode


def scan_columns(batches: list[bytes], spec: dict[str, str]) -> dict[str, np.ndarray]:
    """What read_arrays does with each raw reply batch."""
    docs = [bsonio.scan(b, list(spec))[0] for b in batches]
    return query._columns(docs, spec)


def dicts_columns(batches: list[bytes], spec: dict[str, str]) -> dict[str, np.ndarray]:
    """The dict path: decode every document, then build the same columns."""
    docs = [d for b in batches for d in bson.decode_all(b)]
    return {k: np.array([np.nan if d.get(k) is None else d[k] for d in docs], dtype=t) for k, t in spec.items()}


def best_of(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def part_b(uri: str, runs: int, n_synthetic: int) -> None:
    rag = query.open_rag(uri, NAME, edges=EDGES)
    spec = rag.edge_spec()
    projection = {**{f: 1 for f in spec}, "_id": 0}
    fetch = lambda: list(rag.edges.find_raw_batches({}, projection, batch_size=100_000))  # noqa: E731
    batches = fetch()
    n_real = len(scan_columns(batches, spec)["u"])
    t_fetch = best_of(fetch, runs)
    t_scan = best_of(lambda: scan_columns(batches, spec), max(runs, 5))
    t_dicts = best_of(lambda: dicts_columns(batches, spec), runs)
    rng = np.random.default_rng(7)
    u = 77_000_000_000 + rng.integers(0, 5_000_000, n_synthetic)
    score = rng.random(n_synthetic)
    score[rng.random(n_synthetic) < 0.01] = np.nan
    big = [bsonio.encode({"u": ("int64", u[i:i + 100_000]), "v": ("int64", u[i:i + 100_000] + 7),
                          "merge_score": ("double", score[i:i + 100_000]),
                          "agglomerated": ("bool", score[i:i + 100_000] < 0.5)})
           for i in range(0, n_synthetic, 100_000)]
    cols = scan_columns(big, spec)
    assert len(cols["u"]) == n_synthetic and np.array_equal(cols["u"], u.astype(np.uint64))
    t_big = best_of(lambda: scan_columns(big, spec), runs)
    t_big_dicts = best_of(lambda: dicts_columns(big, spec), runs)
    print(f"(b) client-side decode of edge replies (u, v, merge_score, agglomerated), median of {runs}")
    print(f"    whole {EDGES} ({n_real:,} edges): fetch (server + transfer) {t_fetch:.3f} s; "
          f"scan into columns {t_scan * 1e3:.1f} ms = {n_real / t_scan / 1e6:.1f}M edges/s; "
          f"decode_all → dicts → numpy {t_dicts * 1e3:.0f} ms = {n_real / t_dicts / 1e6:.2f}M edges/s")
    rate = n_synthetic / t_big
    print(f"    {n_synthetic:,}-edge reply ({sum(map(len, big)) / 1e6:.0f} MB): scan into columns {t_big:.3f} s = "
          f"{rate / 1e6:.1f}M edges/s; decode_all → dicts → numpy {t_big_dicts:.2f} s = "
          f"{n_synthetic / t_big_dicts / 1e6:.2f}M edges/s ({t_big_dicts / t_big:.0f}× slower)")
    print(f"    client-side decode ≥ 2M edges/s: {verdict(rate >= 2e6 and n_real / t_scan >= 2e6)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fractions", default="1/64,1/8,1/4,1/2", help="ROI sizes as fractions of the volume")
    ap.add_argument("--daisy-budget", type=float, default=60.0,
                    help="stop repeating daisy on a ROI once one run takes longer (seconds)")
    ap.add_argument("--storage", type=Path, default=Path.home() / ".cache/lsdgraph/bench-query",
                    help="SecantusDB storage and the synthetic data, kept between runs")
    ap.add_argument("--fresh", action="store_true", help="delete --storage first")
    ap.add_argument("--decode-edges", type=int, default=1_000_000, help="edges in the synthetic reply of (b)")
    args = ap.parse_args(argv)
    fractions = [Fraction(f) for f in args.fractions.split(",")]
    if args.fresh:
        shutil.rmtree(args.storage, ignore_errors=True)
    args.storage.mkdir(parents=True, exist_ok=True)
    with secantus(args.storage / "secantus") as uri:
        load(uri, args.storage)
        part_a(uri, args.runs, fractions, args.daisy_budget)
        part_b(uri, args.runs, args.decode_edges)
    return 0


if __name__ == "__main__":
    sys.exit(main())

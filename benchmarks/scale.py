"""Benchmark: the merge tree of a synthetic RAG in one process vs on a Dask cluster, in one run.

    python benchmarks/scale.py                 # the medium RAG (~1M fragments, 3.4M edges)
    python benchmarks/scale.py --size small    # a quick check (~20k fragments)

The RAG is ``lsdgraph synth --size SIZE`` ingested into a local store (no server). Methods, on the
same store:

- one process: ``segment`` with no client (reads every edge, one union-find pass);
- Dask, 1 worker and 2 workers: ``segment(client=…)`` on a ``LocalCluster`` of processes on
  127.0.0.1 (the cluster's start-up is not counted); block tasks read their block by ROI and reduce
  it to a forest, merges join neighbouring forests.

Times are medians of ``--repeats`` runs after a warm-up (numba compiles, the cluster's workers
import lsdgraph); each run builds its tree anew (a fresh output folder) and writes no LUT files.
For Dask it prints the bytes of the forests that went into merges or to the driver (an upper
bound of what was shipped: a merge on the worker holding its input ships nothing), the bytes the
workers' own counters say they sent to each other, and each worker's peak resident memory
(``ru_maxrss`` of its process). Every cluster tree is checked to equal the single-process tree
array for array. On a 2-core machine two workers compete with the scheduler and the driver: read
the ratios as overhead, not as speed-up.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import reset_peak, status_kib


def _peak_rss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _sent_bytes(dask_worker) -> int:
    return int(getattr(dask_worker, "transfer_outgoing_bytes_total", 0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=("small", "medium", "large"), default="medium")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    from lsdgraph._ingest import ingest
    from lsdgraph._jobs import cluster, segment
    from lsdgraph._query.rag import open_rag
    from lsdgraph._synth import synth

    tmp = Path(tempfile.mkdtemp(prefix="lsdgraph-scale-"))
    t = time.perf_counter()
    data = synth(tmp / "synth", "hemi", a.size, fragments=False)
    db = str(tmp / "store")
    ingest(str(data.rag_dir), db=db, name="scale", quiet=True)
    print(f"{a.size} RAG: made and ingested into a local store in {time.perf_counter() - t:.0f} s")
    runs = iter(range(10**6))

    def build(client=None):
        out = tmp / f"run{next(runs)}"
        t0 = time.perf_counter()
        r = segment.segment(db=db, name="scale", out=out, lut_files=False, quiet=True, client=client)
        return time.perf_counter() - t0, r.tree

    build()  # warm-up: numba's compiled kernels load
    base = reset_peak()
    times = [build()[0] for _ in range(a.repeats)]
    one_s, reference = statistics.median(times), build()[1]
    one_peak = (status_kib("VmHWM") - base) / 2**10
    print(f"fragments {len(reference):,}, edges {reference.report.n_edges:,}")
    rows = [("one process", one_s, 1.0, "-", "-", f"{one_peak:,.0f} MiB above start")]
    for workers in (1, 2):
        with cluster.cluster_client(workers=workers) as client:
            build(client)  # warm-up: each worker imports lsdgraph and compiles
            sent0 = sum(client.run(_sent_bytes).values())
            times, trees = [], []
            for _ in range(a.repeats):
                s, tree = build(client)
                times.append(s)
                trees.append(tree)
            sent = (sum(client.run(_sent_bytes).values()) - sent0) / a.repeats
            peaks = sorted(client.run(_peak_rss_kib).values())
            _, run = cluster.cluster_tree(client, open_rag(db, "scale"), db, None)  # its block count and bytes
        for tree in trees:
            assert np.array_equal(tree.parent, reference.parent) and np.array_equal(tree.score, reference.score)
        med = statistics.median(times)
        rows.append((f"Dask, {workers} worker{'s' if workers > 1 else ''} ({run.blocks} blocks)", med, med / one_s,
                     f"{run.part_bytes / 2**20:,.1f} MiB", f"{sent / 2**20:,.1f} MiB",
                     " / ".join(f"{k / 2**10:,.0f}" for k in peaks) + " MiB"))
    print(f"\n{'method':<28}{'seconds':>9}{'× one':>8}  {'forests merged':>15}  {'sent by workers':>16}  "
          "peak per worker (whole process)")
    for name, s, ratio, merged, sent, peak in rows:
        print(f"{name:<28}{s:9.2f}{ratio:8.2f}  {merged:>15}  {sent:>16}  {peak}")
    print("\nall cluster trees equal the one-process tree, array for array")
    _tasks(db, run.blocks)


def _tasks(db: str, n: int) -> None:
    """The work of each task, timed in this process: what one worker spends per block, per merge
    and the driver on the tree (the figures docs/scale.md extrapolates from)."""
    from lsdgraph._algorithms import forest
    from lsdgraph._jobs import cluster
    from lsdgraph._query.rag import open_rag

    rag = open_rag(db, "scale")
    grid = cluster.split_region(cluster.region_of(rag, None), n)
    print(f"\nper task ({n} blocks, run here one at a time; peak = VmHWM above the start of the task):")
    parts = []
    for i, block in enumerate(grid):
        base = reset_peak()
        t0 = time.perf_counter()
        part = cluster._block(db, "scale", rag.nodes_name, rag.edges_name, block, False)
        s, peak = time.perf_counter() - t0, max(0, status_kib("VmHWM") - base) / 2**10
        parts.append(part)
        print(f"  block {i}: {part.n_edges:,} edges, {part.ids.size:,} fragments in {s:.2f} s "
              f"({part.n_edges / s / 1e6:.2f}M edges/s), forest {part.u.size:,} + pending {part.pu.size:,} edges "
              f"= {part.nbytes / part.n_edges:.1f} bytes per edge read; peak {peak:,.0f} MiB")
    while len(parts) > 2:
        merged = []
        for i in range(0, len(parts), 2):
            t0 = time.perf_counter()
            merged.append(forest.merge_parts(parts[i:i + 2]))
            print(f"  merge of {sum(p.ids.size for p in parts[i:i + 2]):,} fragments: {time.perf_counter() - t0:.2f} s")
        parts = merged
    base = reset_peak()
    t0 = time.perf_counter()
    tree = forest.tree_of(parts)
    print(f"  driver: the tree of {len(tree):,} fragments from the last {len(parts)} parts in "
          f"{time.perf_counter() - t0:.2f} s, peak {max(0, status_kib('VmHWM') - base) / 2**10:,.0f} MiB")


if __name__ == "__main__":
    main()

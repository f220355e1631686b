"""Benchmark: segments at 50 thresholds of a synthetic RAG, lsdgraph's merge tree vs the baselines.

    python benchmarks/agglomerate.py            # 1M fragments / 3M edges, then 10M / 30M
    python benchmarks/agglomerate.py --no-large # only the 1M graph

The RAG is a 3-D grid graph with 6-neighbour edges (u = min id, v = max id), random merge scores
stored as float64 with ~1% null (NaN), and sparse large uint64 ids made like lsd's
(``block_id * voxels_per_block + 1 + local``); nodes and edges are shuffled (the hardest order for
id lookups). Methods, each in its own subprocess on the same files:

- lsdgraph: ``relabel`` + ``merge_tree_from_indices`` + 50 cuts (``iter_cuts``), uint64 segment ids;
- floor: the least work for the job, in numba here: the same relabel, one counting sort of edges
  into threshold buckets, one union-find pass with a cut (uint64 ids) after each bucket into one
  reused buffer, with the same prefetching and one-pass cut as lsdgraph (``uf[i] <= i``);
- the alternatives lsdgraph's design rejected, one run each: relabelling with ``np.searchsorted``
  (1M only: it takes minutes at 30M edges) and ordering edges with ``np.argsort``;
- scipy: ``scipy.sparse.csgraph.connected_components`` per threshold on the already relabelled edges
  (relabel not counted; labels are scipy's, not mapped to fragment ids);
- networkx: graph + ``connected_components`` per threshold on a 100k-fragment sub-grid, as reported
  (not extrapolated), on every 5th threshold.

Times are medians of ``--repeats`` runs after a warm-up (numba compile excluded); scipy and
networkx run once. Memory is each method's peak resident set above what the process held before
the run (Linux VmHWM after resetting it through /proc/self/clear_refs), inputs excluded.
All cuts are checked against the floor's (sum of segment ids and segment count per threshold)
and scipy's component counts against lsdgraph's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import reset_peak, status_kib
from numba import njit

from lsdgraph._core.idhash import prefetch as _prefetch
from lsdgraph._core.ids import sorted_unique

SPEC = "0:1:0.02"
VOXELS_PER_BLOCK = 2**27  # a 512^3-voxel block, as in lsd's id scheme
BLOCK = 10                # fragments per block side


# --------------------------------------------------------------------------- data

def make_rag(side: tuple[int, int, int], seed: int = 0, null_fraction: float = 0.01) -> dict:
    """Arrays ``fragments`` (shuffled), ``u``, ``v``, ``scores`` (edges shuffled), and ``grid_ids``,
    ``grid_u``, ``grid_v``: the ids in grid order and the edges' grid indices."""
    rng = np.random.default_rng(seed)
    z, y, x = side
    grid = np.arange(z * y * x, dtype=np.int64).reshape(side)
    gz, gy, gx = np.indices(side, dtype=np.int64)
    nb = [-(-s // BLOCK) for s in side]
    block = ((gz // BLOCK) * nb[1] + gy // BLOCK) * nb[2] + gx // BLOCK
    local = ((gz % BLOCK) * BLOCK + gy % BLOCK) * BLOCK + gx % BLOCK
    ids = (block * VOXELS_PER_BLOCK + 1 + local).ravel().astype(np.uint64)
    del gz, gy, gx, block, local
    gu = np.concatenate([grid[:, :, :-1].ravel(), grid[:, :-1, :].ravel(), grid[:-1].ravel()])
    gv = np.concatenate([grid[:, :, 1:].ravel(), grid[:, 1:, :].ravel(), grid[1:].ravel()])
    order = rng.permutation(gu.size)
    gu, gv = gu[order], gv[order]
    iu, iv = ids[gu], ids[gv]
    scores = rng.random(gu.size)
    scores[rng.random(gu.size) < null_fraction] = np.nan
    return {"fragments": ids[rng.permutation(ids.size)], "u": np.minimum(iu, iv),
            "v": np.maximum(iu, iv), "scores": scores, "grid_ids": ids, "grid_u": gu, "grid_v": gv}


def write_data(directory: Path, side, with_subset: bool) -> dict:
    """Write the RAG (and optionally its first 10 z-slices as a sub-grid) as .npy files."""
    rag = make_rag(side)
    for name in ("fragments", "u", "v", "scores"):
        np.save(directory / f"{name}.npy", rag[name])
    info = {"n_fragments": int(rag["fragments"].size), "n_edges": int(rag["u"].size)}
    if with_subset:
        n_sub = 10 * side[1] * side[2]
        keep = (rag["grid_u"] < n_sub) & (rag["grid_v"] < n_sub)
        np.save(directory / "sub_fragments.npy", rag["grid_ids"][:n_sub])
        for name in ("u", "v", "scores"):
            np.save(directory / f"sub_{name}.npy", rag[name][keep])
    return info


# --------------------------------------------------------------------------- the floor

@njit(cache=True, nogil=True)
def floor_run(ui, vi, s32, t32, ids, out, check):
    """Counting sort of usable edges into threshold buckets, then one union-find pass with a cut
    (uint64 segment ids, into ``out``) after each bucket. ``check[k]`` gets (sum of ids, n_segments)."""
    n = ids.size
    k_count = t32.size
    counts = np.zeros(k_count + 1, np.int64)
    bucket = np.empty(ui.size, np.int32)
    for e in range(ui.size):
        x = ui[e]
        y = vi[e]
        s = s32[e]
        if x < 0 or y < 0 or x == y or s != s:
            bucket[e] = -1
            continue
        lo = 0
        hi = k_count
        while lo < hi:  # first threshold >= s
            mid = (lo + hi) // 2
            if t32[mid] < s:
                lo = mid + 1
            else:
                hi = mid
        bucket[e] = lo
        counts[lo] += 1
    starts = np.zeros(k_count + 2, np.int64)
    for k in range(k_count + 1):
        starts[k + 1] = starts[k] + counts[k]
    pos = starts[:-1].copy()
    a = np.empty(starts[k_count], ui.dtype)
    b = np.empty(starts[k_count], vi.dtype)
    for e in range(ui.size):
        k = bucket[e]
        if k >= 0 and k < k_count:
            p = pos[k]
            pos[k] = p + 1
            a[p] = ui[e]
            b[p] = vi[e]
    uf = np.arange(n).astype(ui.dtype)
    for k in range(k_count):
        end = starts[k + 1]
        for e in range(starts[k], end):
            if e + 16 < end:  # the same prefetching as lsdgraph's union-find
                _prefetch(uf, a[e + 16])
                _prefetch(uf, b[e + 16])
            x = a[e]
            while uf[x] != x:
                uf[x] = uf[uf[x]]
                x = uf[x]
            y = b[e]
            while uf[y] != y:
                uf[y] = uf[uf[y]]
                y = uf[y]
            if x != y:
                if y < x:
                    x, y = y, x
                uf[y] = x
        total = np.uint64(0)
        roots = 0
        for i in range(n):  # uf[i] <= i: out[uf[i]] already holds the root's id
            if i + 16 < n:
                _prefetch(out, uf[i + 16])
            p = uf[i]
            out[i] = ids[i] if p == i else out[p]
            if check.shape[0] > 0:
                total += out[i]
                roots += p == i
        if check.shape[0] > 0:
            check[k, 0] = total
            check[k, 1] = roots


# --------------------------------------------------------------------------- child processes

def _measure(fn, repeats: int) -> dict:
    """Median time and peak extra RSS of ``fn()`` over ``repeats`` runs."""
    times, peaks = [], []
    for _ in range(repeats):
        base = reset_peak()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        peaks.append(status_kib("VmHWM") - base)
        del result
    return {"seconds": float(np.median(times)), "all_seconds": times, "peak_mib": max(peaks) / 1024}


def child(method: str, data: Path, repeats: int) -> dict:
    from lsdgraph._algorithms import merge_tree as ag

    values, _names = ag.parse_thresholds(SPEC)
    t32 = values.astype(np.float32)
    load = lambda name: np.load(data / f"{name}.npy")  # noqa: E731
    out: dict = {"method": method}

    if method == "networkx":
        import networkx as nx

        fragments, u, v = load("sub_fragments"), load("sub_u"), load("sub_v")
        s32 = load("sub_scores").astype(np.float32)
        chosen = t32[::5]
        nodes = fragments.tolist()

        def run():
            sizes = []
            for t in chosen:
                m = s32 <= t
                g = nx.Graph()
                g.add_nodes_from(nodes)
                g.add_edges_from(zip(u[m].tolist(), v[m].tolist(), strict=True))
                sizes.append(sum(1 for _ in nx.connected_components(g)))
            return sizes

        out.update(_measure(run, 1), n_thresholds=int(chosen.size), n_fragments=int(fragments.size),
                   n_edges=int(u.size))
        return out

    fragments, u, v, scores = load("fragments"), load("u"), load("v"), load("scores")
    # warm-up on a tiny graph: loads (or compiles) every kernel outside the timings
    tiny = ag.build_merge_tree(fragments[:50], u[:200], v[:200], scores[:200])
    for _cut in tiny.iter_cuts(SPEC):
        pass
    r = ag.index_edges(fragments, u, v)

    if method == "lsdgraph":
        from lsdgraph._algorithms import unionfind as uf

        out["relabel"] = _measure(lambda: ag.index_edges(fragments, u, v), repeats)
        out["tree"] = _measure(lambda: ag.merge_tree_from_indices(r, scores), repeats)
        tree = ag.merge_tree_from_indices(r, scores)

        def cuts():
            for _cut in tree.iter_cuts(SPEC):
                pass

        out["cuts"] = _measure(cuts, repeats)

        def everything():
            t = ag.merge_tree_from_indices(ag.index_edges(fragments, u, v), scores)
            for _cut in t.iter_cuts(SPEC):
                pass

        out["total"] = _measure(everything, repeats)
        out["tree_bytes_per_fragment"] = tree.nbytes / len(tree)
        out["check"] = [[int(c.segments.sum(dtype=np.uint64)), int((c.segments == tree.fragments).sum())]
                        for c in tree.iter_cuts(SPEC)]
        out["n_segments"] = ag.summary(tree, SPEC)["n_segments"].tolist()

        # the alternatives the design rejected, one run each
        def searchsorted():
            ids = sorted_unique(fragments)
            found = []
            for col in (u, v):
                i = np.searchsorted(ids, col).clip(0, ids.size - 1)
                found.append(np.where(ids[i] == col, i, -1).astype(np.int32))
            return found

        if u.size <= 5_000_000:  # minutes at 30M edges
            out["relabel_searchsorted"] = _measure(searchsorted, 1)
        s32 = np.asarray(scores, dtype=np.float32)
        out["sort_radix"] = _measure(lambda: uf.sort_edges(r.u, r.v, s32), 1)

        def argsort():
            keep = r.known & (r.u != r.v) & ~np.isnan(s32)
            order = np.argsort(s32[keep], kind="stable")
            a, b = r.u[keep][order], r.v[keep][order]
            return s32[keep][order], (a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64)

        out["sort_argsort"] = _measure(argsort, 1)
    elif method == "floor":
        s32 = np.asarray(scores, dtype=np.float32)
        no_check = np.zeros((0, 2), np.uint64)
        n = r.fragments.size
        floor_run(r.u[:100], r.v[:100], s32[:100], t32, r.fragments, np.empty(n, np.uint64), no_check)
        # one output buffer for all 50 cuts (numpy-allocated: huge pages), the least work there is
        out["core"] = _measure(
            lambda: floor_run(r.u, r.v, s32, t32, r.fragments, np.empty(n, np.uint64), no_check), repeats)
        check = np.zeros((t32.size, 2), np.uint64)
        floor_run(r.u, r.v, s32, t32, r.fragments, np.empty(n, np.uint64), check)
        out["check"] = check.astype(object).tolist()
    elif method == "scipy":
        from scipy.sparse import csr_array
        from scipy.sparse.csgraph import connected_components

        s32 = np.asarray(scores, dtype=np.float32)
        ok = r.known & (r.u != r.v) & ~np.isnan(s32)
        a, b, s32 = r.u[ok], r.v[ok], s32[ok]
        n = r.fragments.size
        connected_components(csr_array((np.ones(3), ([0, 1, 2], [1, 2, 0])), shape=(3, 3)))

        def run():
            counts = []
            for t in t32:
                m = s32 <= t
                graph = csr_array((np.ones(int(m.sum()), np.int8), (a[m], b[m])), shape=(n, n))
                counts.append(int(connected_components(graph, directed=False)[0]))
            return counts

        out.update(_measure(run, 1))
        out["n_segments"] = run()
    else:
        raise SystemExit(f"unknown method {method}")
    return out


def run_child(method: str, data: Path, repeats: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", method, "--data", str(data),
                           "--repeats", str(repeats)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report

def _fmt_s(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _row(name: str, scale: str, m: dict, per: int | None) -> str:
    runs = len(m.get("all_seconds", [m["seconds"]]))
    per_t = f"{m['seconds'] / per * 1e3:.2f} ms" if per else ""
    return f"| {name} | {scale} | {runs} | {_fmt_s(m['seconds'])} | {per_t} | {m['peak_mib']:.0f} MiB |"


def _lsdgraph_rows(lsd: dict, flo: dict, scale: str, k: int) -> list[str]:
    rows = [_row("**lsdgraph**: relabel + tree + 50 cuts", scale, lsd["total"], k),
            _row("&nbsp;&nbsp;relabel (hash table)", scale, lsd["relabel"], None)]
    if "relabel_searchsorted" in lsd:
        rows.append(_row("&nbsp;&nbsp;relabel with np.searchsorted instead", scale, lsd["relabel_searchsorted"], None))
    return rows + [
        _row("&nbsp;&nbsp;tree (radix sort + union-find)", scale, lsd["tree"], None),
        _row("&nbsp;&nbsp;&nbsp;&nbsp;of which the radix sort of edges", scale, lsd["sort_radix"], None),
        _row("&nbsp;&nbsp;&nbsp;&nbsp;np.argsort(kind='stable') instead", scale, lsd["sort_argsort"], None),
        _row("&nbsp;&nbsp;50 cuts (one O(N) pass each)", scale, lsd["cuts"], k),
        _row("floor: bucket sort + union-find + 50 cuts (after the same relabel)", scale, flo["core"], k),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--no-large", action="store_true", help="skip the 10M-fragment / 30M-edge run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.data), args.repeats)))
        return

    k = 50
    rows, goals, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="lsdgraph-bench-") as tmp:
        d1 = Path(tmp) / "1m"
        d1.mkdir()
        t0 = time.perf_counter()
        info = write_data(d1, (100, 100, 100), with_subset=True)
        print(f"# data: {info['n_fragments']:,} fragments, {info['n_edges']:,} edges "
              f"({time.perf_counter() - t0:.1f} s to generate)", file=sys.stderr)
        lsd = run_child("lsdgraph", d1, args.repeats)
        flo = run_child("floor", d1, args.repeats)
        sci = run_child("scipy", d1, args.repeats)
        nxr = run_child("networkx", d1, args.repeats)

        scale = f"{info['n_fragments'] / 1e6:.0f}M / {info['n_edges'] / 1e6:.0f}M"
        rows += _lsdgraph_rows(lsd, flo, scale, k)
        rows += [
            _row("scipy connected_components per threshold (relabel not counted)", scale, sci, k),
            _row(f"networkx connected_components per threshold ({nxr['n_thresholds']} of the 50)",
                 f"{nxr['n_fragments'] / 1e3:.0f}k / {nxr['n_edges'] / 1e3:.0f}k", nxr, nxr["n_thresholds"]),
        ]
        lsd_t = lsd["total"]["seconds"]
        lsd_core = lsd["tree"]["seconds"] + lsd["cuts"]["seconds"]
        scipy_ratio = sci["seconds"] / lsd_t
        floor_ratio = lsd_core / flo["core"]["seconds"]
        e2e_floor_ratio = lsd_t / (lsd["relabel"]["seconds"] + flo["core"]["seconds"])
        goals.append(("lsdgraph >= 100x faster than scipy per threshold (all of relabel + tree + cuts / 50)",
                      scipy_ratio >= 100, f"{scipy_ratio:.0f}x"))
        notes.append(f"the floor itself is {sci['seconds'] / flo['core']['seconds']:.0f}x scipy (relabel not "
                     f"counted); one extra cut costs {lsd['cuts']['seconds'] / k * 1e3:.2f} ms vs scipy's "
                     f"{sci['seconds'] / k * 1e3:.0f} ms per threshold "
                     f"({sci['seconds'] / lsd['cuts']['seconds']:.0f}x)")
        goals.append(("lsdgraph within 1.3x of the floor (tree + cuts vs bucket sort + union-find + cuts)",
                      floor_ratio <= 1.3, f"{floor_ratio:.2f}x (end to end, same relabel in both: "
                                          f"{e2e_floor_ratio:.2f}x)"))
        bpf = lsd["tree_bytes_per_fragment"]
        goals.append(("merge tree <= 16 bytes per fragment", bpf <= 16, f"{bpf:.1f} B"))
        agree = lsd["check"] == flo["check"] and lsd["n_segments"] == sci["n_segments"]
        goals.append(("all 50 cuts agree with the floor's (id sums, counts) and scipy's component counts",
                      agree, "yes" if agree else "NO"))
        nx_per = nxr["seconds"] / nxr["n_thresholds"] / nxr["n_fragments"]
        notes.append(f"networkx is measured on the 100k sub-grid as is (not extrapolated): "
                     f"{nx_per * 1e9:.0f} ns per fragment per threshold vs lsdgraph's "
                     f"{lsd_t / k / info['n_fragments'] * 1e9:.1f} ns on 1M "
                     f"({nx_per * k * info['n_fragments'] / lsd_t:.0f}x)")

        if not args.no_large:
            d2 = Path(tmp) / "10m"
            d2.mkdir()
            t0 = time.perf_counter()
            info2 = write_data(d2, (216, 216, 216), with_subset=False)
            print(
                f"# data: {info2['n_fragments']:,} fragments, {info2['n_edges']:,} edges "
                f"({time.perf_counter() - t0:.1f} s to generate)",
                file=sys.stderr,
            )
            big = run_child("lsdgraph", d2, args.repeats)
            bigf = run_child("floor", d2, args.repeats)
            scale2 = f"{info2['n_fragments'] / 1e6:.0f}M / {info2['n_edges'] / 1e6:.0f}M"
            rows += _lsdgraph_rows(big, bigf, scale2, k)
            tot = big["total"]["seconds"]
            goals.append(("10M fragments / 30M edges < 10 s (relabel + tree + 50 cuts)", tot < 10, _fmt_s(tot)))
            big_ratio = (big["tree"]["seconds"] + big["cuts"]["seconds"]) / bigf["core"]["seconds"]
            goals.append(("10M: within 1.3x of the floor (tree + cuts)", big_ratio <= 1.3, f"{big_ratio:.2f}x"))
            goals.append(
                (
                    "10M: all 50 cuts agree with the floor's",
                    big["check"] == bigf["check"],
                    "yes" if big["check"] == bigf["check"] else "NO",
                )
            )

    print(
        f"Agglomeration at {k} thresholds ({SPEC}): medians of {args.repeats} runs for lsdgraph's steps and "
        "the floor, one run otherwise; peak RSS = extra resident memory during the run (VmHWM), inputs "
        "excluded; numba compile excluded (warm-up first)."
    )
    print()
    print("| method | fragments / edges | runs | time | per threshold | peak RSS |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    print()
    for note in notes:
        print(f"note: {note}")
    for text, ok, value in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {text}: {value}")


if __name__ == "__main__":
    main()

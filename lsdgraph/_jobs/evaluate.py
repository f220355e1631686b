"""Score segmentations against ground-truth skeletons for many merge thresholds at once.

Each skeleton node gets the fragment it lies in, by sampling the fragments volume (zarr, local or
S3) at its position, chunk by chunk; the mapping is stored in MongoDB so it is computed once per
content of (skeletons, volume, mask): a volume rewritten at the same path is sampled again.
Segments per threshold come from cutting the merge tree (reused from the ``segment`` job when the
inputs match), so a sweep never reloads anything per threshold.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._algorithms import metrics
from lsdgraph._core import schema
from lsdgraph._core.errors import redact_record
from lsdgraph._core.ids import IdIndex
from lsdgraph._io.sources import S3Options
from lsdgraph._jobs.trees import build_tree
from lsdgraph._query.rag import SkeletonSet, database, open_rag
from lsdgraph._stores.api import Backend, connect

MAP_PREFIX = schema.SKELETON_FRAGMENTS_PREFIX


@dataclass
class NodeFragments:
    """The fragment under every skeleton node (0 = outside the volume, masked out, or background)."""

    node_ids: np.ndarray    # int64
    fragments: np.ndarray   # uint64
    outside: int            # nodes outside the fragments volume (or the mask)
    masked: int             # nodes in the mask's zero region
    reused: bool
    note: str | None = None  # why a stored mapping was not reused


def _map_key(prefix: str, fragments: str, mask: str | None) -> str:
    return hashlib.sha256(f"{prefix}|{fragments}|{mask}".encode()).hexdigest()[:12]


def _collection_identity(store: Backend, db: str, coll: str) -> dict:
    """What identifies a collection's content: its ingest checksum, else (not loaded by
    lsdgraph) its count."""
    rec = store.record(db, coll) or {}
    if rec.get("checksum"):
        return {"checksum": rec["checksum"]}
    return {"count": store.count(db, coll)}


_WHAT = {"fragments": "the fragments volume", "mask": "the mask volume", "skeletons": "the skeletons"}


def _stale(rec: dict | None, inputs: dict) -> str | None:
    """Why the stored mapping described by ``rec`` does not fit ``inputs`` (None: it fits, or
    there is none to reuse)."""
    if not rec or rec.get("status") != "complete":
        return None
    unlisted = [k for k in ("fragments", "mask") if inputs[k] == "unlisted"]
    if unlisted:
        return f"{_WHAT[unlisted[0]]} cannot be listed, so the stored mapping cannot be checked: recomputed"
    old = rec.get("inputs")
    if not isinstance(old, dict):
        return "the stored mapping does not record which volume content it was made from: recomputed"
    changed = [_WHAT[k] for k in _WHAT if old.get(k) != inputs[k]]
    return f"{' and '.join(changed)} changed since the mapping was stored: recomputed" if changed else None


def map_skeleton_fragments(store: Backend, db: str, skel: SkeletonSet, fragments: str, *, mask: str | None = None,
                           s3: S3Options | None = None, recompute: bool = False) -> NodeFragments:
    """Sample ``fragments`` (and ``mask``) at every skeleton node, or read the stored result:
    collection ``lsdgraph_skeleton_fragments.<key>`` holds ``{node, fragment}`` per skeleton node,
    described by a ``lsdgraph_meta`` record (skeletons, volume, mask, counts). The record keeps
    the fingerprints of the volumes' content and the skeletons' identity; the mapping is reused
    only when all match, so a volume rewritten at the same path is sampled again."""
    from lsdgraph._io.volumes import fingerprint, open_volume

    name = f"{MAP_PREFIX}{_map_key(skel.prefix, fragments, mask)}"
    rec = store.record(db, name)
    n_nodes = store.count(skel.db, skel.nodes_name)
    vol = open_volume(fragments, s3=s3)
    mvol = open_volume(mask, s3=s3) if mask else None
    inputs = {"fragments": fingerprint(vol, s3=s3) or "unlisted",
              "mask": (fingerprint(mvol, s3=s3) or "unlisted") if mvol else None,
              "skeletons": _collection_identity(store, skel.db, skel.nodes_name)}
    note = None if recompute else _stale(rec, inputs)
    if rec and rec.get("status") == "complete" and not recompute and note is None:
        cols = store.read(db, name, {}, {"node": "int64", "fragment": "uint64"})
        node, frag = cols["node"], cols["fragment"]
        return NodeFragments(node, frag, rec["outside"], rec["masked"], True)
    nodes, _ = skel.arrays()
    pos = nodes[list(schema.kind("skeleton_nodes").position)].to_numpy(float)
    values, inside = vol.sample(pos)
    frag = np.where(inside, values, 0).astype(np.uint64)
    outside = int((~inside).sum())
    masked = 0
    if mvol is not None:
        mvals, minside = mvol.sample(pos)
        drop = inside & (~minside | (mvals == 0))
        masked = int(drop.sum())
        frag[drop] = 0
    node_ids = nodes["id"].to_numpy(np.int64)
    store.replace(db, name, [{"node": ("int64", node_ids), "fragment": ("int64", frag.view(np.int64))}],
                  "skeleton_fragments")
    store.put_record(db, name, redact_record({
        "kind": "skeleton_fragments", "skeletons": skel.prefix, "fragments": fragments, "mask": mask,
        "nodes": n_nodes, "inputs": inputs, "outside": outside, "masked": masked, "status": "complete"}))
    return NodeFragments(node_ids, frag, outside, masked, False, note)


@dataclass
class EvaluationResult:
    """Per-threshold scores and where they were written."""

    table: pd.DataFrame
    best: pd.Series
    mapping: NodeFragments
    paths: dict
    seconds: dict


def node_segments(tree: agglomerate.MergeTree, node_fragments: np.ndarray):
    """A function ``t -> segment id per skeleton node`` from a merge tree: one O(fragments) cut per
    threshold. Nodes on fragment 0 get segment 0; nodes on a fragment the RAG lacks keep it as their
    own segment (it can merge with nothing)."""
    frags = np.asarray(node_fragments, np.uint64)
    idx = IdIndex(tree.fragments).lookup(frags)
    known = idx >= 0

    def at(t: float) -> np.ndarray:
        seg = tree.cut(t)
        return np.where(known, seg[idx], frags)

    return at, int((~known & (frags != 0)).sum())


def plot(table: pd.DataFrame, best: pd.Series, path: Path, title: str) -> Path:
    """ERL and VOI against the threshold, the best threshold marked; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, constrained_layout=True)
    t = table["threshold"]
    ax1.plot(t, table["erl"] / 1000, "o-", ms=3, label="ERL")
    ax1.axhline(table["max_erl"].iloc[0] / 1000, color="grey", ls=":", label="ERL of a perfect segmentation")
    ax1.set_ylabel("ERL (µm)")
    ax2.plot(t, table["voi_split"], "-", label="VOI split")
    ax2.plot(t, table["voi_merge"], "-", label="VOI merge")
    ax2.plot(t, table["voi_sum"], "k-", lw=2, label="VOI sum")
    ax2.set_ylabel("VOI (bits)")
    ax2.set_xlabel("merge threshold")
    for ax in (ax1, ax2):
        ax.axvline(best["threshold"], color="C3", ls="--", lw=1)
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    ax1.annotate(f"best ERL at t = {best['name']}\n{best['erl'] / 1000:.3g} µm ({best['erl_fraction']:.0%} of perfect)",
                 (best["threshold"], best["erl"] / 1000), textcoords="offset points", xytext=(8, -30), fontsize=8,
                 color="C3")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate(*, store: Backend | None = None, db: str | None = None, name: str | None = None,
             skeletons: str | None = None, skeletons_name: str | None = None, fragments: str,
             mask: str | None = None, edges: str | None = None, thresholds="0:1:0.02",
             out: str | Path, tree_dir: str | Path | None = None, roi=None, merge_rule: metrics.MergeRule = "segment",
             profile: str | None = None,
             endpoint_url: str | None = None, quiet: bool = False, stream=None) -> EvaluationResult:
    """Score the segmentation at every threshold against the skeletons; write
    ``evaluation_<edges>.csv/.json/.png`` and ``evaluation_<edges>.txt`` to ``out``. The merge
    tree is reused from ``tree_dir`` (default ``out``; a ``segment`` run's ``--out``) when its
    inputs match, else built and saved there."""

    stream = stream or sys.stdout
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    values, names = agglomerate.parse_thresholds(thresholds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = store or connect(db)
    t0 = time.perf_counter()
    rag = open_rag(db, name, edges=edges, store=store)
    edges = rag.edges_name
    skel_db = database(store, skeletons_name) if skeletons_name else rag.db
    skel = SkeletonSet.open(store, skel_db, skeletons)
    mapping = map_skeleton_fragments(store, skel_db, skel, fragments, mask=mask,
                                     s3=S3Options(profile=profile, endpoint_url=endpoint_url))
    t1 = time.perf_counter()
    log(f"{'reused' if mapping.reused else 'computed'} the fragment under {len(mapping.node_ids):,} skeleton nodes "
        f"({mapping.outside:,} outside the volume, {mapping.masked:,} masked) in {t1 - t0:.1f} s")
    if mapping.note:
        log(mapping.note)
    nodes, edges_df = skel.arrays()
    in_map = IdIndex(mapping.node_ids, "skeleton node ids", sort=False).lookup(nodes["id"].to_numpy(np.int64))
    node_frag = np.where(in_map >= 0, mapping.fragments[np.maximum(in_map, 0)], 0).astype(np.uint64)
    sk = metrics.Skeletons(nodes["id"].to_numpy(np.int64), nodes["neuron_id"].to_numpy(np.int64),
                           nodes[list(schema.kind("skeleton_nodes").position)].to_numpy(float),
                           edges_df[["u", "v"]].to_numpy(np.int64))
    tree, tree_path, reused, _ = build_tree(store=store, db=db, name=name, edges=edges, roi=roi,
                                            out=tree_dir or out, log=log)
    at, foreign = node_segments(tree, node_frag)
    if foreign:
        log(f"{foreign:,} skeleton nodes lie on fragments the RAG does not hold: each stays its own segment")
    t2 = time.perf_counter()
    table = metrics.evaluate_thresholds(sk, at, values.tolist(), names, merge_rule=merge_rule)
    t3 = time.perf_counter()
    best = metrics.best_threshold(table, by="erl")
    stem = out / f"evaluation_{edges}"
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".json").write_text(table.to_json(orient="records", indent=1))
    png = plot(table, best, stem.with_suffix(".png"),
               f"{rag.db}: {edges} vs {skel.prefix} skeletons ({len(sk.skeleton_ids)} skeletons, "
               f"{sk.total_length / 1000:.0f} µm)")
    by_voi = metrics.best_threshold(table, by="voi_sum")
    text = [
        f"evaluation of {rag.db}.{edges} against {skel.db}.{skel.prefix} skeletons",
        f"  skeletons: {len(sk.skeleton_ids):,} ({len(nodes):,} nodes, {sk.total_length / 1000:,.1f} µm of cable); "
        f"{mapping.outside:,} nodes outside the volume, {mapping.masked:,} masked",
        *([f"  note: {mapping.note}"] if mapping.note else []),
        f"  thresholds: {len(values)} from {names[0]} to {names[-1]}; ERL merge rule: {merge_rule}",
        f"  best ERL:  t = {best['name']}: {best['erl'] / 1000:,.2f} µm = {best['erl_fraction']:.1%} of a perfect "
        f"segmentation ({best['max_erl'] / 1000:,.2f} µm); VOI split {best['voi_split']:.3f}, merge "
        f"{best['voi_merge']:.3f}; {best['n_splits']} splits, {best['n_merges']} merges",
        f"  best VOI:  t = {by_voi['name']}: VOI sum {by_voi['voi_sum']:.3f} bits "
        f"(split {by_voi['voi_split']:.3f}, merge {by_voi['voi_merge']:.3f})",
        f"  extremes:  t = {names[0]}: ERL {table['erl'].iloc[0] / 1000:,.2f} µm; t = {names[-1]}: ERL "
        f"{table['erl'].iloc[-1] / 1000:,.2f} µm",
        f"  {len(values)} thresholds scored in {t3 - t2:.2f} s (merge tree {'reused' if reused else 'built'})",
    ]
    stem.with_suffix(".txt").write_text("\n".join(text) + "\n")
    if not quiet:
        print("\n".join(text), file=stream)
    paths = {"csv": stem.with_suffix(".csv"), "json": stem.with_suffix(".json"), "png": png,
             "txt": stem.with_suffix(".txt"), "tree": tree_path}
    return EvaluationResult(table, best, mapping, paths, {"map": t1 - t0, "tree": t2 - t1, "score": t3 - t2})

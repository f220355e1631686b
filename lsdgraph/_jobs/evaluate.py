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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lsdgraph._algorithms import lab, metrics
from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError, redact_record
from lsdgraph._core.ids import IdIndex
from lsdgraph._core.paths import output_folder
from lsdgraph._io.sources import S3Options
from lsdgraph._jobs import report
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
    state: np.ndarray | None = None  # int64 per node: IN_VOLUME, OUTSIDE or MASKED


IN_VOLUME, OUTSIDE, MASKED = 0, 1, 2  # NodeFragments.state: why a node's fragment is 0, if it is


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
    if not rec.get("node_states"):
        return "the stored mapping does not say which nodes lie outside the volume or in the mask: recomputed"
    if not isinstance(old, dict):
        return "the stored mapping does not record which volume content it was made from: recomputed"
    changed = [_WHAT[k] for k in _WHAT if old.get(k) != inputs[k]]
    return f"{' and '.join(changed)} changed since the mapping was stored: recomputed" if changed else None


def map_skeleton_fragments(store: Backend, db: str, skel: SkeletonSet, fragments: str, *, mask: str | None = None,
                           s3: S3Options | None = None, recompute: bool = False,
                           progress: bool | None = None) -> NodeFragments:
    """Sample ``fragments`` (and ``mask``) at every skeleton node, or read the stored result:
    collection ``lsdgraph_skeleton_fragments.<key>`` holds ``{node, fragment, state}`` per skeleton
    node (``state``: :data:`IN_VOLUME`, :data:`OUTSIDE` or :data:`MASKED`),
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
        cols = store.read(db, name, {}, {"node": "int64", "fragment": "uint64", "state": "int64"})
        return NodeFragments(cols["node"], cols["fragment"], rec["outside"], rec["masked"], True, state=cols["state"])
    nodes, _ = skel.arrays()
    pos = nodes[list(schema.kind("skeleton_nodes").position)].to_numpy(float)
    values, inside = vol.sample(pos, progress=progress)
    frag = np.where(inside, values, 0).astype(np.uint64)
    # kept per node so the per-neuron table can say why a node has no fragment
    state = np.where(inside, IN_VOLUME, OUTSIDE).astype(np.int64)
    outside = int((~inside).sum())
    masked = 0
    if mvol is not None:
        mvals, minside = mvol.sample(pos, progress=progress)
        drop = inside & (~minside | (mvals == 0))
        masked = int(drop.sum())
        frag[drop] = 0
        state[drop] = MASKED
    node_ids = nodes["id"].to_numpy(np.int64)
    store.replace(db, name, [{"node": ("int64", node_ids), "fragment": ("int64", frag.view(np.int64)),
                              "state": ("int64", state)}], "skeleton_fragments")
    store.put_record(db, name, redact_record({
        "kind": "skeleton_fragments", "skeletons": skel.prefix, "fragments": fragments, "mask": mask,
        "nodes": n_nodes, "inputs": inputs, "outside": outside, "masked": masked, "node_states": True,
        "status": "complete"}))
    return NodeFragments(node_ids, frag, outside, masked, False, note, state)


@dataclass
class EvaluationResult:
    """Scores and where they were written. Tables keep :func:`metrics.evaluate_thresholds`' column
    names (``erl`` in nm, VOI in bits); the files name them with units (:data:`report.UNITS`).

    ``table``: one row per threshold (per edges collection and threshold, with an ``edges`` column
    first, when several were compared); ``best`` / ``best_voi``: its row of highest ERL / lowest
    VOI sum (over all collections); ``bests``: each collection's best-ERL and best-VOI rows
    (:func:`report.bests`); ``neurons``: per neuron at each collection's best-ERL threshold
    (:func:`metrics.skeleton_scores` plus ``label_0_nodes``, ``outside_nodes``, ``masked_nodes``)."""

    table: pd.DataFrame
    best: pd.Series
    mapping: NodeFragments
    paths: dict
    seconds: dict
    best_voi: pd.Series
    bests: pd.DataFrame
    neurons: pd.DataFrame


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


def _edges_list(edges: str | Sequence[str] | None) -> list[str | None]:
    """``edges=`` as a list: ``None`` (the default collection), one name, ``"A,B,C"`` or a list."""
    if edges is None:
        return [None]
    items = edges.split(",") if isinstance(edges, str) else list(edges)
    if not all(isinstance(e, str) for e in items):
        raise LsdgraphError(f"edges={edges!r}: give edges collection names (strings), e.g. edges='edges_mean'")
    names = [e.strip() for e in items]
    if not names or not all(names):
        raise LsdgraphError(f"edges={edges!r}: an empty collection name; separate names by single commas, "
                            "e.g. edges='edges_hist_quant_75,edges_mean'")
    twice = sorted({e for e in names if names.count(e) > 1})
    if twice:
        raise LsdgraphError(f"edges={edges!r}: {', '.join(twice)} given more than once; name each collection once")
    return list(names)


def _score(sk: metrics.Skeletons, at, values: list[float], names: list[str], merge_rule: metrics.MergeRule,
           flags: dict[str, np.ndarray], like_lab: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The one place segmentations are scored: the per-threshold table, and the per-neuron table at
    its best-ERL threshold; ``like_lab``: with the lab pipeline's statistics (docs/semantics.md)."""
    by_threshold = lab.lab_evaluate_thresholds if like_lab else metrics.evaluate_thresholds
    by_neuron = lab.lab_skeleton_scores if like_lab else metrics.skeleton_scores
    table = by_threshold(sk, at, values, names, merge_rule=merge_rule)
    best = metrics.best_threshold(table, by="erl")
    neurons = by_neuron(sk, at(float(best["threshold"])), merge_rule, flags)
    neurons.insert(0, "threshold", float(best["threshold"]))
    neurons.insert(1, "name", best["name"])
    return table, neurons


def evaluate(*, store: Backend | None = None, db: str | None = None, name: str | None = None,
             skeletons: str | None = None, skeletons_name: str | None = None, fragments: str,
             mask: str | None = None, edges: str | Sequence[str] | None = None, thresholds="0:1:0.02",
             out: str | Path, tree_dir: str | Path | None = None, roi=None, merge_rule: metrics.MergeRule = "segment",
             profile: str | None = None,
             endpoint_url: str | None = None, quiet: bool = False, stream=None,
             like_lab: bool = False) -> EvaluationResult:
    """Score the segmentation at every threshold against the skeletons and write a report to ``out``.

    ``edges``: one edges collection (default: the only one, else ``edges_hist_quant_75``), or
    several to compare merge functions in one run (``"A,B,C"`` or a list), each scored with its own
    merge tree. Files, with ``STEM = evaluation_<edges>`` for one collection and
    ``evaluation_<A>_vs_<B>[_vs_<C>…]`` for several:

    - ``STEM.csv`` / ``.json``: one row per threshold (and collection: ``edges`` column), units in
      the column names (``erl_nm``, ``max_erl_nm``, ``voi_split_bits``, ``voi_merge_bits``,
      ``voi_sum_bits``);
    - ``STEM_best.csv``: each collection's best-ERL and best-VOI row (``best`` = ``erl`` /
      ``voi_sum``);
    - ``STEM_neurons.csv``: per neuron at each collection's best-ERL threshold (splits, merges,
      ``erl_contribution_nm``, ``cable_length_nm``, nodes, nodes in segment 0 and why);
    - ``STEM.png`` (150 dpi) and ``STEM.svg``: ERL and VOI against the threshold, one curve per
      collection, both bests marked; ``STEM.txt``: the summary, also printed.

    Merge trees are reused from ``tree_dir`` (default ``out``; a ``segment`` run's ``out``) when
    their inputs match, else built and saved there. ``like_lab``: score as the lab's pipeline does
    (null scores merge, segment ids are fragment indices, VOI and merge counts with background;
    docs/semantics.md); its files end in ``_like_lab``."""
    stream = stream or sys.stdout
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    wanted = _edges_list(edges)
    values, names = agglomerate.parse_thresholds(thresholds)
    out = output_folder(out, create=False)  # made once the inputs are known to be good
    if tree_dir is not None:
        output_folder(tree_dir, "tree_dir", create=False)
    store = store or connect(db)
    t0 = time.perf_counter()
    rags = [open_rag(db, name, edges=e, store=store) for e in wanted]
    chosen = [r.edges_name for r in rags]
    why = rags[0].why_empty(roi) if roi is not None else None
    if why:  # before the volume is sampled
        raise LsdgraphError(f"nothing to agglomerate: {why}")
    skel_db = database(store, skeletons_name) if skeletons_name else rags[0].db
    skel = SkeletonSet.open(store, skel_db, skeletons)
    mapping = map_skeleton_fragments(store, skel_db, skel, fragments, mask=mask,
                                     s3=S3Options(profile=profile, endpoint_url=endpoint_url),
                                     progress=False if quiet else None)
    t1 = time.perf_counter()
    log(f"{'reused' if mapping.reused else 'computed'} the fragment under {len(mapping.node_ids):,} skeleton nodes "
        f"({mapping.outside:,} outside the volume, {mapping.masked:,} masked) in {t1 - t0:.1f} s")
    if mapping.note:
        log(mapping.note)
    nodes, edges_df = skel.arrays()
    in_map = IdIndex(mapping.node_ids, "skeleton node ids", sort=False).lookup(nodes["id"].to_numpy(np.int64))
    node_frag = np.where(in_map >= 0, mapping.fragments[np.maximum(in_map, 0)], 0).astype(np.uint64)
    known_state = mapping.state if mapping.state is not None else np.full(len(mapping.node_ids), IN_VOLUME)
    state = np.where(in_map >= 0, known_state[np.maximum(in_map, 0)], IN_VOLUME)
    # why a node is in segment 0: these three add up to metrics' background_nodes
    flags = {"label_0_nodes": (node_frag == 0) & (state == IN_VOLUME), "outside_nodes": state == OUTSIDE,
             "masked_nodes": state == MASKED}
    sk = metrics.Skeletons(nodes["id"].to_numpy(np.int64), nodes["neuron_id"].to_numpy(np.int64),
                           nodes[list(schema.kind("skeleton_nodes").position)].to_numpy(float),
                           edges_df[["u", "v"]].to_numpy(np.int64))
    tables: dict[str, pd.DataFrame] = {}
    per_neuron: dict[str, pd.DataFrame] = {}
    trees: dict[str, Path] = {}
    built: dict[str, bool] = {}
    took = {"tree": 0.0, "score": 0.0}
    for e in chosen:
        t2 = time.perf_counter()
        tree, trees[e], reused, _ = build_tree(store=store, db=db, name=name, edges=e, roi=roi,
                                               out=tree_dir or out, log=log, progress=False if quiet else None,
                                               like_lab=like_lab)
        built[e] = not reused
        at, foreign = (lab.lab_node_segments if like_lab else node_segments)(tree, node_frag)
        if foreign:
            log(f"{foreign:,} skeleton nodes lie on fragments {e} does not hold: each stays its own segment")
        t3 = time.perf_counter()
        tables[e], per_neuron[e] = _score(sk, at, values.tolist(), names, merge_rule, flags, like_lab)
        took["tree"] += t3 - t2
        took["score"] += time.perf_counter() - t3
    single = len(chosen) == 1
    if single:
        table, neurons = tables[chosen[0]], per_neuron[chosen[0]]
    else:
        table = pd.concat([t.assign(edges=e) for e, t in tables.items()], ignore_index=True)
        neurons = pd.concat([t.assign(edges=e) for e, t in per_neuron.items()], ignore_index=True)
        table, neurons = (df[["edges", *df.columns[:-1]]] for df in (table, neurons))
    best = metrics.best_threshold(table, by="erl")
    best_voi = metrics.best_threshold(table, by="voi_sum")
    bests = report.bests(tables)

    # not Path.with_suffix: a collection name may hold a dot
    stem = f"evaluation_{'_vs_'.join(chosen)}{'_like_lab' if like_lab else ''}"
    paths: dict[str, Path] = {k: out / f"{stem}{end}" for k, end in (
        ("csv", ".csv"), ("json", ".json"), ("best", "_best.csv"), ("neurons", "_neurons.csv"), ("txt", ".txt"))}
    output_folder(out)
    report.write_table(table, paths["csv"], paths["json"])
    report.write_table(bests, paths["best"])
    report.write_table(neurons, paths["neurons"])
    what = chosen[0] if single else "{" + ", ".join(chosen) + "}"
    fig = report.figure(tables, f"{rags[0].db}: {what} vs {skel.prefix} skeletons ({len(sk.skeleton_ids)} "
                                f"skeletons, {sk.total_length / 1000:.0f} µm)")
    paths.update(report.save_figure(fig, out / stem))
    text = [
        f"evaluation of {rags[0].db}.{what} against {skel.db}.{skel.prefix} skeletons",
        f"  skeletons: {len(sk.skeleton_ids):,} ({len(nodes):,} nodes, {sk.total_length / 1000:,.1f} µm of cable); "
        f"{mapping.outside:,} nodes outside the volume, {mapping.masked:,} masked",
        *([f"  note: {mapping.note}"] if mapping.note else []),
        f"  thresholds: {len(values)} from {names[0]} to {names[-1]}; ERL merge rule: {merge_rule}"
        + ("; like_lab: the lab pipeline's semantics (docs/semantics.md)" if like_lab else ""),
    ]
    for e, t in tables.items():
        indent = "  " if single else "    "
        if not single:
            text.append(f"  {e}:")
        text += report.best_lines(metrics.best_threshold(t, by="erl"), metrics.best_threshold(t, by="voi_sum"), indent)
        text.append(f"{indent}extremes:  t = {names[0]}: ERL {t['erl'].iloc[0] / 1000:,.2f} µm; t = {names[-1]}: "
                    f"ERL {t['erl'].iloc[-1] / 1000:,.2f} µm")
    if not single:
        text.append(f"  overall:   best ERL with {best['edges']} at t = {best['name']} ({best['erl'] / 1000:,.2f} µm); "
                    f"best VOI with {best_voi['edges']} at t = {best_voi['name']} ({best_voi['voi_sum']:.3f} bits)")
    how = {e: "built" if built[e] else "reused" for e in chosen}
    text += [
        f"  per neuron at the best-ERL threshold: {paths['neurons'].name}",
        f"  {len(values)} thresholds scored in {took['score']:.2f} s "
        + (f"(merge tree {how[chosen[0]]})" if single else
           "(merge trees: " + ", ".join(f"{e} {h}" for e, h in how.items()) + ")"),
    ]
    paths["txt"].write_text("\n".join(text) + "\n")
    if not quiet:
        print("\n".join(text), file=stream)
    if single:
        paths["tree"] = trees[chosen[0]]
    else:
        paths.update({f"tree:{e}": p for e, p in trees.items()})
    return EvaluationResult(table, best, mapping, paths, {"map": t1 - t0, **took}, best_voi, bests, neurons)

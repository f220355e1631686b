"""``lsdgraph demo``: the whole pipeline on data made here — synthesise a dataset in the real dumps'
format, ingest it, read an ROI, agglomerate over many thresholds, evaluate against the skeletons, and
write a report folder. The database stays in a local store inside the output folder (``--db`` picks
another store: ``mongodb://...``, ``mongomock://``), and the commands to explore it are printed."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi
from lsdgraph._ingest import ingest
from lsdgraph._jobs.evaluate import evaluate
from lsdgraph._jobs.report import with_units
from lsdgraph._jobs.results import write_lut_documents
from lsdgraph._jobs.segment import segment
from lsdgraph._query.rag import open_rag, open_skeletons
from lsdgraph._stores.api import connect
from lsdgraph._synth import synth


def demo(out: str | Path = "lsdgraph-demo", *, db: str | None = None, name: str = "lsdgraph_demo",
         dataset: str = "hemi", size: str = "small", seed: int = 0, thresholds: str = "0:1:0.02",
         edges: str = "edges_hist_quant_75", stream=None) -> dict:
    """Run the pipeline; returns a dict of what was written where (also ``report/summary.json``)."""
    stream = stream or sys.stdout
    say = lambda msg: print(msg, file=stream, flush=True)  # noqa: E731
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LsdgraphError(f"{out} is a file; give a folder for the demo's output")
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    steps: dict[str, float] = {}
    t = time.perf_counter()

    def step(label: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[label] = round(now - t, 2)
        t = now

    data = synth(out / "data", dataset, size, seed)
    step("synthesise")
    say(f"1. synthesised a {size} {dataset} dataset: {data.n_fragments:,} fragments, {data.n_edges:,} edges per "
        f"merge function, {data.n_skeletons} skeletons -> {data.rag_dir}")

    db = db or str((out / "db").resolve())  # the local store: it stays for the follow-up commands
    store = connect(db)
    store.drop_database(name)
    for source in (data.rag_dir / "nodes.bson", data.rag_dir / f"{edges}.bson", data.skeleton_dir):
        ingest(str(source), store=store, name=name, quiet=True)
    step("ingest")
    counts = {c: n for c, n, _ in store.inventory(name)
              if not c.startswith(schema.OWN_PREFIX) and c != schema.DAISY_META}
    say(f"2. ingested into {store.uri} database {name!r}: " + ", ".join(f"{c} {n:,}" for c, n in counts.items()))

    rag = open_rag(name=name, edges=edges, store=store)
    box = rag.bbox()
    if box is None:
        raise LsdgraphError(f"{name}: the demo RAG has no nodes; rerun `lsdgraph demo`")
    centre = Roi(tuple(b + s / 4 for b, s in zip(box.begin, box.shape, strict=True)), tuple(s / 2 for s in box.shape))
    g = rag.read_graph(centre, max_score=0.5)
    skel_graph = open_skeletons(name=name, store=store).read(centre)
    step("read ROI")
    say(f"3. read the central ROI {centre} at max_score 0.5: {g.number_of_nodes():,} nodes, "
        f"{g.number_of_edges():,} edges; {skel_graph.number_of_nodes():,} skeleton nodes")

    seg = segment(store=store, name=name, edges=edges, thresholds=thresholds, out=out / "segments",
                  db_luts="none", quiet=True)
    step("agglomerate")
    say(f"4. agglomerated {len(seg.tree):,} fragments at {len(seg.summary)} thresholds: merge tree "
        f"{seg.tree.nbytes / len(seg.tree):.0f} bytes/fragment, {len(seg.lut_paths)} LUTs in "
        f"{seg.lut_paths[0].parent}")

    ev = evaluate(store=store, name=name, fragments=str(data.fragments_path), edges=edges, thresholds=thresholds,
                  out=report, tree_dir=out / "segments", quiet=True)
    best = ev.best
    n = write_lut_documents(store, name, edges, seg.tree, [best["threshold"]])
    step("evaluate")
    say(f"5. evaluated {len(ev.table)} thresholds against the skeletons: best ERL at t = {best['name']} "
        f"({best['erl'] / 1000:.2f} µm, {best['erl_fraction']:.0%} of perfect; VOI split {best['voi_split']:.2f}, "
        f"merge {best['voi_merge']:.2f}), best VOI at t = {ev.best_voi['name']} (VOI sum "
        f"{ev.best_voi['voi_sum']:.2f} bits); the best-ERL LUT is in {name}.{schema.LUT_PREFIX}{edges} "
        f"({n:,} documents)")

    summary = {"database": {"uri": store.uri, "name": name, "collections": counts},
               "data": str(data.out), "roi": str(centre), "roi_nodes": g.number_of_nodes(),
               "roi_edges": g.number_of_edges(), "fragments": len(seg.tree),
               "best": _plain(best), "best_voi": _plain(ev.best_voi),
               "files": {k: str(v) for k, v in ev.paths.items()}, "seconds": steps}
    (report / "summary.json").write_text(json.dumps(summary, indent=1))
    seg.summary.to_csv(report / f"segments_{edges}.csv", index=False)
    (report / "README.txt").write_text(
        "lsdgraph demo report\n\n"
        + ev.paths["txt"].read_text()
        + f"\nfiles:\n  plot        {ev.paths['png'].name} (.svg)\n  table       {ev.paths['csv'].name} (.json)\n"
          f"  bests       {ev.paths['best'].name} (best ERL and best VOI)\n"
          f"  per neuron  {ev.paths['neurons'].name} (at the best-ERL threshold)\n"
          f"  segments    segments_{edges}.csv (segments per threshold)\n"
          f"  summary     summary.json\n  merge tree  {seg.tree_path}\n  LUTs        {seg.lut_paths[0].parent}\n"
        + "\nseconds per step: " + ", ".join(f"{k} {v}" for k, v in steps.items()) + "\n")
    total = sum(steps.values())
    say(f"done in {total:.1f} s. Report: {report}/ (README.txt, {ev.paths['png'].name}, {ev.paths['csv'].name})")
    if not db.startswith("mongomock://"):
        for line in follow_ups(db, name, edges, str(Path(str(data.fragments_path)).resolve()), centre):
            say(line)
    return summary


def _plain(row) -> dict:
    """A table row as JSON-ready values, keyed as in the evaluation files (units in the names)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in with_units(row).items()}


def follow_ups(db: str, name: str, edges: str, fragments: str, roi: Roi) -> list[str]:
    """The commands that explore what the demo left in ``db``."""
    box = ",".join(f"{b:g}" for b in roi.begin) + ":" + ",".join(f"{e:g}" for e in roi.end)
    q = f"--db {db} --name {name}"
    return ["explore it:",
            f"  lsdgraph info {q}",
            f"  lsdgraph query {q} --edges {edges} --roi {box} --max-score 0.5",
            f"  lsdgraph evaluate {q} --edges {edges} --fragments {fragments} --out {Path(db).parent / 'evaluate'}"]

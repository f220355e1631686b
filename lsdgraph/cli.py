"""``lsdgraph`` command line: a thin face over the Python API. Every user error is one line on
stderr and exit status 1 (2 for usage errors); no tracebacks."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lsdgraph._core.errors import LsdgraphError, redact

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Store


def _db_args(p: argparse.ArgumentParser, name_required: bool = False) -> None:
    p.add_argument("--db", default=None, metavar="URI",
                   help="the store: a MongoDB URI (default: $LSDGRAPH_MONGO_URI, else mongodb://localhost:27017), "
                        "or a folder (file:PATH, ./PATH, /PATH) for the local store without a server")
    p.add_argument("--name", required=name_required, default=None, help="database name")


def _s3_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, help="AWS profile (default: anonymous unless AWS credentials "
                                                   "are set in the environment)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")


def cmd_ingest(a) -> int:
    from lsdgraph._ingest import ingest
    from lsdgraph._stores.api import default_uri
    from lsdgraph._stores.mongo import mock_exists

    uri = a.db or default_uri()
    if uri.startswith("mongomock://") and not mock_exists(uri):  # a fresh one would vanish with the command
        raise LsdgraphError("--db mongomock:// is the in-process store: it ends with this command and the data "
                            "with it; keep it without a server in the local store: --db ./lsdgraph-data")
    ingest(a.source, db=a.db, name=a.name, on_duplicate=a.on_duplicate, drop=a.drop, quiet=a.quiet,
           profile=a.profile, endpoint_url=a.endpoint_url, batch_docs=a.batch_docs, wait=a.wait)
    return 0


def cmd_index(a) -> int:
    from lsdgraph._ingest import reindex
    from lsdgraph._query.rag import database
    from lsdgraph._stores.api import connect

    store = connect(a.db)
    if store.local:
        raise LsdgraphError(f"--db {store.uri} is a local store: ingest gave it what reads need; nothing to index")
    mongo = cast("Store", store)
    for line in reindex(mongo, mongo.db(database(store, a.name))) or ["nothing to do"]:
        print(line)
    return 0


def cmd_ls(a) -> int:
    from lsdgraph._io.listing import listing

    for line in listing(a.source, depth=a.depth, profile=a.profile, endpoint_url=a.endpoint_url,
                        all_files=a.all):
        print(line)
    return 0


def _rag(a):
    from lsdgraph._query.rag import open_rag

    return open_rag(a.db, a.name, edges=a.edges)


def cmd_info(a) -> int:
    from lsdgraph._jobs.info import describe, render

    info = describe(a.db, a.name, edges=a.edges, bins=a.bins)
    if a.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        for line in render(info):
            print(line)
    return 0


def cmd_export(a) -> int:
    from lsdgraph._core.roi import parse_roi
    from lsdgraph._ingest.copy import copy_database
    from lsdgraph._query.rag import database
    from lsdgraph._stores.api import connect, is_local

    to = a.to if is_local(a.to) else "./" + a.to
    src = connect(a.db)
    dst = connect(to)
    copy_database(src, database(src, a.name), dst, a.as_name or a.name,
                  roi=parse_roi(a.roi) if a.roi else None, say=print)
    print(f"read it with: lsdgraph info --db {dst.uri} --name {a.as_name or a.name}  (or pandas.read_parquet("
          f"'{dst.uri[5:]}/{a.as_name or a.name}/nodes'))")
    return 0


def cmd_query(a) -> int:
    from lsdgraph._query.export import write_result

    rag = _rag(a)
    nodes, edges = rag.read_arrays(a.roi, a.max_score, edges=a.policy)
    out = open(a.out, "w", newline="") if a.out else sys.stdout
    try:
        write_result(out, nodes, edges, fmt=a.format, what=a.what, limit=a.limit,
                     header=f"{rag.db}.{rag.edges_name} roi={a.roi or 'all'} max_score={a.max_score} "
                            f"policy={a.policy}")
    finally:
        if a.out:
            out.close()
            print(f"wrote {len(nodes):,} nodes and {len(edges):,} edges to {a.out}", file=sys.stderr)
    return 0


def cmd_synth(a) -> int:
    from lsdgraph._synth import synth

    r = synth(a.out, a.dataset, a.size, a.seed, fragments=a.fragments, progress=not a.quiet)
    print(f"wrote a {a.size} synthetic {a.dataset} dataset ({r.n_fragments:,} fragments, {r.n_edges:,} edges "
          f"per merge function, {r.n_skeletons:,} skeletons) in {r.seconds:.1f} s")
    print(f"  RAG:       {r.rag_dir}")
    print(f"  skeletons: {r.skeleton_dir}")
    if r.fragments_path:
        print(f"  fragments: {r.fragments_path}")
    print(f"  truth:     {r.truth_path}")
    return 0


def cmd_segment(a) -> int:
    from lsdgraph._jobs.segment import segment

    if (a.bson is None) == (a.name is None):
        raise LsdgraphError("give either --name (and --db) to read a database, or --bson FOLDER to read dump files")
    r = segment(db=a.db, name=a.name, edges=a.edges, bson=a.bson, thresholds=a.thresholds, roi=a.roi, out=a.out,
                lut_files=not a.no_lut_files, db_luts=a.db_luts, quiet=a.quiet)
    if not a.quiet:
        print(r.summary.to_string(index=False))
    print(f"merge tree: {r.tree_path}{' (reused)' if r.reused_tree else ''}; {len(r.lut_paths)} LUT files in "
          f"{Path(a.out) / 'luts' / 'fragment_segment'}; summary in {Path(a.out) / f'summary_{a.edges}.csv'}")
    return 0


def cmd_relabel(a) -> int:
    from lsdgraph._io.sources import S3Options
    from lsdgraph._jobs.relabel import relabel

    relabel(a.fragments, a.lut, a.out, s3=S3Options(profile=a.profile, endpoint_url=a.endpoint_url), quiet=a.quiet)
    return 0


def cmd_evaluate(a) -> int:
    from lsdgraph._jobs.evaluate import evaluate

    evaluate(db=a.db, name=a.name, skeletons=a.skeletons, skeletons_name=a.skeletons_name, fragments=a.fragments,
             mask=a.mask, edges=a.edges, thresholds=a.thresholds, out=a.out, tree_dir=a.tree_dir, roi=a.roi,
             merge_rule=a.merge_rule,
             profile=a.profile, endpoint_url=a.endpoint_url, quiet=a.quiet)
    return 0


def cmd_demo(a) -> int:
    from lsdgraph._jobs.demo import demo

    demo(a.out, db=a.db, name=a.name or "lsdgraph_demo", dataset=a.dataset, size=a.size,
         seed=a.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lsdgraph", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ingest", help="load .bson dumps (file, folder or s3://bucket/prefix), or a database of a "
                                      "local store (file:PATH/DB), into MongoDB or a local store")
    s.add_argument("source", help="a .bson file, a folder (every .bson below it) or s3://bucket/prefix")
    _db_args(s)
    _s3_args(s)
    s.add_argument("--on-duplicate", choices=("error", "skip"), default="error",
                   help="documents sharing a node id / edge (u, v) with different content: fail "
                        "(default) or keep the one with the smallest _id (the oldest ObjectId)")
    s.add_argument("--drop", action="store_true", help="replace collections that already hold a load")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no per-file lines")
    s.add_argument("--batch-docs", type=int, default=20_000, help="documents per insert batch")
    s.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="when another ingest is loading a collection, wait at most this long for it "
                        "(default: as long as that process is alive; 0: fail at once)")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("index", help="add lsdgraph's indexes and edge positions to a database it did not load "
                                     "(mongorestore, daisy); idempotent")
    _db_args(s, name_required=True)
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("ls", help="what is at s3://bucket/prefix (or a folder) and how big, per folder")
    s.add_argument("source")
    s.add_argument("--depth", type=int, default=1, help="folder levels to show below SOURCE (default 1)")
    s.add_argument("--all", action="store_true", help="list every file, not only folder totals")
    _s3_args(s)
    s.set_defaults(func=cmd_ls)

    s = sub.add_parser("info", help="collections, counts, indexes, bounding box and score histogram of a database")
    _db_args(s, name_required=True)
    s.add_argument("--edges", default=None, help="edges collection for the score statistics (default: all)")
    s.add_argument("--bins", type=int, default=10, help="score histogram bins (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("query", help="nodes and edges in an ROI at a merge threshold")
    _db_args(s, name_required=True)
    s.add_argument("--edges", default=None, help="edges collection (default: the only one)")
    s.add_argument("--roi", default=None, metavar="Z0,Y0,X0:Z1,Y1,X1",
                   help="begin:end in nm, half-open (default: the whole RAG)")
    s.add_argument("--max-score", type=float, default=None, help="keep edges with merge_score <= this")
    s.add_argument("--policy", choices=("u", "both", "either"), default="u",
                   help="edges whose u is inside (default, daisy's rule), both ends, or either end")
    s.add_argument("--format", choices=("table", "json", "csv", "graphml"), default="table")
    s.add_argument("--what", choices=("edges", "nodes"), default="edges", help="rows for table/csv")
    s.add_argument("--limit", type=int, default=20, help="rows shown by --format table (0: all)")
    s.add_argument("--out", default=None, help="write to this file instead of stdout")
    s.set_defaults(func=cmd_query)

    s = sub.add_parser("export", help="copy a database (or the part in an ROI) into a local store: Parquet "
                                      "files that pandas, polars and DuckDB read as they are")
    _db_args(s, name_required=True)
    s.add_argument("--to", required=True, metavar="PATH", help="the local store folder (created if missing)")
    s.add_argument("--as", dest="as_name", default=None, help="database name there (default: --name)")
    s.add_argument("--roi", default=None, metavar="Z0,Y0,X0:Z1,Y1,X1",
                   help="copy only the nodes inside and the edges whose u is inside (nm, half-open)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("synth", help="write a synthetic dataset in the exact format of the real dumps")
    s.add_argument("out", help="folder to write (the bucket's layout is created below it: OUT/funke/...)")
    s.add_argument("--dataset", choices=("hemi", "zebrafinch", "fib25"), default="hemi")
    s.add_argument("--size", choices=("tiny", "small", "medium", "large"), default="tiny",
                   help="≈1k, 20k, 1M or 10M fragments")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fragments", action=argparse.BooleanOptionalAction, default=None,
                   help="write the fragments zarr (default: tiny and small)")
    s.add_argument("--quiet", "-q", action="store_true")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("segment", help="segments for many merge thresholds: merge tree, LUTs, summary")
    _db_args(s)
    s.add_argument("--bson", default=None, metavar="FOLDER",
                   help="read nodes.bson and EDGES.bson from this RAG folder instead of a database")
    s.add_argument("--edges", default=None, help="edges collection / file stem (default: the only one, else "
                                                 "edges_hist_quant_75)")
    s.add_argument("--thresholds", default="0:1:0.02", help="start:stop:step (stop exclusive) or a list "
                                                            "'0.1,0.5' (default 0:1:0.02)")
    s.add_argument("--roi", default=None, metavar="Z0,Y0,X0:Z1,Y1,X1", help="only this ROI (nm)")
    s.add_argument("--out", required=True, help="output folder (merge tree, luts/fragment_segment/*.npz, summary)")
    s.add_argument("--db-luts", default="all", help="LUTs written to MongoDB: all (default), none, or a "
                                                    "threshold list")
    s.add_argument("--no-lut-files", action="store_true", help="skip the per-threshold .npz LUT files")
    s.add_argument("--quiet", "-q", action="store_true")
    s.set_defaults(func=cmd_segment)

    s = sub.add_parser("relabel", help="apply a fragment→segment LUT to a zarr volume of fragment ids")
    s.add_argument("fragments", help="zarr array of fragment ids (folder with .zarray, or s3://...)")
    s.add_argument("--lut", required=True, help="an lsd-format LUT .npz (fragment_segment_lut)")
    s.add_argument("--out", required=True, help="zarr array to write")
    s.add_argument("--quiet", "-q", action="store_true")
    _s3_args(s)
    s.set_defaults(func=cmd_relabel)

    s = sub.add_parser("evaluate", help="score every threshold against ground-truth skeletons: table, plot")
    _db_args(s, name_required=True)
    s.add_argument("--skeletons", default=None, metavar="PREFIX",
                   help="skeleton collections PREFIX.nodes/PREFIX.edges (default: the only set)")
    s.add_argument("--skeletons-name", default=None, help="database holding the skeletons (default: --name)")
    s.add_argument("--fragments", required=True, help="zarr array of fragment ids (local or s3://)")
    s.add_argument("--mask", default=None, help="zarr mask: skeleton nodes where it is 0 are left out")
    s.add_argument("--edges", default=None, help="edges collection (default: the only one, else "
                                                 "edges_hist_quant_75)")
    s.add_argument("--thresholds", default="0:1:0.02")
    s.add_argument("--roi", default=None, metavar="Z0,Y0,X0:Z1,Y1,X1", help="agglomerate only this ROI (nm)")
    s.add_argument("--merge-rule", choices=("segment", "skeleton"), default="segment",
                   help="ERL: a merged skeleton loses its edges in merging segments (funlib.evaluate, "
                        "default) or all its edges")
    s.add_argument("--out", required=True, help="folder for the table, plot and summary")
    s.add_argument("--tree-dir", default=None, help="reuse the merge tree a `segment --out DIR` run saved "
                                                    "there (default: --out)")
    s.add_argument("--quiet", "-q", action="store_true")
    _s3_args(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("demo", help="the whole pipeline on synthetic data: synth, ingest, query, segment, "
                                    "evaluate; writes a report")
    s.add_argument("--out", default="lsdgraph-demo", help="output folder (default ./lsdgraph-demo)")
    s.add_argument("--db", default=None, help="store (default: a local store in OUT/db, kept for the printed "
                                              "follow-up commands; or mongodb://..., mongomock://)")
    s.add_argument("--name", default=None, help="database name (default lsdgraph_demo; it is replaced)")
    s.add_argument("--dataset", choices=("hemi", "zebrafinch", "fib25"), default="hemi")
    s.add_argument("--size", choices=("tiny", "small"), default="small")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"lsdgraph {args.command}: warning: {redact(str(message))}", file=sys.stderr)

    warnings.showwarning = one_line
    try:
        return args.func(args) or 0
    except LsdgraphError as e:
        print(f"lsdgraph {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lsdgraph {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug, not bad input: still one line, secrets redacted
        if os.environ.get("LSDGRAPH_DEBUG"):
            raise
        print(f"lsdgraph {args.command}: internal error: {redact(f'{type(e).__name__}: {e}')} "
              "(please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

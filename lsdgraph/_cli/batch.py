"""The batch jobs: ``segment``, ``relabel``, ``evaluate`` and ``demo``."""
from __future__ import annotations

from pathlib import Path

from lsdgraph._cli.common import add_command, db_args, roi_arg, s3_args
from lsdgraph._core.errors import LsdgraphError

_THRESHOLDS = "start:stop:step (stop exclusive) or a list '0.1,0.5', in [0, 1]"


def cmd_segment(a) -> int:
    from lsdgraph._jobs.segment import segment

    if (a.bson is None) == (a.name is None):
        raise LsdgraphError("give either --name (and --db) to read a database, or --bson FOLDER to read dump files")
    from lsdgraph._jobs.cluster import cluster_client

    with cluster_client(a.scheduler, a.workers) as client:
        r = segment(db=a.db, name=a.name, edges=a.edges, bson=a.bson, thresholds=a.thresholds, roi=a.roi,
                    out=a.out, lut_files=not a.no_lut_files, db_luts=a.db_luts, quiet=a.quiet, like_lab=a.like_lab,
                    client=client)
    if not a.quiet:
        print(r.summary.to_string(index=False))
    edges = r.tree_path.stem.removeprefix("merge_tree_")
    print(f"merge tree: {r.tree_path}{' (reused)' if r.reused_tree else ''}; {len(r.lut_paths)} LUT files in "
          f"{Path(a.out) / 'luts' / 'fragment_segment'}; summary in {Path(a.out) / f'summary_{edges}.csv'}")
    return 0


def cmd_relabel(a) -> int:
    from lsdgraph._io.sources import S3Options
    from lsdgraph._jobs.cluster import cluster_client
    from lsdgraph._jobs.relabel import relabel

    with cluster_client(a.scheduler, a.workers) as client:
        relabel(a.fragments, a.lut, a.out, s3=S3Options(profile=a.profile, endpoint_url=a.endpoint_url),
                quiet=a.quiet, client=client)
    return 0


def _cluster_args(s, what: str) -> None:
    g = s.add_argument_group(f"on a Dask cluster ({what}; pip install 'lsdgraph[dask]')")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on the workers of this Dask scheduler (they must reach --db and the output folder)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="start a local Dask cluster of N worker processes on 127.0.0.1 for this run")


def cmd_evaluate(a) -> int:
    from lsdgraph._jobs.evaluate import evaluate

    evaluate(db=a.db, name=a.name, skeletons=a.skeletons, skeletons_name=a.skeletons_name, fragments=a.fragments,
             mask=a.mask, edges=a.edges, thresholds=a.thresholds, out=a.out, tree_dir=a.tree_dir, roi=a.roi,
             merge_rule=a.merge_rule, profile=a.profile, endpoint_url=a.endpoint_url, quiet=a.quiet,
             like_lab=a.like_lab)
    return 0


def cmd_demo(a) -> int:
    from lsdgraph._jobs.demo import demo

    demo(a.out, db=a.db, name=a.name or "lsdgraph_demo", dataset=a.dataset, size=a.size, seed=a.seed)
    return 0


def register(sub) -> None:
    s = add_command(sub, "segment", "segments for many merge thresholds: merge tree, LUTs, summary", """
        Agglomerate a RAG at every threshold in one pass: segments at threshold t are the connected
        components of the edges with merge_score <= t (edges with a null score never merge). Writes
        the merge tree (reused by a rerun and by evaluate), one lsd-format LUT file per threshold
        (luts/fragment_segment/seg_EDGES_T.npz) and a summary table (segments and merges per
        threshold). LUT documents go into the database only with --db-luts.""", """
        lsdgraph segment --db ./lsdgraph-data --name hemi_roi1 --out ./seg
        lsdgraph segment --db ./lsdgraph-data --name hemi_roi1 --edges edges_mean --thresholds 0.1,0.3,0.5 --out ./seg
        lsdgraph segment --bson ./funke/hemi/.../hemi_affs_from_lsd_200k_roi_1 --out ./seg
        lsdgraph segment --db mongodb://localhost:27017 --name hemi_roi1 --out ./seg --db-luts 0.3,0.5
        lsdgraph segment --db mongodb://db-host:27017 --name hemi_roi1 --out ./seg --scheduler tcp://10.0.0.5:8786""",
        cmd_segment)
    db_args(s)
    s.add_argument("--bson", default=None, metavar="FOLDER",
                   help="read nodes.bson and EDGES.bson from this RAG folder instead of a database")
    s.add_argument("--edges", default=None, help="edges collection / file stem (default: the only one, else "
                                                 "edges_hist_quant_75)")
    s.add_argument("--thresholds", default="0:1:0.02", help=_THRESHOLDS)
    roi_arg(s, "agglomerate only the nodes in this box and the edges between them")
    s.add_argument("--out", required=True, help="output folder (created if missing)")
    s.add_argument("--db-luts", nargs="?", const="all", default="none", metavar="THRESHOLDS",
                   help="also write LUT documents (lut_EDGES collections) into the database: every threshold, or "
                        "the listed ones (default: none; for 20k fragments and 50 thresholds, a million documents)")
    s.add_argument("--no-lut-files", action="store_true", help="skip the per-threshold .npz LUT files")
    s.add_argument("--like-lab", action="store_true",
                   help="the lab's 04_find_segments exactly: null scores merge at every threshold, segment ids "
                        "are fragment indices, LUT files named int(t*100) (docs/semantics.md)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress, no table")
    _cluster_args(s, "the merge tree block by block, the same tree")

    s = add_command(sub, "relabel", "apply a fragment→segment LUT to a zarr volume of fragment ids", """
        Write the segmentation at one threshold as a zarr volume: every voxel's fragment id replaced
        by its segment id from an lsd-format LUT (segment's luts/fragment_segment/*.npz), chunk by
        chunk, with the input's shape, chunks, offset and resolution. Fragments the LUT does not list keep their
        id; 0 stays 0.""", """
        lsdgraph relabel ./fragments.zarr/volumes/fragments \\
            --lut ./seg/luts/fragment_segment/seg_edges_hist_quant_75_0.3.npz --out ./segmentation_0.3.zarr
        lsdgraph relabel s3://bucket/fragments.zarr/volumes/fragments --lut seg.npz --out ./seg.zarr --endpoint-url http://127.0.0.1:9000""",
        cmd_relabel)
    s.add_argument("fragments", help="zarr array of fragment ids (folder with .zarray, or s3://...)")
    s.add_argument("--lut", required=True, help="an lsd-format LUT .npz (fragment_segment_lut)")
    s.add_argument("--out", required=True, help="zarr array to write")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s3_args(s)
    _cluster_args(s, "chunks spread over the workers, the same volume")

    s = add_command(sub, "evaluate", "score every threshold against ground-truth skeletons: table, plot", """
        Score the segmentation at every threshold against ground-truth skeletons: expected run
        length (ERL), variation of information (VOI split and merge) and split/merge counts. Each
        skeleton node gets the fragment under it from the fragments volume (stored, so a rerun
        reuses it); segments come from the merge tree (reused from segment --out). Writes to
        --out: evaluation_EDGES.csv/.json (per threshold), _best.csv, _neurons.csv (per neuron at
        the best threshold), .png/.svg (the plot) and .txt (the summary, also printed).
        --edges A,B,C compares merge functions in one report.""", """
        lsdgraph evaluate --db ./lsdgraph-data --name hemi_roi1 --fragments ./fragments.zarr/volumes/fragments \\
            --out ./eval
        lsdgraph evaluate --db ./lsdgraph-data --name hemi_roi1 --skeletons-name hemi_gt --fragments s3://… \\
            --out ./eval
        lsdgraph evaluate --db ./lsdgraph-data --name hemi_roi1 --fragments ./fragments --like-lab --out ./eval-lab
        lsdgraph evaluate --db ./lsdgraph-data --name hemi_roi1 --fragments ./fragments \\
            --edges edges_hist_quant_50,edges_hist_quant_75,edges_mean --out ./compare
        lsdgraph evaluate --db ./lsdgraph-data --name hemi_roi1 --fragments ./fragments --thresholds 0:1:0.05 \\
            --tree-dir ./seg --out ./eval""",
        cmd_evaluate)
    db_args(s, name_required=True)
    s.add_argument("--skeletons", default=None, metavar="PREFIX",
                   help="skeleton collections PREFIX.nodes/PREFIX.edges (default: the only set)")
    s.add_argument("--skeletons-name", default=None, help="database holding the skeletons (default: --name)")
    s.add_argument("--fragments", required=True, help="zarr array of fragment ids (local or s3://)")
    s.add_argument("--mask", default=None, help="zarr mask: skeleton nodes where it is 0 are left out")
    s.add_argument("--edges", default=None, help="edges collection, or several comma-separated to compare merge "
                                                 "functions in one report (default: the only one, else "
                                                 "edges_hist_quant_75)")
    s.add_argument("--thresholds", default="0:1:0.02", help=_THRESHOLDS)
    roi_arg(s, "agglomerate only this box")
    s.add_argument("--merge-rule", choices=("segment", "skeleton"), default="segment",
                   help="ERL: segment (funlib.evaluate since 2019: a skeleton loses only its edges inside merging "
                        "segments) or skeleton (every edge of a skeleton that shares a non-zero segment with "
                        "another counts 0; funlib's pre-2019 rule, which also counts shared background, is "
                        "--like-lab --merge-rule skeleton)")
    s.add_argument("--like-lab", action="store_true",
                   help="score as the lab's pipeline does (null scores merge, segment ids are fragment indices, "
                        "VOI and merge counts with background), to put next to the paper's table "
                        "(docs/semantics.md)")
    s.add_argument("--out", required=True, help="folder for the tables, plot and summary (created if missing)")
    s.add_argument("--tree-dir", default=None, help="reuse the merge tree a `segment --out DIR` run saved "
                                                    "there (default: --out)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress, no summary")
    s3_args(s)

    s = add_command(sub, "demo", "the whole pipeline on synthetic data, no server needed", """
        Synthesise a small dataset in the exact format of the real dumps, ingest it into a local
        store (OUT/db), read an ROI, agglomerate at 50 thresholds, score them against the skeletons
        and write a report (OUT/report); then print the commands that explore what it left.""", """
        lsdgraph demo
        lsdgraph demo --out ./demo --size tiny
        lsdgraph demo --db mongodb://localhost:27017""", cmd_demo)
    s.add_argument("--out", default="lsdgraph-demo", help="output folder")
    s.add_argument("--db", default=None, help="store (default: a local store in OUT/db, kept for the printed "
                                              "follow-up commands; or mongodb://..., mongomock://)")
    s.add_argument("--name", default=None, help="database name (default lsdgraph_demo; it is replaced)")
    s.add_argument("--dataset", choices=("hemi", "zebrafinch", "fib25"), default="hemi", help="which volume's layout")
    s.add_argument("--size", choices=("tiny", "small"), default="small", help="≈1k or 20k fragments")
    s.add_argument("--seed", type=int, default=0, help="random seed")

"""Getting data in and out: ``ls``, ``ingest``, ``index``, ``export``, ``synth``."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, cast

from lsdgraph._cli.common import add_command, db_args, roi_arg, s3_args
from lsdgraph._core.errors import LsdgraphError

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Store


def cmd_ingest(a) -> int:
    from lsdgraph._ingest import ingest
    from lsdgraph._stores.api import default_uri
    from lsdgraph._stores.mongo import mock_exists

    uri = a.db or default_uri()
    if uri.startswith("mongomock://") and not mock_exists(uri):  # a fresh one would vanish with the command
        raise LsdgraphError("--db mongomock:// is the in-process store: it ends with this command and the data "
                            "with it; keep it without a server in the local store: --db ./lsdgraph-data")
    ingest(a.source, db=a.db, name=a.name, on_duplicate=a.on_duplicate, drop=a.drop, quiet=a.quiet,
           profile=a.profile, endpoint_url=a.endpoint_url, batch_docs=a.batch_docs, wait=a.wait,
           workers=_whole(a.workers, "workers"), range_bytes=_whole(a.range_bytes, "range_bytes"))
    return 0


def _whole(text: str, param: str) -> int:
    """A flag's whole number, or the library's one line for it (``workers='abc'`` → ``--workers 'abc'``)."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise LsdgraphError(f"{param}={text!r}: not a whole number; use 1 or more") from None


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


def register(sub) -> None:
    s = add_command(sub, "ls", "what is at s3://bucket/prefix (or a folder) and how big, per folder", """
        List a bucket prefix or a folder before you download or ingest it: each folder's total size
        and file count to --depth levels, and the files at the levels shown. Anonymous by default
        (the bucket is public).""", """
        lsdgraph ls s3://open-neurodata/funke/hemi/testing/segmentations/data.zarr/rags/ACLSD/
        lsdgraph ls s3://open-neurodata/funke/zebrafinch/ --depth 2
        lsdgraph ls ./funke --all""", cmd_ls)
    s.add_argument("source", help="s3://bucket/prefix or a folder")
    s.add_argument("--depth", type=int, default=1, help="folder levels to show below SOURCE")
    s.add_argument("--all", action="store_true", help="list every file, not only folder totals")
    s3_args(s)

    s = add_command(sub, "ingest", "load .bson dumps (file, folder or s3://...) into MongoDB or a local store", """
        Load mongodump files (.bson) into a database: every document is checked, streamed in bounded
        memory, counted exactly and indexed. A rerun of an unchanged source does nothing; a stopped
        load resumes. Collection name = file name without .bson. SOURCE may also be a database of a
        local store (file:PATH/DB), copied into --db.""", """
        lsdgraph ingest ./funke/hemi/.../hemi_affs_from_lsd_200k_roi_1 --db ./lsdgraph-data --name hemi_roi1
        lsdgraph ingest \\
            s3://open-neurodata/funke/hemi/testing/segmentations/data.zarr/rags/ACLSD/hemi_affs_from_lsd_200k_roi_1 \\
            --db mongodb://localhost:27017 --name hemi_roi1
        lsdgraph ingest ./edges_hist_quant_75.bson --db ./lsdgraph-data --name hemi_roi1""", cmd_ingest)
    s.add_argument("source", help="a .bson file, a folder (every .bson below it), s3://bucket/prefix, or file:PATH/DB")
    db_args(s)
    s3_args(s)
    s.add_argument("--on-duplicate", choices=("error", "skip"), default="error",
                   help="documents sharing a node id / edge (u, v) with different content: fail, or keep the "
                        "one with the smallest _id (the oldest ObjectId)")
    s.add_argument("--drop", action="store_true", help="replace collections that already hold a load")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no per-file lines")
    s.add_argument("--batch-docs", type=int, default=20_000, help="documents per insert batch")
    s.add_argument("--workers", default="1", metavar="N",
                   help="processes loading at once: each file larger than --range-bytes is split at document "
                        "boundaries into byte ranges loaded in parallel (MongoDB servers only)")
    s.add_argument("--range-bytes", default=str(64 << 20), metavar="BYTES",
                   help="with --workers: files larger than this are split, into ranges of at most this size")
    s.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="when another ingest is loading a collection, wait at most this long for it "
                        "(default: as long as that process is alive; 0: fail at once)")

    s = add_command(sub, "index", "add lsdgraph's indexes and edge positions to a MongoDB database it did not load", """
        For a database restored with mongorestore or written by daisy: add the spatial and id indexes
        of schema.json and copy each edge's endpoint positions onto it, as ingest does. Idempotent.""", """
        lsdgraph index --db mongodb://localhost:27017 --name hemi_roi1""", cmd_index)
    db_args(s, name_required=True)

    s = add_command(sub, "export", "copy a database (or an ROI of it) into a local store of Parquet files", """
        Copy a database from MongoDB (or another local store) into a local store: Parquet files that
        lsdgraph, pandas, polars and DuckDB read as they are. With --roi, only the nodes inside it
        and the edges whose u is inside.""", """
        lsdgraph export --db mongodb://localhost:27017 --name hemi_roi1 --to ./lsdgraph-data
        lsdgraph export --db mongodb://localhost:27017 --name hemi_roi1 --roi 0,0,0:4000,4000,4000 \\
            --to ./small --as hemi_small""",
        cmd_export)
    db_args(s, name_required=True)
    s.add_argument("--to", required=True, metavar="PATH", help="the local store folder (created if missing)")
    s.add_argument("--as", dest="as_name", default=None, help="database name there (default: --name)")
    roi_arg(s, "copy only the nodes inside and the edges whose u is inside")

    s = add_command(sub, "synth", "write a synthetic dataset in the exact format of the real dumps", """
        Write a synthetic RAG (nodes and three edges collections), ground-truth skeletons and a
        fragments zarr in the public bucket's layout below OUT, with the truth it was made from.""", """
        lsdgraph synth ./synthetic --dataset hemi --size small
        lsdgraph synth ./big --size medium --no-fragments""", cmd_synth)
    s.add_argument("out", help="folder to write (the bucket's layout is created below it: OUT/funke/...)")
    s.add_argument("--dataset", choices=("hemi", "zebrafinch", "fib25"), default="hemi", help="which volume's layout")
    s.add_argument("--size", choices=("tiny", "small", "medium", "large"), default="tiny",
                   help="≈1k, 20k, 1M or 10M fragments")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--fragments", action=argparse.BooleanOptionalAction, default=None,
                   help="write the fragments zarr (default: for tiny and small)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

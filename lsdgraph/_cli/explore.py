"""Looking at a database: ``info`` and ``query``."""
from __future__ import annotations

import json
import sys

from lsdgraph._cli.common import add_command, db_args, roi_arg


def cmd_info(a) -> int:
    from lsdgraph._jobs.info import describe, render

    info = describe(a.db, a.name, edges=a.edges, bins=a.bins)
    if a.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        for line in render(info):
            print(line)
    return 0


def cmd_query(a) -> int:
    from lsdgraph._core.paths import output_file
    from lsdgraph._query.export import write_result
    from lsdgraph._query.rag import open_rag

    out_path = output_file(a.out) if a.out else None
    rag = open_rag(a.db, a.name, edges=a.edges)
    nodes, edges = rag.read_arrays(a.roi, a.max_score, edges=a.policy)
    if not len(nodes) and a.roi:
        why = rag.why_empty(a.roi)
        if why:
            print(f"lsdgraph query: note: {why}", file=sys.stderr)
    out = open(out_path, "w", newline="") if out_path else sys.stdout
    try:
        write_result(out, nodes, edges, fmt=a.format, what=a.what, limit=a.limit,
                     header=f"{rag.db}.{rag.edges_name} roi={a.roi or 'all'} max_score={a.max_score} "
                            f"policy={a.policy}")
    finally:
        if out_path:
            out.close()
            what = (f"{len(nodes):,} nodes" if a.what == "nodes" or a.format in ("json", "graphml") else "")
            if a.what == "edges" or a.format in ("json", "graphml"):
                what += (" and " if what else "") + f"{len(edges):,} edges"
            print(f"wrote {what} to {out_path}", file=sys.stderr)
    return 0


def register(sub) -> None:
    s = add_command(sub, "info", "collections, counts, indexes, bounding box and score histogram of a database", """
        What a database holds: each collection with its kind, document count, indexes and load
        status (a failed or interrupted load says so), the nodes' bounding box in nm, and the
        merge-score range and histogram of each edges collection.""", """
        lsdgraph info --db ./lsdgraph-data --name hemi_roi1
        lsdgraph info --db mongodb://localhost:27017 --name hemi_roi1 --edges edges_hist_quant_75 --bins 20
        lsdgraph info --db ./lsdgraph-data --name hemi_roi1 --json""", cmd_info)
    db_args(s, name_required=True)
    s.add_argument("--edges", default=None, help="edges collection for the score statistics (default: all)")
    s.add_argument("--bins", type=int, default=10, help="score histogram bins")
    s.add_argument("--json", action="store_true", help="print JSON")

    s = add_command(sub, "query", "nodes and edges in an ROI at a merge threshold", """
        Read the subgraph of a RAG in a box (nm, half-open, z,y,x) with the edges whose merge_score
        is at most --max-score: as a table, CSV, JSON or GraphML (networkx reads it). Edges are
        chosen by their u end (daisy's rule) unless --policy says otherwise.""", """
        lsdgraph query --db ./lsdgraph-data --name hemi_roi1 --roi 0,0,0:4000,4000,4000 --max-score 0.5
        lsdgraph query --db ./lsdgraph-data --name hemi_roi1 --edges edges_mean --format csv --out edges.csv
        lsdgraph query --db ./lsdgraph-data --name hemi_roi1 --roi 0,0,0:2000,2000,2000 --what nodes --limit 0""",
        cmd_query)
    db_args(s, name_required=True)
    s.add_argument("--edges", default=None, help="edges collection (default: the only one, else edges_hist_quant_75)")
    roi_arg(s, "the box to read (default: the whole RAG)")
    s.add_argument("--max-score", type=float, default=None, help="keep edges with merge_score <= this "
                                                                 "(default: every edge, null scores too)")
    s.add_argument("--policy", choices=("u", "both", "either"), default="u",
                   help="edges whose u is inside (daisy's rule), both ends, or either end")
    s.add_argument("--format", choices=("table", "json", "csv", "graphml"), default="table", help="output format")
    s.add_argument("--what", choices=("edges", "nodes"), default="edges", help="rows for table/csv")
    s.add_argument("--limit", type=int, default=20, help="rows shown by --format table (0: all)")
    s.add_argument("--out", default=None, help="write to this file instead of stdout")

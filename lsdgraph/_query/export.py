"""Writing query results: a readable table, JSON, CSV or GraphML."""
from __future__ import annotations

import json
from typing import TextIO

import networkx as nx
import pandas as pd

from lsdgraph._core.errors import LsdgraphError


def _plain(df: pd.DataFrame) -> list[dict]:
    """Rows as dicts of Python scalars (exact 64-bit ids; NaN → None), as networkx gets them."""
    from lsdgraph._query.rag import _records

    return _records({c: df[c].to_numpy() for c in df.columns}, list(df.columns)) if len(df) else []


def write_result(out: TextIO, nodes: pd.DataFrame, edges: pd.DataFrame, *, fmt: str = "table",
                 what: str = "edges", limit: int = 20, header: str = "") -> None:
    """Write a read's nodes/edges to ``out`` in ``fmt`` (table | json | csv | graphml)."""
    rows = edges if what == "edges" else nodes
    if fmt == "json":
        json.dump({"query": header, "nodes": _plain(nodes), "edges": _plain(edges)}, out)
        out.write("\n")
    elif fmt == "csv":
        rows.to_csv(out, index=False)
    elif fmt == "graphml":
        from lsdgraph._query.rag import to_networkx

        g = to_networkx(nodes, edges)
        for _, _, d in g.edges(data=True):  # GraphML has no null: leave the attribute out
            for k in [k for k, v in d.items() if v is None]:
                del d[k]
        out.write("\n".join(nx.generate_graphml(g)) + "\n")
    elif fmt == "table":
        out.write(f"{header}\n{len(nodes):,} nodes, {len(edges):,} edges\n")
        shown = rows if limit <= 0 else rows.head(limit)
        if len(shown):
            out.write(shown.to_string(index=False) + "\n")
        if len(rows) > len(shown):
            out.write(f"... {len(rows) - len(shown):,} more {what} (--limit 0 shows all, or use --format csv)\n")
    else:
        raise LsdgraphError(f"format={fmt!r}: use table, json, csv or graphml")

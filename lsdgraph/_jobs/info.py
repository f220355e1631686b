"""``lsdgraph info``: what a database holds — collections with kind, count, indexes and load status,
the RAG's bounding box, and merge-score statistics per edges collection."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest.lease import state as load_state
from lsdgraph._query.rag import Rag, database
from lsdgraph._stores.api import connect


def describe(uri: str | None, name: str, *, edges: str | None = None, bins: int = 10) -> dict:
    """A JSON-able description of database ``name``."""
    if not isinstance(bins, int) or bins < 1:
        raise LsdgraphError(f"bins={bins!r}: use 1 or more histogram bins")
    store = connect(uri)
    db = database(store, name)
    inventory = store.inventory(db)
    names = [n for n, _, _ in inventory]
    meta = store.records(db)
    ranges: dict[str, list[dict]] = {}  # a parallel load's per-range records, by the file's collection
    for rec in meta.values():
        if rec.get("range_of"):
            ranges.setdefault(rec["range_of"], []).append(rec)
    meta = {n: rec for n, rec in meta.items() if not rec.get("range_of")}
    colls = []
    described = set()
    for n, count, indexes in inventory:
        if n == schema.META:
            continue
        own = n[len(schema.STAGING_PREFIX):] if n.startswith(schema.STAGING_PREFIX) else n
        rec = meta.get(own) or {}
        described.add(own)
        colls.append(_collection(n, rec, count, indexes, ranges.get(own)))
    # loads that failed or died before their first batch have a record and no collection yet
    colls += [_collection(n, rec, 0, [], ranges.get(n)) for n, rec in sorted(meta.items())
              if n not in described and rec.get("status") not in (None, "complete")]
    info: dict[str, Any] = {"database": name, "server": store.uri, "collections": colls}
    all_edges = [c["name"] for c in colls if c["kind"] == "rag_edges"]
    if edges is not None and edges not in all_edges:
        raise LsdgraphError(f"edges={edges!r}: no such edges collection in database {name!r}; it has: "
                            f"{', '.join(all_edges) or 'none'}")
    if "nodes" in names:
        edge_names = [e for e in all_edges if edges is None or e == edges]
        rag = Rag(store, db, "nodes", edge_names[0] if edge_names else "")
        box = rag.bbox()
        info["bbox"] = None if box is None else {"begin": list(box.begin), "end": list(box.end)}
        info["scores"] = {}
        for e in edge_names:
            info["scores"][e] = Rag(store, db, "nodes", e).threshold_stats(bins=bins)
    return info


def _collection(name: str, rec: dict, count: int, indexes: list[str], ranges: list[dict] | None = None) -> dict:
    status, detail = load_state(rec)
    if ranges:  # a parallel load in progress or stopped: how far its ranges got
        done = sum(r.get("status") == "done" for r in ranges)
        detail = f"{detail + '; ' if detail else ''}{done} of {len(ranges)} byte ranges done (rerun to resume the rest)"
    return {"name": name, "kind": schema.kind_of(name).name, "count": count, "indexes": indexes,
            "status": status, "detail": detail, "bytes": rec.get("size"), "source": rec.get("source"),
            "error": rec.get("error")}


def render(info: dict) -> Iterator[str]:
    """Human-readable lines for :func:`describe`'s result."""
    yield f"database {info['database']} at {info['server']}"
    yield f"  {'collection':<34} {'kind':<15} {'documents':>12} {'status':<9} indexes"
    for c in info["collections"]:
        status = c["status"] or "-"
        yield (f"  {c['name']:<34} {c['kind']:<15} {c['count']:>12,} {status:<9} "
               f"{', '.join(i for i in c['indexes'] if i != '_id_') or '-'}")
        if c.get("detail"):
            yield f"      {'error' if c['status'] == 'failed' else 'load'}: {c['detail']}"
    if info.get("bbox"):
        b = info["bbox"]
        yield ("  nodes bounding box (nm, zyx): [" + ", ".join(f"{v:.6g}" for v in b["begin"]) + "] .. ["
               + ", ".join(f"{v:.6g}" for v in b["end"]) + "]")
    for name, st in (info.get("scores") or {}).items():
        if not st.get("scored"):
            yield f"  {name}: {st['edges']:,} edges, no merge scores"
            continue
        yield (f"  {name}: {st['edges']:,} edges, {st['nulls']:,} null scores, "
               f"scores {st['min']:.4g} .. {st['max']:.4g}")
        top = max(h["edges"] for h in st["histogram"]) or 1
        for h in st["histogram"]:
            bar = "#" * round(30 * h["edges"] / top)
            yield f"    [{h['from']:6.3f}, {h['to']:6.3f})  {h['edges']:>12,}  {bar}"

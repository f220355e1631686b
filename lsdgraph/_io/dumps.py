"""Read a RAG straight from its dump files (``nodes.bson``, ``edges_<name>.bson``) into arrays,
vectorized and validated, with no database — for users who only want segments."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex
from lsdgraph._core.roi import as_roi
from lsdgraph._io import bsonio, validate


@dataclass
class RagArrays:
    """A RAG as arrays: fragment ids (uint64) with centres (n, 3) nm zyx; edges u, v (uint64) and
    merge scores (float64, NaN for null)."""

    ids: np.ndarray
    positions: np.ndarray
    u: np.ndarray
    v: np.ndarray
    scores: np.ndarray


def read_columns(path: Path, kind: schema.Kind, fields: dict[str, str], *, start: int = 0, end: int | None = None,
                 first_index: int = 0) -> dict[str, np.ndarray]:
    """Stream one dump file into typed columns (``{"id": "uint64", "center_z": "float64"}``),
    validating every document as ingest does; with ``end``, only the documents in bytes
    ``[start, end)`` (document boundaries; the first is the file's ``first_index``-th), which may
    be none."""
    parts: dict[str, list] = {f: [] for f in fields}
    n = first_index
    try:
        stream = open(path, "rb")
    except OSError as e:
        raise LsdgraphError(f"{path}: cannot open ({e.strerror}); check the folder (bson=)") from None
    with stream:
        stream.seek(start)
        source = stream if end is None else bsonio.Limited(stream, end - start)
        for base, docs, err in bsonio.iter_docs(source, kind.fields, chunk_bytes=32 << 20, max_docs=1 << 20,
                                                start_offset=start):
            msg = validate.check(docs, kind, file=str(path), base_offset=base, first_index=n)
            if msg:
                raise LsdgraphError(msg)
            if err is not None:
                raise LsdgraphError(validate.structure_message(str(path), path.stat().st_size, base, n + len(docs),
                                                               err, docs.buf))
            for f, dtype in fields.items():
                parts[f].append(docs.column(f, dtype))
            n += len(docs)
    if end is None and n == 0:
        raise LsdgraphError(f"{path}: no documents; is it a .bson dump?")
    return {f: np.concatenate(p) if p else np.empty(0, fields[f]) for f, p in parts.items()}


def edges_file(folder: Path, edges: str | None) -> Path:
    """``folder/<edges>.bson`` (by default the edges file :func:`schema.choose_edges` picks), or a
    one-line error listing the edges files there."""
    if not (folder / "nodes.bson").exists():
        raise LsdgraphError(f"bson={str(folder)!r}: no nodes.bson there; point it at a RAG folder (nodes.bson + "
                            "edges_*.bson)")
    found = [x.stem for x in folder.glob("edges*.bson")]
    return folder / f"{schema.choose_edges(found, edges, str(folder))}.bson"


def read_rag(folder: str | Path, edges: str, roi=None) -> RagArrays:
    """Nodes and one edges file of a RAG folder; with ``roi``, the nodes inside it and the edges
    whose ``u`` is inside (daisy's rule, as the database reads)."""
    folder = Path(folder)
    if not (folder / "nodes.bson").exists():
        raise LsdgraphError(f"bson={str(folder)!r}: no nodes.bson there; point it at a RAG folder (nodes.bson + "
                            "edges_*.bson)")
    nk, ek = schema.kind("rag_nodes"), schema.kind("rag_edges")
    nodes = read_columns(folder / "nodes.bson", nk, {"id": "uint64", **{f: "float64" for f in nk.position}})
    e = read_columns(edges_file(folder, edges), ek, {"u": "uint64", "v": "uint64", schema.SCORE: "float64"})
    ids = nodes["id"]
    pos = np.stack([nodes[f] for f in nk.position], 1)
    u, v, s = e["u"], e["v"], e[schema.SCORE]
    roi = as_roi(roi)
    if roi is not None:
        inside = roi.contains(pos)
        ids, pos = ids[inside], pos[inside]
        keep = IdIndex(ids, "node ids", sort=False).contains(u)
        u, v, s = u[keep], v[keep], s[keep]
    return RagArrays(ids, pos, u, v, s)

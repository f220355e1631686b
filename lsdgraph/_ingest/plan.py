"""Which dump files go where: collection names as mongorestore gives them, kinds, load order, and
which nodes collection each edges collection takes its positions from."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from lsdgraph._core import schema
from lsdgraph._io.sources import SourceFile, is_s3


def default_db_name(source: str) -> str:
    """A database name from the source's last path component (MongoDB forbids ``/\\. "$``)."""
    path = str(source) if is_s3(source) else Path(source).expanduser().resolve().as_posix()
    tail = PurePosixPath(path.rstrip("/")).name or "lsdgraph"
    if tail.endswith(".bson"):
        tail = PurePosixPath(path.rstrip("/")).parent.name or "lsdgraph"
    return re.sub(r'[/\\. "$*<>:|?]', "_", tail)[:63]


def skip_reason(collection: str) -> str | None:
    """Why a dump file is not loaded: ``system.*`` as mongorestore, and lsdgraph's own bookkeeping
    (``lsdgraph_meta``, ``lsdgraph_staging.*``), which a dump of an lsdgraph database carries."""
    if collection.startswith("system."):
        return "system collection (mongorestore skips these too)"
    if collection == schema.META or collection.startswith(schema.STAGING_PREFIX):
        return "lsdgraph's own bookkeeping, rebuilt by the load"
    return None


def plan(files: list[SourceFile]) -> list[tuple[SourceFile, str, schema.Kind]]:
    """(file, collection, kind) in load order: RAG nodes first (edges copy their positions).

    Collection = file name without ``.bson``, as mongorestore does; when two files below a folder
    share a name, each is named by its relative path instead (``a/b/nodes.bson`` → ``a.b.nodes``).
    The kind always comes from the file name, so a renamed ``a.b.nodes`` is still RAG nodes.
    """
    stems: dict[str, int] = {}
    for f in files:
        stems[schema.collection_name(f.name)] = stems.get(schema.collection_name(f.name), 0) + 1
    out = []
    for f in files:
        stem = schema.collection_name(f.name)
        name = schema.collection_name(f.rel).replace("/", ".") if stems[stem] > 1 else stem
        out.append((f, name, schema.kind_of(stem)))
    order = {"rag_nodes": 0, "skeleton_nodes": 1}
    return sorted(out, key=lambda t: (order.get(t[2].name, 2), t[1]))


def nodes_for(planned: list[tuple[SourceFile, str, schema.Kind]]) -> dict[str, str]:
    """For each edges collection, the nodes collection its joined fields come from: for a RAG the
    nodes file in the same folder, else ``nodes`` (loaded earlier into the same database); for
    skeletons ``<prefix>.nodes``."""
    def folder(f: SourceFile) -> str:
        return f.rel.rsplit("/", 1)[0] if "/" in f.rel else ""

    nodes = {folder(f): name for f, name, k in planned if k.name == "rag_nodes"}
    out = {name: nodes.get(folder(f), "nodes") for f, name, k in planned if k.name == "rag_edges"}
    out.update({name: name[:-len("edges")] + "nodes" for f, name, k in planned if k.name == "skeleton_edges"})
    return out

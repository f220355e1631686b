"""The local store's per-collection records (what lsdgraph keeps in MongoDB's ``lsdgraph_meta``):
one JSON file each, written atomically (temp file, fsync, ``os.replace``, fsync of the folder).
Datetimes round-trip as ``{"$date": ISO-8601}`` (as MongoDB's extended JSON); numpy scalars and
arrays are stored as numbers and lists."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import uuid
from pathlib import Path

import numpy as np

from lsdgraph._core.errors import LsdgraphError


def _encode(value: object) -> object:
    if isinstance(value, _dt.datetime):
        return {"$date": value.isoformat()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"a {type(value).__name__} value")


def _decode(obj: dict) -> object:
    if len(obj) == 1 and isinstance(obj.get("$date"), str):
        return _dt.datetime.fromisoformat(obj["$date"])
    return obj


def dumps(rec: object, what: str) -> str:
    """The record as JSON text, or a one-line error for what JSON cannot hold."""
    if not isinstance(rec, dict):
        raise LsdgraphError(f"{what}: give a dict, got {type(rec).__name__}")
    try:
        return json.dumps(rec, default=_encode, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise LsdgraphError(f"{what}: cannot store {e} as JSON; use str, numbers, bool, None, lists, dicts "
                            "and datetimes") from None


def load(path: Path) -> dict | None:
    """The record in ``path``, or None when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        rec = json.loads(text, object_hook=_decode)
    except ValueError as e:
        raise LsdgraphError(f"{path} is not valid JSON ({e}); delete it and re-ingest the collection") from None
    if not isinstance(rec, dict):
        raise LsdgraphError(f"{path} does not hold a JSON object; delete it and re-ingest the collection")
    return rec


def write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a reader sees the old record or the new one."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise LsdgraphError(f"writing {path} failed ({e.strerror or e}); free space or fix permissions and "
                            "retry") from None


def set_fields(rec: dict, fields: dict) -> dict:
    """``rec`` with ``fields`` set in place, dotted keys into nested dicts (as MongoDB's ``$set``)."""
    for key, value in fields.items():
        *path, last = str(key).split(".")
        node = rec
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return rec

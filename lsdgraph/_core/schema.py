"""lsdgraph's MongoDB layout, read from ``schema.json`` (the same file ``queries/*.js`` read):
collection kinds and naming, required fields, index specs, ROI and threshold rules."""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lsdgraph._core.errors import LsdgraphError

SCHEMA_FILE = "schema.json"


@lru_cache(maxsize=1)
def load() -> dict:
    """The parsed ``schema.json``."""
    return json.loads(resources.files(__package__).joinpath(SCHEMA_FILE).read_text())


@dataclass(frozen=True)
class Kind:
    """What a collection holds and what its documents must carry."""

    name: str
    integers: tuple[str, ...]
    numbers: tuple[str, ...]
    optional_numbers: tuple[str, ...]
    position: tuple[str, ...]
    unique: tuple[str, ...]
    alternative_integers: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """Fields the scanner extracts: ``_id`` first, then what is validated."""
        return ("_id",) + self.integers + self.alternative_integers + self.numbers + self.optional_numbers


def kind(name: str) -> Kind:
    spec = load()["kinds"][name]
    return Kind(name, tuple(spec["integers"]), tuple(spec["numbers"]), tuple(spec["optional_numbers"]),
                tuple(spec["position"]), tuple(spec["unique"]), tuple(spec.get("alternative_integers", [])))


def kind_of(collection: str) -> Kind:
    """The kind of a collection from its name: ``nodes``, ``edges_*``, ``<volume>.nodes``, ...;
    lsdgraph's own collections (``lsdgraph_*``) are ``other``."""
    if collection.startswith(OWN_PREFIX):
        return kind("other")
    for name, spec in load()["kinds"].items():
        if spec["match"] and re.match(spec["match"], collection):
            return kind(name)
    return kind("other")


def collection_name(file_name: str) -> str:
    """Collection name for a dump file, as mongorestore does: the file name without ``.bson``."""
    return file_name[:-5] if file_name.endswith(".bson") else file_name


def indexes(kind_name: str) -> list[dict]:
    """Index specs ``{"name", "use", "key": [[field, 1], ...], "unique"?}`` for a kind (or one of
    lsdgraph's own collections: ``lut``, ``merge_tree``, ``skeleton_fragments``)."""
    return load()["indexes"][kind_name]


def index_name(kind_name: str, use: str) -> str:
    """The name of the index a read of ``kind_name`` uses for ``use`` (``roi``, ``threshold``...)."""
    for spec in indexes(kind_name):
        if spec.get("use") == use:
            return spec["name"]
    raise KeyError(f"schema.json: no {use!r} index for {kind_name}")


def names() -> dict:
    return load()["collections"]


OWN_PREFIX = names()["own_prefix"]
META = names()["meta"]
DAISY_META = names()["daisy_meta"]
STAGING_PREFIX = names()["staging_prefix"]
LUT_PREFIX = names()["lut_prefix"]
TREE_PREFIX = names()["merge_tree_prefix"]
SKELETON_FRAGMENTS_PREFIX = names()["skeleton_fragments_prefix"]
EDGE_POSITIONS = {end: tuple(fields) for end, fields in load()["edge_positions"].items() if end in ("u", "v")}
EDGE_JOINS = {k: v for k, v in load()["edge_joins"].items() if k != "about"}
NODE_POSITION = kind("rag_nodes").position
SCORE = load()["threshold"]["field"]
EDGE_POLICIES = tuple(load()["roi"]["edge_policies"])
DEFAULT_EDGE_POLICY = load()["roi"]["default_edge_policy"]
DEFAULT_EDGES = load()["default_edges"]["name"]


def choose_edges(available: Sequence[str], given: str | None, where: str, param: str = "edges") -> str:
    """The edges collection (or file stem) a read uses: ``given`` when it is there; else the only
    one; else ``DEFAULT_EDGES`` when present; else a one-line error listing them."""
    found = sorted(available)
    shown = ", ".join(found) or "none"
    if given is not None:
        if given not in found:
            raise LsdgraphError(f"{param}={given!r}: no such edges collection in {where}; it has: {shown}")
        return given
    if len(found) == 1:
        return found[0]
    if DEFAULT_EDGES in found:
        return DEFAULT_EDGES
    raise LsdgraphError(f"{where} has {len(found)} edges collections ({shown}) and none is {DEFAULT_EDGES}; "
                        f"choose one with {param}=NAME")


LOCAL = {k: v for k, v in load()["local"].items() if k != "about"}
BLOCKS = {k: v for k, v in load()["blocks"].items() if k != "about"}

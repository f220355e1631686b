"""Synthetic LSD dumps for tests, in the field types of the real data (docs/data-format.md):
small hand-shaped dumps written with :func:`lsdgraph.bsonio.encode` (:class:`Dumps`), the bucket-
layout datasets of :func:`lsdgraph.synth.synth` made once per session (:func:`synthetic`), and a
networkx reference segmentation straight from the dump files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsdgraph._io import bsonio


@dataclass
class Rag:
    """A synthetic RAG written as a dump folder, with the arrays it was made from."""

    folder: Path
    nodes_file: Path
    edges_files: dict[str, Path]
    ids: np.ndarray        # fragment ids (int64)
    positions: np.ndarray  # (n, 3) center_z, center_y, center_x (nm)
    u: np.ndarray
    v: np.ndarray
    score: np.ndarray      # NaN = null merge_score

    def position_of(self, fragment: int) -> tuple[float, float, float]:
        i = int(np.searchsorted(self.ids, fragment))
        assert self.ids[i] == fragment
        return tuple(self.positions[i].tolist())


class Dumps:
    """Writes small synthetic mongodump files below ``root``."""

    def __init__(self, root: Path, seed: int = 0):
        self.root = root
        self.rng = np.random.default_rng(seed)

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, rel: str, data: bytes) -> Path:
        p = self.path(rel)
        p.write_bytes(data)
        return p

    def oids(self, n: int) -> np.ndarray:
        return bsonio.object_ids(n, self.rng)

    def fragment_ids(self, n: int) -> np.ndarray:
        """Sorted sparse ids made per block (``block * voxels_per_block + 1 … + k``): the first
        blocks' ids fit int32, the rest need int64, as in the lab's data."""
        per_block = self.rng.integers(1, 40, size=n)
        first = np.cumsum(per_block) - per_block
        block = np.repeat(np.arange(n, dtype=np.int64) * 97 + 1, per_block)[:n]
        within = (np.arange(per_block.sum()) - np.repeat(first, per_block) + 1)[:n]
        return block * 2_000_000 + within

    def nodes_bytes(self, ids: np.ndarray, positions: np.ndarray, with_ids: bool = True) -> bytes:
        cols = {"id": ("int", ids), "center_z": ("double", positions[:, 0]),
                "center_y": ("double", positions[:, 1]), "center_x": ("double", positions[:, 2])}
        return bsonio.encode(cols, self.oids(len(ids)) if with_ids else None)

    def edges_bytes(self, u, v, score, with_ids: bool = True) -> bytes:
        cols = {"u": ("int", u), "v": ("int", v), "merge_score": ("double", score),
                "agglomerated": ("bool", ~np.isnan(score))}
        return bsonio.encode(cols, self.oids(len(u)) if with_ids else None)

    def edges_for(self, ids: np.ndarray, per_node: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct pairs u < v among ``ids`` (mostly near neighbours), scores in [0, 1) with
        about one in eight null."""
        n = len(ids)
        a = np.repeat(np.arange(n), per_node)
        b = (a + self.rng.integers(1, 6, size=len(a))) % n
        keep = a != b
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        pairs = np.unique(lo * n + hi)
        u, v = ids[pairs // n], ids[pairs % n]
        order = self.rng.permutation(len(u))
        u, v = u[order], v[order]
        score = self.rng.random(len(u))
        score[self.rng.random(len(u)) < 0.125] = np.nan
        return u, v, score

    def rag(self, folder: str = "rag", n_nodes: int = 500, per_node: int = 2,
            merge_functions: tuple[str, ...] = ("hist_quant_75",), with_ids: bool = True,
            nodes: bool = True) -> Rag:
        """``folder/nodes.bson`` and one ``edges_<merge_function>.bson`` per merge function."""
        ids = self.fragment_ids(n_nodes)
        positions = np.stack([self.rng.uniform(0, 20_000, len(ids)), self.rng.uniform(0, 9_000, len(ids)),
                              self.rng.uniform(0, 9_000, len(ids))], axis=1)
        nodes_file = self.path(f"{folder}/nodes.bson")
        if nodes:
            nodes_file.write_bytes(self.nodes_bytes(ids, positions, with_ids))
        u, v, score = self.edges_for(ids, per_node)
        edges = {}
        for mf in merge_functions:
            edges[mf] = self.write(f"{folder}/edges_{mf}.bson", self.edges_bytes(u, v, score, with_ids))
        return Rag(self.root / folder, nodes_file, edges, ids, positions, u, v, score)

    def skeletons(self, folder: str = "skel", volume: str = "zebrafinch", n_nodes: int = 300,
                  n_skeletons: int = 3, endpoint_names: tuple[str, str] = ("u", "v")
                  ) -> tuple[Path, Path, int]:
        """``<volume>.nodes.bson`` (id, neuron_id, x, y, z) and ``<volume>.edges.bson`` (chains
        per skeleton, endpoints named ``endpoint_names``). Returns (nodes, edges, n_edges)."""
        ids = np.arange(1, n_nodes + 1, dtype=np.int64)
        neuron = np.sort(self.rng.integers(0, n_skeletons, n_nodes)) + 1000
        xyz = self.rng.uniform(0, 10_000, (n_nodes, 3))
        nodes = self.write(f"{folder}/{volume}.nodes.bson", bsonio.encode(
            {"id": ("int", ids), "neuron_id": ("int", neuron), "x": ("double", xyz[:, 0]),
             "y": ("double", xyz[:, 1]), "z": ("double", xyz[:, 2])}, self.oids(n_nodes)))
        same = neuron[1:] == neuron[:-1]
        u, v = ids[:-1][same], ids[1:][same]
        a, b = endpoint_names
        edges = self.write(f"{folder}/{volume}.edges.bson", bsonio.encode(
            {a: ("int", u), b: ("int", v)}, self.oids(len(u))))
        return nodes, edges, len(u)


def reference_segments(rag_dir: Path, edges: str, t: float, roi=None) -> dict[int, int]:
    """Fragment → smallest fragment id of its connected component over the edges with a float32
    score <= float32(t), by networkx straight from the dump files (optionally only the nodes in
    ``roi`` and the edges between them)."""
    import bson
    import networkx as nx

    nodes = bson.decode_all((rag_dir / "nodes.bson").read_bytes())
    docs = bson.decode_all((rag_dir / f"{edges}.bson").read_bytes())
    if roi is not None:
        nodes = [n for n in nodes if roi.contains(np.array([[n["center_z"], n["center_y"], n["center_x"]]]))[0]]
    ids = {n["id"] for n in nodes}
    g = nx.Graph()
    g.add_nodes_from(ids)
    g.add_edges_from((e["u"], e["v"]) for e in docs if e["u"] in ids and e["v"] in ids
                     and e["merge_score"] is not None and np.float32(e["merge_score"]) <= np.float32(t))
    return {f: min(c) for c in nx.connected_components(g) for f in c}


class Synthetic:
    """:func:`lsdgraph.synth.synth` datasets, each made once per session and shared by the tests
    that read it (tests write their own outputs elsewhere)."""

    def __init__(self, base: Path):
        self.base = base
        self._made: dict[tuple, object] = {}

    def __call__(self, dataset: str, size: str = "tiny", seed: int = 0, **kw):
        from lsdgraph._synth import synth

        key = (dataset, size, seed, tuple(sorted(kw.items())))
        if key not in self._made:
            self._made[key] = synth(self.base / f"{dataset}-{size}-{seed}-{len(self._made)}", dataset, size,
                                    seed=seed, **kw)
        return self._made[key]

"""Writes a world and its scores in the real bucket's layout, fields and BSON types
(``shared/data-format.md``): the RAG as mongodump files (``nodes.bson``, one
``edges_<function>.bson`` per merge function, their ``.metadata.json``), the skeletons as BSON, the
fragments as a zarr; and clears what an earlier synth run of the volume wrote there.

Re-running into the same ``OUT`` replaces the previous synthetic dataset of that volume; a folder
holding other LSD data (no ``lsdgraph_synth.json``) is never written over.
"""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io import bsonio
from lsdgraph._synth.scores import _function_params, _function_scores, _latent
from lsdgraph._synth.spec import DatasetSpec
from lsdgraph._synth.world import (
    BLOCK_CELLS,
    P_OUTSIDE,
    _batch_edges,
    _Model,
    _offset,
    _skeletons,
)

OID_TIME = 1_560_000_000    # ObjectId seconds of the first batch (mid 2019, as the lab's runs)


def _metadata(roi_name: str, collection: str, kind: str, rng: np.random.Generator) -> dict:
    """A mongodump ``<collection>.metadata.json`` with the indexes daisy's graph provider creates."""
    ns = f"{roi_name}.{collection}"
    idx = [{"v": 2, "key": {"_id": 1}, "name": "_id_", "ns": ns}]
    if kind == "nodes":
        idx += [{"v": 2, "key": {"center_z": 1, "center_y": 1, "center_x": 1}, "name": "position", "ns": ns},
                {"v": 2, "unique": True, "key": {"id": 1}, "name": "id", "ns": ns}]
    else:
        idx += [{"v": 2, "unique": True, "key": {"u": 1, "v": 1}, "name": "incident", "ns": ns}]
    return {"options": {}, "indexes": idx, "uuid": rng.bytes(16).hex(), "collectionName": collection}


def _write_fragments(path: Path, inner: str, m: _Model, spec: DatasetSpec, offset: np.ndarray) -> Path:
    """The fragment ids per voxel as a zyx uint64 zarr (v2 format) with ``offset``/``resolution``,
    written one z-slab of chunks at a time."""
    import zarr

    cv = np.array(spec.cell_voxels)
    shape = tuple(int(s) for s in np.array(m.shape) * cv)
    chunks = tuple(min(64, s) for s in shape)
    if int(zarr.__version__.split(".")[0]) >= 3:
        root = zarr.open_group(str(path), mode="a", zarr_format=2)
    else:
        root = zarr.open_group(str(path), mode="a")
    g = root
    parts = inner.split("/")
    for p in parts[:-1]:
        g = g.require_group(p)
    if hasattr(g, "create_array"):
        arr = g.create_array(parts[-1], shape=shape, chunks=chunks, dtype="uint64", fill_value=0,
                             overwrite=True)
    else:
        arr = g.create_dataset(parts[-1], shape=shape, chunks=chunks, dtype="uint64", fill_value=0,
                               overwrite=True)
    arr.attrs["offset"] = [int(o) for o in offset]
    arr.attrs["resolution"] = list(spec.voxel_size)
    cells = m.ids[m.frag].reshape(m.shape).astype(np.uint64)
    for z0 in range(0, shape[0], chunks[0]):
        z1 = min(z0 + chunks[0], shape[0])
        c0, c1 = z0 // cv[0], (z1 - 1) // cv[0] + 1
        vox = np.repeat(np.repeat(np.repeat(cells[c0:c1], cv[0], 0), cv[1], 1), cv[2], 2)
        arr[z0:z1] = vox[z0 - c0 * cv[0]:z1 - c0 * cv[0]]
    return path / inner


def _clear_previous(out: Path, base: Path, rag_dir: Path, skel_dir: Path) -> None:
    """Remove what an earlier synth run of this volume wrote (its info file lists it), so no stale
    merge-function files or fragments zarr survive; refuse a folder that holds other LSD data."""
    info_path = base / "lsdgraph_synth.json"
    if not info_path.exists():
        for d in (rag_dir, skel_dir):
            if d.is_dir() and any(d.glob("*.bson")):
                raise LsdgraphError(f"{d}: already holds .bson files not written by lsdgraph synth; "
                                    "choose an empty output folder")
        return
    try:
        prev = json.loads(info_path.read_text())
        old = [prev.get("rag_dir"), prev.get("skeleton_dir"), prev.get("fragments_path")]
    except (OSError, ValueError, AttributeError):
        old = []
    for rel in old:
        p = (out / rel).resolve() if isinstance(rel, str) else None
        if p is not None and p.is_dir() and base.resolve() in p.parents:
            shutil.rmtree(p)
    info_path.unlink()


def _write_rag(m: _Model, spec: DatasetSpec, rag_dir: Path, merge_functions: tuple[str, ...],
               seed: int, ds_key: int, key: int, batch_fragments: int, report) -> dict:
    """``nodes.bson`` and one ``edges_<function>.bson`` per merge function, batch by batch (whole
    blocks in id order; each batch's ObjectIds look like one worker process), plus the mongodump
    metadata files. Returns counts and the fragments that edges name outside the ROI."""
    cv = np.array(spec.cell_voxels, np.int64)
    bc = BLOCK_CELLS
    vpb = int(np.prod(cv)) * bc ** 3
    block_offset = np.array(spec.block_offset, np.int64)
    centers = _offset(spec) + m.centers * np.array(spec.voxel_size, np.float64)
    params = [(_function_params(f), zlib.crc32(f.encode()) + key) for f in merge_functions]
    block_count = np.zeros([-(-s // bc) + 1 for s in m.shape], np.int64)
    block_count[tuple(m.blocks.T)] = np.diff(m.block_start)
    counts: dict[str, Any] = dict(n_edges=0, n_outside_edges=0, n_null_scores=0)
    out_ids, out_neurons = [], []
    bs = m.block_start
    with open(rag_dir / "nodes.bson", "wb") as nodes_f:
        edge_fs = [open(rag_dir / f"edges_{f}.bson", "wb") for f in merge_functions]
        try:
            b0 = batch = 0
            while b0 < len(m.blocks):
                b1 = int(np.searchsorted(bs, bs[b0] + batch_fragments, side="left"))
                b1 = min(max(b1, b0 + 1), len(m.blocks))
                f0, f1 = int(bs[b0]), int(bs[b1])
                t_oid = OID_TIME + 60 * batch
                rng = np.random.default_rng([seed, ds_key, 0, batch])
                nodes_f.write(bsonio.encode({
                    "id": ("int", m.ids[f0:f1]),
                    "center_z": ("double", centers[f0:f1, 0]),
                    "center_y": ("double", centers[f0:f1, 1]),
                    "center_x": ("double", centers[f0:f1, 2]),
                }, bsonio.object_ids(f1 - f0, rng, start_time=t_oid)))

                us, vv, fa, fb = _batch_edges(m.frag, m.ids, *m.shape, bc, m.blocks[b0:b1], block_offset,
                                              block_count, vpb, P_OUTSIDE, key)
                o = np.lexsort((vv, us))
                us, vv, fa, fb = us[o], vv[o], fa[o], fb[o]
                first = np.ones(len(us), bool)
                first[1:] = (us[1:] != us[:-1]) | (vv[1:] != vv[:-1])
                us, vv, fa, fb = us[first], vv[first], fa[first], fb[first]
                lat, null, okey, oneu = _latent(us, vv, fa, fb, m.fneuron, m.fpiece, m.strength, key)
                # grouped by the block of u, in no particular order inside a block (as the lab's)
                o = np.lexsort((okey, us // vpb))
                us, vv, fb, lat, null, oneu = us[o], vv[o], fb[o], lat[o], null[o], oneu[o]
                outside = fb < 0
                out_ids.append(vv[outside])
                out_neurons.append(oneu[outside])
                counts["n_edges"] += len(us)
                counts["n_outside_edges"] += int(outside.sum())
                counts["n_null_scores"] += int(null.sum())
                agg = np.ones(len(us), bool)
                for j, (f, ((bias, noise), fkey)) in enumerate(zip(edge_fs, params, strict=True)):
                    score = _function_scores(us, vv, lat, null, bias, noise, fkey)
                    rng = np.random.default_rng([seed, ds_key, 1 + j, batch])
                    f.write(bsonio.encode({"u": ("int", us), "v": ("int", vv),
                                           "merge_score": ("double", score), "agglomerated": ("bool", agg)},
                                          bsonio.object_ids(len(us), rng, start_time=t_oid)))
                b0 = b1
                batch += 1
                report(f"rag {f1:,}/{len(m.ids):,} fragments")
        finally:
            for f in edge_fs:
                f.close()
    rng = np.random.default_rng([seed, ds_key, 99])
    for coll, kind in [("nodes", "nodes")] + [(f"edges_{f}", "edges") for f in merge_functions]:
        (rag_dir / f"{coll}.metadata.json").write_text(
            json.dumps(_metadata(spec.roi_name, coll, kind, rng)) + "\n")
    counts["outside_fragment_ids"] = np.concatenate(out_ids)
    counts["outside_neuron_ids"] = np.concatenate(out_neurons)
    return counts


def _write_skeletons(m: _Model, spec: DatasetSpec, skel_dir: Path, seed: int, ds_key: int) -> dict:
    node_ids, neuron_ids, pos, eu, ev = _skeletons(m, spec, _offset(spec))
    rng = np.random.default_rng([seed, ds_key, 100])
    (skel_dir / f"{spec.volume}.nodes.bson").write_bytes(bsonio.encode({
        "id": ("int", node_ids), "neuron_id": ("int", neuron_ids),
        "x": ("double", pos[:, 2]), "y": ("double", pos[:, 1]), "z": ("double", pos[:, 0]),
    }, bsonio.object_ids(len(node_ids), rng, start_time=OID_TIME)))
    (skel_dir / f"{spec.volume}.edges.bson").write_bytes(bsonio.encode(
        {"u": ("int", eu), "v": ("int", ev)}, bsonio.object_ids(len(eu), rng, start_time=OID_TIME)))
    return dict(n_skeletons=len(np.unique(neuron_ids)), n_skeleton_nodes=len(node_ids),
                n_skeleton_edges=len(eu))

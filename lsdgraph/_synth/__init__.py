"""``lsdgraph synth``: synthetic LSD benchmark data in the exact layout, fields and BSON types of the
real dumps (see ``shared/data-format.md``), plus a ground truth that agglomerations can be scored
against.

The parts: ``spec`` (the datasets and sizes), ``rng`` (hashed random draws), ``world`` (neurons,
fragments and skeletons on a cell grid), ``scores`` (the merge scores of its edges) and ``bucket``
(writing all that in the real format). This module checks a run's arguments, ties the parts
together in :func:`synth`, writes the ground truth and says what it wrote (:class:`SynthResult`).
What a re-run replaces, and what it refuses to write over, is in ``bucket``.

Ground truth (not part of the real format): ``OUT/funke/<volume>/lsdgraph_synth_truth.npz`` with
``fragment_ids`` (ascending, the nodes' order) → ``neuron_ids``, the fragments that edges name outside
the ROI (``outside_fragment_ids`` → ``outside_neuron_ids``, 0 = a neuron not in the ROI), and
``OUT/funke/<volume>/lsdgraph_synth.json`` describing the dataset. Skeleton ``neuron_id`` equals the
ground-truth neuron id of the fragments its nodes lie in; each skeleton follows its tube, so it is
one connected path inside its neuron (the lab's "consolidated" skeletons are connected components
too), one skeleton per neuron.
"""
from __future__ import annotations

import json
import re
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._synth.bucket import (
    _clear_previous,
    _write_fragments,
    _write_rag,
    _write_skeletons,
)
from lsdgraph._synth.spec import (
    DATASETS,
    DEFAULT_MERGE_FUNCTIONS,
    DEFAULT_NETWORK,
    FRAGMENTS_BY_DEFAULT,
    SIZES,
)
from lsdgraph._synth.world import BLOCK_CELLS, _grid_shape, _model, _offset


@dataclass
class SynthResult:
    """Where :func:`synth` wrote what, and how much."""

    out: Path
    dataset: str
    size: str
    seed: int
    rag_dir: Path
    skeleton_dir: Path
    fragments_path: Path | None
    truth_path: Path
    info_path: Path
    merge_functions: tuple[str, ...]
    voxel_size: tuple[int, ...]
    offset: tuple[int, ...]
    shape: tuple[int, ...]          # voxels, zyx
    n_fragments: int
    n_edges: int                         # per merge function (same pairs in every file)
    n_outside_edges: int                 # of n_edges, those naming a fragment outside the ROI
    n_null_scores: int
    n_neurons: int
    n_skeletons: int
    n_skeleton_nodes: int
    n_skeleton_edges: int
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)


def _check_args(out, dataset, size, seed, fragments, merge_functions, network, batch_fragments) -> None:
    if dataset not in DATASETS:
        raise LsdgraphError(f"dataset {dataset!r}: unknown; use one of {', '.join(DATASETS)}")
    if size not in SIZES:
        raise LsdgraphError(f"size {size!r}: unknown; use one of {', '.join(SIZES)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise LsdgraphError(f"seed {seed!r}: use a non-negative integer")
    if fragments and size == "large":
        raise LsdgraphError("fragments=True with size='large': the voxel volume would be hundreds of GB; "
                            "use medium or smaller for a fragments zarr")
    if not merge_functions:
        raise LsdgraphError("merge functions: give at least one (e.g. hist_quant_75)")
    for name in merge_functions:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise LsdgraphError(f"merge function {name!r}: use letters, digits and '_' (e.g. hist_quant_75)")
    if len(set(merge_functions)) != len(merge_functions):
        raise LsdgraphError(f"merge functions {list(merge_functions)}: each name once")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", network or ""):
        raise LsdgraphError(f"network {network!r}: use letters, digits, '_', '.', '-' (e.g. ACLSD)")
    if batch_fragments < 1:
        raise LsdgraphError(f"batch_fragments {batch_fragments}: use 1 or more")
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise LsdgraphError(f"{out}: is a file; give a folder (it is created if missing)")


def synth(out: str | Path, dataset: str = "hemi", size: str = "tiny", seed: int = 0, *,
          fragments: bool | None = None, merge_functions: Sequence[str] = DEFAULT_MERGE_FUNCTIONS,
          network: str = DEFAULT_NETWORK, progress: bool = False,
          batch_fragments: int = 500_000) -> SynthResult:
    """Write a synthetic LSD dataset under ``out`` in the real bucket's layout (``out/funke/...``).

    ``size``: tiny (~1k fragments), small (~20k), medium (~1M), large (~10M). ``fragments``: write
    the voxel zarr (default: tiny and small only; never large). Nodes and edges are written in
    batches of about ``batch_fragments`` fragments (blocks in id order), which bounds memory; the
    files' content does not depend on it, only the ObjectIds do. Same arguments → identical bytes.
    ``progress`` prints a line per stage (and every few seconds while writing) on stderr.
    """
    t_all = time.perf_counter()
    merge_functions = (merge_functions,) if isinstance(merge_functions, str) else tuple(merge_functions)
    _check_args(out, dataset, size, seed, fragments, merge_functions, network, batch_fragments)
    if fragments is None:
        fragments = FRAGMENTS_BY_DEFAULT[size]
    spec = DATASETS[dataset]
    seed = int(seed)
    timings: dict[str, float] = {}
    shown = [time.perf_counter()]

    def report(msg: str) -> None:
        if progress and time.perf_counter() - shown[0] > 2:
            shown[0] = time.perf_counter()
            print(f"synth {dataset}/{size}: {msg}", file=sys.stderr, flush=True)

    def stage(name: str, t0: float) -> float:
        t = time.perf_counter()
        timings[name] = round(t - t0, 3)
        if progress:
            print(f"synth {dataset}/{size}: {name} {t - t0:.2f} s", file=sys.stderr, flush=True)
        return t

    out = Path(out)
    base = out / "funke" / spec.volume
    data_zarr = base / "testing" / "segmentations" / "data.zarr"
    rag_dir = data_zarr / "rags" / network / spec.roi_name
    skel_dir = (base / "testing" / "ground_truth" / "validation" / "consolidated"
                / f"{spec.volume}_gt_skeletons_validation")
    _clear_previous(out, base, rag_dir, skel_dir)
    try:
        rag_dir.mkdir(parents=True, exist_ok=True)
        skel_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LsdgraphError(f"{out}: cannot create the output folders ({e.strerror}); "
                            "choose a writable folder") from None

    ds_key = zlib.crc32(spec.volume.encode())
    key = (seed * 1_000_003 + ds_key) % (1 << 62)
    t = time.perf_counter()
    m = _model(spec, _grid_shape(size), seed, key)
    t = stage("model", t)
    rag = _write_rag(m, spec, rag_dir, merge_functions, seed, ds_key, key, batch_fragments, report)
    t = stage("rag", t)
    skel = _write_skeletons(m, spec, skel_dir, seed, ds_key)
    t = stage("skeletons", t)
    frag_path = None
    if fragments:
        inner = "/".join(p for p in ("volumes", network, spec.fragments_subdir, "fragments") if p)
        frag_path = _write_fragments(data_zarr, inner, m, spec, _offset(spec))
        t = stage("fragments", t)

    offset = _offset(spec)
    shape_vox = tuple(int(s) for s in np.array(m.shape) * spec.cell_voxels)
    truth_path = base / "lsdgraph_synth_truth.npz"
    with open(truth_path, "wb") as f:
        np.savez(f, fragment_ids=m.ids, neuron_ids=m.fneuron,
                 outside_fragment_ids=rag.pop("outside_fragment_ids"),
                 outside_neuron_ids=rag.pop("outside_neuron_ids"),
                 voxel_size=np.array(spec.voxel_size, np.int64), offset=offset,
                 shape=np.array(shape_vox, np.int64))
    t = stage("truth", t)

    res = SynthResult(
        out=out, dataset=dataset, size=size, seed=seed, rag_dir=rag_dir, skeleton_dir=skel_dir,
        fragments_path=frag_path, truth_path=truth_path, info_path=base / "lsdgraph_synth.json",
        merge_functions=merge_functions, voxel_size=spec.voxel_size,
        offset=tuple(int(o) for o in offset), shape=shape_vox, n_fragments=len(m.ids),
        n_neurons=m.n_neurons, **rag, **skel)
    info = {k: v for k, v in asdict(res).items() if k not in ("seconds", "timings")}
    for k in ("rag_dir", "skeleton_dir", "fragments_path", "truth_path", "info_path"):
        info[k] = None if info[k] is None else str(info[k].relative_to(out))
    info.update(out=".", network=network, roi_name=spec.roi_name, cell_voxels=list(spec.cell_voxels),
                block_voxels=[c * BLOCK_CELLS for c in spec.cell_voxels],
                voxels_per_block=int(np.prod(spec.cell_voxels)) * BLOCK_CELLS ** 3,
                block_offset=list(spec.block_offset), format="lsdgraph-synth/1",
                coordinates="voxel i covers [offset + i*vs, offset + (i+1)*vs) nm, zyx; node centres "
                            "offset + vs*mean voxel index; skeleton nodes at voxel centres")
    res.info_path.write_text(json.dumps(info, indent=1) + "\n")
    res.seconds = round(time.perf_counter() - t_all, 3)
    res.timings = timings
    return res

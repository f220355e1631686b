"""Apply a fragment→segment LUT to a zarr volume of fragment ids, chunk by chunk, into a new volume
with the same geometry (refusing an output that would overwrite the input)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex
from lsdgraph._core.paths import output_folder
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._io.sources import is_s3
from lsdgraph._io.volumes import create_volume, open_volume, overlap, write_chunk


def _check_out(fragments: str, out: str) -> None:
    """Refuse an output that is, contains or lies inside the input volume: writing it would
    overwrite the chunks being read."""
    how = overlap(str(fragments), str(out))
    if how:
        raise LsdgraphError(f"out={out} {how} the input volume {fragments}; choose an out= outside "
                            "the input volume (a sibling array in the same zarr container is fine)")


def relabel(fragments: str, lut: str, out: str, *, s3=None, quiet: bool = False) -> dict:
    """Apply a fragment→segment LUT to a zarr volume of fragment ids, chunk by chunk, into a new
    zarr volume with the same geometry. Ids missing from the LUT (e.g. 0) are kept."""
    src = open_volume(fragments, s3=s3)  # reads metadata only: a bad input is named as such first
    _check_out(fragments, out)
    if not is_s3(str(out)):
        output_folder(out, create=False)
    if not np.issubdtype(src.dtype, np.integer):
        raise LsdgraphError(f"{fragments}: dtype {src.dtype} is not an integer fragment-id volume")
    keys, values = agglomerate.read_lut(lut)
    index = IdIndex(keys, f"{lut}: fragments")
    if len(index.ids) != len(keys):
        raise LsdgraphError(f"{lut}: the LUT lists some fragments more than once; regenerate it")
    values = values[np.argsort(keys, kind="stable")]  # aligned with index.ids
    dst = create_volume(out, src.shape, src.chunks, np.uint64, src.offset.tolist(), src.resolution.tolist(),
                        attrs={"lsdgraph_lut": str(lut), "lsdgraph_fragments": str(fragments)})
    mapped = 0
    t0 = time.perf_counter()
    bar = Progress(f"relabelling {Path(str(out)).name}", int(np.prod(src.grid)), enabled=False if quiet else None,
                   amount=count_of("chunks"), unit="voxels")
    try:
        for idx, slices in src.blocks():
            block = src.read([s.start for s in slices], [s.stop for s in slices]).astype(np.uint64, copy=False)
            flat = block.ravel()
            i = index.lookup(flat)
            hit = i >= 0
            flat = np.where(hit, values[i], flat)
            mapped += int(hit.sum())
            write_chunk(dst, idx, flat.reshape(block.shape))
            bar.update(1, flat.size)
    finally:
        bar.close()
    if not quiet:
        print(f"relabelled {int(np.prod(src.shape)):,} voxels ({mapped:,} mapped) into {out} in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {"voxels": int(np.prod(src.shape)), "mapped": mapped, "out": str(out)}

"""The datasets and sizes ``lsdgraph synth`` can make: what differs between the three real volumes
(voxel size, cell size, where the ROI's blocks start, the RAG and fragments folder names), the
sizes by their fragment target, and the defaults of a run.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """What differs between the three real volumes (plus our choice of where their ROI starts)."""

    volume: str
    voxel_size: tuple[int, int, int]    # nm, zyx
    cell_voxels: tuple[int, int, int]   # voxels per cell, zyx (cells are ~36-40 nm on a side)
    block_offset: tuple[int, int, int]  # absolute block index of the ROI's first block
    roi_name: str                       # the RAG folder (the lab's database name)
    fragments_subdir: str               # "" or e.g. "roi_1" between <network> and fragments


# Block offsets choose the id regime: zebrafinch ids fit int32 (all int32 in BSON), fib25's straddle
# 2**31 (int32 and int64 mixed in one field, as pymongo writes them), hemi's are all int64.
DATASETS: dict[str, DatasetSpec] = {
    "zebrafinch": DatasetSpec("zebrafinch", (20, 9, 9), (2, 4, 4), (1, 2, 2),
                              "zebrafinch_auto_basic_163k_testing_masked_ffn", ""),
    "hemi": DatasetSpec("hemi", (8, 8, 8), (4, 4, 4), (80, 80, 80),
                        "hemi_affs_from_lsd_200k_roi_1", "roi_1"),
    "fib25": DatasetSpec("fib25", (8, 8, 8), (4, 4, 4), (23, 24, 24),
                         "fib25_auto_basic_300k_testing", ""),
}

SIZES = {"tiny": 1_000, "small": 20_000, "medium": 1_000_000, "large": 10_000_000}  # ≈ fragments
FRAGMENTS_BY_DEFAULT = {"tiny": True, "small": True, "medium": False, "large": False}
DEFAULT_MERGE_FUNCTIONS = ("hist_quant_50", "hist_quant_75", "mean")
DEFAULT_NETWORK = "ACLSD"

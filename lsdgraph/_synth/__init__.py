"""``lsdgraph synth``: synthetic LSD benchmark data in the exact layout, fields and BSON types of the
real dumps (see ``shared/data-format.md``), plus a ground truth that agglomerations can be scored
against.

Model. The volume is a grid of *cells* (a few voxels each, roughly isotropic in nm). Neurons are
persistent random walks ("tubes") through the grid; every cell joins the nearest tube (a
multi-source BFS over the cell grid), so the segmentation is dense as in EM. Tubes are walked one
after another and never enter each other's cells, so each territory is connected: the ground-truth
neurons are the territories (~15 cells of cross-section, ~150 nm radius). Fragments
(supervoxels) are single cells or small random unions of face-adjacent cells of one neuron inside one
block. Blocks are 8×8×8 cells; fragment ids are the lab's ``block_id * voxels_per_block + local``
with ``block_id`` the Cantor number of the block's absolute index (daisy 0.2 / funlib.math), so ids
are sparse and grow with the block, not inside it.

Scores (``merge_score`` in [0, 1], lower merges earlier) come from a latent boundary strength per
edge: low inside a neuron, high between neurons, plus two kinds of hard cases that make the best
threshold intermediate: *false boundaries* (each tube is cut into pieces along its path; every edge
across a cut scores near that cut's strength, so the neuron splits below it) and *leaks* (some
neuron contacts carry a few low-scoring edges, so the two neurons merge above the leak's level).
Each merge function adds its own bias and noise to the same latent scores. All per-edge randomness
is a hash of ``(u, v, seed)``, so the content does not depend on how the output is batched.

Coordinates. A voxel ``i`` (zyx, in the fragments zarr) covers world ``[offset + i*vs,
offset + (i+1)*vs)`` nm, as funlib/daisy arrays do. Fragment centres follow the lab's
``parallel_fragments.py``: ``offset + vs * center_of_mass(voxel indices)``. Skeleton nodes sit at
voxel centres, ``offset + (i + 0.5) * vs``, so flooring ``(pos - offset) / vs`` finds their voxel.

Ground truth (not part of the real format): ``OUT/funke/<volume>/lsdgraph_synth_truth.npz`` with
``fragment_ids`` (ascending, the nodes' order) → ``neuron_ids``, the fragments that edges name outside
the ROI (``outside_fragment_ids`` → ``outside_neuron_ids``, 0 = a neuron not in the ROI), and
``OUT/funke/<volume>/lsdgraph_synth.json`` describing the dataset. Skeleton ``neuron_id`` equals the
ground-truth neuron id of the fragments its nodes lie in; each skeleton follows its tube, so it is
one connected path inside its neuron (the lab's "consolidated" skeletons are connected components
too), one skeleton per neuron.

Re-running into the same ``OUT`` replaces the previous synthetic dataset of that volume; a folder
holding other LSD data (no ``lsdgraph_synth.json``) is never written over.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from numba import njit

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io import bsonio

# ----------------------------------------------------------------------------------------------
# datasets and sizes


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

BLOCK_CELLS = 8             # cells per block along each axis
CELLS_PER_FRAGMENT = 1.3    # measured (1.24-1.32) for P_MERGE_CELLS: sizes the grid for a fragment target
P_MERGE_CELLS = 0.12        # chance that two adjacent same-piece cells of one block share a fragment
TUBE_AREA = 15.0            # cells of territory per cell of tube length: sets the number of tubes
STEP = 0.5                  # random-walk step, cells
TURN = 0.25                 # random-walk direction noise per step
CUT_LENGTH = 25.0           # mean tube length (cells) between false boundaries
CUT_LO, CUT_HI, CUT_JITTER = 0.20, 0.70, 0.04
INTRA_MAX, INTRA_A, INTRA_B = 0.35, 1.3, 3.0   # intra-neuron scores: INTRA_MAX * Kumaraswamy(a, b)
INTER_MIN, INTER_A, INTER_B = 0.60, 2.0, 2.0   # inter-neuron scores: INTER_MIN + (1-INTER_MIN) * Kum
P_LEAKY_CONTACT, P_LEAK_EDGE = 0.04, 0.2
LEAK_LO, LEAK_HI, LEAK_JITTER = 0.30, 0.75, 0.04
P_OUTSIDE = 0.25            # share of +z/+y/+x border cells with an edge to a fragment outside the ROI
P_NULL = 0.005              # share of edges whose merge_score is null
SKELETON_EVERY = 2          # skeleton node every this many walk steps
OID_TIME = 1_560_000_000    # ObjectId seconds of the first batch (mid 2019, as the lab's runs)

# hash streams
_S_MERGE, _S_OUTSIDE, _S_OUT_CLASS, _S_INTRA, _S_INTER, _S_CUT, _S_CONTACT = 1, 2, 3, 4, 5, 6, 7
_S_LEAK_EDGE, _S_LEAK_LEVEL, _S_LEAK_JIT, _S_NULL, _S_ORDER = 8, 9, 10, 11, 12
_S_START, _S_DIR, _S_TURN, _S_CUTS = 13, 14, 16, 18


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
    voxel_size: tuple[int, int, int]
    offset: tuple[int, int, int]
    shape: tuple[int, int, int]          # voxels, zyx
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


# ----------------------------------------------------------------------------------------------
# numba kernels


@njit(inline="always")
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(inline="always")
def _unif(a, b, key):
    """A uniform in [0, 1) that depends only on (a, b, key) (all non-negative int64)."""
    h = _mix(np.uint64(a) + np.uint64(0x9E3779B97F4A7C15))
    h = _mix(h ^ np.uint64(b))
    h = _mix(h ^ np.uint64(key))
    return np.float64(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def _kum(p, a, b):
    """Kumaraswamy(a, b) quantile: Beta-like, with a closed-form inverse."""
    return (1.0 - (1.0 - p) ** (1.0 / b)) ** (1.0 / a)


@njit(inline="always")
def _cantor3(z, y, x):
    """funlib.math.cantor_number((z, y, x)) as daisy 0.2 used it for block ids (starts at 1)."""
    s = z + y + x
    t = z + y
    return s * (s + 1) * (s + 2) // 6 + t * (t + 1) // 2 + z + 1


@njit(cache=True, nogil=True)
def _cantor_many(coords):
    out = np.empty(coords.shape[0], np.int64)
    for i in range(coords.shape[0]):
        out[i] = _cantor3(coords[i, 0], coords[i, 1], coords[i, 2])
    return out


@njit(inline="always")
def _normal(a, b, key):
    """A standard normal from (a, b, key) (Box-Muller on two hashed uniforms)."""
    r = np.sqrt(-2.0 * np.log(1.0 - _unif(a, b, key)))
    return r * np.cos(2.0 * np.pi * _unif(a, b, key + 1))


@njit(inline="always")
def _cell(p0, p1, p2, gy, gx):
    return (np.int64(p0) * gy + np.int64(p1)) * gx + np.int64(p2)


@njit(cache=True, nogil=True)
def _walk(gz, gy, gx, n_tubes, max_steps, key, label, piece):
    """Tubes as persistent random walks, one after the other, both ways from a random free start
    until they leave the grid or are blocked. A tube claims the 6-connected chain of cells along
    its path (label = tube, piece = its piece there) and never enters another tube's cells, so every
    tube's cells are face-connected and its BFS territory is one neuron. Returns the path points
    (cell units), their tube and signed step (for ordering), and the number of pieces."""
    cap = n_tubes * (2 * max_steps + 1)
    pts = np.empty((cap, 3), np.float64)
    ptube = np.empty(cap, np.int32)
    palong = np.empty(cap, np.int64)
    g = np.array([gz, gy, gx], np.float64)
    chain = np.empty(4, np.int64)
    n = 0
    pc = -1
    for t in range(n_tubes):
        p = np.empty(3)
        c = -1
        for attempt in range(20):
            for k in range(3):
                p[k] = min(_unif(t, attempt * 3 + k, key + _S_START) * g[k], g[k] - 1e-6)
            c0 = _cell(p[0], p[1], p[2], gy, gx)
            if label[c0] < 0:
                c = c0
                break
        if c < 0:
            continue
        pc += 1
        start_piece = pc
        label[c] = t
        piece[c] = pc
        pts[n] = p
        ptube[n] = t
        palong[n] = 0
        n += 1
        d0 = np.empty(3)
        for k in range(3):
            d0[k] = _normal(t, k, key + _S_DIR)
        d0 /= max(np.sqrt(np.sum(d0 * d0)), 1e-12)
        for way in range(2):
            sign = 1.0 if way == 0 else -1.0
            pos = p.copy()
            d = d0 * sign
            cur = start_piece
            for s in range(1, max_steps):
                a = (t * 2 + way) * max_steps + s
                ok = False
                nd = np.empty(3)
                npos = np.empty(3)
                nchain = 0
                for attempt in range(4):
                    turn = TURN * (1 + 2 * attempt)  # blocked: try sharper turns
                    for k in range(3):
                        nd[k] = d[k] + turn * _normal(a, attempt * 3 + k, key + _S_TURN)
                    nd /= max(np.sqrt(np.sum(nd * nd)), 1e-12)
                    inside = True
                    for k in range(3):
                        npos[k] = pos[k] + STEP * nd[k]
                        if not (0.0 <= npos[k] < g[k]):
                            inside = False
                    if not inside:
                        break
                    # the 6-connected chain from the current cell to the new one, axis by axis
                    q = np.array([np.int64(pos[0]), np.int64(pos[1]), np.int64(pos[2])])
                    nchain = 0
                    free = True
                    for k in range(3):
                        target = np.int64(npos[k])
                        while q[k] != target:
                            q[k] += 1 if target > q[k] else -1
                            cc = (q[0] * gy + q[1]) * gx + q[2]
                            chain[nchain] = cc
                            nchain += 1
                            if label[cc] >= 0 and label[cc] != t:
                                free = False
                    if free:
                        ok = True
                        break
                if not ok:
                    break
                if _unif(a, 0, key + _S_CUTS) < STEP / CUT_LENGTH:
                    pc += 1
                    cur = pc
                for j in range(nchain):
                    if label[chain[j]] < 0:
                        label[chain[j]] = t
                        piece[chain[j]] = cur
                pos[:] = npos
                d[:] = nd
                pts[n] = pos
                ptube[n] = t
                palong[n] = s if way == 0 else -s
                n += 1
    return pts[:n], ptube[:n], palong[:n], pc + 1


@njit(cache=True, nogil=True)
def _grow(label, piece, seeds, gz, gy, gx):
    """Multi-source BFS: every unlabelled cell takes the label and piece of its nearest seed."""
    q = np.empty(label.size, np.int64)
    tail = seeds.size
    q[:tail] = seeds
    head = 0
    plane = gy * gx
    while head < tail:
        c = q[head]
        head += 1
        z = c // plane
        y = (c - z * plane) // gx
        x = c - z * plane - y * gx
        for k in range(6):
            n = -1
            if k == 0 and z > 0:
                n = c - plane
            elif k == 1 and z < gz - 1:
                n = c + plane
            elif k == 2 and y > 0:
                n = c - gx
            elif k == 3 and y < gy - 1:
                n = c + gx
            elif k == 4 and x > 0:
                n = c - 1
            elif k == 5 and x < gx - 1:
                n = c + 1
            if n >= 0 and label[n] < 0:
                label[n] = label[c]
                piece[n] = piece[c]
                q[tail] = n
                tail += 1


@njit(inline="always")
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@njit(cache=True, nogil=True)
def _merge_cells(piece, gz, gy, gx, bc, p_merge, key):
    """Union random face-adjacent cells of one piece inside one block; every cell's parent becomes
    its fragment's root, the fragment's smallest cell index (its first in block raster order)."""
    size = gz * gy * gx
    parent = np.arange(size).astype(np.int64)
    plane = gy * gx
    for c in range(size):
        z = c // plane
        y = (c - z * plane) // gx
        x = c - z * plane - y * gx
        for axis in range(3):
            if axis == 0:
                ok = z + 1 < gz and (z + 1) % bc != 0
                n = c + plane
            elif axis == 1:
                ok = y + 1 < gy and (y + 1) % bc != 0
                n = c + gx
            else:
                ok = x + 1 < gx and (x + 1) % bc != 0
                n = c + 1
            if ok and piece[n] == piece[c] and _unif(c, axis, key) < p_merge:
                ra = _find(parent, c)
                rb = _find(parent, n)
                if ra < rb:
                    parent[rb] = ra
                elif rb < ra:
                    parent[ra] = rb
    for c in range(size):  # parent[c] <= c always, so one increasing pass resolves every root
        parent[c] = parent[parent[c]]
    return parent


@njit(cache=True, nogil=True)
def _number(parent, neuron, piece, gz, gy, gx, bc, blocks, bids, vpb, cv, n_frag):
    """Number fragments per block (blocks in id order, cells in raster order inside a block), as
    the lab's relabel + id bump does; returns the dense fragment per cell and the fragment table."""
    frag = np.empty(parent.size, np.int32)
    ids = np.empty(n_frag, np.int64)
    sums = np.zeros((n_frag, 3), np.float64)
    cnt = np.zeros(n_frag, np.int64)
    fneuron = np.empty(n_frag, np.int32)
    fpiece = np.empty(n_frag, np.int32)
    block_start = np.empty(blocks.shape[0] + 1, np.int64)
    plane = gy * gx
    hz = (cv[0] - 1) / 2.0
    hy = (cv[1] - 1) / 2.0
    hx = (cv[2] - 1) / 2.0
    f = 0
    for b in range(blocks.shape[0]):
        block_start[b] = f
        local = 0
        z0, y0, x0 = blocks[b, 0] * bc, blocks[b, 1] * bc, blocks[b, 2] * bc
        for z in range(z0, min(z0 + bc, gz)):
            for y in range(y0, min(y0 + bc, gy)):
                for x in range(x0, min(x0 + bc, gx)):
                    c = z * plane + y * gx + x
                    r = parent[c]
                    if r == c:
                        local += 1
                        ids[f] = bids[b] * vpb + local
                        fneuron[f] = neuron[c]
                        fpiece[f] = piece[c]
                        frag[c] = f
                        f += 1
                    else:
                        frag[c] = frag[r]
                    d = frag[c]
                    sums[d, 0] += z * cv[0] + hz
                    sums[d, 1] += y * cv[1] + hy
                    sums[d, 2] += x * cv[2] + hx
                    cnt[d] += 1
    block_start[blocks.shape[0]] = f
    return frag, ids, sums, cnt, fneuron, fpiece, block_start


@njit(cache=True, nogil=True)
def _batch_edges(frag, ids, gz, gy, gx, bc, blocks, block_offset, block_count, vpb, p_outside, key):
    """Every (u, v) face contact emitted from the side of u = the smaller id, for the cells of
    ``blocks``; plus edges from +z/+y/+x border cells to single-cell fragments beyond the ROI.
    Those are numbered after the ROI's fragments of their block (``block_count``, by relative block
    index) and other blocks there have larger Cantor ids, so the inside fragment is u. Duplicates
    remain."""
    ncell = 0
    for b in range(blocks.shape[0]):
        ncell += ((min(blocks[b, 0] * bc + bc, gz) - blocks[b, 0] * bc)
                  * (min(blocks[b, 1] * bc + bc, gy) - blocks[b, 1] * bc)
                  * (min(blocks[b, 2] * bc + bc, gx) - blocks[b, 2] * bc))
    cap = 6 * ncell
    us = np.empty(cap, np.int64)
    vs = np.empty(cap, np.int64)
    fa = np.empty(cap, np.int64)
    fb = np.empty(cap, np.int64)
    plane = gy * gx
    m = 0
    for b in range(blocks.shape[0]):
        z0, y0, x0 = blocks[b, 0] * bc, blocks[b, 1] * bc, blocks[b, 2] * bc
        for z in range(z0, min(z0 + bc, gz)):
            for y in range(y0, min(y0 + bc, gy)):
                for x in range(x0, min(x0 + bc, gx)):
                    c = z * plane + y * gx + x
                    a = frag[c]
                    ia = ids[a]
                    for k in range(6):
                        nz, ny, nx = z, y, x
                        if k == 0:
                            nz -= 1
                        elif k == 1:
                            nz += 1
                        elif k == 2:
                            ny -= 1
                        elif k == 3:
                            ny += 1
                        elif k == 4:
                            nx -= 1
                        else:
                            nx += 1
                        if 0 <= nz < gz and 0 <= ny < gy and 0 <= nx < gx:
                            d = frag[nz * plane + ny * gx + nx]
                            if d != a and ids[d] > ia:
                                us[m] = ia
                                vs[m] = ids[d]
                                fa[m] = a
                                fb[m] = d
                                m += 1
                        elif nz == gz or ny == gy or nx == gx:
                            okey = (nz * (gy + 1) + ny) * (gx + 1) + nx
                            if _unif(okey, _S_OUTSIDE, key) < p_outside:
                                obid = _cantor3(nz // bc + block_offset[0], ny // bc + block_offset[1],
                                                nx // bc + block_offset[2])
                                local = (block_count[nz // bc, ny // bc, nx // bc] + 1
                                         + ((nz % bc) * bc + ny % bc) * bc + nx % bc)
                                us[m] = ia
                                vs[m] = obid * vpb + local
                                fa[m] = a
                                fb[m] = -1
                                m += 1
    return us[:m], vs[:m], fa[:m], fb[:m]


@njit(cache=True, nogil=True)
def _latent(us, vs, fa, fb, fneuron, fpiece, strength, key):
    """Latent boundary strength per edge (see the module docstring), the null flag, the
    within-block order key and, for edges leaving the ROI, the outside fragment's neuron."""
    n = us.size
    lat = np.empty(n, np.float64)
    null = np.empty(n, np.bool_)
    order = np.empty(n, np.float64)
    out_neuron = np.zeros(n, np.int32)
    for i in range(n):
        u = us[i]
        v = vs[i]
        intra = False
        s = -1.0
        a = fa[i]
        if fb[i] < 0:
            # beyond the ROI: the same neuron continuing, or another one
            if _unif(u, v, key + _S_OUT_CLASS) < 0.5:
                intra = True
                out_neuron[i] = fneuron[a]
        else:
            d = fb[i]
            na = fneuron[a]
            nb = fneuron[d]
            if na == nb:
                pa = fpiece[a]
                pb = fpiece[d]
                if pa == pb:
                    intra = True
                else:
                    s = strength[max(pa, pb)] + CUT_JITTER * (2.0 * _unif(u, v, key + _S_CUT) - 1.0)
            else:
                lo = min(na, nb)
                hi = max(na, nb)
                if (_unif(lo, hi, key + _S_CONTACT) < P_LEAKY_CONTACT
                        and _unif(u, v, key + _S_LEAK_EDGE) < P_LEAK_EDGE):
                    level = LEAK_LO + (LEAK_HI - LEAK_LO) * _unif(lo, hi, key + _S_LEAK_LEVEL)
                    s = level + LEAK_JITTER * (2.0 * _unif(u, v, key + _S_LEAK_JIT) - 1.0)
        if s < 0.0:
            if intra:
                s = INTRA_MAX * _kum(_unif(u, v, key + _S_INTRA), INTRA_A, INTRA_B)
            else:
                s = INTER_MIN + (1.0 - INTER_MIN) * _kum(_unif(u, v, key + _S_INTER), INTER_A, INTER_B)
        lat[i] = s
        null[i] = _unif(u, v, key + _S_NULL) < P_NULL
        order[i] = _unif(u, v, key + _S_ORDER)
    return lat, null, order, out_neuron


@njit(cache=True, nogil=True)
def _function_scores(us, vs, lat, null, bias, noise, fkey):
    n = us.size
    out = np.empty(n, np.float64)
    for i in range(n):
        if null[i]:
            out[i] = np.nan
        else:
            s = lat[i] + bias + noise * (2.0 * _unif(us[i], vs[i], fkey) - 1.0)
            out[i] = min(1.0, max(0.0, s))
    return out


# ----------------------------------------------------------------------------------------------
# the model on the cell grid


@dataclass
class _Model:
    shape: tuple[int, int, int]   # cells
    label: np.ndarray             # tube per cell
    neuron: np.ndarray            # ground-truth neuron per cell: tube + 1
    piece: np.ndarray             # tube piece per cell (false boundaries lie between pieces)
    strength: np.ndarray          # cut strength per piece
    n_neurons: int
    pts: np.ndarray               # (P, 3) float32 tube paths in cell units
    pt_tube: np.ndarray           # (P,) tube of each point, points in path order per tube
    frag: np.ndarray              # dense fragment per cell
    ids: np.ndarray               # fragment ids, ascending (blocks in id order)
    centers: np.ndarray           # (F, 3) centre of mass in voxel units
    fneuron: np.ndarray
    fpiece: np.ndarray
    blocks: np.ndarray            # (B, 3) relative block index, sorted by block id
    bids: np.ndarray              # (B,) block ids
    block_start: np.ndarray       # (B + 1,) first dense fragment of each block


def _cells_of(pts: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    return np.clip(np.floor(pts).astype(np.int64), 0, np.array(shape) - 1)


def _flat(cells: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    return (cells[:, 0] * shape[1] + cells[:, 1]) * shape[2] + cells[:, 2]


def _grid_shape(size: str) -> tuple[int, int, int]:
    n = max(BLOCK_CELLS + 2, int(round((SIZES[size] * CELLS_PER_FRAGMENT) ** (1 / 3))))
    return (n, n, n)


def _model(spec: DatasetSpec, shape: tuple[int, int, int], seed: int, key: int) -> _Model:
    rng = np.random.default_rng([seed, zlib.crc32(spec.volume.encode())])
    gz, gy, gx = shape
    g = np.array(shape, np.float64)
    n_tubes = max(3, int(round(np.prod(g) / (TUBE_AREA * g.mean()))))
    label = np.full(gz * gy * gx, -1, np.int32)
    piece = np.full(gz * gy * gx, -1, np.int32)
    pts, tube, along, n_pieces = _walk(gz, gy, gx, n_tubes, int(2 * g.max() / STEP), key, label, piece)
    o = np.lexsort((along, tube))
    pts, tube = pts[o], tube[o]
    strength = rng.uniform(CUT_LO, CUT_HI, n_pieces)
    # every cell joins the nearest tube (BFS from the claimed cells, in raster order)
    _grow(label, piece, np.nonzero(label >= 0)[0], gz, gy, gx)
    neuron = label + 1
    n_neurons = len(np.unique(tube))  # a tube finds no free start only in a crowded grid

    bc = BLOCK_CELLS
    nb = [-(-s // bc) for s in shape]
    blocks = np.stack(np.meshgrid(*[np.arange(k) for k in nb], indexing="ij"), -1).reshape(-1, 3)
    bids = _cantor_many(blocks + np.array(spec.block_offset))
    o = np.argsort(bids, kind="stable")
    blocks, bids = np.ascontiguousarray(blocks[o]), bids[o]

    parent = _merge_cells(piece, gz, gy, gx, bc, P_MERGE_CELLS, key + _S_MERGE)
    n_frag = int(np.count_nonzero(parent == np.arange(parent.size)))
    cv = np.array(spec.cell_voxels, np.int64)
    vpb = int(np.prod(cv)) * bc ** 3
    frag, ids, sums, cnt, fneuron, fpiece, block_start = _number(
        parent, neuron, piece, gz, gy, gx, bc, blocks, bids, vpb, cv, n_frag)
    del parent
    return _Model(shape, label, neuron, piece, strength, int(n_neurons), pts, tube, frag, ids,
                  sums / cnt[:, None], fneuron, fpiece, blocks, bids, block_start)


# ----------------------------------------------------------------------------------------------
# writing


def _function_params(name: str) -> tuple[float, float]:
    """(bias, noise) of a merge function: higher quantiles score a little higher."""
    m = re.fullmatch(r"hist_quant_(\d+)", name)
    if m:
        return (min(int(m.group(1)), 100) - 50) / 500.0, 0.03
    if name == "mean":
        return -0.01, 0.02
    return 0.0, 0.03


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


def _skeletons(m: _Model, spec: DatasetSpec, offset: np.ndarray):
    """Skeleton nodes every ``SKELETON_EVERY`` walk steps along each tube, at voxel centres, joined
    in path order. A walk claims every cell it passes, so each skeleton is one connected path inside
    its own neuron; tubes with a single node are left out."""
    tube = m.pt_tube
    start = np.searchsorted(tube, tube)
    idx = np.nonzero((np.arange(len(tube)) - start) % SKELETON_EVERY == 0)[0]
    pts, tube = m.pts[idx], tube[idx]
    cells = _cells_of(pts, m.shape)
    flat = _flat(cells, m.shape)
    assert (m.label[flat] == tube).all()
    cv = np.array(spec.cell_voxels)
    vox = np.clip(np.floor(pts * cv).astype(np.int64), cells * cv, cells * cv + cv - 1)
    keep = np.ones(len(tube), bool)  # one node per voxel in a row
    keep[1:] = (tube[1:] != tube[:-1]) | np.any(vox[1:] != vox[:-1], axis=1)
    tube, vox, flat = tube[keep], vox[keep], flat[keep]
    counts = np.bincount(tube)
    keep = counts[tube] >= 2
    tube, vox, flat = tube[keep], vox[keep], flat[keep]
    node_ids = np.arange(1, len(tube) + 1, dtype=np.int64)
    pos = offset + (vox + 0.5) * np.array(spec.voxel_size)
    link = tube[1:] == tube[:-1]
    return node_ids, m.neuron[flat].astype(np.int64), pos, node_ids[:-1][link], node_ids[1:][link]


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


def _check_args(out, dataset, size, seed, fragments, merge_functions, network, batch_fragments) -> None:
    if dataset not in DATASETS:
        raise LsdgraphError(f"dataset {dataset!r}: unknown; use one of {', '.join(DATASETS)}")
    if size not in SIZES:
        raise LsdgraphError(f"size {size!r}: unknown; use one of {', '.join(SIZES)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise LsdgraphError(f"seed {seed!r}: use a non-negative integer")
    if fragments and size == "large":
        raise LsdgraphError("--fragments with size 'large': the voxel volume would be hundreds of GB; "
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
    counts = dict(n_edges=0, n_outside_edges=0, n_null_scores=0)
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
                for j, (f, ((bias, noise), fkey)) in enumerate(zip(edge_fs, params)):
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


def _offset(spec: DatasetSpec) -> np.ndarray:
    """The ROI's world offset (nm, zyx): its first block's absolute index times the block size."""
    return (np.array(spec.block_offset, np.int64) * BLOCK_CELLS * np.array(spec.cell_voxels)
            * np.array(spec.voxel_size))


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

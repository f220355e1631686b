"""The world model on the cell grid: tubes (the neurons) walked through the grid and cut into
pieces (the false boundaries, each with a strength), every cell grown into the nearest tube's
territory, cells merged into fragments inside blocks and numbered with the lab's block ids, the
face contacts between fragments (with those leaving the ROI), the skeletons along the tubes, and
where the ROI lies in the world.

Model. The volume is a grid of *cells* (a few voxels each, roughly isotropic in nm). Neurons are
persistent random walks ("tubes") through the grid; every cell joins the nearest tube (a
multi-source BFS over the cell grid), so the segmentation is dense as in EM. Tubes are walked one
after another and never enter each other's cells, so each territory is connected: the ground-truth
neurons are the territories (~15 cells of cross-section, ~150 nm radius). Fragments
(supervoxels) are single cells or small random unions of face-adjacent cells of one neuron inside one
block. Blocks are 8×8×8 cells; fragment ids are the lab's ``block_id * voxels_per_block + local``
with ``block_id`` the Cantor number of the block's absolute index (daisy 0.2 / funlib.math), so ids
are sparse and grow with the block, not inside it.

Coordinates. A voxel ``i`` (zyx, in the fragments zarr) covers world ``[offset + i*vs,
offset + (i+1)*vs)`` nm, as funlib/daisy arrays do. Fragment centres follow the lab's
``parallel_fragments.py``: ``offset + vs * center_of_mass(voxel indices)``. Skeleton nodes sit at
voxel centres, ``offset + (i + 0.5) * vs``, so flooring ``(pos - offset) / vs`` finds their voxel.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numba import njit

from lsdgraph._synth.rng import (
    _S_CUTS,
    _S_DIR,
    _S_MERGE,
    _S_OUTSIDE,
    _S_START,
    _S_TURN,
    _normal,
    _unif,
)
from lsdgraph._synth.spec import SIZES, DatasetSpec

BLOCK_CELLS = 8             # cells per block along each axis
CELLS_PER_FRAGMENT = 1.3    # measured (1.24-1.32) for P_MERGE_CELLS: sizes the grid for a fragment target
P_MERGE_CELLS = 0.12        # chance that two adjacent same-piece cells of one block share a fragment
TUBE_AREA = 15.0            # cells of territory per cell of tube length: sets the number of tubes
STEP = 0.5                  # random-walk step, cells
TURN = 0.25                 # random-walk direction noise per step
CUT_LENGTH = 25.0           # mean tube length (cells) between false boundaries
CUT_LO, CUT_HI = 0.20, 0.70  # cut strength per piece: uniform in [CUT_LO, CUT_HI)
P_OUTSIDE = 0.25            # share of +z/+y/+x border cells with an edge to a fragment outside the ROI
SKELETON_EVERY = 2          # skeleton node every this many walk steps


# ----------------------------------------------------------------------------------------------
# numba kernels


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
    n = max(BLOCK_CELLS + 2, round((SIZES[size] * CELLS_PER_FRAGMENT) ** (1 / 3)))
    return (n, n, n)


def _model(spec: DatasetSpec, shape: tuple[int, int, int], seed: int, key: int) -> _Model:
    rng = np.random.default_rng([seed, zlib.crc32(spec.volume.encode())])
    gz, gy, gx = shape
    g = np.array(shape, np.float64)
    n_tubes = max(3, round(np.prod(g) / (TUBE_AREA * g.mean())))
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


def _offset(spec: DatasetSpec) -> np.ndarray:
    """The ROI's world offset (nm, zyx): its first block's absolute index times the block size."""
    return (np.array(spec.block_offset, np.int64) * BLOCK_CELLS * np.array(spec.cell_voxels)
            * np.array(spec.voxel_size))


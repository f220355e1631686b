"""Agglomeration on plain arrays: fragments + scored edges -> a merge tree -> segments per threshold.

Segments at threshold ``t`` are the connected components of the edges with ``merge_score <= t``,
compared in float32 as the lab's ``find_segments`` does (edges with a NaN score never merge, self
loops are ignored). A segment is named by its smallest fragment id, so ids are stable across
thresholds.

All thresholds come from one pass: edges sorted by score feed one union-find run (single linkage)
that records, for every fragment that stops being a root, the root it joined and the score at which
it did (a merge tree, 16 bytes per fragment with the ids). Cutting the tree at any ``t`` is then one
O(N) pass. Tied scores do not change the tree: each fragment hangs from the smallest fragment of
its segment at the score it merged at, so the tree depends only on the components at each
threshold, not on the order edges were read in (a cluster run builds the same one). LUT files
follow lsd's format: ``.npz`` with ``fragment_segment_lut``, a 2xN uint64 array
``[fragments, segments]``.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lsdgraph._algorithms import unionfind as uf
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex, as_ids

Thresholds = str | float | Sequence[float] | np.ndarray

MAX_THRESHOLDS = 100_000
LUT_KEY = "fragment_segment_lut"
_TREE_FORMAT = "lsdgraph.merge_tree/1"


# --------------------------------------------------------------------------- thresholds

def _decimal_name(d: Decimal) -> str:
    d = d.normalize()
    return "0" if d == 0 else format(d, "f")


def _parse_piece(piece: str, spec: str, param: str) -> list[Decimal]:
    try:
        parts = [Decimal(p.strip()) for p in piece.split(":")]
    except InvalidOperation:
        raise LsdgraphError(
            f"{param}={spec!r}: {piece.strip()!r} is not a number or start:stop:step range; "
            "write e.g. '0:1:0.02' or '0.1,0.25,0.5'") from None
    if not all(p.is_finite() for p in parts):
        raise LsdgraphError(f"{param}={spec!r}: {piece.strip()!r} is not finite; use finite numbers")
    if len(parts) == 1:
        return parts
    if len(parts) != 3:
        raise LsdgraphError(
            f"{param}={spec!r}: range {piece.strip()!r} needs start:stop:step, e.g. '0:1:0.02'")
    start, stop, step = parts
    if step <= 0:
        raise LsdgraphError(f"{param}={spec!r}: step {step} in {piece.strip()!r} must be > 0")
    count = int(((stop - start) / step).to_integral_value(rounding=ROUND_CEILING))
    if count <= 0:
        raise LsdgraphError(
            f"{param}={spec!r}: range {piece.strip()!r} is empty (stop is exclusive); "
            "make stop larger than start")
    if count > MAX_THRESHOLDS:
        raise LsdgraphError(
            f"{param}={spec!r}: range {piece.strip()!r} gives {count} thresholds, more than "
            f"{MAX_THRESHOLDS}; use a larger step")
    return [start + k * step for k in range(count)]


def parse_thresholds(spec: Thresholds, param: str = "thresholds") -> tuple[np.ndarray, list[str]]:
    """Thresholds and their exact names from ``'0:1:0.02'`` (start:stop:step, stop exclusive),
    ``'0.1,0.25,0.5'`` (comma-separated numbers or ranges), a number, or a sequence of numbers.

    Ranges are computed in decimal, so ``'0:1:0.02'`` gives exactly 0, 0.02, ..., 0.98 named
    ``'0'``, ``'0.02'``, ..., ``'0.98'``; floats are named by their shortest repr (float32 values by
    the float32 one). Names are unique; order is kept as given.
    """
    if isinstance(spec, str):
        pieces = [p for p in spec.split(",") if p.strip()]
        if not pieces:
            raise LsdgraphError(f"{param}={spec!r} is empty; write e.g. '0:1:0.02' or '0.5'")
        decimals = [d for p in pieces for d in _parse_piece(p, spec, param)]
        if len(decimals) > MAX_THRESHOLDS:
            raise LsdgraphError(f"{param}={spec!r} gives more than {MAX_THRESHOLDS} thresholds")
        values = np.array([float(d) for d in decimals], dtype=np.float64)
        names = [_decimal_name(d) for d in decimals]
    else:
        arr = np.atleast_1d(np.asarray(spec))
        if arr.ndim != 1 or arr.size == 0 or not (
                np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise LsdgraphError(
                f"{param}={spec!r}: expected a number, a sequence of numbers or a spec string "
                "like '0:1:0.02'")
        if not np.isfinite(arr).all():
            raise LsdgraphError(f"{param}={spec!r} contain NaN or infinity; use finite numbers")
        values = arr.astype(np.float64)
        if np.issubdtype(arr.dtype, np.integer):
            names = [str(int(x)) for x in arr]
        else:
            names = [np.format_float_positional(x, unique=True, trim="-") for x in arr]
            names = ["0" if n in ("-0", "0") else n for n in names]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LsdgraphError(f"{param}={spec!r}: {name} appears twice; list each threshold once")
        seen.add(name)
    bad = (values < 0) | (values > 1)
    if bad.any():  # merge scores are in [0, 1]: a threshold beyond them only repeats an end
        raise LsdgraphError(f"{param}={spec!r}: {names[int(np.argmax(bad))]} is outside [0, 1], the range of "
                            "merge scores; write e.g. '0:1:0.02'")
    return values, names


def _threshold32(t: float) -> np.float32:
    """The lab compares in float32: np.float64(0.3) > np.float32(0.3) under numpy 2."""
    with np.errstate(over="ignore"):
        t32 = np.float32(t)
    if np.isnan(t32):
        raise LsdgraphError("threshold is NaN; pass a number")
    return t32


# --------------------------------------------------------------------------- ids

def index_dtype(n: int) -> np.dtype:
    if n >= 2**32:  # the union-find packs an edge's two indices into one uint64
        raise LsdgraphError(f"{n} fragments is more than the 2**32 lsdgraph can agglomerate at once; "
                            "split the volume into parts")
    return np.dtype(np.int32) if n < 2**31 else np.dtype(np.int64)


class IndexedEdges(NamedTuple):
    """Fragment ids mapped to dense indices; -1 where an edge names an id not in ``fragments``."""

    fragments: np.ndarray  # uint64, sorted, unique
    u: np.ndarray          # int32 (int64 from 2**31 fragments) index of each edge's u, or -1
    v: np.ndarray
    known: np.ndarray      # bool: both endpoints are fragments
    n_duplicates: int      # repeated ids in the fragment list given


def index_edges(fragments, u, v) -> IndexedEdges:
    """Map the edges' uint64 fragment ids to indices into the fragments' sorted unique list."""
    given = as_ids(fragments, "fragments")
    index = IdIndex(given)
    u = as_ids(u, "edge column u")
    v = as_ids(v, "edge column v")
    if u.size != v.size:
        raise LsdgraphError(f"edge columns u and v differ in length ({u.size} vs {v.size}); "
                            "pass one u and one v per edge")
    dtype = index_dtype(len(index))
    ui = index.lookup(u, out=np.empty(u.size, dtype))
    vi = index.lookup(v, out=np.empty(v.size, dtype))
    return IndexedEdges(index.ids, ui, vi, (ui >= 0) & (vi >= 0), int(given.size - len(index)))


# --------------------------------------------------------------------------- merge tree

@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_merge_tree` did with its input."""

    n_fragments: int            # distinct fragment ids
    n_duplicate_fragments: int  # repeated ids in the fragment list (ignored)
    n_edges: int                # edges given
    n_unknown_endpoint: int     # dropped: u or v is not a fragment
    n_self_loops: int           # dropped: u == v
    n_null_scores: int          # dropped: merge_score is NaN / null
    n_used: int                 # edges that entered the union-find
    n_merges: int               # tree links = n_fragments - segments at +inf


class Cut(NamedTuple):
    threshold: float
    name: str
    segments: np.ndarray  # uint64 segment id per fragment, aligned with MergeTree.fragments


@dataclass(frozen=True, eq=False)
class MergeTree:
    """Single-linkage merge tree over fragments in sorted id order.

    ``parent[i] < i`` is the root fragment i joined and ``score[i]`` (float32) the score at which
    it did; roots have ``parent[i] == i`` and score +inf.
    """

    fragments: np.ndarray  # uint64, sorted, unique
    parent: np.ndarray     # int32 (int64 from 2**31 fragments)
    score: np.ndarray      # float32
    report: BuildReport

    def __len__(self) -> int:
        return int(self.fragments.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the tree's arrays (ids + parent + score)."""
        return int(self.fragments.nbytes + self.parent.nbytes + self.score.nbytes)

    def cut(self, threshold: float, out: np.ndarray | None = None) -> np.ndarray:
        """Segment id (the smallest fragment id in the segment) of every fragment at ``threshold``,
        into ``out`` (a uint64 array of ``len(tree)``) when given."""
        if out is None:
            out = np.empty(self.fragments.size, np.uint64)
        elif out.shape != self.fragments.shape or out.dtype != np.uint64 or not out.flags.c_contiguous:
            raise LsdgraphError(f"cut(out=...) needs a contiguous uint64 array of {len(self)} values, "
                                f"got {out.dtype} {out.shape}")
        uf.cut(self.parent, self.score, _threshold32(threshold), out, self.fragments)
        return out

    def cut_index(self, threshold: float) -> np.ndarray:
        """Like :meth:`cut`, as indices into ``fragments`` (``fragments[cut_index(t)] == cut(t)``)."""
        out = np.empty(self.fragments.size, self.parent.dtype)
        uf.cut(self.parent, self.score, _threshold32(threshold), out)
        return out

    def lut(self, threshold: float) -> np.ndarray:
        """lsd's LUT at ``threshold``: a 2xN uint64 array ``[fragments, segments]``."""
        out = np.empty((2, self.fragments.size), np.uint64)
        out[0] = self.fragments
        self.cut(threshold, out=out[1])
        return out

    def iter_cuts(self, thresholds: Thresholds) -> Iterator[Cut]:
        """One :class:`Cut` per threshold, made when asked for: the tree never holds more than one."""
        values, names = parse_thresholds(thresholds)
        for t, name in zip(values.tolist(), names, strict=True):
            yield Cut(t, name, self.cut(t))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tree as ``.npz`` (suffix added when missing, as numpy does); returns the path."""
        report = {f"report_{k}": np.int64(v) for k, v in asdict(self.report).items()}
        return _savez(path, False, format=np.array(_TREE_FORMAT), fragments=self.fragments,
                      parent=self.parent, score=self.score, **report)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MergeTree:
        """Read a tree written by :meth:`save`."""
        with _open_npz(path, "merge tree") as z:
            if "format" not in z.files or str(z["format"]) != _TREE_FORMAT:
                raise LsdgraphError(f"{path} is not a merge tree saved by lsdgraph "
                                    f"(no format {_TREE_FORMAT!r}); rebuild it with build_merge_tree")
            try:
                fragments, parent, score = z["fragments"], z["parent"], z["score"]
                report = BuildReport(**{f.name: int(z[f"report_{f.name}"]) for f in fields(BuildReport)})
            except KeyError as e:
                raise LsdgraphError(f"merge tree {path} lacks {e}; rebuild it with build_merge_tree") from None
        n = fragments.size
        ok = (fragments.dtype == np.uint64 and parent.dtype == index_dtype(n)
              and score.dtype == np.float32 and parent.shape == score.shape == (n,)
              and bool(np.all(parent <= np.arange(n, dtype=parent.dtype))) and bool(np.all(parent >= 0)))
        if not ok:
            raise LsdgraphError(f"merge tree {path} has inconsistent arrays; rebuild it with build_merge_tree")
        return cls(fragments, parent, score, report)


def build_merge_tree(fragments, u, v, scores) -> MergeTree:
    """Single-linkage merge tree of a RAG in one union-find pass over edges sorted by float32 score.

    ``fragments``: fragment ids (uint64 or int64; duplicates ignored). ``u``, ``v``: edge endpoint
    ids. ``scores``: merge scores (NaN = null, never merges). Edges naming an unknown fragment and
    self loops are dropped; the tree's ``report`` counts them.
    """
    return merge_tree_from_indices(index_edges(fragments, u, v), scores)


def merge_tree_from_indices(r: IndexedEdges, scores) -> MergeTree:
    """:func:`build_merge_tree` for edges already mapped to indices by :func:`index_edges`."""
    s = np.asarray(scores)
    if s.ndim != 1 or s.size != r.u.size:
        raise LsdgraphError(f"merge scores have shape {s.shape} but there are {r.u.size} edges; "
                            "pass one score per edge (NaN for null)")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer) or s.size == 0):
        raise LsdgraphError(f"merge scores must be numbers (NaN for null), got dtype {s.dtype}")
    with np.errstate(over="ignore"):  # scores beyond float32's range become +-inf, as in the lab's cast
        s32 = np.ascontiguousarray(s, dtype=np.float32)
    sorted_scores, ab, n_unknown, n_self, n_null = uf.sort_edges(r.u, r.v, s32)
    del s32
    n = r.fragments.size
    parent = np.empty(n, index_dtype(n))
    score = np.empty(n, np.float32)
    n_merges = uf.union_pass(sorted_scores, ab, parent, score)
    uf.canonical_parents(parent, score)  # ties: the same tree whatever order edges were read in
    report = BuildReport(
        n_fragments=n, n_duplicate_fragments=r.n_duplicates, n_edges=int(r.u.size),
        n_unknown_endpoint=int(n_unknown), n_self_loops=int(n_self), n_null_scores=int(n_null),
        n_used=int(sorted_scores.size), n_merges=int(n_merges))
    return MergeTree(r.fragments, parent, score, report)


def summary(tree: MergeTree, thresholds: Thresholds):
    """One row per threshold: ``threshold``, ``name``, ``n_segments``, ``largest_segment`` and
    ``singletons`` (in fragments), and ``merged_fraction`` (share of fragments in a segment of two
    or more)."""
    import pandas as pd

    values, names = parse_thresholds(thresholds)
    stats = np.array([uf.cut_stats(tree.parent, tree.score, _threshold32(t)) for t in values],
                     dtype=np.int64).reshape(-1, 3)
    n = max(len(tree), 1)
    return pd.DataFrame({
        "threshold": values, "name": names, "n_segments": stats[:, 0],
        "largest_segment": stats[:, 1], "singletons": stats[:, 2],
        "merged_fraction": (len(tree) - stats[:, 2]) / n,
    })


# --------------------------------------------------------------------------- files

def _npz_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.name.endswith(".npz") else p.with_name(p.name + ".npz")


def _savez(path, compress: bool, **arrays) -> Path:
    """Write to a temporary name, then rename: a crash never leaves a half-written file."""
    p = _npz_path(path)
    tmp = p.with_name(p.name + ".part")
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise LsdgraphError(f"cannot write {p}: {e.strerror or e}; "
                            "check the directory exists and is writable") from None
    return p


def _open_npz(path, what: str) -> np.lib.npyio.NpzFile:
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise LsdgraphError(f"{what} file {path} does not exist; check the path") from None
    except ValueError as e:
        why = "it holds pickled Python objects, which are not read" if "pickle" in str(e) else str(e)
        raise LsdgraphError(f"{what} file {path} is not a readable .npz ({why}); regenerate it") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise LsdgraphError(f"{what} file {path} is not a readable .npz ({e}); regenerate it") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise LsdgraphError(f"{what} file {path} holds a single array, not an .npz archive; regenerate it")
    return z


def write_lut(path: str | os.PathLike, fragments, segments, compress: bool = False) -> Path:
    """Write an lsd-format LUT: ``.npz`` with ``fragment_segment_lut`` = 2xN uint64
    ``[fragments, segments]``. Returns the path written (``.npz`` is appended when missing, as
    numpy does). ``compress=True`` deflates like lsd's own files: 7-10x smaller, ~20x slower to
    write (0.4 s per million fragments); np.load reads either."""
    f = as_ids(fragments, "LUT fragments")
    s = as_ids(segments, "LUT segments")
    if f.size != s.size:
        raise LsdgraphError(f"LUT for {path}: {f.size} fragments but {s.size} segments; pass one segment per fragment")
    return _savez(path, compress, **{LUT_KEY: np.stack([f, s])})


def read_lut(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(fragments, segments) as uint64 from an lsd-format LUT file (ours or the lab's)."""
    with _open_npz(path, "LUT") as z:
        if LUT_KEY not in z.files:
            raise LsdgraphError(
                f"LUT file {path} has no {LUT_KEY!r} array (has {z.files}); is it a fragment-segment LUT?"
            )
        try:
            lut = z[LUT_KEY]
        except ValueError:  # an object array: np.load refuses to unpickle it
            raise LsdgraphError(f"LUT file {path}: {LUT_KEY} holds Python objects, expected 2xN integers; "
                                "regenerate it") from None
    if lut.ndim != 2 or lut.shape[0] != 2 or not np.issubdtype(lut.dtype, np.integer):
        raise LsdgraphError(f"LUT file {path}: {LUT_KEY} is {lut.dtype} {lut.shape}, expected 2xN integers")
    return as_ids(lut[0], "LUT fragments"), as_ids(lut[1], "LUT segments")

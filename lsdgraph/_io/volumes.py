"""Zarr (v2) volumes such as the bucket's fragments, read chunk by chunk from a local folder or S3
(boto3: anonymous for public buckets), and written chunk by chunk — memory bounded by a chunk.

Arrays are zyx with ``offset`` and ``resolution`` attributes in world units (nm), as the lab's
zarrs are; a world position p lies in voxel ``floor((p - offset) / resolution)``.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.progress import Progress, count_of
from lsdgraph._io.sources import S3Options, is_s3, split_s3


def _codec(config):
    if not config:
        return None
    import numcodecs

    try:
        return numcodecs.get_codec(dict(config))
    except Exception as e:
        raise LsdgraphError(f"zarr codec {config.get('id')!r} is not available here ({e})") from None


def _local_getter(root: Path) -> Callable[[str], bytes | None]:
    def get(key: str) -> bytes | None:
        try:
            return (root / key).read_bytes()
        except FileNotFoundError:
            return None
    return get


def _s3_getter(url: str, opts: S3Options) -> Callable[[str], bytes | None]:
    from botocore.exceptions import ClientError

    from lsdgraph._io.sources import _s3_error

    bucket, prefix = split_s3(url.rstrip("/") + "/")
    client = opts.client()

    def get(key: str) -> bytes | None:
        try:
            return client.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _s3_error(f"s3://{bucket}/{prefix}{key}", e) from None
    return get


@dataclass
class Volume:
    """A zarr v2 array: metadata, world geometry, and chunk access."""

    url: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill_value: object
    order: Literal["C", "F"]
    separator: str
    offset: np.ndarray       # nm, zyx
    resolution: np.ndarray   # nm, zyx
    attrs: dict
    _get: Callable[[str], bytes | None] = field(repr=False)
    _compressor: Any = field(repr=False, default=None)   # a numcodecs codec
    _filters: list[Any] = field(repr=False, default_factory=list)

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks per axis."""
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    def chunk(self, index: Sequence[int]) -> np.ndarray:
        """One chunk (full chunk shape; edge chunks are padded as stored)."""
        key = self.separator.join(str(int(i)) for i in index)
        raw = self._get(key)
        if raw is None:
            return np.full(self.chunks, self.fill_value or 0, self.dtype)
        data = self._compressor.decode(raw) if self._compressor else raw
        for f in reversed(self._filters):
            data = f.decode(data)
        arr = np.frombuffer(bytes(data) if not isinstance(data, (bytes, np.ndarray)) else data, self.dtype)
        if arr.size != int(np.prod(self.chunks)):
            raise LsdgraphError(f"{self.url}/{key}: chunk holds {arr.size} values, expected "
                                f"{int(np.prod(self.chunks))}; the volume is corrupt")
        return arr.reshape(self.chunks, order=self.order)

    def read(self, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
        """Voxels ``[begin, end)`` (clipped to the array), assembled from the chunks they touch."""
        b = np.maximum(np.asarray(begin, int), 0)
        e = np.minimum(np.asarray(end, int), self.shape)
        out = np.full(tuple(np.maximum(e - b, 0)), self.fill_value or 0, self.dtype)
        if np.any(e <= b):
            return out
        c = np.asarray(self.chunks)
        for idx in product(*(range(lo, hi) for lo, hi in zip(b // c, (e - 1) // c + 1, strict=True))):
            cb = np.asarray(idx) * c
            lo, hi = np.maximum(b, cb), np.minimum(e, cb + c)
            src = tuple(slice(x - y, z - y) for x, y, z in zip(lo, cb, hi, strict=True))
            dst = tuple(slice(x - y, z - y) for x, y, z in zip(lo, b, hi, strict=True))
            out[dst] = self.chunk(idx)[src]
        return out

    def voxels(self, world_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(voxel indices (n, 3) int64, inside mask) of world positions (nm)."""
        v = np.floor((np.asarray(world_zyx, float) - self.offset) / self.resolution).astype(np.int64)
        inside = np.all((v >= 0) & (v < np.asarray(self.shape)), axis=1)
        return v, inside

    def sample(self, world_zyx: np.ndarray, progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Values at world positions, reading each touched chunk once; returns (values, inside)
        with values = fill where outside the array. ``progress``: a bar on a terminal (None: when
        stderr is one)."""
        v, inside = self.voxels(world_zyx)
        values = np.full(len(v), self.fill_value or 0, self.dtype)
        if not inside.any():
            return values, inside
        c = np.asarray(self.chunks)
        where = np.flatnonzero(inside)
        cidx = v[where] // c
        key = np.ravel_multi_index(cidx.T, self.grid)
        order = np.argsort(key, kind="stable")
        key, where, cidx = key[order], where[order], cidx[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        bar = Progress(f"sampling {Path(self.url).name}", len(starts), enabled=progress, amount=count_of("chunks"),
                       unit="points")
        try:
            for s, e in zip(starts, np.r_[starts[1:], len(key)], strict=True):
                block = self.chunk(cidx[s])
                local = v[where[s:e]] - cidx[s] * c
                values[where[s:e]] = block[tuple(local.T)]
                bar.update(1, int(e - s))
        finally:
            bar.close()
        return values, inside

    def blocks(self) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
        """(chunk index, voxel slices clipped to the array) for every chunk."""
        for idx in product(*(range(g) for g in self.grid)):
            yield idx, tuple(slice(i * c, min((i + 1) * c, s))
                             for i, c, s in zip(idx, self.chunks, self.shape, strict=True))


def open_volume(url: str, *, s3: S3Options | None = None) -> Volume:
    """Open a zarr v2 array (a folder holding ``.zarray``) locally or at ``s3://bucket/key``."""
    url = str(url).rstrip("/")
    if is_s3(url):
        get = _s3_getter(url, s3 or S3Options())
    else:
        root = Path(url).expanduser()
        if not root.exists():
            raise LsdgraphError(f"{url}: no such zarr array")
        if not root.is_dir():
            raise LsdgraphError(f"{url}: a file, not a zarr array; point at the array's folder (the one holding "
                                ".zarray, e.g. .../volumes/fragments)")
        if (root / "attributes.json").exists() and not (root / ".zarray").exists():
            raise LsdgraphError(f"{url}: an n5 dataset (xyz); only zarr (zyx) volumes are read here")
        get = _local_getter(root)
    meta = get(".zarray")
    if meta is None:
        if get("zarr.json") is not None:
            raise LsdgraphError(f"{url}: a zarr v3 array; the LSD volumes are zarr v2 — write v2 (zarr_format=2)")
        raise LsdgraphError(f"{url}: no .zarray here; point at the array (e.g. .../volumes/ACLSD/fragments)")
    try:
        m = json.loads(meta)
        attrs = json.loads(get(".zattrs") or b"{}")
        shape, chunks = tuple(m["shape"]), tuple(m["chunks"])
        dtype = np.dtype(m["dtype"])
    except (ValueError, KeyError, TypeError) as e:
        raise LsdgraphError(f"{url}/.zarray: not valid zarr metadata ({e})") from None
    if len(shape) != 3:
        raise LsdgraphError(f"{url}: a {len(shape)}-d array; fragments volumes are 3-d (z, y, x)")
    res = np.asarray(attrs.get("resolution", [1, 1, 1]), float)
    off = np.asarray(attrs.get("offset", [0, 0, 0]), float)
    if res.shape != (3,) or off.shape != (3,) or np.any(res <= 0):
        raise LsdgraphError(
            f"{url}/.zattrs: offset {off.tolist()} / resolution {res.tolist()} must be three "
            "numbers (nm, zyx), resolution > 0"
        )
    order = m.get("order", "C")
    if order not in ("C", "F"):
        raise LsdgraphError(f"{url}/.zarray: order {order!r} is not C or F; the metadata is corrupt")
    return Volume(
        url,
        shape,
        chunks,
        dtype,
        m.get("fill_value", 0),
        order,
        m.get("dimension_separator", "."),
        off,
        res,
        attrs,
        get,
        _codec(m.get("compressor")),
        [_codec(f) for f in (m.get("filters") or [])],
    )


def fingerprint(vol: Volume, *, s3: S3Options | None = None) -> str | None:
    """A short hash of what ``vol`` holds: its metadata (``.zarray``, ``.zattrs``) and the listing
    of its chunk keys with each one's size and mtime (local) or ETag (S3). A listing, no chunk
    read; rewriting any chunk changes it. None when the chunks cannot be listed."""
    from lsdgraph._io.sources import list_files

    h = hashlib.sha256()
    for key in (".zarray", ".zattrs"):
        h.update(key.encode() + b"\0" + (vol._get(key) or b"") + b"\0")
    try:
        files = list_files(vol.url, suffix=None, s3=s3)
    except LsdgraphError:
        return None  # e.g. a bucket that allows reads but not listing: nothing to compare
    for f in files:
        if not f.name.startswith("."):  # metadata is hashed by content above
            h.update(f"{f.rel}\0{f.fingerprint}\n".encode())
    return h.hexdigest()[:24]


def create_volume(
    path: str | os.PathLike,
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype,
    offset: Sequence[float],
    resolution: Sequence[float],
    *,
    attrs: dict | None = None,
    compressor: dict | None = None,
) -> Volume:
    """A new local zarr v2 array (Blosc-LZ4 by default, as zarr writes); fill it with
    :func:`write_chunk`."""
    if is_s3(str(path)):
        # Path("s3://b/k") would quietly become a local folder "s3:/b/k"
        raise LsdgraphError(
            f"{path}: volumes are written to local folders only; write one here and upload it (aws s3 sync)"
        )
    root = Path(path).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(dtype)
    comp = (
        compressor
        if compressor is not None
        else {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
    )
    meta = {
        "zarr_format": 2,
        "shape": list(map(int, shape)),
        "chunks": list(map(int, chunks)),
        "dtype": dtype.str,
        "compressor": comp,
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "dimension_separator": ".",
    }
    (root / ".zarray").write_text(json.dumps(meta, indent=1))
    (root / ".zattrs").write_text(
        json.dumps(
            {"offset": [float(o) for o in offset], "resolution": [float(r) for r in resolution], **(attrs or {})}
        )
    )
    return open_volume(str(root))


def write_chunk(vol: Volume, index: Sequence[int], data: np.ndarray) -> None:
    """Write one chunk of a local volume (``data`` may be an edge chunk's clipped shape)."""
    full = np.zeros(vol.chunks, vol.dtype)
    full[tuple(slice(0, s) for s in data.shape)] = data
    raw = full.tobytes(order=vol.order)
    if vol._compressor is not None:
        raw = vol._compressor.encode(raw)
    Path(vol.url, vol.separator.join(str(int(i)) for i in index)).write_bytes(bytes(raw))


def _s3_parts(url: str) -> tuple[str, ...]:
    """``s3://bucket/a//b/`` → ("s3:", "bucket", "a", "b"): empty key segments and trailing
    slashes do not make another location (treating them as the same only ever refuses more)."""
    bucket, key = split_s3(url)
    return ("s3:", bucket, *(p for p in key.split("/") if p))


def _within(inner: str, outer: str) -> bool:
    """Whether location ``inner`` is ``outer`` or lies below it (local paths with symlinks
    resolved, or S3 prefixes compared segment by segment)."""
    if is_s3(inner) or is_s3(outer):
        if not (is_s3(inner) and is_s3(outer)):
            return False
        o = _s3_parts(outer)
        return _s3_parts(inner)[: len(o)] == o
    ip, op = Path(inner).expanduser().resolve(), Path(outer).expanduser().resolve()
    if ip == op or op in ip.parents:
        return True
    # the same folder under another name: a bind mount, a case-insensitive file system
    return op.exists() and any(p.exists() and os.path.samefile(p, op) for p in (ip, *ip.parents))


def overlap(volume: str, other: str) -> str | None:
    """How location ``other`` overlaps the array at ``volume``: ``"is"``, ``"lies inside"``,
    ``"contains"``, or None when writing at ``other`` cannot touch the array's files (a sibling
    array in the same container is fine)."""
    inside, contains = _within(other, volume), _within(volume, other)
    if inside and contains:
        return "is"
    return "lies inside" if inside else "contains" if contains else None

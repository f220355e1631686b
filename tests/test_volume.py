"""Zarr v2 volumes: what the zarr library writes reads back exactly (whole, regions, sampled at world
positions), what lsdgraph writes the zarr library reads, and the same volume over S3."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io.sources import S3Options
from lsdgraph._io.volumes import create_volume, fingerprint, open_volume, write_chunk

OFFSET, RES = (100.0, 0.0, 36.0), (20.0, 9.0, 9.0)


@pytest.fixture
def labels(tmp_path):
    a = np.random.default_rng(0).integers(0, 2**40, (37, 50, 41)).astype(np.uint64)
    z = zarr.open_array(store=str(tmp_path / "frag"), mode="w", shape=a.shape, chunks=(16, 32, 16),
                        dtype="u8", zarr_format=2)
    z[:] = a
    z.attrs["offset"], z.attrs["resolution"] = list(OFFSET), list(RES)
    return a, tmp_path / "frag"


def world_points(a, n=5000, seed=1):
    lo = np.array(OFFSET) - 50
    hi = np.array(OFFSET) + np.array(a.shape) * RES + 50
    return np.random.default_rng(seed).uniform(lo, hi, (n, 3))


def check_sample(vol, a):
    pts = world_points(a)
    values, inside = vol.sample(pts)
    vox = np.floor((pts - OFFSET) / RES).astype(int)
    expect_in = np.all((vox >= 0) & (vox < a.shape), axis=1)
    assert np.array_equal(inside, expect_in) and 0 < inside.sum() < len(pts)
    assert np.array_equal(values[inside], a[tuple(vox[inside].T)])
    assert np.all(values[~inside] == 0)


def test_reads_what_zarr_writes(labels):
    a, path = labels
    v = open_volume(str(path))
    assert v.shape == a.shape and v.grid == (3, 2, 3) and tuple(v.offset) == OFFSET
    assert np.array_equal(v.read((0, 0, 0), a.shape), a)
    assert np.array_equal(v.read((3, 30, 7), (35, 49, 40)), a[3:35, 30:49, 7:40])
    check_sample(v, a)


def test_zarr_reads_what_we_write(labels, tmp_path):
    a, _ = labels
    w = create_volume(tmp_path / "out", a.shape, (16, 16, 16), np.uint64, OFFSET, RES, attrs={"note": "x"})
    for idx, sl in w.blocks():
        write_chunk(w, idx, a[sl])
    z = zarr.open_array(str(tmp_path / "out"), mode="r")
    assert np.array_equal(z[:], a) and z.attrs["resolution"] == list(RES) and z.attrs["note"] == "x"


@pytest.mark.s3
def test_the_same_volume_over_s3(labels, s3):
    a, path = labels
    url = s3.upload_folder(path, f"public/{s3.prefix}frag")
    v = open_volume(url, s3=S3Options(endpoint_url=s3.endpoint))  # anonymous, like the public bucket
    assert np.array_equal(v.read((0, 0, 0), a.shape), a)
    check_sample(v, a)


def test_the_fingerprint_follows_the_content(labels):
    a, path = labels
    v = open_volume(str(path))
    fp = fingerprint(v)
    assert fp and fingerprint(open_volume(str(path))) == fp  # a listing: the same until something changes
    write_chunk(v, (1, 1, 1), a[16:32, 32:50, 16:32] + np.uint64(1))
    assert fingerprint(v) not in (fp, None)
    fp = fingerprint(v)
    (path / ".zattrs").write_text('{"offset": [0, 0, 0], "resolution": [20, 9, 9]}')
    assert fingerprint(open_volume(str(path))) != fp


@pytest.mark.s3
def test_the_fingerprint_over_s3_follows_the_etags(labels, s3):
    _a, path = labels
    url = s3.upload_folder(path, f"public/{s3.prefix}frag")
    opts = S3Options(endpoint_url=s3.endpoint)
    v = open_volume(url, s3=opts)
    fp = fingerprint(v, s3=opts)
    assert fp and fingerprint(open_volume(url, s3=opts), s3=opts) == fp
    s3.put(f"public/{s3.prefix}frag/0.0.0", (path / "1.1.1").read_bytes())  # another chunk's bytes
    assert fingerprint(v, s3=opts) not in (fp, None)


def test_bad_volumes(tmp_path):
    with pytest.raises(LsdgraphError, match="no such zarr array"):
        open_volume(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LsdgraphError, match=r"no \.zarray"):
        open_volume(str(tmp_path / "empty"))
    z = zarr.open_array(store=str(tmp_path / "flat"), mode="w", shape=(4, 4), chunks=(2, 2), dtype="u8",
                        zarr_format=2)
    z[:] = 1
    with pytest.raises(LsdgraphError, match="3-d"):
        open_volume(str(tmp_path / "flat"))

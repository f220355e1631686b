"""`relabel` never overwrites its input: an --out that is the input (by any name: a trailing
slash, a symlink), lies inside it or contains it is refused before anything is written, locally
and on S3; a sibling array in the same zarr container, as the lab lays out data, is allowed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io.sources import S3Options
from lsdgraph._io.volumes import create_volume, open_volume, overlap, write_chunk
from lsdgraph._jobs import relabel

from conftest import run_cli

FIX = "choose an out= outside the input volume"


class Lab:
    """``data.zarr/volumes/fragments`` (the lab's layout) and a LUT for it."""

    def __init__(self, root: Path):
        self.container = root / "data.zarr"
        self.fragments = self.container / "volumes" / "fragments"
        rng = np.random.default_rng(7)
        self.labels = rng.integers(1, 50, (20, 24, 18)).astype(np.uint64)
        vol = create_volume(self.fragments, self.labels.shape, (8, 8, 8), np.uint64, (0, 0, 0), (40, 4, 4))
        for idx, sl in vol.blocks():
            write_chunk(vol, idx, self.labels[sl])
        for group in (self.container, self.container / "volumes"):
            (group / ".zgroup").write_text('{"zarr_format": 2}')
        ids = np.arange(1, 50, dtype=np.uint64)
        self.segments = ids // 10 + 1000
        self.lut = agglomerate.write_lut(root / "lut.npz", ids, self.segments)

    def snapshot(self) -> dict[str, bytes]:
        """Every file below the container (chunks, metadata) with its bytes."""
        return {p.relative_to(self.container).as_posix(): p.read_bytes()
                for p in sorted(self.container.rglob("*")) if p.is_file()}


@pytest.fixture
def lab(tmp_path) -> Lab:
    return Lab(tmp_path)


def refused(lab: Lab, fragments, out, how: str) -> str:
    before = lab.snapshot()
    with pytest.raises(LsdgraphError) as e:
        relabel.relabel(str(fragments), str(lab.lut), str(out), quiet=True)
    msg = str(e.value)
    assert f"out={out} {how} the input volume {fragments}" in msg and FIX in msg
    assert lab.snapshot() == before
    return msg


@pytest.mark.parametrize("variant", ["same", "trailing-slash", "dot-segments"])
def test_the_same_path_is_refused(lab, variant):
    out = {"same": str(lab.fragments), "trailing-slash": f"{lab.fragments}/",
           "dot-segments": f"{lab.container}/volumes/./../volumes/fragments"}[variant]
    refused(lab, lab.fragments, out, "is")


def test_a_symlink_to_the_input_is_refused(lab, tmp_path):
    link = tmp_path / "link.zarr"
    link.symlink_to(lab.fragments, target_is_directory=True)
    refused(lab, lab.fragments, link, "is")
    refused(lab, link, lab.fragments, "is")  # the input named through the link
    parent = tmp_path / "elsewhere"
    parent.symlink_to(lab.container / "volumes", target_is_directory=True)
    refused(lab, lab.fragments, parent / "fragments" / "relabelled", "lies inside")


def test_an_output_inside_the_input_is_refused(lab):
    refused(lab, lab.fragments, lab.fragments / "relabelled", "lies inside")
    refused(lab, lab.fragments, lab.fragments / "0", "lies inside")  # where nested chunks would go


@pytest.mark.parametrize("level", ["container", "volumes"])
def test_an_output_containing_the_input_is_refused(lab, level):
    out = lab.container if level == "container" else lab.container / "volumes"
    refused(lab, lab.fragments, out, "contains")


def test_a_sibling_array_in_the_same_container_is_allowed(lab):
    before = {k: v for k, v in lab.snapshot().items() if k.startswith("volumes/fragments/")}
    out = lab.container / "volumes" / "segmentation_0.5"
    done = relabel.relabel(str(lab.fragments), str(lab.lut), str(out), quiet=True)
    assert done["voxels"] == lab.labels.size
    assert np.array_equal(open_volume(str(out)).read((0, 0, 0), lab.labels.shape), lab.labels // 10 + 1000)
    after = {k: v for k, v in lab.snapshot().items() if k.startswith("volumes/fragments/")}
    assert after == before
    # a name sharing the input's as a prefix is a sibling too
    assert overlap(str(lab.fragments), str(lab.container / "volumes" / "fragments_v2")) is None


def test_overlap_compares_locations_segment_by_segment():
    s3 = "s3://bucket/data.zarr/volumes/fragments"
    assert overlap(s3, s3 + "/") == overlap(s3, "s3://bucket//data.zarr/volumes//fragments") == "is"
    assert overlap(s3, "s3://bucket/data.zarr") == "contains" and overlap(s3, "s3://bucket") == "contains"
    assert overlap(s3, s3 + "/seg") == "lies inside"
    for other in ("s3://bucket/data.zarr/volumes/fragments_v2", "s3://other/data.zarr/volumes/fragments",
                  "s3://bucket/data.zarr/volumes/seg", "data.zarr/volumes/fragments"):
        assert overlap(s3, other) is None, other


@pytest.mark.s3
def test_an_s3_pair(lab, s3, tmp_path):
    base = s3.upload_folder(lab.container, f"public/{s3.prefix}data.zarr")
    fragments = f"{base}/volumes/fragments"
    for out, how in [(fragments, "is"), (fragments + "/", "is"), (base, "contains"),
                     (f"{fragments}/relabelled", "lies inside")]:
        with pytest.raises(LsdgraphError) as e:
            relabel.relabel(fragments, str(lab.lut), out, s3=S3Options(endpoint_url=s3.endpoint), quiet=True)
        assert f"out={out} {how} the input volume {fragments}" in str(e.value) and FIX in str(e.value)
    with pytest.raises(LsdgraphError, match="local folders only"):  # a sibling, but S3 is not written
        relabel.relabel(fragments, str(lab.lut), f"{base}/volumes/seg", s3=S3Options(endpoint_url=s3.endpoint),
                        quiet=True)
    listed = s3.admin.list_objects_v2(Bucket=s3.bucket, Prefix=f"public/{s3.prefix}")["Contents"]
    assert sorted(o["Key"].split("data.zarr/", 1)[1] for o in listed) == sorted(lab.snapshot())
    local = tmp_path / "from_s3.zarr"
    relabel.relabel(fragments, str(lab.lut), str(local), s3=S3Options(endpoint_url=s3.endpoint), quiet=True)
    assert np.array_equal(open_volume(str(local)).read((0, 0, 0), lab.labels.shape), lab.labels // 10 + 1000)


@pytest.mark.parametrize("target", ["input", "container"])
def test_cli_refuses_in_one_line_and_leaves_the_input_alone(lab, target):
    before = lab.snapshot()
    out = lab.fragments if target == "input" else lab.container
    r = run_cli("relabel", str(lab.fragments), "--lut", str(lab.lut), "--out", str(out))
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("lsdgraph relabel: error: --out") and FIX.replace("out=", "--out") in line
    assert str(out) in line and str(lab.fragments) in line
    assert lab.snapshot() == before

"""``lsdgraph view``: the neuroglancer state (layers, sources, equivalences, skeleton lines in nm)
on the tiny synthetic dataset, its one-line errors, and the local viewer loaded in headless
Chromium — a screenshot that shows the data, and shows the same with the state's own zarr
sources read over http. Chromium or the neuroglancer package missing: skipped, except in CI."""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lsdgraph._algorithms.merge_tree import read_lut, write_lut
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io.sources import S3Options
from lsdgraph._io.volumes import open_volume
from lsdgraph._jobs import view as job
from lsdgraph._query.rag import open_skeletons
from lsdgraph.cli import main

from servers import unavailable

GT = "hemi_gt"


@dataclasses.dataclass
class Data:
    fragments: Path
    db: str
    seg: Path          # a `segment --out` folder with LUTs at 0.1, 0.3, 0.5
    lut: Path          # the one at 0.3
    prefix: str        # the skeleton set


@pytest.fixture(scope="module")
def data(synthetic, tmp_path_factory) -> Data:
    from lsdgraph._ingest import ingest
    from lsdgraph._jobs.segment import segment

    syn = synthetic("hemi", "tiny")
    base = tmp_path_factory.mktemp("view")
    db = str(base / "store")
    ingest(str(syn.rag_dir), db=db, name="hemi", quiet=True)
    ingest(str(syn.skeleton_dir), db=db, name=GT, quiet=True)
    seg = base / "seg"
    r = segment(db=db, name="hemi", out=seg, thresholds="0.1,0.3,0.5", quiet=True, db_luts="none")
    lut = next(p for p in r.lut_paths if p.stem.endswith("_0.3"))
    prefix = open_skeletons(db, GT).prefix
    return Data(syn.fragments_path, db, seg, lut, prefix)


def layer(state: dict, name: str) -> dict:
    return next(x for x in state["layers"] if x["name"] == name)


# ------------------------------------------------------------------------------------------------
# the state


def test_state_layers_sources_and_view(data, tmp_path):
    r = job.view(data.fragments, tmp_path / "v", lut=data.seg, threshold=0.3, db=data.db, name=GT)
    assert json.loads(r.state_path.read_text()) == r.state
    assert r.state_path == tmp_path / "v" / "state.json"
    names = [(x["name"], x["type"]) for x in r.state["layers"]]
    assert names == [("fragments", "segmentation"), ("segments 0.3", "segmentation"),
                     (f"skeletons {data.prefix}", "annotation")]
    vol = open_volume(str(data.fragments))
    nm = {a: [float(s) * 1e-9, "m"] for a, s in zip("zyx", vol.resolution, strict=True)}
    assert r.state["dimensions"] == nm   # the volume's voxel size
    frag = layer(r.state, "fragments")
    assert frag["visible"] is False      # under the segments
    src = frag["source"]
    assert src["url"] == "zarr://" + Path(data.fragments).resolve().as_uri()
    t = src["transform"]
    assert t["outputDimensions"] == nm
    assert t["inputDimensions"] == {f"d{i}": nm[a] for i, a in enumerate("zyx")}
    m = np.asarray(t["matrix"])
    assert np.array_equal(m[:, :3], np.eye(3)) and np.allclose(m[:, 3], vol.offset / vol.resolution)
    assert layer(r.state, "segments 0.3")["source"] == src   # the same fragments, merged by equivalences
    # the view: the volume's centre, in voxels
    assert np.allclose(r.state["position"], vol.offset / vol.resolution + np.asarray(vol.shape) / 2)
    assert r.state["layout"] == "4panel"
    # local files: no browser reads file://, and the note says what to do
    assert any("data_url=" in n for n in r.notes)
    assert r.link is not None and r.link.startswith(job.DEMO_URL + "#!")
    from urllib.parse import unquote

    assert json.loads(unquote(r.link.split("#!", 1)[1])) == r.state


def test_equivalences_are_the_luts_segments(data, tmp_path):
    r = job.view(data.fragments, tmp_path, lut=data.lut)   # a file: its threshold is read from its name
    seg = layer(r.state, "segments 0.3")
    groups = seg["equivalences"]
    fragments, segments = read_lut(data.lut)
    of = dict(zip(fragments.tolist(), segments.tolist(), strict=True))
    assert all(isinstance(i, str) for g in groups for i in g)   # uint64 ids survive JavaScript
    members = [int(i) for g in groups for i in g]
    assert len(members) == len(set(members))
    for g in groups:   # each group is exactly one segment's fragments
        assert len(g) >= 2 and len({of[int(i)] for i in g}) == 1
    sizes = np.bincount(np.unique(segments, return_inverse=True)[1])
    assert len(groups) == int((sizes >= 2).sum())
    assert len(members) == int(sizes[sizes >= 2].sum())
    assert len({of[int(g[0])] for g in groups}) == len(groups)


def test_skeleton_lines_in_nm(data, tmp_path):
    r = job.view(data.fragments, tmp_path, db=data.db, name=GT)
    sk = layer(r.state, f"skeletons {data.prefix}")
    assert sk["source"]["url"] == "local://annotations"
    assert sk["source"]["transform"]["outputDimensions"] == {a: [1e-9, "m"] for a in "zyx"}
    assert [p["id"] for p in sk["annotationProperties"]] == ["color", "neuron_id"]
    nodes, edges = open_skeletons(data.db, GT).arrays()
    pos = {int(i): (z, y, x) for i, z, y, x in nodes[["id", "z", "y", "x"]].itertuples(index=False)}
    neuron = dict(zip(nodes["id"].tolist(), nodes["neuron_id"].tolist(), strict=True))
    lines = sk["annotations"]
    assert len(lines) == len(edges) > 0 and all(a["type"] == "line" for a in lines)
    want = sorted((pos[u], pos[v], neuron[u]) for u, v in zip(edges["u"], edges["v"], strict=True))
    got = sorted((tuple(a["pointA"]), tuple(a["pointB"]), a["props"][1]) for a in lines)
    assert len(got) == len(want)
    for (ga, gb, gn), (wa, wb, wn) in zip(got, want, strict=True):
        assert np.allclose(ga, wa, atol=0.05) and np.allclose(gb, wb, atol=0.05) and gn == wn
    color = {}
    for a in lines:   # one colour per neuron
        assert color.setdefault(a["props"][1], a["props"][0]) == a["props"][0]
    assert len(set(color.values())) == len(color)
    # an ROI keeps the lines that start inside it and centres the view there
    roi = ((20480, 20480, 20480), (160, 160, 160))
    small = job.view(data.fragments, tmp_path / "roi", db=data.db, name=GT, roi=roi)
    inside = layer(small.state, f"skeletons {data.prefix}")["annotations"]
    assert 0 < len(inside) < len(lines)
    vol = open_volume(str(data.fragments))
    assert np.allclose(small.state["position"], (np.asarray(roi[0]) + 80) / vol.resolution)


def test_relabelled_segmentation_and_sources(data, tmp_path):
    from lsdgraph._jobs.relabel import relabel

    out = tmp_path / "segmentation.zarr"
    relabel(str(data.fragments), str(data.lut), str(out), quiet=True)
    r = job.view(data.fragments, tmp_path / "v", segmentation=out, data_url="http://127.0.0.1:9000/", data_root="/")
    assert [x["name"] for x in r.state["layers"]] == ["fragments", "segmentation"]
    assert (layer(r.state, "segmentation")["source"]["url"]
            == "zarr://http://127.0.0.1:9000" + str(out.resolve()))
    assert "equivalences" not in layer(r.state, "segmentation")
    assert not any("data_url=" in n for n in r.notes)
    with pytest.raises(LsdgraphError, match=r"data_root=.* does not hold"):  # fragments lie elsewhere
        job.view(data.fragments, tmp_path / "v", segmentation=out, data_url="http://127.0.0.1:9000",
                 data_root=tmp_path)
    # S3: the browser reads the bucket itself; an S3-compatible endpoint path-style
    vol = dataclasses.replace(open_volume(str(data.fragments)), url="s3://open-neurodata/funke/hemi/fragments")
    assert job.volume_url(vol, S3Options()) == "zarr://s3://open-neurodata/funke/hemi/fragments"
    assert (job.volume_url(vol, S3Options(endpoint_url="http://127.0.0.1:9000/"))
            == "zarr://http://127.0.0.1:9000/open-neurodata/funke/hemi/fragments")


def test_a_long_link_is_not_printed(data, tmp_path, capsys):
    r = job.view(data.fragments, tmp_path, lut=data.lut, max_link=1000)
    assert r.link is None and "state.json" in (r.why_no_link or "")
    assert len(job.link_for(r.state)) > 1000
    argv = ["view", str(data.fragments), "--lut", str(data.lut), "--out", str(tmp_path)]
    assert main([*argv, "--max-link", "1000"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "warning: no link: the state is" in err and "at most --max-link 1,000;" in err
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith(job.DEMO_URL + "#!") and out.count("\n") == 1
    # a state that fits but whose encoded link does not
    fits = len(job.DEMO_URL) + 2 + len(json.dumps(r.state, separators=(",", ":")))
    r = job.view(data.fragments, tmp_path, lut=data.lut, max_link=fits)
    assert r.link is None and "the link would be" in (r.why_no_link or "")


# ------------------------------------------------------------------------------------------------
# errors: one line each, in the CLI's flags, before any work


def _bad_lut(data, tmp_path) -> Path:
    f, s = read_lut(data.lut)
    return write_lut(tmp_path / "other.npz", f + np.uint64(10**12), s)


ERRORS = {
    "missing volume": (lambda d, t: [str(t / "nope")], r"fragments='.*nope': no such zarr array"),
    "not a zarr array": (lambda d, t: [str(t)], r"fragments=.*no \.zarray here"),
    "foreign LUT": (lambda d, t: [str(d.fragments), "--lut", str(_bad_lut(d, t))],
                    r"--lut .*other\.npz does not match fragments=.*none of the [\d,]+ fragment ids"),
    "threshold without LUT": (lambda d, t: [str(d.fragments), "--threshold", "0.3"],
                              r"--threshold 0\.3 needs a LUT to pick from: pass --lut FILE_OR_FOLDER"),
    "LUT folder, no threshold": (lambda d, t: [str(d.fragments), "--lut", str(d.seg)],
                                 r"folder of 3 LUTs: choose one with --threshold T \(thresholds there: 0\.1, 0\.3, "
                                 r"0\.5\)"),
    "threshold not there": (lambda d, t: [str(d.fragments), "--lut", str(d.seg), "--threshold", "0.4"],
                            r"no LUT at --threshold 0\.4 .*thresholds there: 0\.1, 0\.3, 0\.5"),
    "missing LUT": (lambda d, t: [str(d.fragments), "--lut", str(t / "x.npz")], r"--lut .*x\.npz: no such file"),
    "unknown skeleton set": (lambda d, t: [str(d.fragments), "--db", d.db, "--name", GT, "--skeletons", "nope"],
                             r"has no nope\.nodes/nope\.edges \(skeleton sets: "),
    "unknown database": (lambda d, t: [str(d.fragments), "--db", d.db, "--name", "nope"], r"no database 'nope'"),
    "skeletons without database": (lambda d, t: [str(d.fragments), "--skeletons", "x"],
                                   r"--skeletons x needs the database holding them: pass --name DB"),
    "threshold of a volume": (lambda d, t: [str(d.fragments), "--segmentation", str(d.fragments), "--threshold", "0.3"],
                              r"--threshold 0\.3 picks a LUT \(--lut FILE_OR_FOLDER\), but --segmentation \S+ is a"),
    "no output": (lambda d, t: [str(d.fragments)], r"give --out DIR .* or --serve"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_are_one_line(case, data, tmp_path, capsys):
    args, pattern = ERRORS[case]
    argv = ["view", *args(data, tmp_path)]
    if case != "no output":
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("lsdgraph view: error: "), err
    assert re.search(pattern, err), err
    assert not (tmp_path / "out" / "state.json").exists()   # validated before any work


def test_register_contract():
    from lsdgraph._cli import view as cli_view

    p = argparse.ArgumentParser(prog="lsdgraph")
    cli_view.register(p.add_subparsers(dest="command"))
    a = p.parse_args(["view", "frag", "--out", "o", "--lut", "l", "--threshold", "0.3", "--serve", "--port", "8080"])
    assert a.func is cli_view.run and (a.fragments, a.threshold, a.port, a.bind) == ("frag", 0.3, 8080, "127.0.0.1")
    sub = p._subparsers._group_actions[0].choices["view"]  # type: ignore[union-attr]
    for action in sub._actions:
        assert action.help, action.dest   # help text on every option
    assert "examples:" in sub.format_help()


# ------------------------------------------------------------------------------------------------
# the local viewer in headless Chromium


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    unavailable("no Chromium here (Debian: apt-get install chromium) for the viewer screenshot test")
    raise AssertionError  # unreachable


def _screenshot(viewer, timeout: float = 30) -> np.ndarray:
    """The data panels as an (h, w, 3) array, taken by neuroglancer's client once its chunks are in."""
    from PIL import Image

    done = threading.Event()
    got: list = []

    def handler(s):
        got.append(s)
        done.set()

    viewer.async_screenshot(handler)
    assert done.wait(timeout), "the browser never answered the screenshot request"
    return np.asarray(Image.open(io.BytesIO(got[0].screenshot.image)).convert("RGB"))


def _colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def _neuroglancer():
    try:
        job.import_neuroglancer()
    except LsdgraphError as e:
        unavailable(str(e))
    import neuroglancer.static_file_server

    return neuroglancer


def test_cli_serves_until_interrupted(data, tmp_path):
    import urllib.request

    from conftest import subprocess_env

    _neuroglancer()
    p = subprocess.Popen([sys.executable, "-m", "lsdgraph.cli", "view", str(data.fragments), "--lut", str(data.lut),
                          "--serve", "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=subprocess_env())
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(p.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        assert lines and lines[0].startswith("http://127.0.0.1:"), lines
        with urllib.request.urlopen(lines[0].strip(), timeout=10) as page:  # the bundled web client
            assert page.status == 200 and b"<script" in page.read()
        assert (tmp_path / "state.json").exists()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "stopped the viewer" in err and "Traceback" not in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_serve_in_headless_chromium(data, tmp_path):
    neuroglancer = _neuroglancer()
    chromium = _chromium()
    scene = job.load_scene(data.fragments, lut=data.lut)
    viewer = job.serve(scene, layout="xy")
    url = str(viewer)
    assert url.startswith("http://127.0.0.1:")
    browser = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--window-size=800,600", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    files = neuroglancer.static_file_server.StaticFileServer(str(Path(data.fragments).parent), "127.0.0.1", daemon=True)
    try:
        served = _screenshot(viewer)
        # not blank: the segments are many flat colours, not one background
        assert _colours(served) >= 8, f"{_colours(served)} colours"
        flat = served.reshape(-1, 3)
        background = np.unique(flat, axis=0, return_counts=True)[1].max() / len(flat)
        assert background < 0.9
        # the state file's own sources (zarr over http, with the voxel-size transform) show the same
        state = job.state_for(scene, layout="xy", data_url=files.url, data_root=Path(data.fragments).parent)
        viewer.set_state(neuroglancer.ViewerState(state))
        time.sleep(0.5)
        linked = _screenshot(viewer)
        assert linked.shape == served.shape
        assert (np.abs(linked.astype(int) - served.astype(int)).sum(axis=2) > 0).mean() < 0.02
    finally:
        files.stop()
        with_group = os.getpgid(browser.pid)
        os.killpg(with_group, signal.SIGTERM)
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)
        neuroglancer.stop()

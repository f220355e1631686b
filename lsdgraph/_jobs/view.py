"""Look at a result in neuroglancer: a JSON state (and a link) with the fragments volume, the
segmentation at one threshold — a relabelled volume (``lsdgraph relabel``) or the LUT's segments as
``equivalences`` over the fragments — and the ground-truth skeletons as line annotations in nm; or a
local viewer (:func:`serve`, the ``neuroglancer`` package) that serves local zarr arrays itself.

Zarr sources in the state: ``zarr://s3://bucket/key`` for AWS S3 (read anonymously by the browser),
``zarr://ENDPOINT/bucket/key`` for an S3-compatible endpoint, ``zarr://DATA_URL/relative/path`` for
a local array served over http (``data_url``). The lab's zarrs keep their voxel size and offset in
``resolution``/``offset`` attributes that neuroglancer does not read, so every source carries a
transform to z, y, x in nm. ``neuroglancer`` is imported only by :func:`serve`.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from lsdgraph._algorithms import merge_tree
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.ids import IdIndex, sorted_unique
from lsdgraph._core.roi import Roi, as_roi
from lsdgraph._io.sources import S3Options, is_s3, split_s3
from lsdgraph._io.volumes import Volume, open_volume

if TYPE_CHECKING:
    import neuroglancer

    from lsdgraph._stores.api import Backend

__all__ = ["DEMO_URL", "MAX_LINK", "Scene", "ViewResult", "import_neuroglancer", "link_for", "load_scene", "serve",
           "state_for", "view", "write_state"]

DEMO_URL = "https://neuroglancer-demo.appspot.com"
# Browsers take long URLs (Chrome ~2 MB) but chat, mail and the address bar choke far earlier, and
# neuroglancer re-encodes the whole state into the URL on every change: past this, share the file.
MAX_LINK = 100_000
LAYOUTS = ("4panel", "xy", "xz", "yz", "3d", "xy-3d", "xz-3d", "yz-3d")
_AXES = ("z", "y", "x")
_LUT_DIR = Path("luts") / "fragment_segment"
_SAMPLE_VOXELS = 1 << 24     # voxels read to check that a LUT belongs to the volume
_SAMPLE_CHUNKS = 8
_MANY_LINES = 200_000        # skeleton edges beyond which the state gets slow to load
_MANY_FRAGMENTS = 200_000    # LUT fragments beyond which equivalences make a heavy state
_CACHE_BYTES = 256 << 20     # zarr chunks kept decoded per served volume
_MESH_BYTES = 512 << 20      # volumes up to this size get 3-D meshes in the local viewer


# ------------------------------------------------------------------------------------------------
# what a view shows


@dataclass
class Skeletons:
    """Skeleton edges as line segments in nm (zyx), with the neuron of each."""

    prefix: str
    a: np.ndarray          # (n, 3) float64 nm
    b: np.ndarray          # (n, 3) float64 nm
    neuron: np.ndarray     # (n,) int64
    n_neurons: int


@dataclass
class Scene:
    """A view's inputs, validated and read: the volumes (metadata only), the LUT's groups and the
    skeleton lines."""

    fragments: Volume
    segmentation: Volume | None = None
    raw: Volume | None = None
    lut: Path | None = None
    threshold: float | None = None
    groups: list[list[str]] | None = None   # equivalence classes (≥ 2 fragments), ids as strings
    lut_fragments: int = 0
    skeletons: Skeletons | None = None
    roi: Roi | None = None
    s3: S3Options = field(default_factory=S3Options)
    notes: list[str] = field(default_factory=list)

    @property
    def segments_name(self) -> str:
        """The segmentation layer's name: says which threshold it is."""
        if self.lut is not None:
            return f"segments {self.threshold:g}" if self.threshold is not None else f"segments {self.lut.stem}"
        return "segmentation"


def _open(param: str, url: str | os.PathLike | None, s3: S3Options) -> Volume | None:
    if url is None:
        return None
    url = str(url)
    if not is_s3(url) and not Path(url).expanduser().exists():
        raise LsdgraphError(f"{param}={url!r}: no such zarr array")
    try:
        return open_volume(url, s3=s3)
    except LsdgraphError as e:  # name the parameter; open_volume's messages start with the path
        text = str(e)
        text = text[len(url.rstrip("/")):].lstrip(":/ ") if text.startswith(url.rstrip("/")) else text
        raise LsdgraphError(f"{param}={url!r}: {text}") from None


def _threshold_names(threshold: float) -> list[str]:
    """File-name forms of a threshold: lsdgraph's (``0.3``) and the lab's (``int(t*100)``)."""
    _, names = merge_tree.parse_thresholds([float(threshold)])
    return [names[0], str(int(float(threshold) * 100))]


_LUT_NAME = re.compile(r"^seg_(?P<edges>.+)_(?P<t>[^_]+)$")


def find_lut(lut: str | os.PathLike, threshold: float | None, edges: str | None = None) -> Path:
    """The LUT file: ``lut`` itself, or the one for ``threshold`` (and ``edges``) in a folder of
    LUT files (``segment --out``'s folder or its ``luts/fragment_segment``)."""
    p = Path(lut).expanduser()
    if not p.exists():
        raise LsdgraphError(f"lut={str(lut)!r}: no such file or folder")
    if p.is_file():
        return p
    folder = p / _LUT_DIR if (p / _LUT_DIR).is_dir() else p
    files = sorted(folder.glob("seg_*.npz"))
    if not files:
        raise LsdgraphError(f"lut={str(lut)!r}: no LUT files (seg_EDGES_T.npz) in {folder}; "
                            "write them with `lsdgraph segment --out DIR`")
    named = [(f, m) for f in files if (m := _LUT_NAME.match(f.stem))]
    parsed = named
    if edges is not None:
        parsed = [(f, m) for f, m in named if m["edges"] == edges]
        if not parsed:
            raise LsdgraphError(f"lut={str(lut)!r}: no LUT of edges={edges!r} in {folder} (edges there: "
                                f"{', '.join(sorted({m['edges'] for _, m in named}))})")
    if threshold is None:
        if len(parsed) == 1:
            return parsed[0][0]
        shown = ", ".join(m["t"] for _, m in parsed[:8]) + (", …" if len(parsed) > 8 else "")
        raise LsdgraphError(f"lut={str(lut)!r} is a folder of {len(parsed)} LUTs: choose one with threshold=T "
                            f"(thresholds there: {shown})")
    for name in _threshold_names(threshold):
        hits = [f for f, m in parsed if m["t"] == name]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise LsdgraphError(f"lut={str(lut)!r}: LUTs at threshold={threshold:g} for several edges collections "
                                f"({', '.join(h.name for h in hits)}); choose one with edges=NAME")
    shown = ", ".join(sorted({m["t"] for _, m in parsed}, key=_as_float))
    raise LsdgraphError(f"lut={str(lut)!r}: no LUT at threshold={threshold:g} in {folder} (thresholds there: "
                        f"{shown}); run `lsdgraph segment --thresholds {threshold:g}` or pick one of those")


def _as_float(name: str) -> float:
    try:
        return float(name)
    except ValueError:
        return math.inf


def _chunk_sample(vol: Volume) -> np.ndarray:
    """Distinct non-zero ids in a few chunks spread over the volume (bounded reads, also on S3)."""
    grid = vol.grid
    n = int(np.prod(grid))
    per_chunk = int(np.prod(vol.chunks))
    k = int(max(1, min(_SAMPLE_CHUNKS, n, _SAMPLE_VOXELS // max(per_chunk, 1))))
    flat = np.unique(np.linspace(0, n - 1, k + 2).round().astype(np.int64)[1:-1]) if n > 2 else np.arange(n)
    ids = [vol.chunk([int(c) for c in np.unravel_index(int(i), grid)]).ravel() for i in flat]
    found = sorted_unique(np.concatenate(ids).astype(np.uint64, copy=False), "fragment ids")
    return found[found != 0]


def _groups(fragments: np.ndarray, segments: np.ndarray) -> list[list[str]]:
    """Equivalence classes of ≥ 2 fragments (singletons need no entry), ids as strings: JSON
    numbers would lose uint64 ids above 2**53 in the browser."""
    order = np.lexsort((fragments, segments))
    f, s = fragments[order], segments[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    big = ends - starts >= 2
    keep = np.repeat(big, ends - starts)
    strs = f[keep].astype(str).tolist()  # one vectorized conversion; groups are slices of it
    sizes = (ends - starts)[big]
    bounds = np.r_[0, np.cumsum(sizes)].tolist()
    return [strs[a:b] for a, b in itertools.pairwise(bounds)]


def _read_lut(scene: Scene, path: Path) -> None:
    keys, values = merge_tree.read_lut(path)
    index = IdIndex(keys, f"{path}: fragments")
    if len(index.ids) != len(keys):
        raise LsdgraphError(f"lut={str(path)!r}: the LUT lists some fragments more than once; regenerate it")
    present = _chunk_sample(scene.fragments)
    if present.size:
        hit = index.contains(present)
        if not hit.any():
            raise LsdgraphError(
                f"lut={str(path)!r} does not match fragments={scene.fragments.url!r}: none of the {present.size:,} "
                "fragment ids sampled from the volume are in it; pass the LUT of this volume's RAG")
        if not hit.all():
            scene.notes.append(f"{int((~hit).sum()):,} of {present.size:,} fragment ids sampled from the volume are "
                               "not in the LUT (a LUT of an ROI?); they show as themselves")
    scene.lut_fragments = int(keys.size)
    scene.groups = _groups(keys, values)
    if keys.size > _MANY_FRAGMENTS:
        scene.notes.append(f"equivalences of {keys.size:,} fragments make a heavy state; `lsdgraph relabel` writes "
                           "the segmentation as a volume instead (segmentation=VOLUME)")


def _colors(neuron: np.ndarray) -> np.ndarray:
    """A bright, stable colour per neuron id (golden-ratio hues), as '#rrggbb' strings."""
    from matplotlib.colors import hsv_to_rgb

    hue = (neuron.astype(np.float64) * 0.6180339887498949) % 1.0
    rgb = hsv_to_rgb(np.stack([hue, np.full_like(hue, 0.85), np.ones_like(hue)], axis=1))
    v = np.round(rgb * 255).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    return np.char.add("#", np.char.zfill(np.char.mod("%x", v), 6))


def _read_skeletons(store: Backend, name: str, prefix: str | None, roi: Roi | None,
                    neurons: Sequence[int] | None) -> Skeletons:
    from lsdgraph._core import schema
    from lsdgraph._query.rag import SkeletonSet, database

    skel = SkeletonSet.open(store, database(store, name), prefix)
    nodes, edges = skel.arrays(roi, neurons)
    pos_fields = list(schema.kind("skeleton_nodes").position)
    index = IdIndex(nodes["id"].to_numpy(), "skeleton node ids", sort=False)
    iu, iv = index.lookup(edges["u"].to_numpy()), index.lookup(edges["v"].to_numpy())
    pos = nodes[pos_fields].to_numpy(np.float64)
    neuron = nodes["neuron_id"].to_numpy(np.int64)
    return Skeletons(skel.prefix, pos[iu], pos[iv], neuron[iu], int(np.unique(neuron).size) if neuron.size else 0)


def load_scene(
    fragments: str | os.PathLike,
    *,
    segmentation: str | os.PathLike | None = None,
    lut: str | os.PathLike | None = None,
    threshold: float | None = None,
    edges: str | None = None,
    raw: str | os.PathLike | None = None,
    db: str | None = None,
    name: str | None = None,
    skeletons: str | None = None,
    neurons: Sequence[int] | None = None,
    roi=None,
    store: Backend | None = None,
    s3: S3Options | None = None,
) -> Scene:
    """Validate every input (one line each) before reading anything big, then read the LUT's
    groups and the skeleton lines. ``lut``: a LUT file or a folder of them (``threshold`` picks
    one); ``name``: the database holding the skeletons (``skeletons``: their prefix)."""
    s3 = s3 or S3Options()
    if threshold is not None and lut is None:
        if segmentation is not None:
            raise LsdgraphError(f"threshold={threshold:g} picks a LUT (lut=FILE_OR_FOLDER), but segmentation="
                                f"{str(segmentation)!r} is a volume already at one threshold: drop the threshold, "
                                "or give the LUT instead of the volume")
        raise LsdgraphError(f"threshold={threshold:g} needs a LUT to pick from: pass lut=FILE_OR_FOLDER (a LUT "
                            "file, or the folder `lsdgraph segment --out` wrote)")
    if threshold is not None and not (0 <= threshold <= 1):
        raise LsdgraphError(f"threshold={threshold:g} is outside [0, 1], the range of merge scores")
    if skeletons is not None and name is None:
        raise LsdgraphError(f"skeletons={skeletons!r} needs the database holding them: pass name=DB")
    if neurons is not None and name is None:
        raise LsdgraphError(f"neurons={list(neurons)} needs the database holding the skeletons: pass name=DB")
    frag = _open("fragments", fragments, s3)
    assert frag is not None
    if not np.issubdtype(frag.dtype, np.integer):
        raise LsdgraphError(f"fragments={frag.url!r}: dtype {frag.dtype} is not an integer fragment-id volume")
    scene = Scene(frag, s3=s3, roi=as_roi(roi))
    scene.segmentation = _open("segmentation", segmentation, s3)
    if scene.segmentation is not None and not np.issubdtype(scene.segmentation.dtype, np.integer):
        raise LsdgraphError(f"segmentation={scene.segmentation.url!r}: dtype {scene.segmentation.dtype} is not "
                            "a segment-id volume")
    scene.raw = _open("raw", raw, s3)
    lut_path = find_lut(lut, threshold, edges) if lut is not None else None
    if lut_path is not None and threshold is None:  # say which threshold a file holds, when its name does
        m = _LUT_NAME.match(lut_path.stem)
        if m and _as_float(m["t"]) <= 1:
            threshold = _as_float(m["t"])
    skel_store = None
    if name is not None:  # before the LUT read: an unknown database or skeleton set fails fast
        from lsdgraph._query.rag import SkeletonSet, database
        from lsdgraph._stores.api import connect

        skel_store = store or connect(db)
        SkeletonSet.open(skel_store, database(skel_store, name), skeletons)
    if lut_path is not None:
        scene.lut, scene.threshold = lut_path, threshold
        _read_lut(scene, lut_path)
    if skel_store is not None:
        assert name is not None
        scene.skeletons = _read_skeletons(skel_store, name, skeletons, scene.roi, neurons)
        n = len(scene.skeletons.neuron)
        if n > _MANY_LINES:
            scene.notes.append(f"{n:,} skeleton edges make a heavy state; narrow them with roi=BOX or neurons=IDS")
        if n == 0:
            scene.notes.append(f"no skeleton edges of {scene.skeletons.prefix!r}"
                               + (f" in roi {scene.roi}" if scene.roi else ""))
    return scene


# ------------------------------------------------------------------------------------------------
# the JSON state


def _nm_dims(scale_nm: Sequence[float] | np.ndarray) -> dict:
    return {a: [float(s) * 1e-9, "m"] for a, s in zip(_AXES, scale_nm, strict=True)}


def volume_url(vol: Volume, s3: S3Options, data_url: str | None = None,
               data_root: str | os.PathLike | None = None) -> str:
    """The ``zarr://…`` URL a browser reads ``vol`` at."""
    if is_s3(vol.url):
        bucket, key = split_s3(vol.url)
        endpoint = s3.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:  # an S3-compatible server: path-style https/http
            return f"zarr://{endpoint.rstrip('/')}/{bucket}/{key.strip('/')}"
        return f"zarr://s3://{bucket}/{key.strip('/')}"
    path = Path(vol.url).expanduser().resolve()
    if data_url is None:
        return "zarr://" + path.as_uri()
    root = Path(data_root or ".").expanduser().resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise LsdgraphError(f"data_root={str(data_root or '.')!r} does not hold {vol.url}: data_url=URL serves "
                            "only what lies below data_root=DIR") from None
    return f"zarr://{data_url.rstrip('/')}/{quote(rel.as_posix())}"


def _source(vol: Volume, url: str) -> dict:
    """A zarr source with the lab's voxel size and offset as neuroglancer's transform. Its zarr
    driver reads neither attribute: the array's own dimensions (``_ARRAY_DIMENSIONS``, else d0, d1,
    d2) are unitless, so the input dimensions are declared too — with the output ones alone, a
    unitless voxel is not mapped to one voxel (seen in the browser: an 8x magnification)."""
    names = vol.attrs.get("_ARRAY_DIMENSIONS")
    if not (isinstance(names, list) and len(names) == 3 and all(isinstance(n, str) and n for n in names)):
        names = ["d0", "d1", "d2"]
    res = vol.resolution.tolist()
    translation = (vol.offset / vol.resolution).tolist()
    matrix = [[1.0 if i == j else 0.0 for j in range(3)] + [translation[i]] for i in range(3)]
    return {"url": url, "transform": {
        "inputDimensions": {n: [r * 1e-9, "m"] for n, r in zip(names, res, strict=True)},
        "outputDimensions": _nm_dims(res), "matrix": matrix}}


def _line_annotations(sk: Skeletons) -> list[dict]:
    # neuroglancer's local annotations are JSON objects, one per line: the values are converted
    # to Python lists in bulk and only zipped here
    a = np.round(sk.a, 1).tolist()
    b = np.round(sk.b, 1).tolist()
    colors = _colors(sk.neuron).tolist()
    neuron = sk.neuron.tolist()
    return [{"type": "line", "id": str(i), "pointA": pa, "pointB": pb, "props": [c, n]}
            for i, (pa, pb, c, n) in enumerate(zip(a, b, colors, neuron, strict=True))]


def state_for(scene: Scene, *, layout: str = "4panel", data_url: str | None = None,
              data_root: str | os.PathLike | None = None) -> dict:
    """The neuroglancer JSON state of ``scene`` (zarr sources; :func:`serve` swaps in its own)."""
    if layout not in LAYOUTS:
        raise LsdgraphError(f"layout={layout!r}: use one of {', '.join(LAYOUTS)}")
    frag = scene.fragments

    def src(vol: Volume) -> dict:
        return _source(vol, volume_url(vol, scene.s3, data_url, data_root))

    layers: list[dict] = []
    if scene.raw is not None:
        layers.append({"type": "image", "name": "raw", "source": src(scene.raw)})
    has_segments = scene.segmentation is not None or scene.groups is not None
    layers.append({"type": "segmentation", "name": "fragments", "source": src(frag),
                   # under a segmentation the fragments only hide it; one click shows them
                   "visible": not has_segments})
    if scene.groups is not None:
        layers.append({"type": "segmentation", "name": scene.segments_name, "source": src(frag),
                       "equivalences": scene.groups})
    if scene.segmentation is not None:
        layers.append({"type": "segmentation", "name": "segmentation",
                       "source": src(scene.segmentation)})
    if scene.skeletons is not None:
        sk = scene.skeletons
        neuron_type = "uint32" if sk.neuron.size == 0 or (sk.neuron.min() >= 0 and sk.neuron.max() < 2**32) \
            else "float32"  # annotation properties have no 64-bit integers
        layers.append({
            "type": "annotation", "name": f"skeletons {sk.prefix}",
            "source": {"url": "local://annotations", "transform": {"outputDimensions": _nm_dims([1, 1, 1])}},
            "annotationProperties": [{"id": "color", "type": "rgb", "default": "#ffff00"},
                                     {"id": "neuron_id", "type": neuron_type}],
            "annotations": _line_annotations(sk),
            "shader": "void main() {\n  setColor(prop_color());\n}\n",
        })
    # the view: the ROI's centre (or the volume's), zoomed to fit its largest side
    begin = frag.offset
    extent = np.asarray(frag.shape, float) * frag.resolution
    if scene.roi is not None:
        rb = np.maximum(np.asarray(scene.roi.begin, float), begin)
        re_ = np.minimum(np.asarray(scene.roi.end, float), begin + extent)
        if np.all(re_ > rb):
            begin, extent = rb, re_ - rb
    center = (begin + extent / 2) / frag.resolution
    side = float((extent / frag.resolution)[1:].max())
    state = {
        "dimensions": _nm_dims(frag.resolution),
        "position": center.tolist(),
        # fit the largest side into a panel: ~250 screen pixels of a 4-panel layout, ~500 of one panel
        "crossSectionScale": max(side / (500.0 if layout in ("xy", "xz", "yz") else 250.0), 0.02),
        "projectionScale": max(float((extent / frag.resolution).max()) * 2.0, 64.0),
        "layers": layers,
        "selectedLayer": {"layer": layers[-1]["name"]},
        "layout": layout,
    }
    return state


def link_for(state: dict, prefix: str = DEMO_URL) -> str:
    """``prefix#!`` + the URL-encoded JSON, as neuroglancer encodes its own links."""
    text = json.dumps(state, separators=(",", ":"))
    return f"{prefix}#!" + quote(text, safe="~@#$&()*!+=:;,.?/'")


# ------------------------------------------------------------------------------------------------
# the job


@dataclass
class ViewResult:
    state: dict
    state_path: Path
    link: str | None          # None when too long to share (see why_no_link)
    why_no_link: str | None
    notes: list[str]


def write_state(scene: Scene, out: str | os.PathLike, *, layout: str = "4panel", data_url: str | None = None,
                data_root: str | os.PathLike | None = None, viewer_url: str = DEMO_URL,
                max_link: int = MAX_LINK) -> ViewResult:
    """Write ``OUT/state.json`` and make the link (None when longer than ``max_link``)."""
    if data_url is not None and not re.match(r"^https?://", data_url):
        raise LsdgraphError(f"data_url={data_url!r}: give the http(s) URL that serves data_root=DIR")
    state = state_for(scene, layout=layout, data_url=data_url, data_root=data_root)
    notes = list(scene.notes)
    local = [v.url for v in (scene.raw, scene.fragments, scene.segmentation) if v is not None and not is_s3(v.url)]
    if local and data_url is None:
        notes.append("local volumes are in the state as file:// URLs, which a browser cannot read: serve a folder "
                     "holding them over http with CORS and pass data_url=URL, or use the local viewer")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise LsdgraphError(f"out={str(out)!r} is a file; give a folder for state.json")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "state.json"
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(state, separators=(",", ":"))
    tmp.write_text(text)
    tmp.replace(path)  # a reader never sees half a state
    link, why = None, None
    if len(viewer_url) + 2 + len(text) > max_link:  # encoding only lengthens it: no need to build it
        why = (f"the state is {len(text):,} characters and a link holds at most max_link={max_link:,}; open the "
               f"state file instead: host it and open {viewer_url.rstrip('/')}/#!https://HOST/state.json, or "
               "paste it into the viewer's JSON state editor ({} button)")
    else:
        link = link_for(state, viewer_url)
        if len(link) > max_link:
            why = (f"the link would be {len(link):,} characters (more than max_link={max_link:,}); open the state "
                   f"file instead: host it and open {viewer_url.rstrip('/')}/#!https://HOST/state.json, or paste "
                   "it into the viewer's JSON state editor ({} button)")
            link = None
    return ViewResult(state, path, link, why, notes)


def view(
    fragments: str | os.PathLike,
    out: str | os.PathLike,
    *,
    segmentation: str | os.PathLike | None = None,
    lut: str | os.PathLike | None = None,
    threshold: float | None = None,
    edges: str | None = None,
    raw: str | os.PathLike | None = None,
    db: str | None = None,
    name: str | None = None,
    skeletons: str | None = None,
    neurons: Sequence[int] | None = None,
    roi=None,
    layout: str = "4panel",
    data_url: str | None = None,
    data_root: str | os.PathLike | None = None,
    viewer_url: str = DEMO_URL,
    max_link: int = MAX_LINK,
    store: Backend | None = None,
    s3: S3Options | None = None,
) -> ViewResult:
    """Write ``OUT/state.json`` (a neuroglancer state) and make its link; see the module docstring
    and :func:`load_scene`. ``data_url``: the http(s) URL serving the local folder ``data_root``
    (default: the current one), so that local arrays are readable in the browser."""
    if layout not in LAYOUTS:  # before any read
        raise LsdgraphError(f"layout={layout!r}: use one of {', '.join(LAYOUTS)}")
    scene = load_scene(fragments, segmentation=segmentation, lut=lut, threshold=threshold, edges=edges, raw=raw,
                       db=db, name=name, skeletons=skeletons, neurons=neurons, roi=roi, store=store, s3=s3)
    return write_state(scene, out, layout=layout, data_url=data_url, data_root=data_root, viewer_url=viewer_url,
                       max_link=max_link)


# ------------------------------------------------------------------------------------------------
# the local viewer


class _LazyArray:
    """A zarr volume as the array ``neuroglancer.LocalVolume`` slices: reads only the chunks a
    request touches, keeping recently decoded ones (neighbouring requests share chunks)."""

    def __init__(self, vol: Volume, cache_bytes: int = _CACHE_BYTES):
        self.shape = tuple(int(s) for s in vol.shape)
        self.dtype = vol.dtype
        self.ndim = 3
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._max = max(1, cache_bytes // max(int(np.prod(vol.chunks)) * vol.dtype.itemsize, 1))
        self._lock = threading.Lock()
        self._read_chunk = vol.chunk
        # a copy whose chunk reads go through the cache (Volume.read assembles from chunk())
        self.vol = copy.copy(vol)
        self.vol.chunk = self._cached  # type: ignore[method-assign]

    def _cached(self, index) -> np.ndarray:
        key = tuple(int(i) for i in index)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        data = self._read_chunk(key)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return data

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, tuple):
            index = (index,)
        begin, end = [], []
        for s, n in zip(index, self.shape, strict=True):
            if not isinstance(s, slice) or s.step not in (None, 1):
                raise IndexError("only contiguous slices are read")
            b, e, _ = s.indices(n)
            begin.append(b)
            end.append(e)
        return self.vol.read(begin, end)

    def transpose(self) -> np.ndarray:
        """The whole array, xyz: what neuroglancer's mesher asks for (small volumes only)."""
        from neuroglancer.local_volume import MeshImplementationNotAvailable

        if int(np.prod(self.shape)) * self.dtype.itemsize > _MESH_BYTES:
            raise MeshImplementationNotAvailable()
        return self.vol.read((0, 0, 0), self.shape).transpose()


def import_neuroglancer():
    """The neuroglancer module, or a one-line error saying how to get a working one."""
    try:
        import neuroglancer
    except ImportError:
        raise LsdgraphError("the local viewer needs the neuroglancer package: pip install 'lsdgraph[view]'") from None
    except Exception as e:  # e.g. an old tornado (daisy 0.2.1 pins tornado<6) breaks its import
        raise LsdgraphError(f"the neuroglancer package does not import here ({type(e).__name__}: {e}); "
                            "pip install 'lsdgraph[view]' (it needs tornado>=6.4)") from None
    return neuroglancer


def _local_volume(vol: Volume, kind: str) -> neuroglancer.LocalVolume:
    import neuroglancer

    vox = vol.offset / vol.resolution
    if not np.allclose(vox, np.round(vox)):
        warnings.warn(f"{vol.url}: offset {vol.offset.tolist()} is not a multiple of the voxel size "
                      f"{vol.resolution.tolist()}; the local viewer shows it on the voxel grid", stacklevel=3)
    dims = neuroglancer.CoordinateSpace(names=list(_AXES), units="nm", scales=vol.resolution.tolist())
    return neuroglancer.LocalVolume(_LazyArray(vol), dimensions=dims, voxel_offset=np.round(vox).astype(np.int64),
                                    volume_type=kind)


def serve(scene: Scene, *, port: int = 0, bind: str = "127.0.0.1", layout: str = "4panel") -> neuroglancer.Viewer:
    """A local neuroglancer viewer (the ``neuroglancer`` package's server and its bundled web
    client: no network needed) with the scene's layers. Local zarr arrays, and S3 ones read with
    a profile (the browser has no AWS credentials), are served by this process chunk by chunk;
    public S3 arrays are read by the browser. It serves until the process ends (or
    ``neuroglancer.stop()``); ``str(viewer)`` is its URL."""
    neuroglancer = import_neuroglancer()
    if not 0 <= port < 65536:
        raise LsdgraphError(f"port={port}: give a TCP port from 1 to 65535, or 0 for a free one")
    if layout not in LAYOUTS:
        raise LsdgraphError(f"layout={layout!r}: use one of {', '.join(LAYOUTS)}")

    def served(vol: Volume | None) -> bool:
        return vol is not None and (not is_s3(vol.url) or scene.s3.profile is not None)

    sources: dict[str, Any] = {}
    for key, vol, kind in (("fragments", scene.fragments, "segmentation"),
                           ("segmentation", scene.segmentation, "segmentation"), ("raw", scene.raw, "image")):
        if vol is not None and served(vol):
            sources[key] = _local_volume(vol, kind)
    state = neuroglancer.ViewerState(state_for(scene, layout=layout))
    for managed in state.layers:
        key = "fragments" if managed.name == scene.segments_name else managed.name
        if key in sources:
            managed.layer.source = sources[key]
    if neuroglancer.server.is_server_running() and port and neuroglancer.server.global_server.port != port:
        neuroglancer.server.stop()  # the running server is on another port: restart on the one asked for
    neuroglancer.set_server_bind_address(bind, port)
    try:
        viewer = neuroglancer.Viewer()
    except OSError as e:
        raise LsdgraphError(f"port={port}: cannot serve on {bind}:{port} ({e.strerror or e})") from None
    viewer.set_state(state)
    return viewer

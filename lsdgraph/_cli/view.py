"""``lsdgraph view``: a neuroglancer state and link, or a local viewer."""
from __future__ import annotations

import sys
import time
import warnings

from lsdgraph._cli.common import add_command, db_args, roi_arg, s3_args
from lsdgraph._core.errors import LsdgraphError


def _neurons(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ids = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise LsdgraphError(f"--neurons {text!r}: give neuron ids separated by commas, e.g. 1003,1007") from None
    if not ids:
        raise LsdgraphError(f"--neurons {text!r}: no neuron ids")
    return ids


def _summary(scene) -> str:
    parts = ["fragments"]
    if scene.groups is not None:
        merged = sum(len(g) for g in scene.groups)
        parts.append(f"{scene.segments_name} ({scene.lut_fragments:,} LUT fragments; {merged:,} of them merged "
                     f"into {len(scene.groups):,} segments)")
    if scene.segmentation is not None:
        parts.append("segmentation")
    if scene.skeletons is not None:
        sk = scene.skeletons
        parts.append(f"skeletons {sk.prefix} ({sk.n_neurons:,} neurons, {len(sk.neuron):,} edges)")
    return ", ".join(parts)


def run(a) -> int:
    from lsdgraph._io.sources import S3Options
    from lsdgraph._jobs import view as job

    if a.out is None and not a.serve:
        raise LsdgraphError("give --out DIR for state.json and the link, or --serve for a local viewer")
    if a.max_link < 0:
        raise LsdgraphError(f"--max-link {a.max_link}: give a number of characters >= 0")
    if a.serve:  # before any read: the viewer is an optional extra
        job.import_neuroglancer()
    scene = job.load_scene(a.fragments, segmentation=a.segmentation, lut=a.lut, threshold=a.threshold,
                           edges=a.edges, raw=a.raw, db=a.db, name=a.name, skeletons=a.skeletons,
                           neurons=_neurons(a.neurons), roi=a.roi,
                           s3=S3Options(profile=a.profile, endpoint_url=a.endpoint_url))
    for note in scene.notes:  # printed by the CLI as one line each, in its flags
        warnings.warn(note, stacklevel=1)
    if a.out is not None:
        r = job.write_state(scene, a.out, layout=a.layout, data_url=a.data_url, data_root=a.data_root,
                            viewer_url=a.viewer_url, max_link=a.max_link)
        for note in r.notes[len(scene.notes):]:
            warnings.warn(note, stacklevel=1)
        print(f"wrote {r.state_path}: {_summary(scene)}", file=sys.stderr)
        if r.link is not None and not a.serve:
            print(r.link)
        elif r.why_no_link:
            warnings.warn(f"no link: {r.why_no_link}", stacklevel=1)
    if not a.serve:
        return 0
    neuroglancer = job.import_neuroglancer()
    viewer = job.serve(scene, port=a.port, bind=a.bind, layout=a.layout)
    print(viewer, flush=True)
    print("serving the viewer at that URL; Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        neuroglancer.stop()
        print("lsdgraph view: stopped the viewer", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = add_command(sub, "view", "look at fragments, a segmentation and skeletons in neuroglancer", """
        Write a neuroglancer state (OUT/state.json) and print its link: the fragments volume, the
        segmentation at one threshold — a relabelled volume (lsdgraph relabel: --segmentation) or a
        LUT's segments applied to the fragments as equivalences (--lut, --threshold) — and the
        ground-truth skeletons from a database as line annotations in nm (--name, --skeletons).
        Voxel size and offset come from the zarr's resolution/offset attributes.

        S3 volumes are read by the browser (zarr://s3://bucket/key; public buckets need no
        credentials); local volumes need --serve, or a web server with CORS serving a folder
        that holds them (--data-url, --data-root). A link longer than --max-link is not printed:
        open the state file instead. --serve starts a local viewer (the neuroglancer package,
        offline: its wheel carries the web client) that serves local zarr arrays chunk by chunk,
        prints its URL and serves until Ctrl-C.""", """
        lsdgraph view ./fragments.zarr/volumes/fragments --lut ./seg --threshold 0.3 --out ./view
        lsdgraph view ./fragments --lut ./seg/luts/fragment_segment/seg_edges_hist_quant_75_0.3.npz \\
            --db ./lsdgraph-data --name hemi_gt --serve
        lsdgraph view ./fragments --segmentation ./segmentation_0.3.zarr --db ./lsdgraph-data --name hemi_gt \\
            --roi 20480,20480,20480:24000,24000,24000 --serve --port 8080
        lsdgraph view s3://open-neurodata/funke/hemi/testing/segmentations/data.zarr/volumes/ACLSD/roi_1/fragments \\
            --out ./view
        """, run)
    p.add_argument("fragments", help="zarr array of fragment ids (a folder with .zarray, or s3://bucket/key)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for state.json; the link is printed (required unless --serve)")
    p.add_argument("--segmentation", default=None, metavar="ZARR",
                   help="a relabelled volume of segment ids (the output of lsdgraph relabel)")
    p.add_argument("--lut", default=None, metavar="FILE|DIR",
                   help="an lsd-format LUT .npz (fragment_segment_lut), or the folder lsdgraph segment --out "
                        "wrote (then --threshold picks the file): its segments as equivalences over the fragments")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="the merge threshold whose LUT to show (needs --lut)")
    p.add_argument("--edges", default=None, metavar="NAME",
                   help="edges collection of the LUT, when the --lut folder holds LUTs of several")
    p.add_argument("--raw", default=None, metavar="ZARR", help="an EM image volume shown under the segments")
    db_args(p)
    p.add_argument("--skeletons", default=None, metavar="PREFIX",
                   help="skeleton collections PREFIX.nodes/PREFIX.edges in --name (default: the only set); "
                        "skeletons are shown when --name is given")
    p.add_argument("--neurons", default=None, metavar="ID,ID", help="show only these skeletons (neuron ids)")
    roi_arg(p, "show only the skeleton edges in this box and centre the view on it")
    p.add_argument("--layout", default="4panel",
                   choices=("4panel", "xy", "xz", "yz", "3d", "xy-3d", "xz-3d", "yz-3d"), help="the viewer's panels")
    p.add_argument("--data-url", default=None, metavar="URL",
                   help="the http(s) URL that serves --data-root, so the link can read local volumes")
    p.add_argument("--data-root", default=None, metavar="DIR", help="the folder --data-url serves (default: .)")
    p.add_argument("--viewer-url", default="https://neuroglancer-demo.appspot.com", metavar="URL",
                   help="the neuroglancer the link opens")
    p.add_argument("--max-link", type=int, default=100_000, metavar="CHARS",
                   help="longest link to print; a longer state is only written to the file")
    p.add_argument("--serve", action="store_true", help="start a local viewer and serve until Ctrl-C")
    p.add_argument("--port", type=int, default=0, help="port of the local viewer (default: a free one)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="address the local viewer listens on (0.0.0.0: every interface)")
    s3_args(p)

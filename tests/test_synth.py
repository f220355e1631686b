"""``lsdgraph synth``: real layout, exact fields and BSON types, block-structured ids, a voxel
volume consistent with the RAG, skeletons inside their neurons, determinism, batch-independence, and
a ground truth whose best threshold is intermediate."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import bson
import networkx as nx
import numpy as np
import pytest
import zarr

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io import bsonio
from lsdgraph._synth import synth
from lsdgraph._synth.spec import DATASETS, SIZES
from lsdgraph._synth.world import _grid_shape

NODE_FIELDS = ["_id", "id", "center_z", "center_y", "center_x"]
EDGE_FIELDS = ["_id", "u", "v", "merge_score", "agglomerated"]
SKEL_NODE_FIELDS = ["_id", "id", "neuron_id", "x", "y", "z"]
SKEL_EDGE_FIELDS = ["_id", "u", "v"]
INT32_MAX = 2**31 - 1


def cantor(z: int, y: int, x: int) -> int:
    """funlib.math.cantor_number as daisy 0.2 used it, written out from its recursive definition."""
    def pyramid(dims, edge):
        prod = norm = 1
        for d in range(dims):
            prod *= edge + d + 1
            norm *= d + 1
        return prod // norm

    def c(coord):
        if len(coord) == 1:
            return coord[0] + 1
        return pyramid(len(coord), sum(coord) - 1) + c(coord[:-1])
    return c([z, y, x])


def read(path: Path) -> list[dict]:
    return bson.decode_all(path.read_bytes())


def scan(path: Path, fields):
    docs, _, err = bsonio.scan(path.read_bytes(), fields)
    assert err is None
    return docs


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    res = {ds: synth(root, ds, "tiny", seed=3) for ds in DATASETS}
    return root, res


@pytest.fixture(scope="module")
def volumes(out):
    return {ds: zarr.open_array(str(r.fragments_path), mode="r") for ds, r in out[1].items()}


def info(r) -> dict:
    return json.loads(r.info_path.read_text())


# ----------------------------------------------------------------------------------------------
# layout and format


def test_files_at_the_real_layout(out):
    root, res = out
    rags = {"zebrafinch": "zebrafinch_auto_basic_163k_testing_masked_ffn",
            "hemi": "hemi_affs_from_lsd_200k_roi_1", "fib25": "fib25_auto_basic_300k_testing"}
    for ds, r in res.items():
        seg = root / "funke" / ds / "testing" / "segmentations" / "data.zarr"
        rag = seg / "rags" / "ACLSD" / rags[ds]
        assert r.rag_dir == rag
        for name in ["nodes", "edges_hist_quant_50", "edges_hist_quant_75", "edges_mean"]:
            assert (rag / f"{name}.bson").stat().st_size > 0
            meta = json.loads((rag / f"{name}.metadata.json").read_text())
            assert meta["collectionName"] == name
            assert meta["indexes"][0]["key"] == {"_id": 1} and meta["indexes"][0]["name"] == "_id_"
            assert len(meta["uuid"]) == 32
        frag = seg / "volumes" / "ACLSD" / ("roi_1/fragments" if ds == "hemi" else "fragments")
        assert r.fragments_path == frag and (frag / ".zarray").exists()
        skel = (root / "funke" / ds / "testing" / "ground_truth" / "validation" / "consolidated"
                / f"{ds}_gt_skeletons_validation")
        assert r.skeleton_dir == skel
        assert (skel / f"{ds}.nodes.bson").exists() and (skel / f"{ds}.edges.bson").exists()
        assert r.truth_path.exists() and r.info_path.exists()
        meta = info(r)
        assert meta["rag_dir"] == str(rag.relative_to(root)) and meta["voxel_size"] == list(DATASETS[ds].voxel_size)
        assert (meta["n_fragments"], meta["n_edges"]) == (r.n_fragments, r.n_edges)


def test_node_documents_have_exactly_the_real_fields_and_types(out):
    for _ds, r in out[1].items():
        docs = read(r.rag_dir / "nodes.bson")
        assert len(docs) == r.n_fragments and 600 < r.n_fragments < 1600
        for d in docs:
            assert list(d) == NODE_FIELDS
            assert isinstance(d["_id"], bson.ObjectId)
            assert isinstance(d["id"], int) and d["id"] > 0
            assert all(type(d[k]) is float for k in NODE_FIELDS[2:])
        assert len({d["_id"] for d in docs}) == len(docs)
        # raw BSON types: int32 exactly where the id fits (as pymongo writes), doubles for centres
        raw = scan(r.rag_dir / "nodes.bson", ["id", "center_z", "center_y", "center_x"])
        ids = raw.ints("id")
        assert np.array_equal(raw.type_of("id"), np.where(ids <= INT32_MAX, 16, 18))
        assert all((raw.type_of(f) == 1).all() for f in ["center_z", "center_y", "center_x"])


def test_datasets_cover_int32_mixed_and_int64_ids(out):
    kinds = {}
    for ds, r in out[1].items():
        t = set(scan(r.rag_dir / "nodes.bson", ["id"]).type_of("id").tolist())
        kinds[ds] = t
    assert kinds == {"zebrafinch": {16}, "fib25": {16, 18}, "hemi": {18}}


def test_edge_documents_have_exactly_the_real_fields_and_types(out):
    for _ds, r in out[1].items():
        pairs = None
        scores = []
        for fn in r.merge_functions:
            docs = read(r.rag_dir / f"edges_{fn}.bson")
            assert len(docs) == r.n_edges
            for d in docs:
                assert list(d) == EDGE_FIELDS
                assert isinstance(d["_id"], bson.ObjectId)
                assert isinstance(d["u"], int) and isinstance(d["v"], int) and d["u"] < d["v"]
                s = d["merge_score"]
                assert s is None or (type(s) is float and 0.0 <= s <= 1.0)
                assert d["agglomerated"] is True
            p = [(d["u"], d["v"]) for d in docs]
            assert len(set(p)) == len(p)
            if pairs is None:
                pairs = p
            assert p == pairs  # same pairs in the same order in every merge function's file
            scores.append(np.array([np.nan if d["merge_score"] is None else d["merge_score"] for d in docs]))
            raw = scan(r.rag_dir / f"edges_{fn}.bson", ["u", "v", "merge_score", "agglomerated"])
            for f in ["u", "v"]:
                vals = raw.ints(f)
                assert np.array_equal(raw.type_of(f), np.where(vals <= INT32_MAX, 16, 18))
            assert set(raw.type_of("merge_score").tolist()) == {1, 10}  # double and null
            assert (raw.type_of("agglomerated") == 8).all()
        nulls = np.isnan(scores[0])
        assert 0 < nulls.sum() < 0.03 * len(nulls)
        assert all(np.array_equal(np.isnan(s), nulls) for s in scores)
        assert not np.allclose(scores[0][~nulls], scores[1][~nulls])  # different noise per function
        assert np.corrcoef(scores[0][~nulls], scores[1][~nulls])[0, 1] > 0.9  # same structure


def test_ids_are_per_block_and_edges_grouped_by_block_of_u(out, volumes):
    for ds, r in out[1].items():
        meta = info(r)
        vpb = meta["voxels_per_block"]
        bshape = np.array(meta["block_voxels"])
        boff = np.array(meta["block_offset"])
        vol = volumes[ds][:].astype(np.int64)
        ids = scan(r.rag_dir / "nodes.bson", ["id"]).ints("id")
        assert np.array_equal(ids, np.sort(ids))  # blocks in id order, locals in order inside
        # the block of each fragment's voxels, by funlib's Cantor number of its absolute index
        zz, yy, xx = np.indices(vol.shape).reshape(3, -1)
        blk = np.stack([zz, yy, xx], 1) // bshape + boff
        lab = vol.ravel()
        first = np.unique(lab, return_index=True)
        assert np.array_equal(first[0], ids)  # every node has voxels and every label is a node
        for f, i in zip(*first, strict=True):
            assert f // vpb == cantor(*blk[i].tolist())
        assert all(len(set(map(tuple, blk[lab == f]))) == 1 for f in ids[:: max(1, len(ids) // 50)])
        # local ids are 1..n inside each block
        for _b, locs in _group(ids // vpb, ids % vpb).items():
            assert locs.tolist() == list(range(1, len(locs) + 1))
        # edges are stored block by block (the block of u), blocks in id order
        u = scan(r.rag_dir / "edges_hist_quant_75.bson", ["u"]).ints("u")
        assert (np.diff(u // vpb) >= 0).all()
        assert not (np.diff(u) >= 0).all()  # ... but in no particular order inside a block


def _group(keys, values):
    out = {}
    for k in np.unique(keys):
        out[k] = values[keys == k]
    return out


def test_fragments_zarr_matches_the_nodes_and_edges(out, volumes):
    for ds, r in out[1].items():
        a = volumes[ds]
        spec = DATASETS[ds]
        assert a.dtype == np.uint64 and a.shape == r.shape
        assert list(a.attrs["resolution"]) == list(spec.voxel_size)
        assert list(a.attrs["offset"]) == list(r.offset)
        assert json.loads((r.fragments_path / ".zarray").read_text())["zarr_format"] == 2
        vol = a[:].astype(np.int64)
        assert (vol > 0).all()  # dense segmentation
        # node centres: offset + voxel_size * centre of mass of the voxel indices (the lab's rule)
        raw = scan(r.rag_dir / "nodes.bson", ["id", "center_z", "center_y", "center_x"])
        ids = raw.ints("id")
        idx = np.searchsorted(ids, vol.ravel())
        cnt = np.bincount(idx, minlength=len(ids))
        for ax, f in enumerate(["center_z", "center_y", "center_x"]):
            coord = np.indices(vol.shape)[ax].ravel()
            com = np.bincount(idx, weights=coord, minlength=len(ids)) / cnt
            assert np.allclose(raw.floats(f), r.offset[ax] + spec.voxel_size[ax] * com)
        # edges: exactly the face-adjacent label pairs, plus some to fragments beyond the ROI
        adj = set()
        for ax in range(3):
            a0 = np.moveaxis(vol, ax, 0)
            p, q = a0[:-1].ravel(), a0[1:].ravel()
            d = p != q
            adj |= set(zip(np.minimum(p, q)[d].tolist(), np.maximum(p, q)[d].tolist(), strict=True))
        e = scan(r.rag_dir / "edges_mean.bson", ["u", "v"])
        u, v = e.ints("u"), e.ints("v")
        inside = np.isin(v, ids)
        assert np.isin(u, ids).all()
        assert set(zip(u[inside].tolist(), v[inside].tolist(), strict=True)) == adj
        assert 0 < (~inside).sum() == r.n_outside_edges
        truth = np.load(r.truth_path)
        assert np.array_equal(np.sort(truth["outside_fragment_ids"]), np.sort(v[~inside]))
        assert 2.5 < len(u) / len(ids) < 4.5


def test_skeletons_lie_in_their_neurons(out, volumes):
    for ds, r in out[1].items():
        nodes = read(r.skeleton_dir / f"{ds}.nodes.bson")
        edges = read(r.skeleton_dir / f"{ds}.edges.bson")
        assert len(nodes) == r.n_skeleton_nodes > 20 and len(edges) == r.n_skeleton_edges
        for d in nodes:
            assert list(d) == SKEL_NODE_FIELDS
            assert isinstance(d["id"], int) and isinstance(d["neuron_id"], int)
            assert all(type(d[k]) is float for k in "xyz")
        for d in edges:
            assert list(d) == SKEL_EDGE_FIELDS and isinstance(d["u"], int) and isinstance(d["v"], int)
        a = volumes[ds]
        pos = np.array([[d["z"], d["y"], d["x"]] for d in nodes])
        vox = np.floor((pos - np.array(a.attrs["offset"])) / np.array(a.attrs["resolution"])).astype(int)
        assert ((vox >= 0) & (vox < np.array(a.shape))).all()
        frag = a[:][tuple(vox.T)].astype(np.int64)
        truth = np.load(r.truth_path)
        i = np.searchsorted(truth["fragment_ids"], frag)
        assert np.array_equal(truth["fragment_ids"][i], frag)
        neuron = np.array([d["neuron_id"] for d in nodes])
        assert np.array_equal(truth["neuron_ids"][i], neuron)
        # each skeleton is one connected path; edges join nodes of one skeleton
        g = nx.Graph()
        g.add_nodes_from((d["id"], {"n": d["neuron_id"]}) for d in nodes)
        g.add_edges_from((d["u"], d["v"]) for d in edges)
        assert g.number_of_nodes() == len(nodes)
        comps = list(nx.connected_components(g))
        assert sorted({g.nodes[n]["n"] for n in c}.pop() for c in comps) == sorted(set(neuron.tolist()))
        assert all(len({g.nodes[n]["n"] for n in c}) == 1 for c in comps)
        assert nx.is_forest(g)
        assert len(comps) == r.n_skeletons


def test_truth_neurons_are_connected_and_fragments_pure(out, volumes):
    ndimage = pytest.importorskip("scipy.ndimage")
    for ds, r in out[1].items():
        vol = volumes[ds][:].astype(np.int64)
        truth = np.load(r.truth_path)
        neuron = truth["neuron_ids"][np.searchsorted(truth["fragment_ids"], vol)]
        assert len(np.unique(neuron)) == r.n_neurons > 3
        for n in np.unique(neuron):
            assert ndimage.label(neuron == n)[1] == 1  # 6-connected
        for f in np.unique(vol)[:: max(1, r.n_fragments // 40)]:
            assert ndimage.label(vol == f)[1] == 1


# ----------------------------------------------------------------------------------------------
# determinism and batching


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a = synth(tmp_path / "a", "fib25", "tiny", seed=7)
    synth(tmp_path / "b", "fib25", "tiny", seed=7)
    synth(tmp_path / "c", "fib25", "tiny", seed=8)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(fa) > 20 and fa == fb
    for name in ["nodes.bson", "edges_hist_quant_75.bson"]:
        rel = str((a.rag_dir / name).relative_to(tmp_path / "a"))
        assert fa[rel] != fc[rel]


def test_datasets_differ_for_the_same_seed(out):
    res = out[1]
    ids = {ds: set(scan(r.rag_dir / "nodes.bson", ["id"]).ints("id").tolist()) for ds, r in res.items()}
    assert not ids["hemi"] & ids["fib25"] and not ids["fib25"] & ids["zebrafinch"]
    oids = {ds: read(r.rag_dir / "nodes.bson")[0]["_id"] for ds, r in res.items()}
    assert len(set(oids.values())) == 3


def test_batched_streaming_writes_the_same_content(tmp_path):
    """Small batches (many slabs of blocks) give the same documents as one batch; only the
    ObjectIds (one 'worker' per batch) differ."""
    one = synth(tmp_path / "one", "hemi", "small", seed=1, fragments=False)
    many = synth(tmp_path / "many", "hemi", "small", seed=1, fragments=False, batch_fragments=997)
    assert one.n_fragments > 10 * 997
    for name, fields in [("nodes.bson", ["id", "center_z", "center_y", "center_x"]),
                         ("edges_hist_quant_50.bson", ["u", "v", "merge_score", "agglomerated"])]:
        x, y = scan(one.rag_dir / name, fields), scan(many.rag_dir / name, fields)
        assert len(x) == len(y)
        assert np.array_equal(x.types, y.types) and np.array_equal(x.values, y.values)
    oids = [d["_id"] for d in read(many.rag_dir / "edges_mean.bson")]
    assert len(set(oids)) == len(oids)
    assert len({o.binary[4:9] for o in oids}) > 10  # a process id per batch
    assert not (one.rag_dir.parents[2] / "volumes").exists()  # fragments=False


# ----------------------------------------------------------------------------------------------
# the ground truth makes the best threshold findable


def expected_run_length(node_seg, node_skel, pos, eu, ev, node_ids) -> float:
    """funlib.evaluate's ERL: merged skeletons count 0, splits and segment-0 ends count 0,
    correct length summed per (skeleton, segment), squared, over the total length."""
    index = {n: i for i, n in enumerate(node_ids.tolist())}
    a = np.array([index[n] for n in eu.tolist()])
    b = np.array([index[n] for n in ev.tolist()])
    p = pos.astype(np.float32)
    length = np.linalg.norm(p[a] - p[b], axis=1).astype(np.float64)
    touching = Counter(s for s, _ in set(zip(node_seg.tolist(), node_skel.tolist(), strict=True)))
    merged = {k for s, k in zip(node_seg.tolist(), node_skel.tolist(), strict=True) if touching[s] > 1}
    correct: dict = {}
    for _i, (k, s, t, ln) in enumerate(zip(node_skel[a].tolist(), node_seg[a].tolist(),
                                           node_seg[b].tolist(), length.tolist(), strict=True)):
        if k in merged or s == 0 or s != t:
            continue
        correct[(k, s)] = correct.get((k, s), 0.0) + ln
    return sum(c * c for c in correct.values()) / length.sum()


def test_erl_matches_funlib_pinned_values():
    pos = np.array([[0, 0, 0], [1, 1, 0], [2, 2, 0]], float)
    ids, sk = np.array([1, 2, 3]), np.array([1, 1, 1])
    eu, ev = np.array([1, 2]), np.array([2, 3])
    assert np.isclose(expected_run_length(np.array([5, 5, 5]), sk, pos, eu, ev, ids), 2 * np.sqrt(2))
    assert np.isclose(expected_run_length(np.array([5, 5, 6]), sk, pos, eu, ev, ids), np.sqrt(2) / 2)


def _segments_at(ids, u, v, s, t):
    """Connected components of the edges with merge_score <= t, compared in float32."""
    g = nx.Graph()
    g.add_nodes_from(ids.tolist())
    m = ~np.isnan(s) & (s.astype(np.float32) <= np.float32(t))
    g.add_edges_from(zip(u[m].tolist(), v[m].tolist(), strict=True))
    lut = {}
    for c in nx.connected_components(g):
        root = min(c)
        lut.update(dict.fromkeys(c, root))
    return lut


@pytest.mark.parametrize("dataset,size", [("hemi", "tiny"), ("zebrafinch", "tiny"), ("fib25", "small")])
def test_best_threshold_is_intermediate(tmp_path, dataset, size):
    r = synth(tmp_path, dataset, size, seed=0)
    truth = np.load(r.truth_path)
    nodes = scan(r.rag_dir / "nodes.bson", ["id"]).ints("id")
    sk = scan(r.skeleton_dir / f"{dataset}.nodes.bson", ["id", "neuron_id", "z", "y", "x"])
    pos = np.stack([sk.floats("z"), sk.floats("y"), sk.floats("x")], 1)
    se = scan(r.skeleton_dir / f"{dataset}.edges.bson", ["u", "v"])
    a = zarr.open_array(str(r.fragments_path), mode="r")
    vox = np.floor((pos - np.array(a.attrs["offset"])) / np.array(a.attrs["resolution"])).astype(int)
    frag = a[:][tuple(vox.T)].astype(np.int64)
    args = (sk.ints("neuron_id"), pos, se.ints("u"), se.ints("v"), sk.ints("id"))
    perfect = expected_run_length(truth["neuron_ids"][np.searchsorted(truth["fragment_ids"], frag)], *args)
    for fn in r.merge_functions if size == "tiny" else ("hist_quant_75",):
        e = scan(r.rag_dir / f"edges_{fn}.bson", ["u", "v", "merge_score"])
        u, v, s = e.ints("u"), e.ints("v"), e.floats("merge_score")
        erl = {}
        for t in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]:
            lut = _segments_at(np.concatenate([nodes, v]), u, v, s, t)
            erl[t] = expected_run_length(np.array([lut[f] for f in frag.tolist()]), *args)
        best = max(erl, key=erl.get)
        assert 0.0 < best < 1.0, erl
        assert erl[best] > 3 * erl[0.0] and erl[best] > 3 * erl[1.0], erl
        assert erl[1.0] < 0.05 * perfect  # everything merged
        assert 0.4 * perfect < erl[best] <= perfect + 1e-6, (erl, perfect)  # a good threshold exists


# ----------------------------------------------------------------------------------------------
# arguments and sizes


@pytest.mark.parametrize("kwargs,match", [
    (dict(dataset="cremi"), "dataset 'cremi': unknown"),
    (dict(size="huge"), "size 'huge': unknown"),
    (dict(seed=-1), "seed -1"),
    (dict(size="large", fragments=True), "large"),
    (dict(merge_functions=()), "at least one"),
    (dict(merge_functions=("hist quant",)), "merge function 'hist quant'"),
    (dict(merge_functions=("mean", "mean")), "each name once"),
    (dict(network="a/b"), "network 'a/b'"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, kwargs, match):
    with pytest.raises(LsdgraphError, match=match) as e:
        synth(tmp_path, **kwargs)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "funke").exists()


def test_out_is_a_file(tmp_path):
    f = tmp_path / "x"
    f.write_text("")
    with pytest.raises(LsdgraphError, match="is a file"):
        synth(f)


def test_custom_merge_functions_and_no_fragments(tmp_path):
    r = synth(tmp_path, "zebrafinch", "tiny", merge_functions=["hist_quant_25"], fragments=False)
    assert r.fragments_path is None and not (r.rag_dir.parents[2] / "volumes").exists()
    assert sorted(p.name for p in r.rag_dir.glob("*.bson")) == ["edges_hist_quant_25.bson", "nodes.bson"]


def test_size_table_without_generating_the_big_ones():
    # medium and large are never generated in tests: check only that their grids aim at their size
    for size, target in SIZES.items():
        cells = int(np.prod(_grid_shape(size)))
        assert 0.6 * target < cells / 1.3 < 1.4 * target


def test_rerun_replaces_the_previous_dataset(tmp_path):
    first = synth(tmp_path, "hemi", "tiny", merge_functions=["hist_quant_75", "mean"])
    second = synth(tmp_path, "hemi", "tiny", seed=1, merge_functions=["hist_quant_50"], fragments=False)
    assert sorted(p.name for p in second.rag_dir.glob("*.bson")) == ["edges_hist_quant_50.bson", "nodes.bson"]
    assert not first.fragments_path.exists()  # no zarr left that disagrees with the new truth
    assert info(second)["seed"] == 1


def test_refuses_to_write_over_other_lsd_data(tmp_path):
    rag = (tmp_path / "funke" / "fib25" / "testing" / "segmentations" / "data.zarr" / "rags" / "ACLSD"
           / "fib25_auto_basic_300k_testing")
    rag.mkdir(parents=True)
    (rag / "nodes.bson").write_bytes(b"real data")
    with pytest.raises(LsdgraphError, match="not written by lsdgraph synth"):
        synth(tmp_path, "fib25", "tiny")
    assert (rag / "nodes.bson").read_bytes() == b"real data"

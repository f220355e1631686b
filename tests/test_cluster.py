"""Agglomeration and relabelling on a Dask cluster (a LocalCluster of processes on 127.0.0.1)
agree with one process: the same merge tree array for array, the same LUT files, the same volume;
and the block reduction they rest on agrees with the single union-find pass on random graphs."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsdgraph._algorithms import forest, lab
from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi
from lsdgraph._ingest import ingest
from lsdgraph._io.volumes import open_volume
from lsdgraph._jobs import cluster, relabel, segment
from lsdgraph._stores import api

EDGES = "edges_hist_quant_75"


@pytest.fixture(scope="module")
def client():
    with cluster.cluster_client(workers=2) as c:
        yield c


# --------------------------------------------------------------------------- random graphs

@st.composite
def graphs(draw):
    """Fragments (ids anywhere in uint64), edges among them and a few ids that are no fragment,
    scores from a handful of values (ties everywhere) or null, and a random split of both into
    parts: any split is a valid input to the reduction, the spatial one only prunes more."""
    n = draw(st.integers(1, 60))
    ids = np.array(draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n, unique=True)), np.uint64)
    strangers = np.array(draw(st.lists(st.integers(0, 2**64 - 1), max_size=3)), np.uint64)
    pool = np.concatenate([ids, strangers])
    m = draw(st.integers(0, 150))
    pick = st.lists(st.integers(0, len(pool) - 1), min_size=m, max_size=m)
    u, v = pool[draw(pick)], pool[draw(pick)]
    levels = [np.nan, 0.0, 0.25, 0.5, 1.0, 0.1 + 0.2]
    s = np.array([levels[i] for i in draw(st.lists(st.integers(0, len(levels) - 1), min_size=m, max_size=m))])
    k = draw(st.integers(1, 6))
    node_part = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    repeated = draw(st.lists(st.integers(0, n - 1), max_size=3))  # a dump may list a fragment twice
    ids, node_part = np.concatenate([ids, ids[repeated]]), np.concatenate([node_part, node_part[repeated][::-1]])
    edge_part = np.array(draw(st.lists(st.integers(0, k - 1), min_size=m, max_size=m)), dtype=np.int64)
    return ids, u, v, s, k, node_part, edge_part


def _inputs(g):
    ids, u, v, s, k, node_part, edge_part = g
    return [(ids[node_part == i], u[edge_part == i], v[edge_part == i], s[edge_part == i]) for i in range(k)]


def _same_tree(a: agglomerate.MergeTree, b: agglomerate.MergeTree) -> None:
    assert np.array_equal(a.fragments, b.fragments)
    assert np.array_equal(a.parent, b.parent) and a.parent.dtype == b.parent.dtype
    assert np.array_equal(a.score, b.score)
    assert a.report == b.report


@settings(max_examples=300, deadline=None)
@given(graphs(), st.booleans())
def test_merged_forests_build_the_single_pass_tree(g, like_lab):
    ids, u, v, s = g[:4]
    build = lab.build_lab_merge_tree if like_lab else agglomerate.build_merge_tree
    parts = [forest.block_part(*x, like_lab=like_lab) for x in _inputs(g)]
    while len(parts) > 2:
        parts = [forest.merge_parts(parts[i:i + 2]) for i in range(0, len(parts), 2)]
    _same_tree(forest.tree_of(parts), build(ids, u, v, s))
    _same_tree(forest.tree_of([forest.merge_parts(parts)]), build(ids, u, v, s))
    assert sum(p.n_nan for p in parts) == int(np.isnan(s).sum())


def test_the_tree_does_not_depend_on_the_order_of_tied_edges():
    rng = np.random.default_rng(5)
    ids = rng.choice(10**6, 400, replace=False).astype(np.uint64)
    u, v = rng.choice(ids, 2000), rng.choice(ids, 2000)
    s = rng.integers(0, 3, 2000) / 2  # three scores for 2000 edges
    first = agglomerate.build_merge_tree(ids, u, v, s)
    for _ in range(5):
        p = rng.permutation(2000)
        _same_tree(agglomerate.build_merge_tree(ids, u[p], v[p], s[p]), first)


def test_an_edge_to_an_unknown_id_does_not_prune_a_real_one():
    # a-x and x-b (x is no fragment) would make a-b redundant if x counted as a vertex
    a, b, x = np.uint64(1), np.uint64(2), np.uint64(99)
    part = forest.block_part([a, b], [a, x, a], [x, b, b], [0.1, 0.1, 0.5])
    tree = forest.tree_of([part])
    assert tree.cut(0.5).tolist() == [1, 1] and tree.report.n_unknown_endpoint == 2


@pytest.mark.filterwarnings("ignore:Do not use the `random` module")  # distributed's task keys, not the strategy
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graphs())
def test_a_cluster_reduces_random_graphs_to_the_single_pass_tree(client, g):
    blocks = [client.submit(forest.block_part, *x, pure=False) for x in _inputs(g)]
    _same_tree(forest.tree_of(cluster.reduce_parts(client, blocks)), agglomerate.build_merge_tree(*g[:4]))


def _dies_once(marker: str, *inputs):
    """A block task whose worker process dies the first time (no reply, no exception)."""
    import os
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return forest.block_part(*inputs)


def test_a_worker_killed_mid_block_is_replaced_and_the_tree_is_the_same(client, tmp_path):
    import sys

    import cloudpickle

    rng = np.random.default_rng(11)
    ids = rng.choice(10**9, 3000, replace=False).astype(np.uint64)
    u, v, s = rng.choice(ids, 9000), rng.choice(ids, 9000), rng.integers(0, 20, 9000) / 20
    g = (ids, u, v, s, 4, rng.integers(0, 4, ids.size), rng.integers(0, 4, u.size))
    (tmp_path / "lived").touch()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    try:
        blocks = [client.submit(_dies_once, str(tmp_path / ("died" if i == 2 else "lived")), *x, pure=False)
                  for i, x in enumerate(_inputs(g))]
        tree = forest.tree_of(cluster.reduce_parts(client, blocks))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (tmp_path / "died").exists()  # a worker did die under its block, and the block ran again
    _same_tree(tree, agglomerate.build_merge_tree(ids, u, v, s))
    client.wait_for_workers(2, timeout=60)  # the nanny brings the worker back for the next tests


# --------------------------------------------------------------------------- blocks

@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3),
       st.lists(st.floats(0.5, 1e5), min_size=3, max_size=3), st.sampled_from([1, 2, 4, 8, 32]))
def test_blocks_tile_the_region_exactly(begin, shape, n):
    region = Roi(tuple(begin), tuple(shape))
    blocks = cluster.split_region(region, n)
    assert len(blocks) == n
    rng = np.random.default_rng(0)
    points = rng.uniform(region.begin, region.end, (300, 3))
    # points on every inner border: each must land in exactly one block
    for b in blocks:
        points = np.vstack([points, np.array(b.begin)[None, :], np.array([b.begin[0], *region.begin[1:]])[None, :]])
    points = points[region.contains(points)]
    hits = np.sum([b.contains(points) for b in blocks], axis=0)
    assert (hits == 1).all()


# --------------------------------------------------------------------------- jobs

@pytest.fixture(scope="module")
def small(synthetic):
    return synthetic("hemi", "small", seed=2)


@pytest.fixture(scope="module")
def loaded(synthetic, store_uri):
    """The tiny RAG in each kind of store."""
    s = api.connect(store_uri)
    s.drop_database("clu")
    ingest(str(synthetic("hemi", "tiny", seed=2).rag_dir), store=s, name="clu", quiet=True)
    return store_uri, s


@pytest.mark.parametrize("roi", [None, ((20500, 20600.5, -math.inf), (200, 150.25, math.inf))], ids=["all", "roi"])
def test_segment_on_a_cluster_matches_one_process(client, loaded, tmp_path, roi):
    uri, _ = loaded
    if uri.startswith("mongomock://"):  # its data lives in this process: the workers cannot see it
        with pytest.raises(LsdgraphError, match=r"db=mongomock://.*in-process store the cluster's workers cannot see"):
            segment.segment(db=uri, name="clu", out=tmp_path, client=client, quiet=True)
        return
    kw = dict(db=uri, name="clu", roi=roi, thresholds="0:1:0.1", quiet=True)
    one = segment.segment(**kw, out=tmp_path / "one")
    many = segment.segment(**kw, out=tmp_path / "many", client=client)
    assert not many.reused_tree
    _same_tree(many.tree, one.tree)
    for a, b in zip(one.lut_paths, many.lut_paths, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert one.summary.equals(many.summary)
    lab_one = segment.segment(**kw, out=tmp_path / "lab1", like_lab=True, lut_files=False)
    lab_many = segment.segment(**kw, out=tmp_path / "lab2", like_lab=True, lut_files=False, client=client)
    _same_tree(lab_many.tree, lab_one.tree)


def test_the_medium_rag_on_a_cluster_matches_one_process(client, synthetic, tmp_path):
    data = synthetic("hemi", "medium", seed=0)
    db = str(tmp_path / "store")
    ingest(str(data.rag_dir), db=db, name="medium", quiet=True)
    one = segment.segment(db=db, name="medium", out=tmp_path / "one", thresholds="0.1,0.5,0.9", quiet=True)
    many = segment.segment(db=db, name="medium", out=tmp_path / "many", thresholds="0.1,0.5,0.9", quiet=True,
                           client=client)
    assert len(one.tree) > 900_000
    _same_tree(many.tree, one.tree)
    for a, b in zip(one.lut_paths, many.lut_paths, strict=True):
        assert a.read_bytes() == b.read_bytes()
    dumped = segment.segment(bson=str(data.rag_dir), out=tmp_path / "dumps", lut_files=False, quiet=True,
                             client=client)
    _same_tree(dumped.tree, one.tree)


def test_a_dump_folder_on_a_cluster_matches_one_process(client, small, tmp_path):
    one = segment.segment(bson=str(small.rag_dir), out=tmp_path / "one", lut_files=False, quiet=True)
    many = segment.segment(bson=str(small.rag_dir), out=tmp_path / "many", lut_files=False, quiet=True,
                           client=client)
    _same_tree(many.tree, one.tree)
    tree, run = cluster.dump_tree(client, small.rag_dir, EDGES, blocks=64)
    assert 1 < run.blocks <= 64
    _same_tree(tree, one.tree)


def test_more_ranges_than_a_dump_file_has_documents(client, synthetic, tmp_path):
    tiny = synthetic("hemi", "tiny", seed=2)  # ~1k nodes and ~3k edges: 2048 ranges leave nodes short
    one = segment.segment(bson=str(tiny.rag_dir), out=tmp_path / "one", lut_files=False, quiet=True).tree
    tree, run = cluster.dump_tree(client, tiny.rag_dir, EDGES, blocks=2048)
    assert run.blocks > len(one)  # so some tasks read no node at all
    _same_tree(tree, one)


def test_a_bad_document_in_a_range_is_named_as_in_one_process(client, small, tmp_path):
    import shutil

    folder = tmp_path / "rag"
    shutil.copytree(small.rag_dir, folder)
    path = folder / f"{EDGES}.bson"
    raw = bytearray(path.read_bytes())
    at = len(raw) * 2 // 3
    raw[at:at + 4] = b"\xff\xff\xff\x7f"  # a length prefix (or bytes inside one) far too large
    path.write_bytes(bytes(raw))
    with pytest.raises(LsdgraphError) as single:
        segment.segment(bson=str(folder), out=tmp_path / "one", quiet=True)
    with pytest.raises(LsdgraphError) as spread:
        segment.segment(bson=str(folder), out=tmp_path / "many", quiet=True, client=client)
    assert str(spread.value) == str(single.value) and str(path) in str(single.value)
    with pytest.raises(LsdgraphError, match=r"roi= with bson= on a cluster"):
        segment.segment(bson=str(small.rag_dir), out=tmp_path / "x", roi=((0, 0, 0), (1, 1, 1)), client=client)


def test_more_blocks_than_workers_and_one_block_give_the_same_tree(client, small, tmp_path):
    db = str(tmp_path / "store")
    ingest(str(small.rag_dir), db=db, name="clu", quiet=True)
    from lsdgraph._query.rag import open_rag

    rag = open_rag(db, "clu")
    reference = segment.segment(db=db, name="clu", out=tmp_path / "one", lut_files=False, quiet=True).tree
    for n in (1, 16):
        tree, run = cluster.cluster_tree(client, rag, db, None, blocks=n)
        assert run.blocks == n and run.workers == 2 and run.part_bytes > 0
        _same_tree(tree, reference)
    with pytest.raises(LsdgraphError, match=r"blocks=0: give a whole number"):
        cluster.cluster_tree(client, rag, db, None, blocks=0)


def test_relabel_on_a_cluster_writes_the_same_volume(client, small, tmp_path):
    seg = segment.segment(bson=str(small.rag_dir), out=tmp_path / "seg", thresholds="0.5", quiet=True)
    fragments = str(small.fragments_path)
    relabel.relabel(fragments, str(seg.lut_paths[0]), str(tmp_path / "one.zarr"), quiet=True)
    done = relabel.relabel(fragments, str(seg.lut_paths[0]), str(tmp_path / "many.zarr"), quiet=True, client=client)
    a, b = open_volume(str(tmp_path / "one.zarr")), open_volume(str(tmp_path / "many.zarr"))
    assert a.shape == b.shape and done["voxels"] == int(np.prod(a.shape)) and done["mapped"] > 0
    assert np.array_equal(a.read([0, 0, 0], a.shape), b.read([0, 0, 0], b.shape))


def test_cluster_mistakes_are_one_line(client, small, tmp_path):
    with pytest.raises(LsdgraphError, match=r"client=.*pass a dask.distributed Client"):
        segment.segment(bson=str(small.rag_dir), out=tmp_path, client=object(), quiet=True)
    seg = segment.segment(bson=str(small.rag_dir), out=tmp_path / "seg", thresholds="0.5", quiet=True)
    with pytest.raises(LsdgraphError, match=r"client=.*pass a dask.distributed Client"):
        relabel.relabel(str(small.fragments_path), str(seg.lut_paths[0]), str(tmp_path / "x.zarr"), client=object())
    assert not (tmp_path / "x.zarr").exists()  # refused before the output was made
    for kw, message in [({"workers": 0}, r"workers=0: give a whole number"),
                        ({"scheduler": "10.0.0.5"}, r"scheduler='10.0.0.5': give the scheduler's address"),
                        ({"scheduler": "tcp://127.0.0.1:1", "workers": 2}, r"give one")]:
        with pytest.raises(LsdgraphError, match=message), cluster.cluster_client(**kw):
            pass


def test_cli_segment_with_workers(cli, small, tmp_path):
    r = cli("segment", "--bson", str(small.rag_dir), "--out", str(tmp_path / "a"), "--thresholds", "0.5",
            "--workers", "0")
    assert r.returncode == 1 and "--workers 0: give a whole number of worker processes" in r.stderr
    assert "Traceback" not in r.stderr

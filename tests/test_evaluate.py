"""Evaluation end to end: skeleton → fragment mapping (stored once, masks and nodes outside the
volume), per-threshold scores equal a networkx reference, outputs, CLI, and the demo."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import bson
import numpy as np
import pytest
import zarr

from lsdgraph import cli
from lsdgraph._algorithms import metrics
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest import ingest
from lsdgraph._io import bsonio
from lsdgraph._io.volumes import Volume, create_volume, open_volume, write_chunk
from lsdgraph._jobs.demo import demo
from lsdgraph._jobs.evaluate import evaluate, map_skeleton_fragments
from lsdgraph._query.rag import SkeletonSet
from lsdgraph._stores import api
from lsdgraph._stores import mongo as store

from dumpdata import reference_segments

EDGES = "edges_hist_quant_75"


@pytest.fixture(scope="module")
def data(synthetic):
    return synthetic("zebrafinch", "tiny", seed=5)


@pytest.fixture(scope="module")
def loaded(data, store_uri):
    """The RAG and skeletons in each kind of store (the tests run once per store)."""
    s = api.connect(store_uri)
    s.drop_database("ev")
    ingest(str(data.rag_dir), store=s, name="ev", quiet=True)
    ingest(str(data.skeleton_dir), store=s, name="ev", quiet=True)
    return s


def skeleton_docs(data):
    nodes = bson.decode_all((data.skeleton_dir / f"{data.dataset}.nodes.bson").read_bytes())
    edges = bson.decode_all((data.skeleton_dir / f"{data.dataset}.edges.bson").read_bytes())
    return nodes, edges


def expected_fragments(data, nodes, path=None) -> np.ndarray:
    """The fragment under each node, read with the zarr library itself (from ``path``, default
    the synthetic volume)."""
    z = zarr.open_array(str(path or data.fragments_path), mode="r")
    off, res = np.array(z.attrs["offset"]), np.array(z.attrs["resolution"])
    pos = np.array([[n["z"], n["y"], n["x"]] for n in nodes])
    vox = np.floor((pos - off) / res).astype(int)
    inside = np.all((vox >= 0) & (vox < z.shape), axis=1)
    out = np.zeros(len(nodes), np.uint64)
    out[inside] = z[:][tuple(vox[inside].T)]
    return out


def test_mapping_is_right_stored_and_reused(data, loaded):
    db = "ev"
    skel = SkeletonSet.open(loaded, db)
    m = map_skeleton_fragments(loaded, db, skel, str(data.fragments_path))
    nodes, _ = skeleton_docs(data)
    want = dict(zip([n["id"] for n in nodes], expected_fragments(data, nodes).tolist(), strict=True))
    assert dict(zip(m.node_ids.tolist(), m.fragments.tolist(), strict=True)) == want
    assert m.outside == 0 and m.masked == 0 and not m.reused
    # every node lies in a fragment of its own neuron (the synthetic ground truth)
    truth = np.load(data.truth_path)
    neuron_of = dict(zip(truth["fragment_ids"].tolist(), truth["neuron_ids"].tolist(), strict=True))
    assert len({neuron_of[want[n["id"]]] for n in nodes if n["neuron_id"] == nodes[0]["neuron_id"]}) == 1
    again = map_skeleton_fragments(loaded, db, skel, str(data.fragments_path))
    assert again.reused and np.array_equal(np.sort(again.fragments), np.sort(m.fragments))
    rec = next(r for r in loaded.records(db).values() if r.get("kind") == "skeleton_fragments")
    assert rec["nodes"] == len(nodes) and rec["fragments"] == str(data.fragments_path)


def test_nodes_outside_the_volume_and_in_the_mask_are_left_out(data, tmp_path):
    nodes, edges = skeleton_docs(data)
    pos = np.array([[n["z"], n["y"], n["x"]] for n in nodes])
    outside = np.zeros(len(nodes), bool)
    outside[::7] = True
    pos[outside, 2] += 10**7  # far beyond the volume in x
    folder = tmp_path / "skel"
    folder.mkdir()
    (folder / "zf.nodes.bson").write_bytes(bsonio.encode(
        {"id": ("int", [n["id"] for n in nodes]), "neuron_id": ("int", [n["neuron_id"] for n in nodes]),
         "x": ("double", pos[:, 2]), "y": ("double", pos[:, 1]), "z": ("double", pos[:, 0])}))
    (folder / "zf.edges.bson").write_bytes(bsonio.encode(
        {"u": ("int", [e["u"] for e in edges]), "v": ("int", [e["v"] for e in edges])}))
    s = store.connect("mongomock://test_evaluate_mask")
    ingest(str(folder), store=s, name="m", quiet=True)
    src = zarr.open_array(str(data.fragments_path), mode="r")
    mask = create_volume(
        tmp_path / "mask", src.shape, src.chunks, np.uint8, src.attrs["offset"], src.attrs["resolution"]
    )
    full = np.ones(src.shape, np.uint8)
    full[: src.shape[0] // 2] = 0  # mask out the lower half in z
    for idx, sl in mask.blocks():
        write_chunk(mask, idx, full[sl])
    db = "m"
    m = map_skeleton_fragments(s, db, SkeletonSet.open(s, db), str(data.fragments_path), mask=str(tmp_path / "mask"))
    vox_z = np.floor((pos[:, 0] - src.attrs["offset"][0]) / src.attrs["resolution"][0]).astype(int)
    in_masked_half = (~outside) & (vox_z < src.shape[0] // 2)
    assert m.outside == outside.sum() and m.masked == in_masked_half.sum() > 0
    got = dict(zip(m.node_ids.tolist(), m.fragments.tolist(), strict=True))
    ids = np.array([n["id"] for n in nodes])
    assert all(got[i] == 0 for i in ids[outside | in_masked_half])
    assert all(got[i] != 0 for i in ids[~(outside | in_masked_half)])


def test_evaluate_equals_a_networkx_reference_and_finds_an_inner_best(data, loaded, tmp_path):
    def run():
        return evaluate(store=loaded, name="ev", fragments=str(data.fragments_path), edges=EDGES,
                        thresholds="0:1:0.05", out=tmp_path, quiet=True)

    r = run()
    assert len(r.table) == 20 and list(r.table["name"][:3]) == ["0", "0.05", "0.1"]
    nodes, edges = skeleton_docs(data)
    sk = metrics.Skeletons(
        np.array([n["id"] for n in nodes]),
        np.array([n["neuron_id"] for n in nodes]),
        np.array([[n["z"], n["y"], n["x"]] for n in nodes]),
        np.array([[e["u"], e["v"]] for e in edges]),
    )
    frag = expected_fragments(data, nodes)
    for t in (0.0, 0.35, 0.5, 0.95):
        seg = reference_segments(data.rag_dir, EDGES, t)
        node_seg = np.array([seg.get(int(f), int(f)) for f in frag], np.uint64)
        ref = metrics.expected_run_length(sk, node_seg)
        row = r.table[np.isclose(r.table["threshold"], t)].iloc[0]
        assert row["erl"] == pytest.approx(ref.erl)
        vs, vm = metrics.variation_of_information(sk.neuron_ids, node_seg)
        assert (row["voi_split"], row["voi_merge"]) == pytest.approx((vs, vm))
    best = r.best
    assert 0 < best["threshold"] < 0.95
    assert best["erl"] > r.table["erl"].iloc[0] and best["erl"] > r.table["erl"].iloc[-1]
    for k in ("csv", "json", "png", "txt"):
        assert r.paths[k].exists() and r.paths[k].stat().st_size > 0
    assert r.paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"best ERL:  t = {best['name']}" in r.paths["txt"].read_text()
    again = run()
    assert again.mapping.reused and again.table.equals(r.table)


def test_cli_evaluate_and_bad_input(data, loaded, tmp_path, capsys, monkeypatch):
    uri = loaded.uri
    if not loaded.local and loaded.mock:  # the CLI runs in this process: hand it this mongomock store
        monkeypatch.setattr(store, "_mock_clients", {**store._mock_clients, "mongomock://": loaded.client})
        uri = "mongomock://"
    args = [
        "evaluate",
        "--db",
        uri,
        "--name",
        "ev",
        "--fragments",
        str(data.fragments_path),
        "--thresholds",
        "0.2,0.4,0.6",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(args) == 0
    assert "best ERL" in capsys.readouterr().out
    assert (tmp_path / f"evaluation_{EDGES}.png").exists()
    for flag, value, says in [
        ("--fragments", str(tmp_path / "nowhere.zarr"), "no such zarr array"),
        ("--skeletons", "nope", "no skeletons nope"),
        ("--edges", "edges_x", "edges_x"),
    ]:
        assert cli.main(args + [flag, value]) == 1  # the last occurrence of a flag wins
        err = capsys.readouterr().err.strip()
        assert err.startswith("lsdgraph evaluate: error:") and says in err and len(err.splitlines()) == 1
    n5 = tmp_path / "vol.n5"
    n5.mkdir()
    (n5 / "attributes.json").write_text(json.dumps({"dimensions": [1, 1, 1]}))
    with pytest.raises(LsdgraphError, match="n5"):
        evaluate(store=loaded, name="ev", fragments=str(n5), out=tmp_path, quiet=True)


def test_demo_end_to_end(tmp_path, capsys):
    summary = demo(tmp_path / "demo", size="tiny", thresholds="0:1:0.1")
    out = capsys.readouterr().out
    assert "done in" in out and "best ERL at t =" in out
    report = tmp_path / "demo" / "report"
    for name in ("README.txt", "summary.json", f"evaluation_{EDGES}.png", f"evaluation_{EDGES}.csv"):
        assert (report / name).exists()
    saved = json.loads((report / "summary.json").read_text())
    assert saved["best"]["name"] == summary["best"]["name"] and saved["roi_nodes"] > 0
    assert 0 < saved["best"]["threshold"] < 0.9


@pytest.mark.server
def test_demo_runs_unchanged_on_a_real_server(secantus, tmp_path, capsys):
    summary = demo(tmp_path / "demo", db=secantus.uri, name="lsdgraph_demo_test", size="tiny", thresholds="0:1:0.1")
    assert summary["database"]["collections"]["nodes"] > 0 and 0 < summary["best"]["threshold"] < 0.9
    shutil.rmtree(tmp_path / "demo")


# ---------------------------------------------------------------------------------------------
# the stored mapping is keyed by the volume's content, not its path


@pytest.fixture
def own_volume(data, tmp_path):
    """A copy of the fragments volume this test may rewrite."""
    return Path(shutil.copytree(data.fragments_path, tmp_path / "fragments.zarr"))


@pytest.fixture
def sampled(monkeypatch) -> list[str]:
    """The URL of every volume sampled from now on."""
    calls = []
    real = Volume.sample

    def counting(self, world_zyx):
        calls.append(self.url)
        return real(self, world_zyx)

    monkeypatch.setattr(Volume, "sample", counting)
    return calls


@pytest.fixture
def skeletons_only(data, mock_uri):
    s = store.connect(mock_uri)
    ingest(str(data.skeleton_dir), store=s, name="fp", quiet=True)
    db = "fp"
    return s, db, SkeletonSet.open(s, db)


def relabel_chunk_under(path, nodes, i: int = 0, shift: int = 7_000_000) -> set[int]:
    """Rewrite the chunk under node ``i`` with other labels; returns the ids of the nodes in it."""
    vol = open_volume(str(path))
    pos = np.array([[n["z"], n["y"], n["x"]] for n in nodes])
    vox, inside = vol.voxels(pos)
    assert inside[i]
    idx = vox[i] // np.asarray(vol.chunks)
    block = vol.chunk(idx)
    write_chunk(vol, idx, np.where(block != 0, block + shift, 0))
    in_chunk = inside & np.all(vox // np.asarray(vol.chunks) == idx, axis=1)
    return {n["id"] for n, hit in zip(nodes, in_chunk, strict=True) if hit}


def test_an_unchanged_volume_reuses_the_mapping(skeletons_only, own_volume, sampled):
    s, db, skel = skeletons_only
    first = map_skeleton_fragments(s, db, skel, str(own_volume))
    again = map_skeleton_fragments(s, db, skel, str(own_volume))
    assert not first.reused and again.reused and again.note is None
    assert sampled == [str(own_volume)]  # sampled once, for the first call only
    assert dict(zip(again.node_ids.tolist(), again.fragments.tolist(), strict=True)) == dict(
        zip(first.node_ids.tolist(), first.fragments.tolist(), strict=True)
    )


def test_a_rewritten_chunk_at_the_same_path_is_sampled_again(data, skeletons_only, own_volume, sampled):
    s, db, skel = skeletons_only
    nodes, _ = skeleton_docs(data)
    first = map_skeleton_fragments(s, db, skel, str(own_volume))
    changed = relabel_chunk_under(own_volume, nodes)
    m = map_skeleton_fragments(s, db, skel, str(own_volume))
    assert not m.reused and len(sampled) == 2
    assert m.note == "the fragments volume changed since the mapping was stored: recomputed"
    got = dict(zip(m.node_ids.tolist(), m.fragments.tolist(), strict=True))
    assert got == dict(zip([n["id"] for n in nodes], expected_fragments(data, nodes, own_volume).tolist(), strict=True))
    before = dict(zip(first.node_ids.tolist(), first.fragments.tolist(), strict=True))
    assert any(before[i] for i in changed)
    assert all(got[i] == before[i] + 7_000_000 for i in changed if before[i])
    assert all(got[i] == before[i] for i in before if i not in changed)
    third = map_skeleton_fragments(s, db, skel, str(own_volume))
    assert third.reused and len(sampled) == 2  # the replaced mapping is reused in turn


def test_touching_the_chunks_gives_the_same_mapping(skeletons_only, own_volume):
    s, db, skel = skeletons_only
    first = map_skeleton_fragments(s, db, skel, str(own_volume))
    for p in own_volume.rglob("*"):
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    m = map_skeleton_fragments(s, db, skel, str(own_volume))  # may recompute: a touch looks like a write
    assert dict(zip(m.node_ids.tolist(), m.fragments.tolist(), strict=True)) == dict(
        zip(first.node_ids.tolist(), first.fragments.tolist(), strict=True)
    )


def test_a_changed_mask_is_noticed(skeletons_only, own_volume, tmp_path, sampled):
    s, db, skel = skeletons_only
    src = open_volume(str(own_volume))
    mask = create_volume(tmp_path / "mask", src.shape, src.chunks, np.uint8, src.offset, src.resolution)
    for idx, sl in mask.blocks():
        write_chunk(mask, idx, np.ones(tuple(x.stop - x.start for x in sl), np.uint8))
    assert map_skeleton_fragments(s, db, skel, str(own_volume), mask=str(tmp_path / "mask")).masked == 0
    write_chunk(mask, (0, 0, 0), np.zeros(mask.chunks, np.uint8))
    m = map_skeleton_fragments(s, db, skel, str(own_volume), mask=str(tmp_path / "mask"))
    assert not m.reused and m.note == "the mask volume changed since the mapping was stored: recomputed"
    assert len(sampled) == 4  # fragments and mask, twice


def test_evaluate_says_when_it_recomputed_the_mapping(data, mock_uri, own_volume, tmp_path):
    s = store.connect(mock_uri)
    ingest(str(data.rag_dir), store=s, name="ev", quiet=True)
    ingest(str(data.skeleton_dir), store=s, name="ev", quiet=True)

    def run():
        return evaluate(
            store=s,
            name="ev",
            fragments=str(own_volume),
            edges=EDGES,
            thresholds="0.3,0.6",
            out=tmp_path / "out",
            quiet=True,
        )

    assert run().mapping.note is None
    relabel_chunk_under(own_volume, skeleton_docs(data)[0])
    r = run()
    assert not r.mapping.reused
    assert "note: the fragments volume changed since the mapping was stored: recomputed" in r.paths["txt"].read_text()
    assert run().mapping.reused and "note:" not in r.paths["txt"].read_text()

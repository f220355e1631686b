"""Evaluation end to end: skeleton → fragment mapping (stored once, masks and nodes outside the
volume), per-threshold scores equal a networkx reference, outputs, CLI, and the demo."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import bson
import numpy as np
import pandas as pd
import pytest
import zarr

from lsdgraph import cli
from lsdgraph._algorithms import metrics
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest import ingest
from lsdgraph._io import bsonio
from lsdgraph._io.volumes import Volume, create_volume, open_volume, write_chunk
from lsdgraph._jobs import report
from lsdgraph._jobs.demo import demo
from lsdgraph._jobs.evaluate import MASKED, OUTSIDE, evaluate, map_skeleton_fragments
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
    state = dict(zip(m.node_ids.tolist(), m.state.tolist(), strict=True))
    assert [state[i] for i in ids[outside]] == [OUTSIDE] * int(outside.sum())
    assert [state[i] for i in ids[in_masked_half]] == [MASKED] * int(in_masked_half.sum())

    # the per-neuron table says, per neuron, how many of its nodes lie outside or in the mask
    ingest(str(data.rag_dir), store=s, name="m", quiet=True)

    def run():
        return evaluate(store=s, name="m", fragments=str(data.fragments_path), mask=str(tmp_path / "mask"),
                        edges=EDGES, thresholds="0.3,0.6", out=tmp_path / "out", quiet=True)

    r = run()
    neurons = r.neurons.set_index("neuron_id")
    neuron = np.array([n["neuron_id"] for n in nodes])
    for k in np.unique(neuron):
        assert neurons.loc[k, "outside_nodes"] == (outside & (neuron == k)).sum()
        assert neurons.loc[k, "masked_nodes"] == (in_masked_half & (neuron == k)).sum()
    assert neurons["masked_nodes"].sum() > 0 and neurons["outside_nodes"].sum() > 0
    sk = metrics.Skeletons(ids, neuron, pos, np.array([[e["u"], e["v"]] for e in edges]))
    assert_neurons_add_up(r, sk)
    again = run()  # the per-node reasons come back from the stored mapping
    assert again.mapping.reused and again.neurons.equals(r.neurons)


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
    stem = f"evaluation_{EDGES}"
    want = {"csv": ".csv", "json": ".json", "png": ".png", "svg": ".svg", "txt": ".txt", "best": "_best.csv",
            "neurons": "_neurons.csv"}
    for k, suffix in want.items():
        assert r.paths[k] == tmp_path / f"{stem}{suffix}" and r.paths[k].stat().st_size > 0
    assert r.paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = r.paths["txt"].read_text()
    by_voi = metrics.best_threshold(r.table, by="voi_sum")
    assert f"best ERL:  t = {best['name']}" in text and f"best VOI:  t = {by_voi['name']}" in text
    assert r.best_voi.equals(by_voi) and "edges" not in r.table.columns  # one collection: as before
    assert_files_carry_units(r)
    assert_neurons_add_up(r, sk)
    again = run()
    assert again.mapping.reused and again.table.equals(r.table) and again.neurons.equals(r.neurons)


UNIT_HEADERS = {"erl_nm", "max_erl_nm", "voi_split_bits", "voi_merge_bits", "voi_sum_bits"}


def assert_files_carry_units(r) -> None:
    """Every table the job wrote names its unit-bearing columns with their unit, and holds the
    returned numbers."""
    header = pd.read_csv(r.paths["csv"]).columns
    assert set(header) >= UNIT_HEADERS and not {"erl", "max_erl", "voi_split", "voi_merge", "voi_sum"} & set(header)
    assert list(header) == list(report.with_units(r.table).columns)
    back = pd.read_csv(r.paths["csv"])
    assert back["erl_nm"].to_numpy() == pytest.approx(r.table["erl"].to_numpy())
    assert back["voi_sum_bits"].to_numpy() == pytest.approx(r.table["voi_sum"].to_numpy())
    assert [set(row) for row in json.loads(r.paths["json"].read_text())] == [set(header)] * len(r.table)
    best = pd.read_csv(r.paths["best"])
    assert set(best.columns) >= UNIT_HEADERS and list(best.columns) == list(report.with_units(r.bests).columns)
    neurons = pd.read_csv(r.paths["neurons"])
    assert {"cable_length_nm", "erl_nm", "erl_contribution_nm"} <= set(neurons.columns)
    assert list(neurons.columns) == list(report.with_units(r.neurons).columns)
    assert neurons["erl_contribution_nm"].to_numpy() == pytest.approx(r.neurons["erl_contribution"].to_numpy())


def assert_neurons_add_up(r, sk: metrics.Skeletons, edges: str | None = None) -> None:
    """The per-neuron table at a collection's best-ERL threshold adds up to that row's scores."""
    neurons = r.neurons if edges is None else r.neurons[r.neurons["edges"] == edges]
    table = r.table if edges is None else r.table[r.table["edges"] == edges]
    best = metrics.best_threshold(table, by="erl")
    assert (neurons["threshold"] == best["threshold"]).all() and (neurons["name"] == best["name"]).all()
    assert list(neurons["neuron_id"]) == sorted(set(sk.neuron_ids.tolist()))
    assert neurons["erl_contribution"].sum() == pytest.approx(best["erl"])
    assert neurons["cable_length"].sum() == pytest.approx(sk.total_length)
    assert neurons["n_nodes"].sum() == sk.n_nodes and neurons["n_edges"].sum() == sk.n_edges
    for col in ("n_splits", "n_merges", "split_edges", "omitted_edges", "merged_edges", "correct_edges"):
        assert neurons[col].sum() == best[col], col
    assert (neurons["label_0_nodes"] + neurons["outside_nodes"] + neurons["masked_nodes"]
            == neurons["background_nodes"]).all()
    assert neurons["outside_nodes"].sum() == r.mapping.outside and neurons["masked_nodes"].sum() == r.mapping.masked
    # each neuron's own ERL, weighted by its cable, is its contribution
    assert (neurons["erl"] * neurons["cable_length"] / sk.total_length).to_numpy() == pytest.approx(
        neurons["erl_contribution"].to_numpy())


def skeletons_of(data) -> metrics.Skeletons:
    nodes, edges = skeleton_docs(data)
    return metrics.Skeletons(
        np.array([n["id"] for n in nodes]),
        np.array([n["neuron_id"] for n in nodes]),
        np.array([[n["z"], n["y"], n["x"]] for n in nodes]),
        np.array([[e["u"], e["v"]] for e in edges]),
    )


def test_comparing_merge_functions_in_one_run(data, loaded, tmp_path):
    fns = [f"edges_{f}" for f in data.merge_functions]
    assert len(fns) == 3
    r = evaluate(store=loaded, name="ev", fragments=str(data.fragments_path), edges=",".join(fns),
                 thresholds="0:1:0.1", out=tmp_path, quiet=True)
    assert list(r.table.columns[:3]) == ["edges", "threshold", "name"] and len(r.table) == 3 * 10
    assert list(r.table["edges"].unique()) == fns
    stem = "evaluation_" + "_vs_".join(fns)
    for k, suffix in {"csv": ".csv", "json": ".json", "png": ".png", "svg": ".svg", "txt": ".txt",
                      "best": "_best.csv", "neurons": "_neurons.csv"}.items():
        assert r.paths[k] == tmp_path / f"{stem}{suffix}" and r.paths[k].stat().st_size > 0
    assert not list(tmp_path.glob(f"evaluation_{fns[0]}.*"))  # one report for the comparison, no singles
    assert sorted(k for k in r.paths if k.startswith("tree:")) == sorted(f"tree:{e}" for e in fns)
    sk = skeletons_of(data)
    frag = expected_fragments(data, skeleton_docs(data)[0])
    text = r.paths["txt"].read_text()
    for e in fns:
        part = r.table[r.table["edges"] == e]
        # each collection scored with its own merge tree: equal to the networkx reference
        for t in (0.3, 0.6):
            seg = reference_segments(data.rag_dir, e, t)
            ref = metrics.expected_run_length(sk, np.array([seg.get(int(f), int(f)) for f in frag], np.uint64))
            assert part[np.isclose(part["threshold"], t)].iloc[0]["erl"] == pytest.approx(ref.erl)
        b, v = metrics.best_threshold(part, by="erl"), metrics.best_threshold(part, by="voi_sum")
        mine = r.bests[r.bests["edges"] == e]
        assert list(mine["best"]) == ["erl", "voi_sum"]
        assert list(mine["threshold"]) == [b["threshold"], v["threshold"]]
        assert f"  {e}:\n    best ERL:  t = {b['name']}: " in text and f"    best VOI:  t = {v['name']}: " in text
        assert_neurons_add_up(r, sk, e)
    assert r.best["erl"] == r.table["erl"].max() and r.best_voi["voi_sum"] == r.table["voi_sum"].min()
    assert f"best ERL with {r.best['edges']} at t = {r.best['name']}" in text
    assert_files_carry_units(r)
    assert list(pd.read_csv(r.paths["csv"])["edges"]) == list(r.table["edges"])
    # a list is the same request; one name in a list is the single-collection report
    again = evaluate(store=loaded, name="ev", fragments=str(data.fragments_path), edges=fns,
                     thresholds="0:1:0.1", out=tmp_path, quiet=True)
    assert again.table.equals(r.table) and again.neurons.equals(r.neurons)
    one = evaluate(store=loaded, name="ev", fragments=str(data.fragments_path), edges=[fns[1]],
                   thresholds="0:1:0.1", out=tmp_path, quiet=True)
    assert one.paths["csv"].name == f"evaluation_{fns[1]}.csv" and "edges" not in one.table.columns
    assert one.table.equals(r.table[r.table["edges"] == fns[1]].drop(columns="edges").reset_index(drop=True))


@pytest.mark.parametrize("edges,says", [
    ("edges_hist_quant_75,,edges_mean", "empty collection name"),
    ("edges_mean, edges_mean", "edges_mean given more than once"),
    (["edges_mean", 3], "names (strings)"),
    ([], "empty collection name"),
])
def test_bad_edges_lists_name_the_parameter(data, mock_uri, tmp_path, edges, says):
    with pytest.raises(LsdgraphError, match="edges=") as e:
        evaluate(store=store.connect(mock_uri), name="ev", fragments=str(data.fragments_path), edges=edges,
                 out=tmp_path, quiet=True)
    assert says in str(e.value)


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
    assert cli.main(args + ["--edges", f"{EDGES},edges_mean"]) == 0  # a comparison, passed through as a string
    assert "edges_mean:" in capsys.readouterr().out
    assert (tmp_path / f"evaluation_{EDGES}_vs_edges_mean.png").exists()
    for flag, value, says in [
        ("--fragments", str(tmp_path / "nowhere.zarr"), "no such zarr array"),
        ("--skeletons", "nope", "nope.nodes"),
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
    for name in ("README.txt", "summary.json", f"evaluation_{EDGES}.png", f"evaluation_{EDGES}.svg",
                 f"evaluation_{EDGES}.csv", f"evaluation_{EDGES}_best.csv", f"evaluation_{EDGES}_neurons.csv"):
        assert (report / name).exists()
    saved = json.loads((report / "summary.json").read_text())
    assert saved["best"]["name"] == summary["best"]["name"] and saved["roi_nodes"] > 0
    assert 0 < saved["best"]["threshold"] < 0.9
    # named as in the files: units in the keys
    assert {"erl_nm", "max_erl_nm", "voi_sum_bits"} <= set(saved["best"]) and "erl" not in saved["best"]
    assert saved["best_voi"]["voi_sum_bits"] <= saved["best"]["voi_sum_bits"]
    assert f"evaluation_{EDGES}_neurons.csv" in (report / "README.txt").read_text()


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

    def counting(self, world_zyx, **kw):
        calls.append(self.url)
        return real(self, world_zyx, **kw)

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


def test_a_mapping_stored_without_node_reasons_is_recomputed(skeletons_only, own_volume, sampled):
    s, db, skel = skeletons_only
    map_skeleton_fragments(s, db, skel, str(own_volume))
    coll, rec = next((c, r) for c, r in s.records(db).items() if r.get("kind") == "skeleton_fragments")
    s.put_record(db, coll, {k: v for k, v in rec.items() if k not in ("node_states", "_id")})  # an older mapping
    m = map_skeleton_fragments(s, db, skel, str(own_volume))
    assert not m.reused and len(sampled) == 2 and m.state is not None
    assert m.note == "the stored mapping does not say which nodes lie outside the volume or in the mask: recomputed"
    assert map_skeleton_fragments(s, db, skel, str(own_volume)).reused


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

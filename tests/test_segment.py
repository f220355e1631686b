"""The agglomeration batch job: from a database or straight from dump files, LUT files in lsd's
format, LUTs and the merge tree in MongoDB, tree reuse, ROI runs, relabelling a fragments volume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lsdgraph import cli
from lsdgraph._algorithms import merge_tree as agglomerate
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._ingest import ingest
from lsdgraph._io.volumes import open_volume
from lsdgraph._jobs import relabel, results, segment
from lsdgraph._stores import api

from dumpdata import reference_segments as reference

EDGES = "edges_hist_quant_75"
THRESHOLDS = "0:1:0.1"


@pytest.fixture(scope="module")
def data(synthetic):
    return synthetic("hemi", "tiny", seed=3)


@pytest.fixture(scope="module")
def loaded(data, store_uri):
    """The RAG in each kind of store (the tests run once per store)."""
    s = api.connect(store_uri)
    s.drop_database("seg")
    ingest(str(data.rag_dir), store=s, name="seg", quiet=True)
    return s


def reference_segments(data, t: float, roi=None) -> dict[int, int]:
    return reference(data.rag_dir, EDGES, t, roi)


def test_segment_from_database_matches_networkx_and_writes_everything(data, loaded, tmp_path):
    r = segment.segment(store=loaded, name="seg", edges=EDGES, thresholds=THRESHOLDS, out=tmp_path, quiet=True)
    values, names = agglomerate.parse_thresholds(THRESHOLDS)
    assert [p.name for p in r.lut_paths] == [f"seg_{EDGES}_{n}.npz" for n in names]
    assert all(p.parent == tmp_path / "luts" / "fragment_segment" for p in r.lut_paths)
    for t, path in zip(values, r.lut_paths, strict=True):
        lut = np.load(path)["fragment_segment_lut"]
        assert lut.shape == (2, data.n_fragments) and lut.dtype == np.uint64
        expected = reference_segments(data, t)
        assert dict(zip(lut[0].tolist(), lut[1].tolist(), strict=True)) == expected
    assert r.summary["n_segments"].tolist() == [len(set(reference_segments(data, t).values())) for t in values]
    assert (tmp_path / f"summary_{EDGES}.csv").exists()
    saved = json.loads((tmp_path / f"summary_{EDGES}.json").read_text())
    assert [row["name"] for row in saved] == names
    assert (tmp_path / f"merge_tree_{EDGES}.npz").exists() and not r.reused_tree


def test_luts_and_tree_in_mongodb(data, loaded, tmp_path):
    r = segment.segment(store=loaded, name="seg", edges=EDGES, thresholds=THRESHOLDS, out=tmp_path, quiet=True,
                        db_luts="0.3,0.5")
    lut_name = schema.LUT_PREFIX + EDGES
    thresholds = loaded.read("seg", lut_name, {}, {"threshold": "float64"})["threshold"]
    assert set(thresholds.tolist()) == {0.3, 0.5} and len(thresholds) == r.db_luts
    if not loaded.local:
        assert {i["name"] for i in loaded.db("seg")[lut_name].list_indexes()} >= {"fragment", "segment"}
    rec = loaded.record("seg", lut_name)
    assert rec["thresholds"] == [0.3, 0.5] and rec["documents"] == r.db_luts
    expected = reference_segments(data, 0.5)
    for f in list(expected)[::37]:
        assert results.segment_of(loaded, "seg", EDGES, f, 0.5) == expected[f]
    # walking the tree documents from a fragment gives the same segment at any threshold
    cols = loaded.read("seg", schema.TREE_PREFIX + EDGES, {}, {"fragment": "int64", "parent": "int64",
                                                               "score": "float64"})
    tree = {f: (p, sc) for f, p, sc in zip(cols["fragment"].tolist(), cols["parent"].tolist(),
                                            cols["score"].tolist(), strict=True)}
    for f in list(expected)[::53]:
        s = f
        while s in tree and np.float32(tree[s][1]) <= np.float32(0.5):
            s = tree[s][0]
        assert s == expected[f]


def test_bson_folder_gives_the_same_luts_and_reruns_reuse_the_tree(data, loaded, tmp_path):
    a = segment.segment(store=loaded, name="seg", edges=EDGES, thresholds="0.4", out=tmp_path / "db",
                        quiet=True, db_luts="none")
    b = segment.segment(bson=str(data.rag_dir), edges=EDGES, thresholds="0.4", out=tmp_path / "files", quiet=True)
    assert np.array_equal(
        np.load(a.lut_paths[0])["fragment_segment_lut"], np.load(b.lut_paths[0])["fragment_segment_lut"]
    )
    again = segment.segment(
        bson=str(data.rag_dir), edges=EDGES, thresholds="0.2,0.4", out=tmp_path / "files", quiet=True
    )
    assert again.reused_tree and len(again.lut_paths) == 2
    (data.rag_dir / f"{EDGES}.bson").touch()  # a changed input is a new tree
    assert not segment.segment(
        bson=str(data.rag_dir), edges=EDGES, thresholds="0.4", out=tmp_path / "files", quiet=True
    ).reused_tree


def test_roi_run_uses_the_roi_subgraph(data, loaded, tmp_path):
    from lsdgraph._query.rag import open_rag

    box = open_rag(name="seg", edges=EDGES, store=loaded).bbox()
    roi = ((box.begin[0], box.begin[1], box.begin[2]), (box.shape[0] / 2, box.shape[1], box.shape[2]))
    r = segment.segment(
        store=loaded, name="seg", edges=EDGES, thresholds="0.5", roi=roi, out=tmp_path, quiet=True, db_luts="none"
    )
    lut = np.load(r.lut_paths[0])["fragment_segment_lut"]
    from lsdgraph._core.roi import as_roi

    expected = reference_segments(data, 0.5, as_roi(roi))
    assert 0 < lut.shape[1] < data.n_fragments
    assert dict(zip(lut[0].tolist(), lut[1].tolist(), strict=True)) == expected


def test_relabel_applies_a_lut_chunk_by_chunk(data, tmp_path):
    r = segment.segment(bson=str(data.rag_dir), edges=EDGES, thresholds="0.5", out=tmp_path, quiet=True)
    out = tmp_path / "relabelled.zarr"
    done = relabel.relabel(str(data.fragments_path), str(r.lut_paths[0]), str(out), quiet=True)
    src, dst = open_volume(str(data.fragments_path)), open_volume(str(out))
    assert dst.shape == src.shape and np.array_equal(dst.offset, src.offset)
    assert np.array_equal(dst.resolution, src.resolution)
    frags = src.read((0, 0, 0), src.shape)
    labels = dst.read((0, 0, 0), dst.shape)
    lut = dict(zip(*np.load(r.lut_paths[0])["fragment_segment_lut"].tolist(), strict=True))
    expected = np.vectorize(lambda f: lut.get(int(f), int(f)), otypes=[np.uint64])(frags)
    assert np.array_equal(labels, expected) and done["voxels"] == frags.size
    import zarr  # the lab's tools read what we write

    assert np.array_equal(zarr.open_array(str(out), mode="r")[:], labels)


def test_cli_segment_and_bad_input(data, tmp_path, capsys):
    assert (
        cli.main(["segment", "--bson", str(data.rag_dir), "--thresholds", "0.3,0.6", "--out", str(tmp_path), "--quiet"])
        == 0
    )
    assert "merge tree" in capsys.readouterr().out
    assert (tmp_path / "luts" / "fragment_segment" / f"seg_{EDGES}_0.6.npz").exists()
    assert cli.main(["segment", "--bson", str(data.rag_dir), "--edges", "edges_nope", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "edges_hist_quant_75" in err and len(err.splitlines()) == 1
    assert cli.main(["segment", "--bson", str(data.rag_dir), "--thresholds", "0:1:-1", "--out", str(tmp_path)]) == 1
    assert "step" in capsys.readouterr().err
    assert cli.main(["segment", "--name", "x", "--bson", str(data.rag_dir), "--out", str(tmp_path)]) == 1
    assert "either --name" in capsys.readouterr().err
    with pytest.raises(LsdgraphError, match=r"no \.zarray"):
        relabel.relabel(
            str(tmp_path),
            str(tmp_path / "luts" / "fragment_segment" / f"seg_{EDGES}_0.6.npz"),
            str(tmp_path / "out.zarr"),
        )


def test_a_stopped_rewrite_of_results_leaves_the_previous_ones_whole(loaded):
    """Tree, LUT and mapping collections are rewritten under a staging name and swapped in at the
    end (MongoDB: a rename; the local store: a new version), on every store."""
    name = schema.LUT_PREFIX + "stopped"
    first = {"threshold": ("double", np.full(5, 0.5)), "fragment": ("int64", np.arange(5)),
             "segment": ("int64", np.zeros(5, np.int64))}
    assert loaded.replace("seg", name, [first], "lut") == 5

    def chunks():
        yield {"threshold": ("double", np.full(3, 0.7)), "fragment": ("int64", np.arange(3)),
               "segment": ("int64", np.ones(3, np.int64))}
        raise KeyboardInterrupt  # the job is stopped half-way

    with pytest.raises(KeyboardInterrupt):
        loaded.replace("seg", name, chunks(), "lut")
    cols = loaded.read("seg", name, {}, {"threshold": "float64", "segment": "int64"})
    assert cols["threshold"].tolist() == [0.5] * 5 and cols["segment"].tolist() == [0] * 5
    assert not any(c.startswith(schema.STAGING_PREFIX) for c in loaded.collections("seg"))

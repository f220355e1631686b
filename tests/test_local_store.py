"""The local store (``lsdgraph._stores.local``): Parquet datasets in a folder, read through Arrow's
scanner. Round trips of every column type, clustering by a Morton key with bounded memory, ROI
reads against numpy, atomic publishing (readers, failed and killed writers), flock locks across
processes, plain-file interop (pandas, DuckDB, polars) and one-line errors."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.roi import Roi, make_roi
from lsdgraph._stores import local_merge, local_read, local_write
from lsdgraph._stores.local import LocalStore, LockHeld, block_key, is_local_uri, local_root, roi_filter

REPO = Path(__file__).resolve().parents[1]
POS = ["u_z", "u_y", "u_x"]
EDGES = pa.schema([("u", pa.uint64()), ("v", pa.uint64()), ("merge_score", pa.float64()),
                   ("agglomerated", pa.bool_()), ("u_z", pa.float64()), ("u_y", pa.float64()),
                   ("u_x", pa.float64()), ("key", pa.uint64()), ("row", pa.int64())])
VOLUME = 10_000.0
BLOCK = (500.0, 500.0, 500.0)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def edges(n: int, seed: int = 0, *, nan_positions: float = 0.0, heavy_point: int = 0) -> dict[str, np.ndarray]:
    """Synthetic edges: ids above 2**63, 5% null scores, uniform positions (some NaN: an endpoint
    that is not a stored node; ``heavy_point`` rows at one point: one crowded block)."""
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 3)) * VOLUME
    pos[:heavy_point] = [1234.0, 2345.0, 3456.0]
    pos[rng.random(n) < nan_positions] = np.nan
    score = rng.random(n)
    score[rng.random(n) < 0.05] = np.nan
    u = np.uint64(2**63) + rng.integers(0, 2**62, n, dtype=np.uint64)
    return {"u": u, "v": u + np.uint64(1), "merge_score": score, "agglomerated": score < 0.5,
            "u_z": pos[:, 0], "u_y": pos[:, 1], "u_x": pos[:, 2],
            "key": block_key(pos[:, 0], pos[:, 1], pos[:, 2], BLOCK), "row": np.arange(n, dtype=np.int64)}


def write(store: LocalStore, db: str, coll: str, cols: dict[str, np.ndarray], schema: pa.Schema = EDGES,
          chunk: int = 7_000, **kw) -> int:
    with store.writer(db, coll, schema, **kw) as w:
        n = len(next(iter(cols.values())))
        for i in range(0, n, chunk):
            w.append({k: v[i:i + chunk] for k, v in cols.items()})
        return w.commit()


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def run_child(code: str, *args: str) -> subprocess.Popen:
    """A Python child running ``code`` (it prints a line when it reached the point to test)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for_line(p: subprocess.Popen, word: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    assert p.stdout is not None
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if word in line:
            return
        if not line and p.poll() is not None:
            raise AssertionError(f"child exited {p.returncode}: {p.stderr.read() if p.stderr else ''}")
    raise AssertionError(f"child never printed {word!r}")


# ---------------------------------------------------------------------------------------------
# URIs, names, round trips


def test_local_uris(tmp_path, monkeypatch):
    for uri in ("file:/x", "file:rel", "file:///abs/x", "/abs", "./rel", "../up", "~/home", "."):
        assert is_local_uri(uri), uri
    for uri in ("mongodb://localhost:27017", "mongomock://", "s3://bucket/x", "plainname", ""):
        assert not is_local_uri(uri), uri
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_root("~/s") == tmp_path / "s"
    assert local_root("file:///abs/x") == Path("/abs/x")
    monkeypatch.chdir(tmp_path)
    assert local_root("file:rel") == tmp_path / "rel" == local_root("./rel")
    s = LocalStore("./rel")
    assert s.root == tmp_path / "rel" and s.uri == f"file:{tmp_path / 'rel'}"
    assert s.databases() == [] and s.collections("db") == [] and s.records("db") == {}
    with pytest.raises(LsdgraphError) as e:
        local_root("file:")
    one_line(e)


def test_round_trip_of_every_type(store):
    big = np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1], dtype=np.uint64)
    cols = {"id": big, "n": np.array([-(2**63), -1, 0, 1, 2**62, 2**63 - 1], dtype=np.int64),
            "score": np.array([0.5, np.nan, -1.5, np.inf, np.nan, 1e-300]),
            "flag": np.array([True, False, True, True, False, False]),
            "name": np.array(["a", "", "ünïcødé", "x y", "zebrafinch.nodes", "b" * 300], dtype=object)}
    schema = pa.schema([("id", pa.uint64()), ("n", pa.int64()), ("score", pa.float64()), ("flag", pa.bool_()),
                        ("name", pa.string())])
    assert write(store, "db", "things", cols, schema, chunk=4) == 6
    out = store.read("db", "things", list(cols))
    assert out["id"].dtype == np.uint64 and np.array_equal(out["id"], big)
    assert out["n"].dtype == np.int64 and np.array_equal(out["n"], cols["n"])
    assert out["score"].dtype == np.float64 and np.array_equal(out["score"], cols["score"], equal_nan=True)
    assert out["flag"].dtype == bool and np.array_equal(out["flag"], cols["flag"])
    assert out["name"].tolist() == cols["name"].tolist()
    assert store.schema("db", "things").equals(schema)
    assert list(store.read("db", "things", None)) == schema.names  # None: every column
    # NaN is stored as null: it passes neither `<= t` nor `> t`
    assert store.count("db", "things", pc.field("score").is_null()) == 2
    below, above = (store.count("db", "things", f) for f in (pc.field("score") <= 10, pc.field("score") > 10))
    assert below + above == 4
    # ids above 2**63 compare exactly (uint64 scalars)
    above = store.read("db", "things", ["id"], pc.field("id") >= pa.scalar(2**63, pa.uint64()))["id"]
    assert above.tolist() == [2**63, 2**64 - 2, 2**64 - 1]
    assert store.column_range("db", "things", "id") == (0, 2**64 - 1)
    assert store.column_range("db", "things", "n") == (-(2**63), 2**63 - 1)
    assert store.column_range("db", "things", "score") == (-1.5, np.inf)
    # append order is kept without cluster_by, and the scan gives the same in batches
    batches = list(store.scan("db", "things", ["n"], batch_rows=4))
    assert np.array_equal(np.concatenate([b["n"] for b in batches]), cols["n"])


def test_empty_dataset(store):
    with store.writer("db", "edges_empty", EDGES) as w:
        assert w.commit() == 0
    assert store.collections("db") == ["edges_empty"]
    out = store.read("db", "edges_empty", ["u", "merge_score", "agglomerated"])
    assert [len(v) for v in out.values()] == [0, 0, 0]
    assert out["u"].dtype == np.uint64 and out["merge_score"].dtype == np.float64
    assert store.count("db", "edges_empty") == 0 and list(store.scan("db", "edges_empty", ["u"])) == []
    assert store.column_range("db", "edges_empty", "merge_score") is None
    assert store.explain("db", "edges_empty", pc.field("u_z") < 5)["rows"] == 0
    assert len(pd.read_parquet(store.root / "db" / "edges_empty")) == 0
    path = store.root / "db" / "edges_empty" / "*.parquet"
    assert duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall() == [(0,)]
    # all-null float column: no range
    cols = edges(10)
    cols["merge_score"][:] = np.nan
    write(store, "db", "nulls", cols)
    assert store.column_range("db", "nulls", "merge_score") is None
    assert store.column_range("db", "nulls", "row") == (0, 9)


def test_dotted_collection_names_stay_apart(store):
    a, b, c = edges(100, 1), edges(50, 2), edges(30, 3)
    write(store, "zebrafinch_gt", "zebrafinch.nodes", a)
    write(store, "zebrafinch_gt", "zebrafinch", b)
    write(store, "zebrafinch_gt", "lsdgraph_lut.edges_hist_quant_75", c)
    assert store.collections("zebrafinch_gt") == ["lsdgraph_lut.edges_hist_quant_75", "zebrafinch", "zebrafinch.nodes"]
    # a writer of "zebrafinch" cleaning its stale staging leaves the one of "zebrafinch.nodes" alone
    w1 = store.writer("zebrafinch_gt", "zebrafinch.nodes", EDGES)
    w1.append(a)
    with store.writer("zebrafinch_gt", "zebrafinch", EDGES) as w2:
        w2.append(c)
    assert w1.folder.exists()
    assert w1.commit() == 100
    assert store.count("zebrafinch_gt", "zebrafinch.nodes") == 100 and store.count("zebrafinch_gt", "zebrafinch") == 30
    store.write_record("zebrafinch_gt", "zebrafinch.nodes", {"_id": "zebrafinch.nodes", "status": "complete"})
    store.drop("zebrafinch_gt", "zebrafinch")
    assert store.collections("zebrafinch_gt") == ["lsdgraph_lut.edges_hist_quant_75", "zebrafinch.nodes"]
    assert store.record("zebrafinch_gt", "zebrafinch.nodes")["status"] == "complete"
    assert not list((store.root / "zebrafinch_gt" / ".staging").iterdir())
    assert store.databases() == ["zebrafinch_gt"]


def test_records(store):
    t = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.timezone.utc)
    rec = {"_id": "nodes", "status": "loading", "lease": {"pid": 12, "heartbeat": t}, "bbox": [0.5, 1.0],
           "documents": np.int64(7), "score_nulls": None}
    store.write_record("db", "nodes", rec)
    assert store.record("db", "nodes") == {**rec, "documents": 7}
    assert store.record("db", "nodes")["lease"]["heartbeat"] == t
    new = store.update_record("db", "nodes", {"status": "complete", "lease.heartbeat": t + dt.timedelta(seconds=5),
                                              "timings.total": 1.5})
    assert new["status"] == "complete" and new["lease"] == {"pid": 12, "heartbeat": t + dt.timedelta(seconds=5)}
    assert store.record("db", "nodes") == new and new["timings"] == {"total": 1.5}
    assert store.update_record("db", "edges_x.y", {"status": "failed"}) == {"_id": "edges_x.y", "status": "failed"}
    assert set(store.records("db")) == {"nodes", "edges_x.y"}
    assert store.collections("db") == []  # records of unpublished collections are records only
    assert sorted(os.listdir(store.root / "db" / ".meta")) == ["edges_x.y.json", "nodes.json"]  # no temp files
    with store.lock("db", "nodes"):  # re-entrant in one thread: a writer may update its own record
        store.update_record("db", "nodes", {"phase": "indexes"})
    with pytest.raises(LsdgraphError) as e:
        store.write_record("db", "bad", {"x": object()})
    assert "JSON" in one_line(e)
    (store.root / "db" / ".meta" / "broken.json").write_text("{not json")
    with pytest.raises(LsdgraphError) as e:
        store.record("db", "broken")
    assert "broken.json" in one_line(e)


# ---------------------------------------------------------------------------------------------
# clustering and ROI reads


N_CLUSTERED = 200_000


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """200k edges (10% without a position, 15k in one block) clustered by block key with
    memory_rows=10k; records every table the writer hands to its output (the memory bound)."""
    store = LocalStore(tmp_path_factory.mktemp("clustered") / "store")
    cols = edges(N_CLUSTERED, 5, nan_positions=0.1, heavy_point=15_000)
    sizes: list[int] = []
    streamed: list[int] = []
    real_write, real_stream = local_write.PartWriter.write, local_merge.Merge.stream_key

    def spy(self, table):
        sizes.append(table.num_rows)
        return real_write(self, table)

    def spy_stream(self, k, out):
        streamed.append(k)
        return real_stream(self, k, out)

    local_write.PartWriter.write, local_merge.Merge.stream_key = spy, spy_stream
    try:
        w = store.writer("db", "edges", EDGES, cluster_by="key", memory_rows=10_000, row_group_rows=1_000)
        for i in range(0, N_CLUSTERED, 6_000):
            w.append({k: v[i:i + 6_000] for k, v in cols.items()})
        runs = [pq.ParquetFile(p).metadata.num_rows for p in sorted((w.folder / "runs").iterdir())]
        assert w.commit() == N_CLUSTERED
    finally:
        local_write.PartWriter.write, local_merge.Merge.stream_key = real_write, real_stream
    # the two crowded keys (no position: 2**64 - 1; the one busy block) were streamed, not sorted
    heavy = block_key([1234.0], [2345.0], [3456.0], BLOCK)[0]
    assert set(streamed) == {2**64 - 1, int(heavy)}
    return store, cols, runs, sizes


def test_clustered_output_is_sorted_complete_and_runs_are_gone(clustered):
    store, cols, runs, sizes = clustered
    assert len(runs) >= 19 and max(runs) <= 10_000  # it spilled, runs of at most memory_rows
    assert not list((store.root / "db" / ".staging").iterdir())
    out = store.read("db", "edges", ["key", "row", "u", "merge_score"])
    assert np.all(out["key"][1:] >= out["key"][:-1])
    assert np.array_equal(np.sort(out["row"]), cols["row"])
    assert np.array_equal(out["u"], cols["u"][out["row"]])
    assert np.array_equal(out["merge_score"], cols["merge_score"][out["row"]], equal_nan=True)
    # equal keys keep append order (a stable sort)
    same = out["key"][1:] == out["key"][:-1]
    assert np.all(out["row"][1:][same] > out["row"][:-1][same])
    # memory: no table handed to the output exceeds memory_rows (+ a row group of carry)
    assert max(sizes) <= 10_000 + 1_000
    # row groups of exactly row_group_rows, but the last
    files = sorted((store.root / "db" / "edges").glob("part-*.parquet"))
    groups = [pq.ParquetFile(f).metadata.row_group(i).num_rows for f in files
              for i in range(pq.ParquetFile(f).metadata.num_row_groups)]
    assert set(groups[:-1]) == {1_000} and sum(groups) == N_CLUSTERED


def test_a_capped_key_sample_is_refined_range_by_range(store, monkeypatch):
    monkeypatch.setattr(local_merge, "SAMPLE_BUDGET", 200)  # as if the dataset were huge
    cols = edges(30_000, 8, nan_positions=0.05)
    write(store, "db", "e", cols, chunk=2_500, cluster_by="key", memory_rows=3_000, row_group_rows=500)
    out = store.read("db", "e", ["key", "row"])
    assert np.all(out["key"][1:] >= out["key"][:-1]) and np.array_equal(np.sort(out["row"]), cols["row"])


def test_a_small_roi_reads_few_row_groups(clustered):
    store, cols, _, _ = clustered
    roi = make_roi((4000, 4000, 4000), (400, 400, 400))
    ex = store.explain("db", "edges", roi_filter(roi, POS))
    assert ex["row_groups"] == 200 and ex["fraction_kept"] <= 0.05, ex
    assert ex["rows_in_kept"] == 1_000 * ex["row_groups_kept"]
    pts = np.stack([cols[c] for c in POS], axis=1)
    got = store.read("db", "edges", ["row"], roi_filter(roi, POS))["row"]
    assert np.array_equal(np.sort(got), np.flatnonzero(roi.contains(pts)))
    assert store.explain("db", "edges", None)["fraction_kept"] == 1.0


coord = st.floats(-500, VOLUME + 500, allow_nan=False)
side = st.one_of(st.floats(0, 3_000, allow_nan=False), st.just(float("inf")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.tuples(coord, coord, coord), shape=st.tuples(side, side, side),
       threshold=st.one_of(st.none(), st.floats(-0.1, 1.1, allow_nan=False)))
def test_roi_and_threshold_reads_match_numpy(clustered, offset, shape, threshold):
    store, cols, _, _ = clustered
    roi = make_roi(offset, shape)
    flt = roi_filter(roi, POS)
    mask = roi.contains(np.stack([cols[c] for c in POS], axis=1))
    if threshold is not None:
        flt = flt & (pc.field("merge_score") <= threshold)
        mask &= cols["merge_score"] <= threshold  # NaN (null) never passes
    got = store.read("db", "edges", ["row", "merge_score"], flt)
    assert np.array_equal(np.sort(got["row"]), np.flatnonzero(mask))
    assert store.count("db", "edges", flt) == mask.sum()


def test_roi_filter_semantics():
    assert roi_filter(None, POS) is None
    pts = np.array([[0, 0, 0], [10, 10, 10], [9.999, 5, 5], [np.nan, 5, 5], [5, 5, 5], [-1e300, 5, 5]])
    table = pa.table({"z": pts[:, 0], "y": pts[:, 1], "x": pts[:, 2]})
    table = table.set_column(0, "z", pa.array(pts[:, 0], from_pandas=True))  # NaN stored as null, as the writer does
    for roi in (Roi((0, 0, 0), (10, 10, 10)), make_roi((None, 0, 0), (None, 10, 10)),
                make_roi((None, None, None), (None, None, None)), Roi((5, 5, 5), (0, 1, 1))):
        kept = table.filter(roi_filter(roi, ["z", "y", "x"]))
        assert sorted(kept.column("y").to_pylist()) == sorted(pts[roi.contains(pts), 1].tolist()), roi
    with pytest.raises(LsdgraphError):
        roi_filter(Roi((0, 0, 0), (1, 1, 1)), ["z", "y"])


def test_block_key_is_a_morton_code():
    def reference(bz: int, by: int, bx: int) -> int:
        out = 0
        for bit in range(21):
            out |= ((bz >> bit) & 1) << (3 * bit + 2)
            out |= ((by >> bit) & 1) << (3 * bit + 1)
            out |= ((bx >> bit) & 1) << (3 * bit)
        return out

    rng = np.random.default_rng(3)
    idx = rng.integers(0, 2**21, (500, 3))
    keys = block_key(idx[:, 0] * 10.0 + 5, idx[:, 1] * 20.0 + 1, idx[:, 2] * 30.0, (10, 20, 30))
    assert keys.dtype == np.uint64
    assert keys.tolist() == [reference(*map(int, r)) for r in idx]
    assert block_key([0, 1, 0, 0, 2], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], (1, 1, 1)).tolist() == [0, 4, 2, 1, 32]
    # clamped outside [0, 2**21) blocks; no position sorts last
    assert block_key([-5.0, 1e30, np.nan, np.inf], [0, 0, 0, 0], [0, 0, 0, 0], (1, 1, 1)).tolist() == \
        [0, reference(2**21 - 1, 0, 0), 2**64 - 1, 2**64 - 1]
    assert block_key([100.0], [0.0], [0.0], (10, 10, 10), origin=(90, 0, 0)).tolist() == [4]
    with pytest.raises(LsdgraphError):
        block_key([0.0], [0.0], [0.0], (0, 1, 1))


# ---------------------------------------------------------------------------------------------
# atomic publishing


def test_a_reader_keeps_its_version_while_the_next_is_committed(tmp_path):
    store = LocalStore(tmp_path / "s", grace=0)  # no grace: only the reader's lock keeps version 1
    v1, v2 = edges(20_000, 1), edges(5_000, 2)
    write(store, "db", "edges", v1, row_group_rows=1_000)
    scan = store.scan("db", "edges", ["row", "u"], batch_rows=1_000)
    first = next(scan)
    write(store, "db", "edges", v2)
    assert store.count("db", "edges") == 5_000  # new readers see version 2
    rest = list(scan)
    got = np.concatenate([first["u"]] + [b["u"] for b in rest])
    assert np.array_equal(got, v1["u"])  # the old reader read all of version 1
    versions = list((store.root / "db" / ".versions").iterdir())
    assert len(versions) == 2  # version 1 stayed while scanned ...
    assert store.gc() == 1  # ... and goes once the scan ended
    assert len(list((store.root / "db" / ".versions").iterdir())) == 1
    assert np.array_equal(store.read("db", "edges", ["u"])["u"], v2["u"])


def test_grace_period_keeps_retired_versions(store):
    write(store, "db", "e", edges(100, 1))
    write(store, "db", "e", edges(100, 2))
    assert len(list((store.root / "db" / ".versions").iterdir())) == 2  # retired < 10 min ago
    old = [p for p in (store.root / "db" / ".versions").iterdir()
           if str(p) != os.path.realpath(store.root / "db" / "e")]
    os.utime(old[0], (time.time() - 3600, time.time() - 3600))
    assert store.gc("db") == 1


def test_a_failed_or_aborted_writer_leaves_the_previous_version(store):
    v1 = edges(3_000, 1)
    write(store, "db", "edges", v1)
    with pytest.raises(RuntimeError), store.writer("db", "edges", EDGES, cluster_by="key", memory_rows=1_000) as w:
        w.append(edges(5_000, 2))
        raise RuntimeError("boom")
    w2 = store.writer("db", "edges", EDGES)
    w2.append(edges(10, 3))
    w2.abort()
    w2.abort()  # idempotent
    with pytest.raises(LsdgraphError):
        w2.append(edges(10, 3))
    # a failure inside commit (here: a bad value only found when publishing) also leaves nothing
    w3 = store.writer("db", "edges", EDGES)
    w3.append(edges(10, 3))
    with pytest.raises(LsdgraphError):
        w3.commit(record={"bad": object()})
    assert np.array_equal(store.read("db", "edges", ["u"])["u"], v1["u"])
    assert not list((store.root / "db" / ".staging").iterdir())
    with store.lock("db", "edges", wait=0):
        pass  # released


def test_a_killed_writer_leaves_the_previous_version_and_the_next_writer_cleans_up(store):
    v1 = edges(2_000, 1)
    write(store, "db", "edges", v1)
    child = run_child("""
        import sys, numpy as np, pyarrow as pa
        from lsdgraph._stores.local import LocalStore
        schema = pa.schema([("key", pa.uint64()), ("x", pa.float64())])
        w = LocalStore(sys.argv[1]).writer("db", "edges", schema, cluster_by="key", memory_rows=2_000)
        rng = np.random.default_rng(0)
        for i in range(10**6):
            w.append({"key": rng.integers(0, 2**63, 1_000, dtype=np.uint64), "x": rng.random(1_000)})
            if i == 5:
                print("appending", flush=True)
        """, str(store.root))
    try:
        wait_for_line(child, "appending")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    stale = list((store.root / "db" / ".staging").iterdir())
    assert len(stale) == 1 and list((stale[0] / "runs").iterdir())  # it died with runs spilled
    assert np.array_equal(store.read("db", "edges", ["u"])["u"], v1["u"])
    with store.lock("db", "edges", wait=0):  # the OS released the dead writer's lock
        pass
    with store.writer("db", "edges", EDGES, wait=0) as w:
        assert not stale[0].exists()  # the next writer removed the stale staging
        w.append(edges(10, 9))
    assert store.count("db", "edges") == 10
    assert not list((store.root / "db" / ".staging").iterdir())


# ---------------------------------------------------------------------------------------------
# locks


def test_a_lock_held_by_another_process_names_its_pid_and_dies_with_it(store):
    child = run_child("""
        import sys, time
        from lsdgraph._stores.local import LocalStore
        with LocalStore(sys.argv[1]).lock("db", "edges.x"):
            print("held", flush=True)
            time.sleep(60)
        """, str(store.root))
    try:
        wait_for_line(child, "held")
        with pytest.raises(LockHeld) as e:
            store.lock("db", "edges.x", wait=0).acquire()
        msg = one_line(e)
        assert f"pid {child.pid} on " in msg and "db.edges.x" in msg
        t0 = time.monotonic()
        with pytest.raises(LockHeld):
            store.writer("db", "edges.x", EDGES, wait=0.3)
        assert time.monotonic() - t0 >= 0.3
        with pytest.raises(LockHeld):
            store.drop_database("db", wait=0)
        with store.lock("db", "other", wait=0):  # other collections are free
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with store.lock("db", "edges.x", wait=0):
        info = json.loads((store.root / "db" / ".locks" / "edges.x.lock").read_text())
        assert info["pid"] == os.getpid() and info["host"]


def test_another_thread_waits_for_the_lock(store):
    got = []
    with store.lock("db", "c"):
        def contender():
            try:
                store.lock("db", "c", wait=0).acquire()
                got.append("acquired")
            except LockHeld as e:
                got.append(str(e))
        t = threading.Thread(target=contender)
        t.start()
        t.join()
    assert f"pid {os.getpid()}" in got[0]


# ---------------------------------------------------------------------------------------------
# plain files: pandas, DuckDB, polars


def test_pandas_duckdb_and_polars_read_the_files_as_they_are(clustered):
    store, cols, _, _ = clustered
    folder = store.root / "db" / "edges"
    df = pd.read_parquet(folder).sort_values("row")
    assert len(df) == N_CLUSTERED and np.array_equal(df["u"].to_numpy(np.uint64), cols["u"])
    assert np.array_equal(df["merge_score"].to_numpy(), cols["merge_score"], equal_nan=True)
    rows = duckdb.sql(f"select row, u, merge_score from read_parquet('{folder}/*.parquet') order by row").fetchnumpy()
    assert np.array_equal(rows["u"], cols["u"])
    assert int(rows["merge_score"].mask.sum()) == np.isnan(cols["merge_score"]).sum()  # NULL in DuckDB
    t = 0.3
    n = duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet') where merge_score <= {t}").fetchall()
    assert n == [((cols["merge_score"] <= t).sum(),)]
    try:
        import polars as pl
    except ImportError:
        return
    assert pl.read_parquet(f"{folder}/*.parquet").height == N_CLUSTERED


# ---------------------------------------------------------------------------------------------
# bad input: one line each


def test_bad_names_and_unknown_collections(store):
    for bad in ("", "a/b", ".hidden", "x\\y"):
        with pytest.raises(LsdgraphError) as e:
            store.collections(bad)
        assert "database name" in one_line(e)
        with pytest.raises(LsdgraphError) as e:
            store.writer(bad, "edges", EDGES)
        one_line(e)
        with pytest.raises(LsdgraphError) as e:
            store.writer("db", bad, EDGES)
        assert "collection name" in one_line(e)
    with pytest.raises(LsdgraphError) as e:
        store.read("nope", "edges", ["u"])
    assert "holds no databases yet" in one_line(e)
    write(store, "db", "edges_a", edges(5))
    write(store, "db", "nodes", edges(5))
    with pytest.raises(LsdgraphError) as e:
        store.read("db", "edges_b", ["u"])
    assert "edges_b" in (msg := one_line(e)) and "edges_a, nodes" in msg
    with pytest.raises(LsdgraphError) as e:
        store.count("dbx", "edges_a")
    assert "databases there: db" in one_line(e)
    with pytest.raises(LsdgraphError) as e:
        store.read("db", "edges_a", ["u", "w"])
    assert "'w'" in (msg := one_line(e)) and "merge_score" in msg
    with pytest.raises(LsdgraphError) as e:
        store.read("db", "edges_a", ["u"], pc.field("nope") > 1)
    assert "filter" in one_line(e)
    with pytest.raises(LsdgraphError) as e:
        store.read("db", "edges_a", ["u"], pc.field("u") > 5)  # an int64 literal against uint64 statistics
    assert "pyarrow.scalar" in one_line(e)
    with pytest.raises(LsdgraphError) as e:
        store.column_range("db", "edges_a", "agglomerated")
    one_line(e)
    store.drop("db", "nodes")
    store.drop("db", "nodes")  # a no-op, as in MongoDB
    assert store.collections("db") == ["edges_a"]
    store.drop_database("db")
    assert store.databases() == []


def test_bad_schemas_and_columns(store):
    with pytest.raises(LsdgraphError) as e:
        store.writer("db", "x", pa.schema([("a", pa.int32())]))
    assert "int32" in one_line(e)
    with pytest.raises(LsdgraphError) as e:
        store.writer("db", "x", EDGES, cluster_by="row")  # int64, not uint64
    assert "uint64" in one_line(e)
    schema = pa.schema([pa.field("a", pa.float64(), nullable=False), ("b", pa.uint64()), ("c", pa.int64())])
    cases = [({"a": np.zeros(2)}, "missing b, c"),
             ({"a": np.zeros(2), "b": np.zeros(2, np.uint64), "c": np.zeros(2, np.int64), "d": np.zeros(2)},
              "unexpected d"),
             ({"a": np.zeros(2), "b": np.zeros(3, np.uint64), "c": np.zeros(2, np.int64)}, "different lengths"),
             ({"a": np.zeros(2), "b": np.zeros(2), "c": np.zeros(2, np.int64)}, "pass integers"),
             ({"a": np.array([1.0, np.nan]), "b": np.zeros(2, np.uint64), "c": np.zeros(2, np.int64)}, "NaN"),
             ({"a": np.zeros(2), "b": np.zeros(2, np.uint64), "c": np.array([2**63, 1], np.uint64)}, "above 2**63"),
             ({"a": np.array(["x", "y"]), "b": np.zeros(2, np.uint64), "c": np.zeros(2, np.int64)}, "float64")]
    with store.writer("db", "x", schema) as w:
        for cols, words in cases:
            with pytest.raises(LsdgraphError) as e:
                w.append(cols)
            assert words in one_line(e), (words, str(e.value))
        w.append({"a": np.array([1, 2]), "b": np.array([-1, 3]), "c": np.array([1, 2], np.uint8)})
    out = store.read("db", "x", ["a", "b", "c"])  # ints widen; int64 ids are read as their uint64 bits
    assert out["a"].tolist() == [1.0, 2.0] and out["b"].tolist() == [2**64 - 1, 3] and out["c"].tolist() == [1, 2]


def test_damaged_files_are_named(store):
    write(store, "db", "edges", edges(5_000), chunk=5_000, row_group_rows=500)
    part = Path(os.path.realpath(sorted((store.root / "db" / "edges").glob("part-*.parquet"))[0]))
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])  # truncated
    for call in (lambda: store.read("db", "edges", ["u"]), lambda: store.count("db", "edges"),
                 lambda: list(store.scan("db", "edges", ["u"])), lambda: store.column_range("db", "edges", "u")):
        with pytest.raises(LsdgraphError) as e:
            call()
        msg = one_line(e)
        assert str(part) in msg and "re-ingest" in msg
    damaged = bytearray(data)
    damaged[len(data) // 3: len(data) // 3 + 400] = b"\x00" * 400  # a damaged page, the footer intact
    part.write_bytes(bytes(damaged))
    with pytest.raises(LsdgraphError) as e:
        store.read("db", "edges", list(EDGES.names))
    assert str(part) in one_line(e)
    (store.root / "db" / "notmine").mkdir()
    with pytest.raises(LsdgraphError) as e:
        store.read("db", "notmine", ["u"])
    assert "not a collection this store published" in one_line(e)


def test_a_missing_or_foreign_part_file_is_an_error_never_fewer_rows(store):
    write(store, "db", "edges", edges(20_000), chunk=20_000, row_group_rows=500, file_rows=5_000)
    version = Path(os.path.realpath(store.root / "db" / "edges"))
    parts = sorted(version.glob("part-*.parquet"))
    assert len(parts) >= 2
    gone = parts[1].read_bytes()
    parts[1].unlink()
    local_read.forget(version)
    with pytest.raises(LsdgraphError) as e:
        store.count("db", "edges")
    assert f"lacks the part file {parts[1].name}" in one_line(e) and "re-ingest" in one_line(e)
    parts[1].write_bytes(gone)
    (version / "part-99999.parquet").write_bytes(gone)
    local_read.forget(version)
    with pytest.raises(LsdgraphError, match="holds a part file it was not published with"):
        store.read("db", "edges", ["u"])

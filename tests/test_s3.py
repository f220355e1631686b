"""S3 sources through moto's real HTTP server with boto3: anonymous reads of a public prefix (as
the open-neurodata bucket), `lsdgraph ls`, a 403 on a private object, secrets never shown, and a
resumed load that continues with a ranged GET."""
from __future__ import annotations

import io

import pytest

from lsdgraph import _ingest as ingest_mod
from lsdgraph import cli
from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError
from lsdgraph._core.progress import human_bytes
from lsdgraph._io import sources
from lsdgraph._stores import mongo as store_mod

from conftest import run_cli, subprocess_env
from servers import PRIVATE

pytestmark = pytest.mark.s3


@pytest.fixture
def requests_seen(monkeypatch):
    """Every HTTP request boto3 sends: (operation, Authorization header?, Range header)."""
    seen = []
    real_client = sources.S3Options.client

    def client(self):
        c = real_client(self)

        def record(request, **kw):
            rng = request.headers.get("Range")
            seen.append((request.url.split("?")[0], kw.get("event_name", ""), "Authorization" in request.headers,
                         rng.decode() if isinstance(rng, bytes) else rng))

        c.meta.events.register("before-send.s3", record)
        return c

    monkeypatch.setattr(sources.S3Options, "client", client)
    return seen


def _gets(seen):
    return [(url, auth, rng) for url, _, auth, rng in seen if rng is not None]


def test_ingest_a_public_prefix_anonymously(dumps, s3, mock_uri, requests_seen):
    rag = dumps.rag(folder="hemi_roi_1", n_nodes=400)
    dumps.skeletons(folder="hemi_roi_1/skel", n_nodes=50)
    url = s3.upload_folder(dumps.root, f"public/{s3.prefix}rags")
    reports = ingest_mod.ingest(url + "/hemi_roi_1/", db=mock_uri, endpoint_url=s3.endpoint, quiet=True,
                                batch_docs=100)
    assert [r.status for r in reports] == ["complete"] * 4
    db = store_mod.connect(mock_uri).db("hemi_roi_1")  # named after the prefix's last folder
    assert db.nodes.count_documents({}) == len(rag.ids)
    assert db.edges_hist_quant_75.count_documents({"u_z": {"$exists": True}}) == len(rag.u)
    rec = db[schema.META].find_one({"_id": "nodes"})
    assert rec["source"] == f"{url}/hemi_roi_1/nodes.bson" and rec["size"] == rag.nodes_file.stat().st_size
    assert rec["status"] == "complete" and "etag=" in rec["fingerprint"]
    assert requests_seen and not any(auth for _, _, auth, _ in requests_seen)  # anonymous: nothing signed
    assert all(rng == "bytes=0-" for _, _, rng in _gets(requests_seen))

    again = ingest_mod.ingest(url + "/hemi_roi_1/", db=mock_uri, endpoint_url=s3.endpoint, quiet=True)
    assert [r.status for r in again] == ["already-complete"] * 4


def test_ingest_one_key_and_credentials_from_the_environment_sign(dumps, s3, mock_uri, requests_seen,
                                                                 monkeypatch):
    rag = dumps.rag(folder="roi", n_nodes=120)
    url = s3.put(f"public/{s3.prefix}roi/nodes.bson", rag.nodes_file.read_bytes())
    s3.put(f"public/{s3.prefix}roi/edges_mean.bson", b"not loaded: only the named key is")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-example-secret")
    (report,) = ingest_mod.ingest(url, db=mock_uri, endpoint_url=s3.endpoint, quiet=True)
    assert report.status == "complete" and report.loaded == 120 and report.collection == "nodes"
    assert requests_seen and all(auth for _, _, auth, _ in requests_seen)  # the standard chain signs


def test_resume_from_an_offset_uses_a_ranged_get(dumps, s3, mock_uri, requests_seen, monkeypatch):
    rag = dumps.rag(folder="roi", n_nodes=1000, per_node=1)
    url = s3.put(f"public/{s3.prefix}roi/nodes.bson", rag.nodes_file.read_bytes())

    class Killed(BaseException):
        pass

    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def insert_docs(self, coll, docs, what):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Killed()
        return real(self, coll, docs, what)

    with monkeypatch.context() as m:
        m.setattr(store_mod.Store, "insert_docs", insert_docs)
        with pytest.raises(Killed):
            ingest_mod.ingest(url, db=mock_uri, endpoint_url=s3.endpoint, quiet=True, batch_docs=100,
                              chunk_bytes=4096)
    db = store_mod.connect(mock_uri).db("roi")
    offset = db[schema.META].find_one({"_id": "nodes"})["offset"]
    assert 0 < offset < rag.nodes_file.stat().st_size
    requests_seen.clear()
    (report,) = ingest_mod.ingest(url, db=mock_uri, endpoint_url=s3.endpoint, quiet=True, batch_docs=100)
    assert f"resumed at byte {offset:,}" in report.notes
    # one read of the loaded prefix to check its CRC-32, then the rest from the committed offset
    assert [rng for _, _, rng in _gets(requests_seen)] == ["bytes=0-", f"bytes={offset}-"]
    assert report.loaded == db.nodes.count_documents({}) == len(rag.ids) and report.duplicates == 0
    assert len(db.nodes.distinct("id")) == len(rag.ids)


def test_ls_shows_sizes_and_totals_per_folder(dumps, s3, capsys):
    a = s3.put(f"public/{s3.prefix}hemi/ACLSD/roi_1/nodes.bson", b"x" * 1500)
    s3.put(f"public/{s3.prefix}hemi/ACLSD/roi_1/edges_mean.bson", b"x" * 2500)
    s3.put(f"public/{s3.prefix}hemi/LSD/roi_2/nodes.bson", b"x" * 4000)
    s3.put(f"public/{s3.prefix}hemi/README.md", b"x" * 10)
    root = s3.public("hemi")
    assert cli.main(["ls", root, "--endpoint-url", s3.endpoint]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{human_bytes(4000):>10}  {2:>8,} files  {root}/ACLSD/",
        f"{human_bytes(4000):>10}  {1:>8,} file   {root}/LSD/",
        f"{human_bytes(10):>10}  {'':>14}  {root}/README.md",
        f"{human_bytes(8010):>10}  {4:>8,} files  total under {root}"]
    assert cli.main(["ls", root + "/", "--endpoint-url", s3.endpoint, "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{human_bytes(4000):>10}  {2:>8,} files  {root}/ACLSD/roi_1/" in out
    assert cli.main(["ls", root, "--endpoint-url", s3.endpoint, "--all"]) == 0
    out = capsys.readouterr().out
    assert f"{human_bytes(1500):>10}  {'':>14}  {a}" in out
    # a subprocess, as a user runs it: the same lines, nothing on stderr
    r = run_cli("ls", root, "--endpoint-url", s3.endpoint)
    assert r.returncode == 0 and r.stderr == "" and r.stdout.splitlines()[-1].endswith(f"total under {root}")


def test_ls_and_ingest_of_an_empty_prefix_or_missing_bucket(s3, mock_uri, capsys):
    assert cli.main(["ls", s3.public("nothing-here/"), "--endpoint-url", s3.endpoint]) == 1
    assert "nothing there" in capsys.readouterr().err
    assert cli.main(["ingest", s3.public("nothing-here/"), "--endpoint-url", s3.endpoint, "--db", mock_uri]) == 1
    assert "no .bson files there" in capsys.readouterr().err
    assert cli.main(["ls", "s3://no-such-bucket-lsd/x/", "--endpoint-url", s3.endpoint]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no such bucket" in err[0]


def test_a_private_object_answers_403_with_a_failed_record(dumps, s3, mock_uri, capsys):
    rag = dumps.rag(n_nodes=50)
    url = s3.put(f"{PRIVATE}/{s3.prefix}nodes.bson", rag.nodes_file.read_bytes())
    code = cli.main(["ingest", url, "--endpoint-url", s3.endpoint, "--db", mock_uri, "--name", "p"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1
    assert err[0] == (f"lsdgraph ingest: error: {url}: access denied (403): the object is not public; pass "
                      "--profile NAME or set AWS credentials in the environment if you have access")
    db = store_mod.connect(mock_uri).db("p")
    rec = db[schema.META].find_one({"_id": "nodes"})
    assert rec["status"] == "failed" and "403" in rec["error"] and "nodes" not in db.list_collection_names()


def test_403_with_a_secret_in_the_environment_never_shows_it(dumps, s3):
    rag = dumps.rag(n_nodes=50)
    url = s3.put(f"{PRIVATE}/{s3.prefix}nodes.bson", rag.nodes_file.read_bytes())
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETKEY"
    env = subprocess_env(AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE", AWS_SECRET_ACCESS_KEY=secret,
                         AWS_SESSION_TOKEN="FwoGZXIvYXdzSESSIONTOKEN")
    r = run_cli("ingest", url, "--endpoint-url", s3.endpoint, "--db", str(rag.nodes_file.parent / "store"), env=env)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "access denied (403)" in r.stderr
    assert secret not in r.stdout + r.stderr and "SESSIONTOKEN" not in r.stdout + r.stderr
    r = run_cli("ls", f"s3://{s3.bucket}/{PRIVATE}/{s3.prefix}", "--endpoint-url", s3.endpoint, env=env)
    assert secret not in r.stdout + r.stderr


def test_an_unknown_profile_is_one_line(s3, capsys):
    assert cli.main(["ls", s3.public(), "--endpoint-url", s3.endpoint, "--profile", "nope"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "AWS profile 'nope' cannot be used" in err[0]


# ---------------------------------------------------------------------------------------------
# the S3 stream itself (no server): a body that ends early is reconnected with a ranged GET


class _Body:
    def __init__(self, data: bytes, give: int):
        self.data, self.give = data, give

    def read(self, n=None):
        k = min(n or len(self.data), self.give)
        out, self.data = self.data[:k], self.data[k:]
        self.give -= len(out)
        return out

    def close(self):
        pass


class _Client:
    """get_object whose response body stops after ``give`` bytes (a dropped connection)."""

    def __init__(self, data: bytes, give: int):
        self.data, self.give, self.ranges = data, give, []

    def get_object(self, Bucket, Key, Range):
        start = int(Range.split("=")[1].rstrip("-"))
        self.ranges.append(start)
        return {"Body": _Body(self.data[start:], self.give)}


def test_s3_stream_reconnects_where_a_cut_body_stopped(monkeypatch):
    monkeypatch.setattr(sources.time, "sleep", lambda s: None)
    data = bytes(range(256)) * 40
    client = _Client(data, give=3000)
    stream = sources._S3Stream(client, "b", "k", offset=100, size=len(data))
    got = io.BytesIO()
    while chunk := stream.read(1024):
        got.write(chunk)
    assert got.getvalue() == data[100:]
    assert client.ranges == [100, 3100, 6100, 9100]


def test_s3_stream_gives_up_with_one_line_after_retries(monkeypatch):
    monkeypatch.setattr(sources.time, "sleep", lambda s: None)
    client = _Client(b"x" * 100, give=0)
    stream = sources._S3Stream(client, "b", "k", offset=0, size=100, retries=2)
    with pytest.raises(LsdgraphError, match=r"s3://b/k: reading failed at byte 0 after 2 retries .*rerun to resume"):
        stream.read(10)

"""S3 and local sources stay the version that was listed, and S3 reads ride out outages.

Through moto's real HTTP server (and a TCP proxy in front of it that can cut and refuse
connections): every GET pins the listed ETag with If-Match; an object replaced between two ranged
GETs, or before a resume, raises SourceChanged rather than splicing two versions; a 3 s outage
mid-read is survived by the retry policy; a 403 fails at once. Local files are pinned by size and
mtime the same way."""
from __future__ import annotations

import io
import os
import re
import threading
import time
from dataclasses import dataclass, field

import pytest

from lsdgraph._core.errors import LsdgraphError
from lsdgraph._io import sources
from lsdgraph._io.sources import S3Options, SourceChanged, list_files

from servers import PRIVATE, PUBLIC, TcpProxy

pytestmark = pytest.mark.s3

BIG = 16 << 20  # well above what the sockets and moto buffer (~5 MB here), so a cut lands mid-body


def _data(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed) & 0xFF for i in range(256)) * (n // 256) + bytes(n % 256)


@dataclass
class Wire:
    """What the S3 clients sent: one (Range, If-Match) per GET; ``strip_if_match`` plays a
    server that ignores the header."""

    gets: list[tuple[str, str | None]] = field(default_factory=list)
    strip_if_match: bool = False


@pytest.fixture
def wire(monkeypatch) -> Wire:
    seen = Wire()
    real_client = sources.S3Options.client

    def client(self):
        c = real_client(self)

        def record(request, **kw):
            h = request.headers
            if seen.strip_if_match and "If-Match" in h:
                del h["If-Match"]
            if h.get("Range") is not None:
                seen.gets.append(tuple(v.decode() if isinstance(v, bytes) else v
                                       for v in (h.get("Range"), h.get("If-Match"))))

        c.meta.events.register("before-send.s3", record)
        return c

    monkeypatch.setattr(sources.S3Options, "client", client)
    return seen


def _put(s3, rel: str, data: bytes) -> str:
    return s3.put(f"{PUBLIC}/{s3.prefix}{rel}", data)


def _etag(s3, url: str) -> str:
    bucket, key = sources.split_s3(url)
    return s3.admin.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')


def _one(url: str, endpoint: str) -> sources.SourceFile:
    (f,) = list_files(url, suffix=None, s3=S3Options(endpoint_url=endpoint))
    return f


def _proxied(s3, tcp_proxy) -> tuple[TcpProxy, str]:
    host, port = s3.endpoint.rsplit("//", 1)[1].split(":")
    proxy = tcp_proxy(host, int(port))
    return proxy, f"http://127.0.0.1:{proxy.port}"


def _read_all(stream, chunk: int = 1 << 16) -> bytes:
    out = bytearray()
    while piece := stream.read(chunk):
        out += piece
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# the ETag pin


def test_every_get_pins_the_listed_etag_and_a_resume_returns_the_bytes_from_the_offset(s3, wire):
    data = _data(300_000)
    url = _put(s3, "nodes.bson", data)
    f = _one(url, s3.endpoint)
    assert f.etag == _etag(s3, url) and f.fingerprint == f"size={len(data)};etag={f.etag}"
    with f.open(0) as st:
        assert _read_all(st) == data
    with f.open(123_457) as st:
        assert _read_all(st, 1000) == data[123_457:]
    assert wire.gets == [("bytes=0-", f'"{f.etag}"'), ("bytes=123457-", f'"{f.etag}"')]


def test_an_object_replaced_between_two_ranged_gets_raises_source_changed(s3, wire, tcp_proxy):
    old, new = _data(BIG, 1), _data(BIG, 2)
    url = _put(s3, "edges.bson", old)
    proxy, endpoint = _proxied(s3, tcp_proxy)
    f = _one(url, endpoint)
    st = f.open(0)
    got = bytearray(st.read(512 << 10))
    _put(s3, "edges.bson", new)
    proxy.cut()  # the body breaks; the reconnect must not continue into the new version
    with pytest.raises(SourceChanged) as e:
        while piece := st.read(1 << 16):
            got += piece
    assert str(e.value) == (f"{url}: the object changed while it was being read (listed ETag {f.etag}, now "
                            f"{_etag(s3, url)}); rerun to load the new version")
    assert 0 < len(got) < BIG and bytes(got) == old[:len(got)]
    # the first GET, the reconnect (412), and a one-byte GET that finds the new ETag for the message
    assert wire.gets == [("bytes=0-", f'"{f.etag}"'), (f"bytes={len(got)}-", f'"{f.etag}"'), ("bytes=0-0", None)]


@pytest.mark.parametrize("size", ["same", "longer", "shorter"])
def test_opening_at_an_offset_after_a_replacement_raises_source_changed(s3, wire, size):
    data = _data(50_000)
    url = _put(s3, "nodes.bson", data)
    f = _one(url, s3.endpoint)
    _put(s3, "nodes.bson", {"same": _data(50_000, 7), "longer": data + b"x", "shorter": data[:20_000]}[size])
    with pytest.raises(SourceChanged, match=f"listed ETag {f.etag}, now {_etag(s3, url)}"):
        f.open(30_000)
    assert wire.gets == [("bytes=30000-", f'"{f.etag}"'), ("bytes=0-0", None)]


def test_a_server_that_ignores_if_match_is_caught_by_the_answers_etag_and_size(s3, wire):
    wire.strip_if_match = True
    data = _data(50_000)
    url = _put(s3, "nodes.bson", data)
    f = _one(url, s3.endpoint)
    _put(s3, "nodes.bson", data + b"more")
    with pytest.raises(SourceChanged, match=f"listed ETag {f.etag}, now {_etag(s3, url)}"):
        f.open(1000)
    assert wire.gets == [("bytes=1000-", None)]  # the server saw no If-Match


# ---------------------------------------------------------------------------------------------
# the retry policy


def _outage(proxy: TcpProxy, seconds: float) -> threading.Timer:
    """Cut every connection and refuse new ones for ``seconds`` (the endpoint is down)."""
    proxy.refusing = True
    proxy.cut()
    timer = threading.Timer(seconds, lambda: setattr(proxy, "refusing", False))
    timer.start()
    return timer


def test_a_3_second_outage_mid_read_is_survived(s3, wire, tcp_proxy):
    data = _data(BIG, 3)
    url = _put(s3, "edges.bson", data)
    proxy, endpoint = _proxied(s3, tcp_proxy)
    f = _one(url, endpoint)
    with f.open(0) as st:
        head = st.read(512 << 10)
        timer = _outage(proxy, 3.0)
        rest = _read_all(st)
    timer.join()
    assert head + rest == data
    # the first GET, at least one refused while the endpoint was down, then the one that resumed
    assert len(wire.gets) >= 3 and wire.gets[0][0] == "bytes=0-"
    assert wire.gets[-1][0] != "bytes=0-" and {im for _, im in wire.gets} == {f'"{f.etag}"'}


def test_listing_rides_out_a_short_outage(s3, tcp_proxy):
    url = _put(s3, "nodes.bson", b"x" * 100)
    proxy, endpoint = _proxied(s3, tcp_proxy)
    timer = _outage(proxy, 1.0)
    assert _one(url, endpoint).size == 100
    timer.join()


def test_a_private_object_fails_at_once_with_the_403_message(s3, wire):
    url = s3.put(f"{PRIVATE}/{s3.prefix}nodes.bson", b"x" * 1000)
    f = _one(url, s3.endpoint)  # the bucket may be listed, the object not read
    t0 = time.monotonic()
    with pytest.raises(LsdgraphError) as e:
        f.open(0)
    assert time.monotonic() - t0 < 2.0 and len(wire.gets) == 1  # no retries
    assert str(e.value) == (f"{url}: access denied (403): the object is not public; pass profile=NAME or set "
                            "AWS credentials in the environment if you have access")


class _Failing:
    """get_object that raises the queued S3 errors (by code and status) first, then answers."""

    def __init__(self, data: bytes, errors: list[tuple[str, int]]):
        self.data, self.errors, self.calls = data, list(errors), 0

    def get_object(self, Bucket, Key, Range, IfMatch=None):
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.errors:
            code, status = self.errors.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
        return {"Body": io.BytesIO(self.data[int(Range[6:].split("-")[0]):]), "ETag": IfMatch or '"new"'}


def test_throttling_and_5xx_are_retried_the_rest_is_final(monkeypatch):
    monkeypatch.setattr(sources.time, "sleep", lambda s: None)
    data = _data(5000)
    retried = _Failing(data, [("SlowDown", 503), ("InternalError", 500), ("RequestTimeout", 400), ("502", 502)])
    assert _read_all(sources._S3Stream(retried, "b", "k", 10, len(data), '"e1"')) == data[10:]
    assert retried.calls == 5
    for (code, status), message in [(("NoSuchKey", 404), "s3://b/k: no such key"),
                                    (("AccessDenied", 403), "s3://b/k: access denied (403)"),
                                    (("PreconditionFailed", 412), "listed ETag e1, now new")]:
        final = _Failing(data, [(code, status)])
        with pytest.raises(SourceChanged if status == 412 else LsdgraphError, match=re.escape(message)):
            sources._S3Stream(final, "b", "k", 0, len(data), "e1").read(10)
        assert final.calls == (2 if status == 412 else 1)  # 412: one more GET, for the new ETag


# ---------------------------------------------------------------------------------------------
# local files


def _changed_on_disk(path, how: str) -> None:
    st = path.stat()
    if how == "append":
        with open(path, "ab") as fh:
            fh.write(b"more")
    else:  # rewritten in place, same size; set the mtime a rewrite a moment later has (the
        # coarse file-system clock may not tick within a test)
        path.write_bytes(bytes(reversed(path.read_bytes())))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


@pytest.mark.parametrize("how", ["append", "rewrite"])
def test_a_local_file_changed_after_listing_raises_source_changed(tmp_path, how):
    path = tmp_path / "nodes.bson"
    data = _data(10_000)
    path.write_bytes(data)
    (f,) = list_files(str(tmp_path))
    assert f.etag is None
    with f.open(4000) as fh:  # unchanged: a resume reads exactly the rest
        assert fh.read() == data[4000:]
    _changed_on_disk(path, how)
    with pytest.raises(SourceChanged, match=rf"{path}: the file changed since it was listed \(.*\); rerun"):
        f.open(4000)


def test_a_local_file_changed_while_being_read_raises_at_its_end(tmp_path):
    path = tmp_path / "nodes.bson"
    data = _data(10_000)
    path.write_bytes(data)
    (f,) = list_files(str(path))
    fh = f.open(0)
    assert fh.read(4000) == data[:4000]
    _changed_on_disk(path, "append")
    with pytest.raises(SourceChanged, match=r"size 10,000 → 10,004 bytes"):
        _read_all(fh, 4000)
    fh.close()

"""Real servers for tests, on 127.0.0.1: SecantusDB (a MongoDB wire-protocol server), moto's S3
server, the mongo shell (npm), and a TCP proxy that can cut connections. A missing server or tool
skips its tests, except with ``LSDGRAPH_REQUIRE_SERVERS=1`` (CI), where it fails them."""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_SERVERS = os.environ.get("LSDGRAPH_REQUIRE_SERVERS") == "1"
REPO = Path(__file__).resolve().parent.parent
BUCKET = "lsd-test"
PUBLIC = "public"     # anonymous list + read, like open-neurodata/funke
PRIVATE = "private"   # denied to everyone (signed or not): answers 403


def unavailable(what: str):
    """Skip, or fail when CI demands every server (``LSDGRAPH_REQUIRE_SERVERS=1``)."""
    if REQUIRE_SERVERS:
        pytest.fail(f"{what} (LSDGRAPH_REQUIRE_SERVERS=1: servers are required, not optional)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    uri: str
    host: str
    port: int
    stop: object = field(repr=False, default=None)

    def client(self, **kw):
        import pymongo

        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=10_000, **kw)


def wait_for_ping(uri: str, seconds: float, proc=None) -> bool:
    import pymongo

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=500) as c:
                c.admin.command("ping")
            return True
        except Exception:
            time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def secantus(tmp_path_factory):
    """SecantusDB on 127.0.0.1, once per session: the ``secantusd-py`` daemon in its own process
    (so the server does not compete with the tests for the GIL), else the in-process server."""
    storage = tmp_path_factory.mktemp("secantus")
    daemon = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    if Path(daemon).exists():
        port = free_port()
        log = open(storage.parent / "secantusd.log", "wb")
        proc = subprocess.Popen([daemon, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                                 str(storage / "data"), "--log-level", "WARNING"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"mongodb://127.0.0.1:{port}"
        if not wait_for_ping(uri, 60, proc):
            proc.kill()
            unavailable(f"secantusd-py did not answer on port {port}; see {log.name}")
        yield Server(uri, "127.0.0.1", port)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        return
    try:
        from secantus import SecantusDBServer
    except ImportError:
        unavailable("SecantusDB is not installed (pip install secantusdb, a test dependency)")
    server = SecantusDBServer(storage_path=str(storage / "data"), port=0)
    server.start()
    uri = server.uri.rstrip("/")
    host, port = uri.split("//", 1)[1].split(":")
    yield Server(uri, host, int(port))
    server.stop()


_db_counter = itertools.count()


@pytest.fixture
def server_db(secantus):
    """(server, database name): a database of its own on SecantusDB, dropped afterwards."""
    name = f"t{next(_db_counter)}_{uuid.uuid4().hex[:6]}"
    yield secantus, name
    try:
        with secantus.client() as c:
            c.drop_database(name)
    except Exception:
        pass


@dataclass
class S3:
    endpoint: str
    bucket: str
    admin: object          # a signed boto3 client that may write
    prefix: str = ""       # this test's folder below public/

    def put(self, key: str, data: bytes) -> str:
        self.admin.put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"

    def public(self, rel: str = "") -> str:
        return f"s3://{self.bucket}/{PUBLIC}/{self.prefix}{rel}"

    def upload_folder(self, folder: Path, under: str) -> str:
        """Every file below ``folder`` to ``under/`` (a key prefix); returns the s3:// URL."""
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                self.put(f"{under}/{p.relative_to(folder).as_posix()}", p.read_bytes())
        return f"s3://{self.bucket}/{under}"


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 with bucket ``lsd-test``: ``public/`` readable and the bucket
    listable anonymously (as open-neurodata), ``private/`` denied to everyone (403)."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        unavailable("moto[server] is not installed (a test dependency)")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id="admin", aws_secret_access_key="admin-secret")
    admin.create_bucket(Bucket=BUCKET)
    admin.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{BUCKET}/{PUBLIC}/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{BUCKET}/{PRIVATE}/*"}]}))
    yield S3(endpoint, BUCKET, admin)
    server.stop()


@pytest.fixture
def s3(s3_server, request):
    """The S3 server with a key prefix of this test's own below ``public/``."""
    prefix = f"{request.node.name.replace('[', '_').replace(']', '')[:40]}-{uuid.uuid4().hex[:6]}/"
    return S3(s3_server.endpoint, s3_server.bucket, s3_server.admin, prefix)


def _find_mongosh() -> str | None:
    env = os.environ.get("LSDGRAPH_MONGOSH")
    candidates = []
    if env:
        p = Path(env).expanduser()
        candidates += [p, p / "node_modules" / ".bin" / "mongosh", p / ".bin" / "mongosh"]
    candidates += [Path.cwd() / "node_modules/.bin/mongosh", REPO / "node_modules/.bin/mongosh",
                   Path.home() / ".cache/lsdgraph/mongosh/node_modules/.bin/mongosh"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which("mongosh")


@pytest.fixture(scope="session")
def mongosh() -> str:
    """Path of the ``mongosh`` executable: $LSDGRAPH_MONGOSH, ./node_modules, the cache, or an
    ``npm install`` into ~/.cache/lsdgraph/mongosh (≈35 s, once per machine)."""
    found = _find_mongosh()
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        unavailable("mongosh not found and npm is not installed to fetch it")
    prefix = Path.home() / ".cache/lsdgraph/mongosh"
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:  # test workers in parallel install it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _find_mongosh()
        if found:
            return found
        p = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "mongosh"],
                           capture_output=True, text=True, timeout=600)
    found = _find_mongosh()
    if p.returncode != 0 or not found:
        unavailable(f"npm install mongosh failed: {p.stderr.strip().splitlines()[-1:] or p.returncode}")
    return found


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to a server. :meth:`cut` closes every open connection;
    while ``refusing`` new connections are closed at once (the server is gone)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.refusing = False
        self.cuts = 0
        self.forwarded = 0               # bytes sent client → server so far
        self.cut_at: int | None = None   # cut mid-stream once `forwarded` reaches this
        self._refuse_after_cut = False
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def uri(self, db: str = "") -> str:
        # direct: the server advertises its own address as a replica set, which would bypass us
        return f"mongodb://127.0.0.1:{self.port}/{db}?directConnection=true"

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for a, b, upstream_bound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, pair, upstream_bound), daemon=True).start()

    def _pump(self, src, dst, pair, upstream_bound):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if upstream_bound:
                    with self._lock:
                        limit = self.cut_at
                        if limit is not None and self.forwarded + len(data) >= limit:
                            data = data[:max(limit - self.forwarded, 0)]
                            self.cut_at = None
                        else:
                            limit = None
                        self.forwarded += len(data)
                    if limit is not None:  # half a request reaches the server, then the line drops
                        dst.sendall(data)
                        self.cut()
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(pair)

    def _drop(self, pair):
        with self._lock:
            self._pairs.discard(pair)
        for s in pair:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut_after(self, nbytes: int, refuse: bool = False):
        """Cut every connection once ``nbytes`` more have gone to the server (mid-request), and
        from then on refuse new ones when ``refuse``."""
        with self._lock:
            self.cut_at = self.forwarded + nbytes
        self._refuse_after_cut = refuse

    def cut(self):
        """Close every connection now (in-flight requests fail)."""
        if self._refuse_after_cut:
            self.refusing = True
        self.cuts += 1
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)

    def close(self):
        self._closed = True
        self.cut()
        self.sock.close()


@pytest.fixture
def tcp_proxy():
    """``tcp_proxy(host, port)`` → a :class:`TcpProxy`, closed after the test."""
    made = []

    def make(host: str, port: int) -> TcpProxy:
        p = TcpProxy(host, port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()

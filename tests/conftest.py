"""Shared test fixtures: real servers started once per session on 127.0.0.1 (SecantusDB, moto's
S3 server, the mongo shell), synthetic LSD dumps written with :func:`lsdgraph.bsonio.encode`, a
fresh database per test, and a TCP proxy that can cut connections.

A missing server or tool skips its tests, except with ``LSDGRAPH_REQUIRE_SERVERS=1`` (CI), where
it fails them: CI must never pass by skipping.
"""
from __future__ import annotations

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
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lsdgraph import bsonio, store as store_mod

REQUIRE_SERVERS = os.environ.get("LSDGRAPH_REQUIRE_SERVERS") == "1"
REPO = Path(__file__).resolve().parent.parent
BUCKET = "lsd-test"
PUBLIC = "public"     # anonymous list + read, like open-neurodata/funke
PRIVATE = "private"   # denied to everyone (signed or not): answers 403
# environment variables that would change which MongoDB / AWS account a test talks to
_ENV_NOISE = ("LSDGRAPH_MONGO_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def unavailable(what: str):
    """Skip, or fail when CI demands every server (``LSDGRAPH_REQUIRE_SERVERS=1``)."""
    if REQUIRE_SERVERS:
        pytest.fail(f"{what} (LSDGRAPH_REQUIRE_SERVERS=1: servers are required, not optional)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# environment hygiene: no user credentials, config or default URI leak into a test


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path_factory):
    for name in _ENV_NOISE:
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a ``lsdgraph`` subprocess (the cleaned test environment plus ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_NOISE}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> Run:
    """``python -m lsdgraph.cli ARGS`` in a subprocess."""
    p = subprocess.run([sys.executable, "-m", "lsdgraph.cli", *args], capture_output=True, text=True,
                       env=env or subprocess_env(), timeout=timeout, cwd=REPO)
    return Run(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def cli():
    """Run the CLI in a subprocess: ``cli("ingest", path, "--db", uri)`` → Run."""
    return run_cli


# ---------------------------------------------------------------------------------------------
# synthetic dumps (the field types of the real LSD data: see shared/data-format.md)


@dataclass
class Rag:
    """A synthetic RAG written as a dump folder, with the arrays it was made from."""

    folder: Path
    nodes_file: Path
    edges_files: dict[str, Path]
    ids: np.ndarray        # fragment ids (int64)
    positions: np.ndarray  # (n, 3) center_z, center_y, center_x (nm)
    u: np.ndarray
    v: np.ndarray
    score: np.ndarray      # NaN = null merge_score

    def position_of(self, fragment: int) -> tuple[float, float, float]:
        i = int(np.searchsorted(self.ids, fragment))
        assert self.ids[i] == fragment
        return tuple(self.positions[i].tolist())


class Dumps:
    """Writes small synthetic mongodump files below ``root``."""

    def __init__(self, root: Path, seed: int = 0):
        self.root = root
        self.rng = np.random.default_rng(seed)

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, rel: str, data: bytes) -> Path:
        p = self.path(rel)
        p.write_bytes(data)
        return p

    def oids(self, n: int) -> np.ndarray:
        return bsonio.object_ids(n, self.rng)

    def fragment_ids(self, n: int) -> np.ndarray:
        """Sorted sparse ids made per block (``block * voxels_per_block + 1 … + k``): the first
        blocks' ids fit int32, the rest need int64, as in the lab's data."""
        per_block = self.rng.integers(1, 40, size=n)
        first = np.cumsum(per_block) - per_block
        block = np.repeat(np.arange(n, dtype=np.int64) * 97 + 1, per_block)[:n]
        within = (np.arange(per_block.sum()) - np.repeat(first, per_block) + 1)[:n]
        return block * 2_000_000 + within

    def nodes_bytes(self, ids: np.ndarray, positions: np.ndarray, with_ids: bool = True) -> bytes:
        cols = {"id": ("int", ids), "center_z": ("double", positions[:, 0]),
                "center_y": ("double", positions[:, 1]), "center_x": ("double", positions[:, 2])}
        return bsonio.encode(cols, self.oids(len(ids)) if with_ids else None)

    def edges_bytes(self, u, v, score, with_ids: bool = True) -> bytes:
        cols = {"u": ("int", u), "v": ("int", v), "merge_score": ("double", score),
                "agglomerated": ("bool", ~np.isnan(score))}
        return bsonio.encode(cols, self.oids(len(u)) if with_ids else None)

    def edges_for(self, ids: np.ndarray, per_node: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct pairs u < v among ``ids`` (mostly near neighbours), scores in [0, 1) with
        about one in eight null."""
        n = len(ids)
        a = np.repeat(np.arange(n), per_node)
        b = (a + self.rng.integers(1, 6, size=len(a))) % n
        keep = a != b
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        pairs = np.unique(lo * n + hi)
        u, v = ids[pairs // n], ids[pairs % n]
        order = self.rng.permutation(len(u))
        u, v = u[order], v[order]
        score = self.rng.random(len(u))
        score[self.rng.random(len(u)) < 0.125] = np.nan
        return u, v, score

    def rag(self, folder: str = "rag", n_nodes: int = 500, per_node: int = 2,
            merge_functions: tuple[str, ...] = ("hist_quant_75",), with_ids: bool = True,
            nodes: bool = True) -> Rag:
        """``folder/nodes.bson`` and one ``edges_<merge_function>.bson`` per merge function."""
        ids = self.fragment_ids(n_nodes)
        positions = np.stack([self.rng.uniform(0, 20_000, len(ids)), self.rng.uniform(0, 9_000, len(ids)),
                              self.rng.uniform(0, 9_000, len(ids))], axis=1)
        nodes_file = self.path(f"{folder}/nodes.bson")
        if nodes:
            nodes_file.write_bytes(self.nodes_bytes(ids, positions, with_ids))
        u, v, score = self.edges_for(ids, per_node)
        edges = {}
        for mf in merge_functions:
            edges[mf] = self.write(f"{folder}/edges_{mf}.bson", self.edges_bytes(u, v, score, with_ids))
        return Rag(self.root / folder, nodes_file, edges, ids, positions, u, v, score)

    def skeletons(self, folder: str = "skel", volume: str = "zebrafinch", n_nodes: int = 300,
                  n_skeletons: int = 3, endpoint_names: tuple[str, str] = ("u", "v")
                  ) -> tuple[Path, Path, int]:
        """``<volume>.nodes.bson`` (id, neuron_id, x, y, z) and ``<volume>.edges.bson`` (chains
        per skeleton, endpoints named ``endpoint_names``). Returns (nodes, edges, n_edges)."""
        ids = np.arange(1, n_nodes + 1, dtype=np.int64)
        neuron = np.sort(self.rng.integers(0, n_skeletons, n_nodes)) + 1000
        xyz = self.rng.uniform(0, 10_000, (n_nodes, 3))
        nodes = self.write(f"{folder}/{volume}.nodes.bson", bsonio.encode(
            {"id": ("int", ids), "neuron_id": ("int", neuron), "x": ("double", xyz[:, 0]),
             "y": ("double", xyz[:, 1]), "z": ("double", xyz[:, 2])}, self.oids(n_nodes)))
        same = neuron[1:] == neuron[:-1]
        u, v = ids[:-1][same], ids[1:][same]
        a, b = endpoint_names
        edges = self.write(f"{folder}/{volume}.edges.bson", bsonio.encode(
            {a: ("int", u), b: ("int", v)}, self.oids(len(u))))
        return nodes, edges, len(u)


@pytest.fixture
def dumps(tmp_path) -> Dumps:
    """Writes synthetic dumps into this test's tmp folder (``dumps.rag()``, ``dumps.write()``…)."""
    return Dumps(tmp_path / "dumps", seed=zlib.crc32(tmp_path.name.encode()))


# ---------------------------------------------------------------------------------------------
# mongomock


_mock_counter = itertools.count()


@pytest.fixture
def mock_uri():
    """A fresh in-process mongomock store (``mongomock://…``) for this test."""
    uri = f"mongomock://test-{next(_mock_counter)}-{uuid.uuid4().hex[:8]}"
    yield uri
    store_mod._mock_clients.pop(uri, None)


# ---------------------------------------------------------------------------------------------
# SecantusDB: a real MongoDB wire-protocol server


@dataclass
class Server:
    uri: str
    host: str
    port: int
    stop: object = field(repr=False, default=None)

    def client(self, **kw):
        import pymongo

        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=10_000, **kw)


def _wait_for_ping(uri: str, seconds: float, proc=None) -> bool:
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
        if not _wait_for_ping(uri, 60, proc):
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


# ---------------------------------------------------------------------------------------------
# S3: moto's real HTTP server


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


# ---------------------------------------------------------------------------------------------
# the mongo shell


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
    p = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "mongosh"],
                       capture_output=True, text=True, timeout=600)
    found = _find_mongosh()
    if p.returncode != 0 or not found:
        unavailable(f"npm install mongosh failed: {p.stderr.strip().splitlines()[-1:] or p.returncode}")
    return found


# ---------------------------------------------------------------------------------------------
# a TCP proxy that can cut connections (the server "going away" mid-load)


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
            except (socket.timeout, OSError):
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
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
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


# ---------------------------------------------------------------------------------------------
# a reference segmentation


def reference_segments(rag_dir: Path, edges: str, t: float, roi=None) -> dict[int, int]:
    """Fragment → smallest fragment id of its connected component over the edges with a float32
    score <= float32(t), by networkx straight from the dump files (optionally only the nodes in
    ``roi`` and the edges between them)."""
    import bson
    import networkx as nx

    nodes = bson.decode_all((rag_dir / "nodes.bson").read_bytes())
    docs = bson.decode_all((rag_dir / f"{edges}.bson").read_bytes())
    if roi is not None:
        nodes = [n for n in nodes if roi.contains(np.array([[n["center_z"], n["center_y"], n["center_x"]]]))[0]]
    ids = {n["id"] for n in nodes}
    g = nx.Graph()
    g.add_nodes_from(ids)
    g.add_edges_from((e["u"], e["v"]) for e in docs if e["u"] in ids and e["v"] in ids
                     and e["merge_score"] is not None and np.float32(e["merge_score"]) <= np.float32(t))
    return {f: min(c) for c in nx.connected_components(g) for f in c}

"""Shared test fixtures: environment hygiene, the CLI in a subprocess, a fresh in-process store
per test; real servers come from :mod:`servers`, synthetic dumps from :mod:`dumpdata`."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
import zlib
from dataclasses import dataclass

import pytest

from lsdgraph._stores import mongo as store_mod

from dumpdata import Dumps, Synthetic
from servers import REPO, mongosh, s3, s3_server, secantus, server_db, tcp_proxy  # noqa: F401  (fixtures)

# environment variables that would change which MongoDB / AWS account a test talks to
_ENV_NOISE = ("LSDGRAPH_MONGO_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


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


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Synthetic:
    """``synthetic("hemi", "tiny", seed=3)``: a dataset in the bucket's layout, made once per session."""
    return Synthetic(tmp_path_factory.mktemp("synthetic"))


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
    store_mod.connect(uri)  # made in this process, as a script would (the CLI refuses a fresh one)
    yield uri
    store_mod._mock_clients.pop(uri, None)




# ---------------------------------------------------------------------------------------------
# one suite over every store


STORES = [pytest.param("mongomock", id="mongomock"), pytest.param("local", id="local"),
          pytest.param("secantus", id="secantus", marks=pytest.mark.server)]


@pytest.fixture(scope="module", params=STORES)
def store_uri(request, tmp_path_factory):
    """A fresh store of each kind for the module: ``mongomock://…``, a local store folder, a
    SecantusDB server (a real wire-protocol server). Tests taking it run once per store."""
    if request.param == "mongomock":
        uri = f"mongomock://module-{next(_mock_counter)}-{uuid.uuid4().hex[:8]}"
        yield uri
        store_mod._mock_clients.pop(uri, None)
    elif request.param == "local":
        yield str(tmp_path_factory.mktemp("local-store") / "store")
    else:
        yield request.getfixturevalue("secantus").uri

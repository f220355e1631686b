"""A SecantusDB daemon on 127.0.0.1 for the benchmarks (the same server for lsdgraph and its baseline)."""
from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_secantus(storage: Path) -> tuple[subprocess.Popen, str]:
    """Start ``secantusd-py`` on a free port with data in ``storage``; returns (process, URI)."""
    exe = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    port = free_port()
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
                             "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    uri = f"mongodb://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=500) as c:
                c.admin.command("ping")
            return proc, uri
        except pymongo.errors.PyMongoError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"SecantusDB did not start on port {port}")


@contextlib.contextmanager
def secantus(storage: Path):
    """The server for the duration of a ``with`` block (its URI), stopped cleanly after."""
    proc, uri = start_secantus(storage)
    try:
        yield uri
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

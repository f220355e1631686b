"""In-process faults for ingest tests: a process killed at a chosen batch."""
from __future__ import annotations

from lsdgraph._stores import mongo as store_mod


class Killed(BaseException):
    """Stands for SIGKILL: nothing in lsdgraph catches it."""


def kill_after(monkeypatch, batches: int, when: str = "before") -> None:
    """Make the (batches+1)-th batch insert stop the process: before it reaches the server, or
    after the server stored it but before progress was recorded."""
    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def insert_docs(self, coll, docs, what):
        calls["n"] += 1
        if calls["n"] > batches:
            if when == "after":
                real(self, coll, docs, what)
            raise Killed()
        return real(self, coll, docs, what)

    monkeypatch.setattr(store_mod.Store, "insert_docs", insert_docs)


def _exit_worker_after(batches: int, marker: str) -> None:
    """In a worker process (its initializer): once this process has stored ``batches + 1``
    batches, the first worker to get there exits at once (``os._exit``: no lease given back, the
    last batch stored but not recorded), as a SIGKILL would leave it; later workers carry on."""
    import os

    real = store_mod.Store.insert_docs
    calls = {"n": 0}

    def insert_docs(self, coll, docs, what):
        res = real(self, coll, docs, what)
        calls["n"] += 1
        if calls["n"] > batches:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return res
            os.close(fd)
            os._exit(9)
        return res

    store_mod.Store.insert_docs = insert_docs


def kill_a_worker_after(monkeypatch, batches: int, marker) -> None:
    """Make one worker process of a parallel ingest exit hard after ``batches`` batches of its own
    (``marker``: a path that must not exist yet; it is created when the worker goes)."""
    from lsdgraph._ingest import parallel

    monkeypatch.setattr(parallel, "WORKER_INIT", (_exit_worker_after, (batches, str(marker))))

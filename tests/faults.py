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

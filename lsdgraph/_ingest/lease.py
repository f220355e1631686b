"""One owner per load: a lease in the collection's ``lsdgraph_meta`` record, taken atomically.

The lease names its owner (a random token), host and pid, and carries a heartbeat the owner
refreshes while it works. Another ingest of the same collection waits while the heartbeat is fresh
and may take over once it has stopped for ``stale`` seconds (a killed process, a lost machine).
Every write the owner makes to the record is conditional on still holding the lease, so a process
that was frozen past its lease and wakes up finds out at its next write and stops without
touching what the new owner does.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pymongo import ReturnDocument
from pymongo import errors as perr

from lsdgraph._core import schema
from lsdgraph._core.errors import LsdgraphError, redact_record
from lsdgraph._stores.mongo import Store

if TYPE_CHECKING:
    from lsdgraph._stores.mongo import Db

STALE_SECONDS = float(os.environ.get("LSDGRAPH_LEASE_SECONDS", "60"))


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _aware(t: _dt.datetime) -> _dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)  # pymongo returns naive UTC


class LeaseLost(LsdgraphError):
    """Another process took the load over after this one's heartbeat stopped."""


@dataclass
class Holder:
    """Who holds a lease, as stored in the record."""

    owner: str
    host: str
    pid: int
    heartbeat: _dt.datetime

    @classmethod
    def of(cls, rec: dict | None) -> Holder | None:
        lease = (rec or {}).get("lease")
        if not lease:
            return None
        return cls(lease["owner"], lease.get("host", "?"), int(lease.get("pid", 0)), _aware(lease["heartbeat"]))

    def age(self) -> float:
        return max((now() - self.heartbeat).total_seconds(), 0.0)

    def alive(self, stale: float = STALE_SECONDS) -> bool:
        return self.age() < stale

    def who(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass
class Lease:
    """A held lease on ``db[META][collection]``; :meth:`write` updates the record only while held."""

    store: Store
    db: Db
    collection: str
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    interval: float = STALE_SECONDS / 4
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    lost: bool = False

    @property
    def meta(self):
        return self.db[schema.META]

    def mine(self) -> dict:
        return {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": now()}

    def try_take(self, stale: float = STALE_SECONDS) -> tuple[dict | None, Holder | None]:
        """(the record, now ours) or (None, the live holder)."""
        cutoff = now() - _dt.timedelta(seconds=stale)
        free = {"_id": self.collection, "$or": [{"lease": None}, {"lease.owner": self.owner},
                                                 {"lease.heartbeat": {"$lt": cutoff}}]}

        def take():
            try:
                return self.meta.find_one_and_update(free, {"$set": {"lease": self.mine()}}, upsert=True,
                                                     return_document=ReturnDocument.AFTER)
            except perr.DuplicateKeyError:  # the record exists and someone else holds it
                return None

        rec = self.store.retry(take, f"{self.db.name}.{self.collection}: taking the load lease")
        if rec is not None:
            return rec, None
        held = self.store.retry(lambda: self.meta.find_one({"_id": self.collection}),
                                f"{self.db.name}.{self.collection}: reading the load lease")
        return None, Holder.of(held)

    def take_from(self, holder: Holder) -> None:
        """Take the lease from ``holder`` if it still holds it (its process is known to be dead)."""
        self.store.retry(lambda: self.meta.update_one({"_id": self.collection, "lease.owner": holder.owner},
                                                      {"$set": {"lease": self.mine()}}),
                         f"{self.db.name}.{self.collection}: taking over the load lease")

    def write(self, update: dict, what: str) -> None:
        """Apply ``update`` to the record if this lease still holds it, else :class:`LeaseLost`."""
        update = redact_record(update)  # sources and errors may carry URLs with credentials
        if self.store.mock:
            update = _with_heartbeat(update)  # no heartbeat thread in-process: beat on each write
        r = self.store.retry(lambda: self.meta.update_one({"_id": self.collection, "lease.owner": self.owner},
                                                          update), what)
        if r.matched_count == 0:
            self.lost = True
            rec = self.meta.find_one({"_id": self.collection})
            holder = Holder.of(rec)
            by = f" by {holder.who()}" if holder else ""
            raise LeaseLost(f"{self.db.name}.{self.collection}: the load was taken over{by} after this "
                            "process stopped sending heartbeats; this run stops here and leaves it alone")

    def check(self, what: str) -> None:
        """Fail with :class:`LeaseLost` unless still held (before a drop or a rename)."""
        self.write({"$set": {"lease.heartbeat": now()}}, what)

    def start_heartbeat(self) -> None:
        """Refresh the heartbeat from a thread while long server steps run (index builds take
        minutes on real data). mongomock is one process and not thread-safe: it beats on writes."""
        if self.store.mock or self._thread is not None:
            return

        def beat():
            while not self._stop.wait(self.interval):
                try:
                    r = self.meta.update_one({"_id": self.collection, "lease.owner": self.owner},
                                             {"$set": {"lease.heartbeat": now()}})
                    if r.matched_count == 0:
                        self.lost = True
                        return
                except perr.PyMongoError:
                    pass  # the main thread meets the same outage and reports it

        self._thread = threading.Thread(target=beat, name=f"lease-{self.collection}", daemon=True)
        self._thread.start()

    def release(self, update: dict | None = None) -> None:
        """Give the lease up, applying ``update`` in the same write. Best effort when the server is
        gone: the heartbeat stops, so the lease goes stale and the next run takes it over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        upd = redact_record(dict(update or {}))
        upd["$unset"] = {**upd.get("$unset", {}), "lease": ""}
        with contextlib.suppress(perr.PyMongoError):
            self.meta.update_one({"_id": self.collection, "lease.owner": self.owner}, upd)


def _with_heartbeat(update: dict) -> dict:
    out = {k: dict(v) for k, v in update.items()}
    sets = out.setdefault("$set", {})
    if "lease" not in sets:
        sets["lease.heartbeat"] = now()
    return out


def state(rec: dict | None, stale: float = STALE_SECONDS) -> tuple[str | None, str | None]:
    """How a load stands, for ``info``: (``complete`` | ``failed`` | ``loading`` (live) | ``dead``,
    a line of detail or None)."""
    rec = rec or {}
    status = rec.get("status")
    if status in (None, "complete"):
        return status, None
    if status == "failed":
        return "failed", rec.get("error")
    holder = Holder.of(rec)
    done = f"{rec.get('bytes_loaded') or 0:,} of {rec.get('size') or 0:,} bytes"
    if holder is not None and holder.alive(stale) and (holder.host != socket.gethostname() or _pid_alive(holder.pid)):
        return "loading", f"live: {holder.who()}, heartbeat {holder.age():.0f} s ago, {done}"
    since = f"no heartbeat for {holder.age():.0f} s from {holder.who()}" if holder else "no process holds it"
    return "dead", f"stopped at {done} ({since}); rerun the same ingest to resume"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def acquire(store: Store, db: Db, collection: str, *, wait: float | None = None, say: Callable[[str], None],
            stale: float = STALE_SECONDS, poll: float = 1.0) -> tuple[Lease, dict]:
    """Take the lease on ``collection``'s load, waiting up to ``wait`` seconds (None: as long as
    the holder is alive) for a live holder. Returns the lease and the record as it now is."""
    lease = Lease(store, db, collection, interval=max(stale / 4, 0.2))
    deadline = None if wait is None else time.monotonic() + wait
    told = None
    while True:
        rec, holder = lease.try_take(stale)
        if rec is not None:
            lease.start_heartbeat()
            return lease, rec
        if holder is None:  # released between our two reads: try again at once
            continue
        if holder.host == socket.gethostname() and not _pid_alive(holder.pid):
            # its process is gone (killed): no need to wait for the heartbeat to go stale
            lease.take_from(holder)
            continue
        if deadline is not None and time.monotonic() >= deadline:
            waited = "" if not wait else f" after waiting {wait:g} s"
            raise LsdgraphError(f"{db.name}.{collection} is being loaded by {holder.who()} (heartbeat "
                                f"{holder.age():.0f} s ago){waited}; rerun when it is done, or pass a "
                                "longer wait=")
        if told != holder.owner:
            say(f"{'waiting':<15} {collection:<28} for the load by {holder.who()} "
                f"(heartbeat {holder.age():.0f} s ago; wait=0 fails at once)")
            told = holder.owner
        time.sleep(poll if deadline is None else max(min(poll, deadline - time.monotonic()), 0.01))

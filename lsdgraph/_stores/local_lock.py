"""Locks of the local store, both ``fcntl.flock`` on small files (the OS drops them when their
process dies, so a killed writer never leaves a lock behind):

- :class:`CollectionLock` — exclusive, one writer per collection
  (``ROOT/<db>/.locks/<collection>.lock``). The holder writes ``{pid, host, started}`` into the
  file, so a second process that finds it taken names who holds it. Re-entrant within one
  thread (a writer inside ``with store.lock(...)``); another thread of the same process waits like
  another process. Lock files are never deleted while the database exists: deleting one that a
  waiter has open would let two processes hold "the" lock on two different files.
- :func:`pin_version` — shared, held by a reader on the version folder it scans
  (``<version>/.readers``), so the clean-up of retired versions (which takes it exclusively, without
  waiting) never deletes a version under a running scan.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lsdgraph._core.errors import LsdgraphError

READERS = ".readers"  # the reader-lock file inside each version folder (hidden from Parquet readers)


class LockHeld(LsdgraphError):
    """Another process (or thread) holds the collection lock and ``wait`` ran out."""


@dataclass
class _Held:
    fd: int
    thread: int
    depth: int


_held: dict[str, _Held] = {}
_table = threading.Lock()


def _forget_after_fork() -> None:
    # a forked child inherits the descriptors but not the lock ownership (flock locks belong to the
    # parent's open file description): it must take a lock itself, not think it holds one
    for held in _held.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, from the JSON its holder wrote."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process (it has not written its pid yet)"
    return f"pid {info['pid']} on {info.get('host', '?')} (since {info.get('started', '?')})"


class CollectionLock:
    """``with CollectionLock(path, what, wait):`` — the exclusive lock of one collection.

    ``wait=None`` waits as long as it takes, ``0`` fails at once, ``s > 0`` fails after ``s``
    seconds; the failure (:class:`LockHeld`) names the holder's pid and host."""

    def __init__(self, path: Path, what: str, wait: float | None = None):
        self.path, self.what, self.wait = Path(path), what, wait
        self._key = os.path.abspath(self.path)
        self._mine = False

    def __enter__(self) -> CollectionLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if self._mine:
            raise LsdgraphError(f"{self.what}: this lock object is already held; use a new store.lock(...)")
        deadline = None if self.wait is None else time.monotonic() + max(self.wait, 0.0)
        delay = 0.02
        while not self._try():
            if deadline is not None and time.monotonic() >= deadline:
                waited = "" if not self.wait else f" after waiting {self.wait:g} s"
                raise LockHeld(f"{self.what} is being written by {holder(self.path)}{waited} (lock {self.path}); "
                               "wait for it to finish, or pass a longer wait (wait=None waits as long as it takes)")
            time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)
        self._mine = True

    def _try(self) -> bool:
        me = threading.get_ident()
        with _table:
            held = _held.get(self._key)
            if held is not None:
                if held.thread != me:
                    return False  # another thread of this process: wait like another process
                held.depth += 1
                return True
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise LsdgraphError(f"{self.what}: cannot lock {self.path} ({e.strerror}); "
                                    "the store needs a local filesystem with flock") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the file was deleted (its database dropped) while we waited: lock the new one
                os.close(fd)
                return False
            started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
            _held[self._key] = _Held(fd, me, 1)
            return True

    def release(self) -> None:
        if not self._mine:
            return
        self._mine = False
        with _table:
            held = _held.get(self._key)
            if held is None:
                return  # forgotten in a forked child
            held.depth -= 1
            if held.depth:
                return
            del _held[self._key]
            with contextlib.suppress(OSError):
                os.ftruncate(held.fd, 0)
            os.close(held.fd)  # closing the last descriptor releases the flock


@contextlib.contextmanager
def pin_version(link: Path, what: str) -> Iterator[Path]:
    """Resolve the symlink ``link`` once and hold a shared lock on the version it names, so that
    version stays on disk while the caller reads it; yields the version folder. A version removed
    between resolving and locking (it was just retired) is skipped by resolving again."""
    for _ in range(20):
        target = Path(os.path.realpath(link))
        if not os.path.isdir(target):
            if os.path.realpath(link) != str(target):
                continue  # republished meanwhile
            raise LsdgraphError(f"{what}: {link} points to a missing version {target}; re-ingest the collection")
        try:
            fd = os.open(target / READERS, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if os.path.realpath(link) == str(target):  # not a race: the version has no reader file
                raise LsdgraphError(f"{what}: {target} is not a complete version (no {READERS}); "
                                    "re-ingest the collection") from None
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if (target / READERS).exists():
                yield target
                return
        finally:
            os.close(fd)
    raise LsdgraphError(f"{what}: {link} kept changing while it was opened; retry the read")


def try_retire(version: Path) -> bool:
    """Delete a version folder unless a reader holds it; True when it is gone."""
    import shutil

    try:
        fd = os.open(version / READERS, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        shutil.rmtree(version, ignore_errors=True)  # never completed (a crash before publishing)
        return not version.exists()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a reader is scanning it: a later clean-up removes it
        shutil.rmtree(version, ignore_errors=True)
        return not version.exists()
    finally:
        os.close(fd)

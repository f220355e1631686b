"""Output paths checked before any work starts: a run never computes for minutes and then fails
to write its result."""
from __future__ import annotations

import os
from pathlib import Path

from lsdgraph._core.errors import LsdgraphError


def output_file(path: str | os.PathLike, param: str = "out") -> Path:
    """``path`` when a file can be written there: its folder exists and is writable, and it is not
    a folder itself."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise LsdgraphError(f"{param}={str(path)!r} is a folder; give a file name inside it")
    parent = p.parent
    if not parent.is_dir():
        raise LsdgraphError(f"{param}={str(path)!r}: folder {str(parent)!r} does not exist; create it or choose "
                            "another path")
    _writable(parent, path, param)
    return p


def output_folder(path: str | os.PathLike, param: str = "out", *, create: bool = True) -> Path:
    """``path`` as a writable folder, created (with its parents) when missing; ``create=False``
    only checks that it could be, so a run that stops on bad input leaves nothing behind."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise LsdgraphError(f"{param}={str(path)!r} is a file; give a folder")
    if not create:
        existing = next(a for a in (p, *p.parents) if a.exists() or a == a.parent)
        if not existing.is_dir():
            raise LsdgraphError(f"{param}={str(path)!r}: cannot create the folder ({str(existing)!r} is a file); "
                                "choose another path")
        _writable(existing, path, param)
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LsdgraphError(f"{param}={str(path)!r}: cannot create the folder ({e.strerror}); choose another "
                            "path") from None
    _writable(p, path, param)
    return p


def _writable(folder: Path, path: str | os.PathLike, param: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LsdgraphError(f"{param}={str(path)!r}: folder {str(folder)!r} is not writable; choose another path")

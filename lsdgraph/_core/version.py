"""The package version, from the installed metadata (pyproject.toml is its one home)."""
from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("lsdgraph")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "0+unknown"

"""``lsdgraph`` command line: a thin face over the Python API. Every user error is one line on
stderr and exit status 1 (2 for usage errors); no tracebacks."""
from __future__ import annotations

import argparse
import os
import re
import sys

from lsdgraph._cli import batch, explore, load, scripts, shard, view
from lsdgraph._cli.common import flag_names, speak_flags
from lsdgraph._core.errors import LsdgraphError, redact
from lsdgraph._core.version import VERSION

DESCRIPTION = """\
Load the LSD benchmark's region adjacency graphs and skeletons (.bson dumps, from disk or S3) into
MongoDB or a local store, query them by ROI and merge threshold, agglomerate at many thresholds,
score each threshold against the skeletons, and look at the result.

Start with `lsdgraph demo` (no server needed), then `lsdgraph COMMAND -h` for each step.
The store is --db: a MongoDB URI (mongodb://host:port) or a folder (./lsdgraph-data) for the local
store; $LSDGRAPH_MONGO_URI sets the default."""

EXAMPLES = """\
examples:
  lsdgraph demo
  lsdgraph ls s3://open-neurodata/funke/hemi/testing/segmentations/data.zarr/rags/ACLSD/
  lsdgraph ingest ./hemi_affs_from_lsd_200k_roi_1 --db ./lsdgraph-data --name hemi_roi1
  lsdgraph query --db ./lsdgraph-data --name hemi_roi1 --roi 0,0,0:4000,4000,4000 --max-score 0.5
  lsdgraph segment --db ./lsdgraph-data --name hemi_roi1 --out ./seg
  lsdgraph evaluate --db ./lsdgraph-data --name hemi_roi1 --fragments ./fragments --out ./eval"""

# options whose value may start with "-" (a box below the origin): argparse would read it as a flag
_SIGNED_VALUES = ("--roi",)
_SIGNED = re.compile(r"-\d|-\.\d|-inf")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lsdgraph", description=DESCRIPTION, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"lsdgraph {VERSION}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (load, explore, batch, view, scripts, shard):
        group.register(sub)
    return p


def _glue_signed(argv: list[str]) -> list[str]:
    """``--roi -100,0,0:…`` → ``--roi=-100,0,0:…``."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in _SIGNED_VALUES:
            nxt = next(it, None)
            if nxt is not None and _SIGNED.match(nxt):
                out.append(f"{arg}={nxt}")
                continue
            out.append(arg)
            if nxt is not None:
                out.append(nxt)
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_signed(sys.argv[1:] if argv is None else list(argv)))
    flags = flag_names(args.command_parser)
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"lsdgraph {args.command}: warning: {speak_flags(redact(str(message)), flags)}", file=sys.stderr)

    warnings.showwarning = one_line
    try:
        return args.func(args) or 0
    except LsdgraphError as e:
        print(f"lsdgraph {args.command}: error: {speak_flags(str(e), flags)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lsdgraph {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug, not bad input: still one line, secrets redacted
        if os.environ.get("LSDGRAPH_DEBUG"):
            raise
        print(f"lsdgraph {args.command}: internal error: {redact(f'{type(e).__name__}: {e}')} "
              "(please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

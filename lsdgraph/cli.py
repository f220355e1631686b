"""``lsdgraph`` command line: a thin face over the Python API. Every user error is one line on
stderr and exit status 1 (2 for usage errors); no tracebacks."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import LsdgraphError, redact


def _db_args(p: argparse.ArgumentParser, name_required: bool = False) -> None:
    p.add_argument("--db", default=None, metavar="URI",
                   help="MongoDB URI (default: $LSDGRAPH_MONGO_URI, else mongodb://localhost:27017); "
                        "mongomock:// is an in-process store")
    p.add_argument("--name", required=name_required, default=None, help="database name")


def _s3_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, help="AWS profile (default: anonymous unless AWS credentials "
                                                   "are set in the environment)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")


def cmd_ingest(a) -> int:
    from .ingest import ingest

    ingest(a.source, db=a.db, name=a.name, on_duplicate=a.on_duplicate, drop=a.drop, quiet=a.quiet,
           profile=a.profile, endpoint_url=a.endpoint_url, batch_docs=a.batch_docs)
    return 0


def cmd_ls(a) -> int:
    from .listing import listing

    for line in listing(a.source, depth=a.depth, profile=a.profile, endpoint_url=a.endpoint_url,
                        all_files=a.all):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lsdgraph", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ingest", help="load .bson dumps (file, folder or s3://bucket/prefix) into MongoDB")
    s.add_argument("source", help="a .bson file, a folder (every .bson below it) or s3://bucket/prefix")
    _db_args(s)
    _s3_args(s)
    s.add_argument("--on-duplicate", choices=("error", "skip"), default="error",
                   help="documents sharing a node id / edge (u, v) with different content: fail "
                        "(default) or keep the first")
    s.add_argument("--drop", action="store_true", help="replace collections that already hold a load")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no per-file lines")
    s.add_argument("--batch-docs", type=int, default=20_000, help="documents per insert batch")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("ls", help="what is at s3://bucket/prefix (or a folder) and how big, per folder")
    s.add_argument("source")
    s.add_argument("--depth", type=int, default=1, help="folder levels to show below SOURCE (default 1)")
    s.add_argument("--all", action="store_true", help="list every file, not only folder totals")
    _s3_args(s)
    s.set_defaults(func=cmd_ls)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except LsdgraphError as e:
        print(f"lsdgraph {args.command}: error: {e}", file=sys.stderr)
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

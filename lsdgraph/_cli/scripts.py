"""``lsdgraph scripts``: where the mongo-shell scripts are (they ship inside the package) and how to
run them. Needs no server: it only reads the scripts' own header comments."""
from __future__ import annotations

import argparse
from pathlib import Path

from lsdgraph._cli.common import add_command
from lsdgraph._core.errors import LsdgraphError

FOLDER = Path(__file__).resolve().parent.parent / "queries"
LIBRARY = "lib.js"  # loaded by every script, not one to run

SUMMARY = "where the mongosh scripts are and how to run them (no server needed)"
DESCRIPTION = """
    The mongo-shell scripts run the same reads as the Python API against a MongoDB database
    (not the local store): ROI subgraphs, threshold statistics, skeletons, segments, a summary,
    and the indexes. They ship inside the package; this prints their folder (--path: only the
    folder), how to run one, and the list. mongosh: `npm install -g mongosh`, or MongoDB's
    download page (https://www.mongodb.com/try/download/shell)."""
EXAMPLES = """
    lsdgraph scripts
    Q=$(lsdgraph scripts --path); mongosh "mongodb://localhost:27017/hemi_roi1" --quiet --file "$Q/summary.js"
    mongosh "$URI/hemi_gt" --quiet --eval 'var neuronId = 3, pretty = true' \\
        --file "$(lsdgraph scripts --path)/skeleton.js\""""


def scripts(folder: Path = FOLDER) -> list[tuple[str, str]]:
    """(file name, what it does) of each script, from the first sentence of its header comment."""
    out = []
    for path in sorted(folder.glob("*.js")):
        if path.name == LIBRARY:
            continue
        out.append((path.name, first_sentence(path.read_text(encoding="utf-8"))))
    return out


def first_sentence(source: str) -> str:
    """The header comment's text up to its first full stop, colon, semicolon or dash, on one line."""
    words: list[str] = []
    for line in source.splitlines():
        if not line.startswith("//"):
            break
        text = line[2:].strip()
        if text.startswith("mongosh ") or text.startswith("Parameters:"):
            break
        words.append(text)
    text = " ".join(words)
    for stop in (" — ", ". ", ": ", "; "):
        text = text.split(stop, 1)[0]
    return text.rstrip(".:")


def usage(folder: Path = FOLDER) -> list[str]:
    """What ``lsdgraph scripts`` prints."""
    names = scripts(folder)
    width = max((len(n) for n, _ in names), default=0)
    return [
        str(folder),
        "",
        "run one with mongosh (npm install -g mongosh), parameters as globals in --eval:",
        f"  Q={folder}",
        "  URI=mongodb://localhost:27017   # the server's connection string; the database is its path",
        "  mongosh \"$URI/hemi_roi1\" --quiet --eval 'var roi = \"0,0,0:4000,4000,4000\", maxScore = 0.5' "
        "--file \"$Q/roi.js\"",
        "output: canonical Extended JSON (64-bit ids exact); add `pretty = true` to --eval for indented plain JSON.",
        "bad parameters and unknown ids: one line on stderr, exit 1; an empty result says why on stderr.",
        "each script's header lists its parameters. A local store (a folder) has no server: use lsdgraph query/info.",
        "",
        "scripts:",
        *(f"  {name.ljust(width)}  {what}" for name, what in names),
    ]


def run(a: argparse.Namespace) -> int:
    if not FOLDER.is_dir():  # a broken install
        raise LsdgraphError(f"{FOLDER} is missing: the install is broken; reinstall lsdgraph")
    lines = [str(FOLDER)] if getattr(a, "path", False) else usage()
    print("\n".join(lines))
    return 0


def register(sub) -> None:
    p = add_command(sub, "scripts", SUMMARY, DESCRIPTION, EXAMPLES, run)
    p.add_argument("--path", action="store_true", help="print only the folder (for Q=$(lsdgraph scripts --path))")

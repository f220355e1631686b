"""What every subcommand shares: the store and S3 options, the help layout, and the mapping from
the library's parameter names (``edges=``) to this command's flags (``--edges``)."""
from __future__ import annotations

import argparse
import re
import textwrap


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their lines; every option with a default says it, unless
    its help already does."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS) or action.option_strings == []
                or isinstance(action, argparse._HelpAction | argparse._VersionAction)):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def add_command(sub, name: str, summary: str, description: str, examples: str, func) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (for ``lsdgraph -h``), a description and examples."""
    p = sub.add_parser(name, help=summary, description=textwrap.dedent(description).strip(),
                       epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  "),
                       formatter_class=Formatter)
    p.set_defaults(func=func, command_parser=p)  # its flags name the library's parameters in errors
    return p


def db_args(p: argparse.ArgumentParser, name_required: bool = False) -> None:
    p.add_argument("--db", default=None, metavar="URI",
                   help="the store: a MongoDB URI (default: $LSDGRAPH_MONGO_URI, else mongodb://localhost:27017), "
                        "or a folder (file:PATH, ./PATH, /PATH) for the local store without a server")
    p.add_argument("--name", required=name_required, default=None, help="database name")


def s3_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, help="AWS profile (default: anonymous unless AWS credentials "
                                                   "are set in the environment)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")


def roi_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--roi", default=None, metavar="Z0,Y0,X0:Z1,Y1,X1", help=f"{help} (nm, half-open)")


def flag_names(p: argparse.ArgumentParser) -> dict[str, tuple[str, bool]]:
    """Python parameter (argparse dest) → (this command's flag, whether it is an on/off switch)."""
    return {a.dest: (a.option_strings[-1] if a.option_strings[-1].startswith("--") else a.option_strings[0],
                     isinstance(a, argparse._StoreTrueAction))
            for a in p._actions if a.option_strings and a.dest != "help"}


def speak_flags(message: str, flags: dict[str, tuple[str, bool]]) -> str:
    """Rewrite the library's ``param=value`` into ``--flag value`` (``drop=True`` into ``--drop``)
    for the parameters this command has as flags; anything else is left as it is."""
    if not flags:
        return message
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))

    def flag(m: re.Match) -> str:
        name, switch = flags[m.group(1)]
        if switch and m.group(2):
            return name
        if m.group(3):
            return f"{name} {m.group(3)}"
        after = m.string[m.end():m.end() + 1]
        return name if after in ("", " ", ",", ";", ")") else f"{name} "

    # a quoted plain value needs no quotes on a command line: --edges 'edges_x' → --edges edges_x
    return re.sub(rf"(?<![\w.-])({names})=(True\b)?(?:'([\w.:/+~-]+)')?", flag, message)

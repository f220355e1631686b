"""Help that teaches: every subcommand has a description, examples that parse, and help (with its
default) on every option; ``--version``; library errors speak Python and the CLI its flags."""
from __future__ import annotations

import argparse
import shlex

import pytest

from lsdgraph import cli
from lsdgraph._cli.common import flag_names, speak_flags
from lsdgraph._core.version import VERSION

PARSER = cli.build_parser()
COMMANDS = PARSER._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def examples(p: argparse.ArgumentParser) -> list[list[str]]:
    """The example command lines of a subcommand's epilog (continuation lines joined)."""
    text = (p.epilog or "").split("examples:", 1)[-1].replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in text.splitlines() if line.strip().startswith("lsdgraph ")]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_teaches(name):
    p = COMMANDS[name]
    assert p.description and len(p.description) > 60, name
    found = examples(p)
    assert found, f"{name}: no examples"
    for argv in found:
        assert argv[0] == name
        args = PARSER.parse_args(cli._glue_signed(argv))  # an example that does not parse teaches nothing
        assert args.command == name
    for action in p._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{name} {action.option_strings[0]}: no help"
    shown = "".join(p.format_help().split())  # help wraps lines (also at hyphens)
    for action in p._actions:  # a default that matters is said
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                and action.dest not in ("help", "command_parser", "func"):
            assert "".join(f"default: {action.default}".split()) in shown or "default" in (action.help or ""), \
                f"{name} {action.option_strings[0]}"


def test_version_and_the_top_level_description(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"lsdgraph {VERSION}"
    assert PARSER.description.rstrip().endswith(".") and "lsdgraph demo" in PARSER.description
    assert "examples:" in PARSER.epilog


def test_parameters_become_flags():
    flags = flag_names(COMMANDS["ingest"])
    assert speak_flags("pass drop=True to replace it, or another name=", flags) == \
        "pass --drop to replace it, or another --name"
    assert speak_flags("pass on_duplicate='skip' to keep one", flags) == "pass --on-duplicate skip to keep one"
    flags = flag_names(COMMANDS["segment"])
    assert speak_flags("db_luts='0.3;x': bad; edges='a b': no", flags) == "--db-luts '0.3;x': bad; --edges 'a b': no"
    assert speak_flags("read without max_score= or roi=", flag_names(COMMANDS["query"])) == \
        "read without --max-score or --roi"
    assert speak_flags("skeletons_name=DB", flag_names(COMMANDS["evaluate"])) == "--skeletons-name DB"
    assert speak_flags("unknown=1 stays", flags) == "unknown=1 stays"

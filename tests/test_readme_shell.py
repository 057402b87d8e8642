"""The README's shell examples are real: every `charlm ...` line in a ```sh block parses with the
command's own options (names, types, ranges), and every file it reads is shipped in `data/`,
written by an earlier example, or listed in the README's table of where the examples' data comes
from (issue 18). The training runs themselves are not repeated here: they take minutes; the
Python API examples run in tests/test_readme_api.py."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from charlm.cli import cli

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
READS = ("corpus", "val_file", "file", "prime_file", "model_path", "vocab", "run")  # parameters naming inputs
WRITES = ("output",)


def sh_commands() -> list[list[str]]:
    """The argument lists of the `charlm` commands of every ```sh block, in order."""
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():  # continuation lines joined
            words = shlex.split(line, comments=True)
            if "charlm" in words:
                out.append(words[words.index("charlm") + 1:])
    return out


def external_files() -> set[str]:
    """File names the README's "Data for the examples" table lists (first column, in backquotes)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| file |", text.index("### Data for the examples"))
    table = text[start:text.index("\n\n", start)]
    return {name for row in table.splitlines()[2:] for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


def test_the_readme_has_shell_examples_and_a_data_table():
    assert len(sh_commands()) >= 20
    assert {"ptb.train.txt", "reviews.tsv", "en_ewt-ud-train.conllu"} <= external_files()


def test_every_shell_example_parses_and_reads_files_that_exist_or_are_documented():
    external, written = external_files(), {"charlm.npz", "charlm.last.npz"}
    root = click.Context(cli, info_name="charlm")
    for args in sh_commands():
        name = args[0]
        assert name in cli.commands, f"README: no command {name!r} ({' '.join(args)})"
        try:
            ctx = cli.commands[name].make_context(name, list(args[1:]), parent=root)
        except click.ClickException as err:
            pytest.fail(f"README example `charlm {' '.join(args)}` does not parse: {err.format_message()}")
        for key in READS:
            value = ctx.params.get(key)
            if not isinstance(value, str) or value == "-":
                continue
            ok = (REPO / value).exists() or Path(value).name in written or value in external
            assert ok, f"README example `charlm {' '.join(args)}` reads {value}: not in data/, not written " \
                       "by an earlier example and not in the README's 'Data for the examples' table"
        for key in WRITES:
            if isinstance(ctx.params.get(key), str):
                written.add(Path(ctx.params[key]).name)
                written.add(Path(ctx.params[key]).name.replace(".npz", ".last.npz"))

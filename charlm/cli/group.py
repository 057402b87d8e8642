"""The `charlm` click group, and what its subcommands share: `--version`, `--debug`, the rule that
a user mistake is one line on stderr and a non-zero exit (never a traceback), and the line writers
(`fail`, `warn`, `json_line`). Each subcommand module (charlm/cli/*.py) registers itself on `cli`;
charlm/cli/__init__.py imports them all.
"""

from __future__ import annotations

import json
import sys

import click
import numpy as np

from charlm.engine import launch, parallel
from charlm.errors import CharlmError
from charlm.version import __version__


class CharlmGroup(click.Group):
    """A click group that turns every error into one clear line on stderr.

    Exit status: 2 for usage errors (click's own and `UsageError`), 1 for other user
    errors and internal errors, 130 for Ctrl-C. `--debug` re-raises to show a traceback.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command; click's own usage errors become one line too (exit 2)."""
        args = _debug_first(sys.argv[1:] if args is None else list(args))
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:  # `charlm` alone: the help, as click prints it
            err.show()
            sys.exit(err.exit_code)
        except click.UsageError as err:  # bad option, bad value, missing argument
            where = err.ctx.command_path if err.ctx is not None else "charlm"
            fail(f"{err.format_message()} (see `{where} --help`)", err.exit_code)
        except click.ClickException as err:
            fail(err.format_message(), err.exit_code)
        except click.exceptions.Abort:
            fail("aborted", 1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def resolve_command(self, ctx: click.Context, args):
        """Under mpiexec, a command that is not data-parallel runs on the first process alone:
        the others leave at once, and the first says so."""
        name, cmd, rest = super().resolve_command(ctx, args)
        size = launch.world_size() or 1
        if size > 1 and launch.launched() and name not in DATA_PARALLEL:
            if launch.rank() != 0:
                sys.exit(0)
            others = "the other process" if size == 2 else f"the other {size - 1} processes"
            click.echo(f"charlm: `charlm {name}` runs on one process ({others} started by mpiexec "
                       f"{'has' if size == 2 else 'have'} nothing to do; only "
                       f"{' and '.join(sorted(DATA_PARALLEL))} are data-parallel)", err=True)
        return name, cmd, rest

    def invoke(self, ctx: click.Context):
        try:
            # Overflow or NaN inside NumPy is detected and reported by charlm itself (a diverged
            # run, a corrupt model); NumPy's own RuntimeWarnings would only add noise lines.
            with np.errstate(all="ignore"):
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except CharlmError as err:
            if _debug(ctx):
                raise
            fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            fail("interrupted", 130)
        except BrokenPipeError:
            # `charlm sample | head`: the reader went away; that is not an error.
            sys.stderr.close()
            sys.exit(0)
        except (MemoryError, ValueError) as err:
            # numpy says "array is too big" (a ValueError) for sizes beyond the address space
            if _debug(ctx):
                raise
            if not (isinstance(err, MemoryError) or "array is too big" in str(err)):
                _internal_error(err)
            hint = _MEMORY_HINTS.get(ctx.invoked_subcommand or "", "smaller inputs")
            fail(f"out of memory: try {hint}", 1)
        except OSError as err:
            if _debug(ctx):
                raise
            where = f": {err.filename}" if getattr(err, "filename", None) else ""
            fail(f"{err.strerror or err}{where}", 1)
        except Exception as err:  # noqa: BLE001 - last line of defence: no tracebacks
            if _debug(ctx):
                raise
            _internal_error(err)


DATA_PARALLEL = {"train", "score"}  # the commands whose processes share the work under mpiexec


def _debug_first(args: list) -> list:
    """`--debug` is the group's option; given after the command name (`charlm train --debug ...`)
    it is moved in front, so it works in either place (not after a `--`)."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[1:end]:
        return args
    return ["--debug"] + [a for i, a in enumerate(args) if not (a == "--debug" and i < end)]


def _internal_error(err: BaseException) -> None:
    fail(f"internal error: {type(err).__name__}: {err} (run with --debug for a traceback)", 1)


_MEMORY_HINTS = {
    "train": "a smaller --batch-size, --hidden or --layers (or --seq-len for a language model, "
             "--max-length for a tagger or classifier)",
    "sample": "a smaller --length or --num",
    "score": "a smaller --batch-size or shorter sentences",
    "tokenize": "a smaller corpus or --max-vocab",
    "tag": "a smaller --batch-size or shorter sentences",
    "classify": "a smaller --batch-size or shorter texts",
    "eval": "a smaller --batch-size",
    "next": "a shorter PREFIX",
    "export": "a smaller model",
}


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug"))


def fail(message: str, code: int = 1) -> None:
    """Print `charlm: error: MESSAGE` on stderr and exit with `code`.

    Under mpiexec one process prints: rank 0 when every process failed alike; a process that
    failed alone prints with its rank and ends the whole job (the others would wait forever).
    """
    message = " ".join(str(message).split())  # always one line
    group = parallel.current()
    if group.size > 1 and not group.all_failed():
        click.echo(f"charlm: error: process {group.rank}: {message}", err=True)
        group.abort(code)
    if (group.rank if group.size > 1 else launch.rank()) == 0:
        click.echo(f"charlm: error: {message}", err=True)
    sys.exit(code)


def json_line(obj) -> str:
    """`obj` as one line of JSON, UTF-8 text as is. Strings with lone surrogates (arguments that
    were not UTF-8, or strings from Python) are written as \\u escapes, so the line stays valid."""
    text = json.dumps(obj, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj)
    return text


def warn(message: str) -> None:
    """Print `charlm: warning: MESSAGE` on stderr."""
    click.echo(f"charlm: warning: {message}", err=True)


@click.group(cls=CharlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="charlm")
@click.option("--debug", is_flag=True, help="Show a full traceback on errors.")
def cli(debug: bool) -> None:
    """Train, score and sample character- and word-level recurrent language models; train and
    run bidirectional taggers and classifiers.

    \b
    Typical use:
      charlm train corpus.txt              # writes charlm.npz
      charlm sample --temperature 0.8      # generate text from charlm.npz
      charlm score "The apple and pear salad" "The apple and pair salad"
      charlm train --task tag train.conll --val-file dev.conll -o ner.npz
      charlm tag -m ner.npz "He said, Teddy Roosevelt was a great President"
      charlm export -m ner.npz             # ner.onnx, for ONNX Runtime (charlm[export])

    Run `charlm COMMAND --help` for the options of each command.
    """


def main() -> None:
    """Console-script entry point."""
    # Arguments that are not valid UTF-8 reach Python as lone surrogates ("\udcff"); print
    # them back as the bytes they were instead of failing with UnicodeEncodeError.
    out = sys.stdout
    if getattr(out, "errors", None) == "strict" and hasattr(out, "reconfigure"):
        try:
            out.reconfigure(errors="surrogateescape")
        except (ValueError, OSError):  # pragma: no cover - an exotic stream
            pass
    cli(prog_name="charlm")

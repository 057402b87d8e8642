"""`charlm export`: a model as an ONNX file that runs outside charlm (the `export` extra)."""

from __future__ import annotations

import os

import click

from charlm.cli.group import cli
from charlm.cli.options import load_model, model_option
from charlm.errors import CharlmError


@cli.command("export")
@model_option
@click.option("-o", "--output", default=None, metavar="PATH",
              help="ONNX file to write [default: the model's name with .onnx].")
@click.option("--check/--no-check", default=None,
              help="Run the exported graph in ONNX Runtime on a sample of the model's vocabulary and print "
                   "its largest difference from charlm [default: on when onnxruntime is installed].")
@click.option("--force", is_flag=True,
              help="Replace an existing -o file that is not a charlm ONNX export (never the model itself).")
def export_command(model_path, output, check, force) -> None:
    """Write MODEL as a self-contained ONNX file (opset 17) for ONNX Runtime and other runtimes.

    A language model's graph reads token ids and the initial state and gives the logits of every
    step and the final state (to score a window, or to generate token by token); a tagger's or
    classifier's reads a padded batch of word ids, the sentence lengths and the characters of the
    distinct words, and gives the tag or label logits. The vocabulary, the tokenizer settings and
    the labels are in the file's metadata (JSON), so another program can tokenize as charlm does:
    see the README, "Using a model elsewhere". Needs onnx: pip install 'charlm[export]' (which also
    installs onnxruntime, for --check).

    \b
    Examples:
      charlm export -m dinos.npz                  # writes dinos.onnx, then checks it
      charlm export -m ner.npz -o ner.onnx --no-check
    """
    from charlm.export import check as checking
    from charlm.export import onnxfile
    from charlm.export.graph import onnx_module
    from charlm.files import ONNX, Output, check_outputs

    onnx_module()                                                    # the extra is there, or one line
    if check and not checking.available():
        raise CharlmError(checking.INSTALL_HINT)
    output = output or os.path.splitext(model_path)[0] + ".onnx"
    check_outputs([Output(output, ONNX, "-o/--output")], {"the model": model_path}, force=force)
    model = load_model(model_path, any_task=True)
    proto = onnxfile.export_model(model)
    if check is None:
        check = checking.available()
        if not check:
            click.echo(f"charlm: not checked: {checking.INSTALL_HINT}", err=True)
    if check:
        result = onnxfile.check(proto, model)
        click.echo(result.line())
        if not result.largest <= checking.TOLERANCE:
            raise CharlmError(f"the exported graph disagrees with charlm (largest difference {result.largest:.2e} "
                              f"> {checking.TOLERANCE:g}); nothing written (--no-check writes it anyway)")
    onnxfile.save(proto, output)
    size = os.path.getsize(output)
    click.echo(f"charlm: wrote {output} ({model.task}, {model.network.config.cell}, "
               f"{size / 2 ** 20:.1f} MB, opset {onnxfile.OPSET})", err=True)

"""`charlm plot`: training and validation curves of a run, as a PNG or SVG."""

from __future__ import annotations

import click

from charlm.cli.group import cli, warn
from charlm.cli.options import load_model


@cli.command("plot")
@click.argument("run_path", metavar="RUN", required=False)
@click.option("-o", "--output", default=None, metavar="PATH",
              help="Image to write; the format follows the extension (.png or .svg) "
                   "[default: curves.png, attention.png with --attention].")
@click.option("-m", "--model", "model_path", default=None, metavar="PATH",
              help="With --attention: the sequence-to-sequence model.")
@click.option("--attention", "source", default=None, metavar="SOURCE",
              help="Draw the attention of the model's output for SOURCE instead of curves: α<t,t'>, the "
                   "source tokens across, the output tokens down (needs -m MODEL).")
@click.option("--beam", type=int, default=4, show_default=True, metavar="K",
              help="With --attention: the beam width of the output drawn (1: greedy).")
@click.option("--size", default="1200x800", show_default=True, metavar="WIDTHxHEIGHT",
              help="Image size in pixels.")
@click.option("--level", type=click.Choice(["char", "word"]), default=None,
              help="The run's tokens, for the second loss scale: bits per character, or perplexity "
                   "for words [default: a NAME.last.npz says; bits per token for a metrics file].")
@click.option("--force", is_flag=True,
              help="Replace an existing -o file that is not a charlm plot (never the RUN itself).")
def plot_command(run_path, output, model_path, source, beam, size, level, force) -> None:
    """Plot the training and validation loss of RUN against step and wall-clock time (or, with
    -m MODEL --attention SOURCE, the attention of a sequence-to-sequence model's output).

    RUN is a file written by `charlm train --metrics PATH` (JSON lines; broken lines are skipped
    with a warning) or a run's NAME.last.npz (its metrics history). The loss is shown in nats
    and in bits per character (perplexity for a word-level model, bits per token when the level
    is not known), with the learning rate on a second axis and its decays marked. An existing
    image is replaced only if charlm drew it (or with --force). Needs matplotlib:
    pip install 'charlm[plot]'.

    \b
    Examples:
      charlm plot charlm.last.npz                    # writes curves.png
      charlm plot metrics.jsonl -o curves.svg
      charlm plot ptb-metrics.jsonl --level word     # perplexity beside the nats
      charlm plot ptb.last.npz -o ptb.png --size 1600x900
      charlm plot -m dates.npz --attention "the 29th of August 1958" -o attention.svg
    """
    from charlm import curves
    from charlm.files import PLOT, Output, check_outputs

    width, height = curves.parse_size(size)
    if source is not None or model_path is not None:
        if run_path is not None or source is None or model_path is None:
            raise click.UsageError("--attention SOURCE and -m MODEL go together, without RUN")
        output = output or "attention.png"
        curves.image_format(output)
        check_outputs([Output(output, PLOT, "-o/--output")], {"the model": model_path}, force=force)
        model = load_model(model_path, any_task=True)
        if not hasattr(type(model), "translate"):
            raise click.UsageError(f"--attention draws a sequence-to-sequence model's attention; {model_path} is "
                                   f"{model._task.noun} (task {model.task})")
        curves.plot_attention(model.translate(source, beam=beam)[0], output, width, height)
        click.echo(f"charlm: wrote {output}", err=True)
        return
    if run_path is None:
        raise click.UsageError("missing argument RUN (a metrics file or a NAME.last.npz), or give -m MODEL "
                               "--attention SOURCE")
    output = output or "curves.png"
    curves.image_format(output)
    check_outputs([Output(output, PLOT, "-o/--output")], {"the run": run_path}, force=force)
    run = curves.read_run(run_path)
    if level is not None:
        run.level = level
    if run.skipped:
        warn(f"skipped {run.skipped} broken line{'s' * (run.skipped != 1)} in {run_path}")
    if run.runs > 1:
        warn(f"{run_path} holds {run.runs} runs (the step starts again); plotting the last")
    curves.plot_run(run, output, width, height)
    click.echo(f"charlm: wrote {output} ({len(run.records)} evaluations)", err=True)

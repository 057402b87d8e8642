"""`charlm plot`: training and validation curves of a run, as a PNG or SVG."""

from __future__ import annotations

import click

from charlm.cli.group import cli, warn


@cli.command("plot")
@click.argument("run_path", metavar="RUN")
@click.option("-o", "--output", default="curves.png", show_default=True, metavar="PATH",
              help="Image to write; the format follows the extension (.png or .svg).")
@click.option("--size", default="1200x800", show_default=True, metavar="WIDTHxHEIGHT",
              help="Image size in pixels.")
@click.option("--level", type=click.Choice(["char", "word"]), default=None,
              help="The run's tokens, for the second loss scale: bits per character, or perplexity "
                   "for words [default: a NAME.last.npz says; bits per token for a metrics file].")
@click.option("--force", is_flag=True,
              help="Replace an existing -o file that is not a charlm plot (never the RUN itself).")
def plot_command(run_path, output, size, level, force) -> None:
    """Plot the training and validation loss of RUN against step and wall-clock time.

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
    """
    from charlm import curves
    from charlm.files import PLOT, Output, check_outputs

    width, height = curves.parse_size(size)
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

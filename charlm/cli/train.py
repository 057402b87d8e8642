"""`charlm train`: train a language model on a text file."""

from __future__ import annotations

import math
import sys

import click
from tqdm import tqdm

from charlm import parallel
from charlm.cli import cli, warn
from charlm.cli.options import cache_options, tokenizer_options, vocab_options
from charlm.cli.progress import ReadingBar
from charlm.nn.alloc import keep_freed_memory
from charlm.nn.cells import CELLS
from charlm.optim import DEFAULT_LR
from charlm.train import Reporter, TrainOptions, last_path, train

LN2 = math.log(2)


def _quality(loss: float | None, level: str) -> str:
    """Loss in the unit people quote: bits per character, or word perplexity."""
    if loss is None or not math.isfinite(loss):
        return "n/a"
    if level == "char":
        return f"{loss / LN2:.3f} bits/char"
    return f"perplexity {math.exp(min(loss, 700)):.2f}"


class BarReporter(Reporter):
    """A tqdm progress bar with loss, bits/char or perplexity, tokens/s and ETA."""

    def __init__(self, quiet: bool):
        self.level, self.quiet, self.bar = "char", quiet, None
        self.reading_bar = ReadingBar(quiet)

    def reading(self, done_bytes, total_bytes):
        self.reading_bar.update(done_bytes, total_bytes)

    def start(self, total_steps, done_steps, info):
        self.reading_bar.close()
        self.level = info["level"]  # the run's own unit, also when resumed without --level
        if self.quiet:
            return
        click.echo(
            f"charlm: {info['params']:,} parameters, vocabulary {info['vocab']:,}, "
            f"{info['train_tokens']:,} training and {info['val_tokens']:,} validation tokens, "
            f"batch {info['batch']} x {info['seq_len']} steps, {info['steps_per_epoch']:,} steps/epoch",
            err=True,
        )
        if info.get("val_note"):
            click.echo(f"charlm: validation text: {info['val_note']}", err=True)
        self.bar = tqdm(total=total_steps, initial=done_steps, unit="step", dynamic_ncols=True,
                        file=sys.stderr, smoothing=0.1)

    def step(self, step, loss, lr, tokens_per_s):
        if self.bar is None:
            return
        self.bar.update(1)
        if step % 5 == 0 or step == 1:
            q = f"{loss / LN2:.3f}bpc" if self.level == "char" else f"ppl={math.exp(min(loss, 700)):.1f}"
            self.bar.set_postfix_str(f"loss={loss:.3f} {q} {tokens_per_s / 1000:.1f}k tok/s", refresh=False)

    def evaluate(self, record, improved):
        if self.quiet:
            return
        val = record["val_loss"]
        line = (f"step {record['step']:>6}  epoch {record['epoch']:.2f}  "
                f"train {record['train_loss'] if record['train_loss'] is not None else float('nan'):.4f}  "
                f"val {val if val is not None else float('nan'):.4f} ({_quality(val, self.level)})  "
                f"lr {record['lr']:.3g}" + ("  * saved" if improved else ""))
        (self.bar.write if self.bar is not None else click.echo)(line, file=sys.stderr)

    def message(self, text):
        self.reading_bar.close()
        if self.bar is not None:
            self.bar.write(f"charlm: {text}", file=sys.stderr)
        elif not self.quiet:
            warn(text)

    def note(self, text):
        self.reading_bar.close()
        if not self.quiet:
            (self.bar.write if self.bar is not None else click.echo)(f"charlm: {text}", file=sys.stderr)

    def close(self):
        self.reading_bar.close()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@cli.command("train")
@click.argument("corpus", metavar="CORPUS")
@click.option("-o", "--output", default="charlm.npz", show_default=True,
              help="Where to write the best model. The resumable state goes next to it (NAME.last.npz).")
@tokenizer_options
@vocab_options
@click.option("--vocab", type=click.Path(), default=None,
              help="Use a vocabulary made by `charlm tokenize --vocab-out` (its tokenizer settings win).")
@click.option("--cell", type=click.Choice(list(CELLS)), default="lstm", show_default=True)
@click.option("--layers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--hidden", type=click.IntRange(1, 8192), default=256, show_default=True, help="Units per layer.")
@click.option("--embedding", type=click.IntRange(1, 8192), default=64, show_default=True, help="Embedding size.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Inverted dropout between layers and before the output.")
@click.option("--tie-weights", is_flag=True, help="Share the embedding and output weights (needs --embedding = --hidden).")
@click.option("--activation", type=click.Choice(["tanh", "relu"]), default="tanh", show_default=True,
              help="Activation of the vanilla RNN cell.")
@click.option("--peephole", is_flag=True, help="LSTM peephole connections (c<t-1> feeds the gates).")
@click.option("--seq-len", type=click.IntRange(min=1, max=100000), default=100, show_default=True,
              help="Truncated-BPTT window, in tokens.")
@click.option("--batch-size", type=click.IntRange(min=1, max=100000), default=32, show_default=True,
              help="Parallel streams per step.")
@click.option("--accumulate", type=click.IntRange(min=1, max=100000), default=1, show_default=True, metavar="K",
              help="Update once per K batches, with their mean gradient (an effective batch K times "
                   "--batch-size; under mpiexec, one all-reduce per K batches).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adagrad", "rmsprop"]), default="adam", show_default=True)
@click.option("--lr", type=float, default=None,
              help="Learning rate [default: " + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + "].")
@click.option("--clip", type=float, default=5.0, show_default=True, help="Clip the global gradient norm (0: off).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps in all.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop cleanly when this much wall-clock time is spent.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of the corpus, from its end, held out for validation (at most --val-tokens).")
@click.option("--val-file", type=click.Path(), default=None, help="Validate on this file instead (all of it, "
              "unless --val-tokens is given).")
@click.option("--val-tokens", type=click.IntRange(min=0), default=None, metavar="N",
              help="At most N validation tokens: the last N of the corpus, or the first N of --val-file "
                   "(0: no limit) [default: 131072 from the corpus, a --val-file whole].")
@click.option("--eval-every", type=click.IntRange(min=1), default=200, show_default=True, metavar="STEPS")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many evaluations without improvement (the learning rate halves at each).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run saved next to --output.")
@click.option("--metrics", type=click.Path(dir_okay=False), default=None,
              help="Append one JSON line per evaluation to this file.")
@click.option("--force", is_flag=True,
              help="Replace an existing -o/--metrics file that is not a charlm file (never an input).")
@cache_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or evaluation lines.")
def train_command(corpus, resume, quiet, **flags):
    """Train a recurrent language model on CORPUS (a UTF-8 text file).

    \b
    Examples:
      charlm train data/tinyshakespeare.txt                  # char-level LSTM -> charlm.npz
      charlm train names.txt --mode lines --cell gru         # one name per line
      charlm train ptb.train.txt --level word --split whitespace --val-file ptb.valid.txt
      charlm train corpus.txt --time-limit 600               # stop after ten minutes
      charlm train corpus.txt --resume                       # continue an interrupted run
      charlm train big.txt --cache-dir ~/.cache/charlm       # keep the token cache there
      charlm train big.txt --val-tokens 1000000              # a larger validation text

    A corpus of 16 MB or more is tokenized once into a token cache (NAME-KEY.tokens.npy and
    .json, next to the model or in --cache-dir); later runs, --resume and `charlm score
    --file --stream` map it instead of reading the corpus again. Training reads its windows
    from the memory-mapped ids, so memory does not grow with the corpus.
    The best model by validation loss is written to --output; `charlm sample` and
    `charlm score` read charlm.npz by default. Ctrl-C saves and tells you how to resume.

    \b
    On several processes or machines (`pip install 'charlm[mpi]'`), one model, data-parallel:
      mpiexec -n 4 charlm train corpus.txt --batch-size 64   # 16 of the 64 streams each
      mpiexec -n 4 charlm train corpus.txt --batch-size 64 --resume
    """
    comm = parallel.world()
    if comm.size > 1 and comm.rank == 0 and not quiet:
        click.echo(f"charlm: data-parallel over {comm.size} processes", err=True)
    keep_freed_memory()  # every step allocates the same large arrays: reuse them (nn/alloc.py)
    opts = TrainOptions.from_flags(corpus=corpus, **flags)
    summary = train(opts, resume=resume, reporter=BarReporter(quiet) if comm.rank == 0 else Reporter(),
                    comm=comm)
    where = f"best model (step {summary['best_step']}) in {summary['output']}; resumable state in {summary['last']}"
    if summary["interrupted"]:
        if comm.rank == 0:
            launcher = f"mpiexec -n {comm.size} " if comm.size > 1 else ""
            click.echo(f"charlm: {summary['reason']} at step {summary['step']}; saved. {where}", err=True)
            click.echo(f"charlm: resume with: {launcher}charlm train {corpus} -o {opts.output} --resume", err=True)
        sys.exit(130 if summary["interrupted"] == "SIGINT" else 143)
    if not quiet and comm.rank == 0:
        click.echo(
            f"charlm: {summary['reason']} after {summary['step']} steps in {summary['elapsed']:.0f} s; "
            f"best validation loss {summary['best_val_loss'] if summary['best_val_loss'] is not None else float('nan'):.4f} "
            f"({_quality(summary['best_val_loss'], summary['level'])}); {where}",
            err=True,
        )

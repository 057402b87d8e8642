"""`charlm train`: train a language model, a tagger or a classifier on a text file."""

from __future__ import annotations

import math
import sys

import click
from click.core import ParameterSource
from tqdm import tqdm

from charlm import parallel
from charlm.cli import cli, warn
from charlm.cli.options import cache_options, tokenizer_options, vocab_options
from charlm.cli.progress import ReadingBar
from charlm.nn.alloc import keep_freed_memory
from charlm.nn.cells import CELLS
from charlm.nn.regularize import DROPOUT_KINDS
from charlm.optim import DEFAULT_LR
from charlm.tagdata import LABEL_FORMATS, TAG_FORMATS
from charlm.train import TASKS, Reporter, TrainOptions, last_path, resumed_task, train

LN2 = math.log(2)


def _task_quality(record: dict | None) -> str:
    """A tagger's or classifier's validation figures: accuracy, and F1 when there is one."""
    if not record or record.get("val_accuracy") is None:
        return "n/a"
    text = f"accuracy {100 * record['val_accuracy']:.2f}%"
    return text + (f", F1 {100 * record['val_f1']:.2f}" if record.get("val_f1") is not None else "")


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
        self.level, self.quiet, self.bar, self.task = "char", quiet, None, "lm"
        self.reading_bar = ReadingBar(quiet)

    def reading(self, done_bytes, total_bytes):
        self.reading_bar.update(done_bytes, total_bytes)

    def start(self, total_steps, done_steps, info):
        self.reading_bar.close()
        self.level = info["level"]  # the run's own unit, also when resumed without --level
        self.task = info.get("task", "lm")
        if self.quiet:
            return
        if self.task == "lm":
            shape = f"batch {info['batch']} x {info['seq_len']} steps"
            data = f"{info['train_tokens']:,} training and {info['val_tokens']:,} validation tokens"
            vocab = f"vocabulary {info['vocab']:,}"
        else:
            what = "tags" if self.task == "tag" else "labels"
            scheme = f" ({info['scheme']})" if info.get("scheme") else ""
            shape = f"batch {info['batch']} sentences"
            data = (f"{info['sentences']:,} training and {info['val_sentences']:,} validation "
                    f"{'sentences' if self.task == 'tag' else 'examples'} ({info['train_tokens']:,} and "
                    f"{info['val_tokens']:,} words)")
            vocab = f"{info['vocab']:,} words, {info['chars']:,} characters, {info['labels']} {what}{scheme}"
        click.echo(f"charlm: {info['params']:,} parameters, {vocab}, {data}, {shape}, "
                   f"{info['steps_per_epoch']:,} steps/epoch", err=True)
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
            unit = {"lm": "tok", "tag": "tok", "classify": "ex"}[self.task]
            q = q + " " if self.task == "lm" else ""
            self.bar.set_postfix_str(f"loss={loss:.3f} {q}{tokens_per_s / 1000:.1f}k {unit}/s", refresh=False)

    def evaluate(self, record, improved):
        if self.quiet:
            return
        val = record["val_loss"]
        quality = _quality(val, self.level) if self.task == "lm" else _task_quality(record)
        line = (f"step {record['step']:>6}  epoch {record['epoch']:.2f}  "
                f"train {record['train_loss'] if record['train_loss'] is not None else float('nan'):.4f}  "
                f"val {val if val is not None else float('nan'):.4f} ({quality})  "
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
@click.option("--task", type=click.Choice(list(TASKS)), default="lm", show_default=True,
              help="lm: a language model on running text; tag: a tagger (a tag per token, e.g. named "
                   "entities or parts of speech); classify: a classifier (a label per line).")
@click.option("--format", type=click.Choice(list(TAG_FORMATS + LABEL_FORMATS)), default=None,
              help="tag: conllu or columns; classify: tab (LABEL<TAB>TEXT) or fasttext (__label__LABEL "
                   "TEXT) [default: detected from the file].")
@click.option("--tag-column", default=None, metavar="upos|xpos|N",
              help="tag: which tag to learn: CoNLL-U upos (default) or xpos, or column N (1-based) of a "
                   "column file [default: the last column].")
@tokenizer_options
@vocab_options
@click.option("--vocab", type=click.Path(), default=None,
              help="Use a vocabulary made by `charlm tokenize --vocab-out` (its tokenizer settings win).")
@click.option("--cell", type=click.Choice(list(CELLS)), default=None,
              help="Recurrent cell [default: gru (lm), lstm (tag, classify)].")
@click.option("--layers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--hidden", type=click.IntRange(1, 8192), default=None,
              help="Units per layer (per direction for tag/classify) [default: 256 (lm), 128 (tag, classify)].")
@click.option("--embedding", type=click.IntRange(1, 8192), default=None,
              help="Embedding size [default: 64 (lm), 100 (tag, classify)].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Inverted dropout between layers and before the output [default: 0.1 (lm), 0.25 (tag, classify)].")
@click.option("--dropout-kind", type=click.Choice(list(DROPOUT_KINDS)), default=None,
              help="lm: standard: a fresh --dropout mask at every step; locked: one mask per stream and unit, "
                   "the same at every step of a window (variational dropout) [default: standard].")
@click.option("--embedding-dropout", type=click.FloatRange(0, 1, max_open=True), default=None, metavar="P",
              help="lm: drop whole words of the vocabulary, each with probability P per batch (the others "
                   "scaled by 1/(1-P)) [default: 0, off].")
@click.option("--weight-drop", type=click.FloatRange(0, 1, max_open=True), default=None, metavar="P",
              help="lm: DropConnect on each layer's recurrent weights, one mask per batch [default: 0, off].")
@click.option("--char-embedding", type=click.IntRange(1, 1024), default=None,
              help="tag/classify: character embedding size of the character encoder [default: 25].")
@click.option("--char-hidden", type=click.IntRange(0, 1024), default=None,
              help="tag/classify: units per direction of the character encoder, 0 for none [default: 25].")
@click.option("--bidirectional/--no-bidirectional", default=None,
              help="tag/classify: --no-bidirectional keeps the left-to-right layers only (the notes' "
                   "one-directional comparison) [default: bidirectional].")
@click.option("--pool", type=click.Choice(["last", "mean", "max"]), default=None,
              help="classify: the sentence vector: the last step of each direction, or the mean or max "
                   "over time [default: last].")
@click.option("--tie-weights", is_flag=True, help="Share the embedding and output weights (needs --embedding = --hidden).")
@click.option("--activation", type=click.Choice(["tanh", "relu"]), default="tanh", show_default=True,
              help="Activation of the vanilla RNN cell.")
@click.option("--peephole", is_flag=True, help="LSTM peephole connections (c<t-1> feeds the gates).")
@click.option("--seq-len", type=click.IntRange(min=1, max=100000), default=None,
              help="lm: truncated-BPTT window, in tokens [default: 100].")
@click.option("--batch-size", type=click.IntRange(min=1, max=100000), default=32, show_default=True,
              help="Parallel streams (lm) or sentences (tag, classify) per step.")
@click.option("--accumulate", type=click.IntRange(min=1, max=100000), default=1, show_default=True, metavar="K",
              help="Update once per K batches, with their mean gradient (an effective batch K times "
                   "--batch-size; under mpiexec, one all-reduce per K batches).")
@click.option("--optimizer", type=click.Choice(list(DEFAULT_LR)), default="adam", show_default=True,
              help="asgd: SGD, then from the first evaluation without improvement the running average of "
                   "the weights (NT-ASGD), which is what is evaluated and saved.")
@click.option("--lr", type=float, default=None,
              help="Learning rate [default: " + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + "].")
@click.option("--clip", type=float, default=5.0, show_default=True, help="Clip the global gradient norm (0: off).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps in all.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop cleanly when this much wall-clock time is spent.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of the corpus held out for validation: from its end (lm, at most --val-tokens), "
                   "or a seeded random share of the sentences (tag, classify).")
@click.option("--val-file", type=click.Path(), default=None, help="Validate on this file instead (all of it, "
              "unless --val-tokens is given).")
@click.option("--val-tokens", type=click.IntRange(min=0), default=None, metavar="N",
              help="lm: at most N validation tokens: the last N of the corpus, or the first N of --val-file "
                   "(0: no limit) [default: 131072 from the corpus, a --val-file whole].")
@click.option("--eval-every", type=click.IntRange(min=1), default=200, show_default=True, metavar="STEPS")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many evaluations without improvement (the learning rate halves at each). "
                   "Improvement: lower validation loss (lm), higher entity F1 (entity tags), token "
                   "accuracy (other tags) or accuracy (classify).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--resume", is_flag=True,
              help="Continue the run saved next to --output, with the run's own options (task, model, data, "
                   "optimizer, metrics log). Only --epochs, --max-steps, --time-limit, --patience, --metrics, "
                   "--cache-dir and --no-cache may be given again to change them; other options are refused "
                   "if they differ from the run's.")
@click.option("--metrics", type=click.Path(dir_okay=False), default=None,
              help="Append one JSON line per evaluation to this file.")
@click.option("--force", is_flag=True,
              help="Start a new run even where -o or --metrics holds another run's files (they are replaced), "
                   "or replace a file there that is not a charlm file (never an input).")
@cache_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or evaluation lines.")
def train_command(corpus, resume, quiet, **flags):
    """Train a recurrent language model, tagger or classifier on CORPUS (a UTF-8 text file).

    \b
    Examples:
      charlm train data/tinyshakespeare.txt                  # char-level GRU -> charlm.npz
      charlm train names.txt --mode lines --cell lstm        # one name per line
      charlm train ptb.train.txt --level word --split whitespace --val-file ptb.valid.txt
      charlm train corpus.txt --time-limit 600               # stop after ten minutes
      charlm train corpus.txt --resume                       # continue an interrupted run
      charlm train big.txt --cache-dir ~/.cache/charlm       # keep the token cache there
      charlm train big.txt --val-tokens 1000000              # a larger validation text
      charlm train --task tag data/wikigold.train.txt --val-file data/wikigold.dev.txt -o ner.npz
      charlm train --task tag en_ewt-ud-train.conllu --val-file en_ewt-ud-dev.conllu -o pos.npz
      charlm train --task classify reviews.tsv --split whitespace -o sentiment.npz

    A corpus of 16 MB or more is tokenized once into a token cache (NAME-KEY.tokens.npy and
    .json, next to the model or in --cache-dir); later runs, --resume and `charlm score
    --file --stream` map it instead of reading the corpus again. Training reads its windows
    from the memory-mapped ids, so memory does not grow with the corpus.

    \b
    --task tag reads CoNLL-U (10 TAB-separated columns; --tag-column upos|xpos) or column files
    (token first, tag last, a blank line between sentences, -DOCSTART- lines ignored) and trains
    a bidirectional tagger; --task classify reads LABEL<TAB>TEXT or __label__LABEL TEXT lines
    (the text cut into words by the tokenizer options) and trains a classifier.

    The best model by validation loss (lm), entity F1 (entity tags), token accuracy (other tags)
    or accuracy (classify) is written to --output; `charlm sample`/`score`, `charlm tag` and
    `charlm classify` read charlm.npz by default. Ctrl-C saves and tells you how to resume.

    \b
    On several processes or machines (`pip install 'charlm[mpi]'`), one model, data-parallel:
      mpiexec -n 4 charlm train corpus.txt --batch-size 64   # 16 of the 64 streams each
      mpiexec -n 4 charlm train corpus.txt --batch-size 64 --resume
    """
    comm = parallel.world()
    if comm.size > 1 and comm.rank == 0 and not quiet:
        click.echo(f"charlm: data-parallel over {comm.size} processes", err=True)
    keep_freed_memory()  # every step allocates the same large arrays: reuse them (nn/alloc.py)
    ctx = click.get_current_context()
    given = {name for name in flags if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    if "level" not in given:
        flags["level"] = None  # the task's default: characters for lm, words for tag and classify
    if resume and "task" not in given:
        flags["task"] = resumed_task(flags["output"]) or flags["task"]  # the saved run's task
    opts = TrainOptions.from_flags(corpus=corpus, **flags)
    summary = train(opts, resume=resume, reporter=BarReporter(quiet) if comm.rank == 0 else Reporter(),
                    comm=comm, given=given)
    where = f"best model (step {summary['best_step']}) in {summary['output']}; resumable state in {summary['last']}"
    if summary["interrupted"]:
        if comm.rank == 0:
            launcher = f"mpiexec -n {comm.size} " if comm.size > 1 else ""
            click.echo(f"charlm: {summary['reason']} at step {summary['step']}; saved. {where}", err=True)
            click.echo(f"charlm: resume with: {launcher}charlm train {corpus} -o {opts.output} --resume", err=True)
        sys.exit(130 if summary["interrupted"] == "SIGINT" else 143)
    if not quiet and comm.rank == 0:
        best = summary["best_record"] or {}
        loss = summary["best_val_loss"] if summary["task"] == "lm" else best.get("val_loss")
        quality = _quality(loss, summary["level"]) if summary["task"] == "lm" else _task_quality(best)
        click.echo(
            f"charlm: {summary['reason']} after {summary['step']} steps in {summary['elapsed']:.0f} s; "
            f"best validation loss {loss if loss is not None else float('nan'):.4f} ({quality}); {where}",
            err=True,
        )

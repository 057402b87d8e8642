"""`charlm train`: train a language model, a tagger, a classifier or a sequence-to-sequence model on a
text file.

The options are generated from their declarations (`charlm.tasks.OPTIONS`: the engine's in
charlm/engine/options.py, each task's in its module); this module adds the corpus, --resume and
-q, prints what the engine reports (`engine.progress.BarReporter`) and the last line.
"""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from charlm.cli.group import cli
from charlm.cli.options import click_option, train_options
from charlm.engine import parallel
from charlm.engine.progress import BarReporter, Reporter, figure
from charlm.info import quality
from charlm.nn.alloc import keep_freed_memory
from charlm.tasks import OPTIONS, get
from charlm.tasks.training import RESUME_OPTION, from_flags, resumed_task, train


@cli.command("train")
@click.argument("corpus", metavar="CORPUS")
@train_options(o for o in OPTIONS if o.cli)
@click_option(RESUME_OPTION)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or evaluation lines.")
def train_command(corpus, resume, quiet, **flags):
    """Train a recurrent language model, tagger, classifier or sequence-to-sequence model on CORPUS
    (a UTF-8 text file).

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
      charlm train --task seq2seq data/cmudict-g2p.train.txt --target-level word --target-split whitespace
      charlm train --task lm --condition reviews.tsv -o reviews-lm.npz   # text given its label

    A corpus of 16 MB or more is tokenized once into a token cache (NAME-KEY.tokens.npy and
    .json, next to the model or in --cache-dir); later runs, --resume and `charlm score
    --file --stream` map it instead of reading the corpus again. Training reads its windows
    from the memory-mapped ids, so memory does not grow with the corpus.

    \b
    --task tag reads CoNLL-U (10 TAB-separated columns; --tag-column upos|xpos) or column files
    (token first, tag last, a blank line between sentences, -DOCSTART- lines ignored) and trains
    a bidirectional tagger; --task classify reads LABEL<TAB>TEXT or __label__LABEL TEXT lines
    (the text cut into words by the tokenizer options) and trains a classifier. --condition reads
    the same labelled lines and trains a language model given the label (`charlm sample --label`,
    `charlm classify` by Bayes' rule).

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
    if resume and "task" not in given:
        flags["task"] = resumed_task(flags["output"] or "charlm.npz") or flags["task"]  # the saved run's task
    opts = from_flags(corpus=corpus, **flags)
    task = get(opts.task)
    summary = train(opts, resume=resume, reporter=BarReporter(task, quiet) if comm.rank == 0 else Reporter(),
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
        loss = best.get("val_loss")
        click.echo(
            f"charlm: {summary['reason']} after {summary['step']} steps in {summary['elapsed']:.0f} s; "
            f"best validation loss {figure(loss)} "
            f"({quality(task.figures(best, summary['level']))}); {where}",
            err=True,
        )

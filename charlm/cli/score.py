"""`charlm score`: sentence probabilities, perplexity, corpus cross-entropy."""

from __future__ import annotations

import math
import os
from dataclasses import replace

import click

from charlm.cli.group import cli, json_line, warn
from charlm.cli.options import cache_options, label_option, load_model, model_option
from charlm.engine import parallel
from charlm.engine.progress import ReadingBar
from charlm.errors import DataError
from charlm.lm import scoring
from charlm.lm.reverse import reversed_ids
from charlm.lm.scoring import shown
from charlm.text.reader import iter_lines
from charlm.text.tokencache import token_ids

# -- formatting ------------------------------------------------------------------------------------

def format_prob(log10p: float, digits: int = 3) -> str:
    """10**log10p as "m.mme-N", computed from the logarithm (so 1e-300 and 1e-5000 both print).

    log10p = e + f with e = floor(log10p), 0 <= f < 1; mantissa = 10**f in [1, 10).
    """
    if math.isnan(log10p):
        return "nan"
    if log10p == -math.inf:
        return "0"
    e = math.floor(log10p)
    m = 10.0 ** (log10p - e)
    if round(m, digits - 1) >= 10.0:  # 9.9996 rounds to 10.00: carry into the exponent
        m, e = m / 10.0, e + 1
    return f"{m:.{digits - 1}f}e{e:+d}" if e < 0 else f"{m:.{digits - 1}f}e+{e:d}"


def _show_token(tok: str) -> str:
    return tok.replace("\n", "\\n").replace("\t", "\\t")


TABLE_HEAD = (f"{'logprob':>12} {'log10prob':>11} {'probability':>12} {'perplexity':>11} "
              f"{'tokens':>6} {'oov':>4}  sentence")


def _table_row(s, mark: str = " ") -> str:
    return (f"{s.logprob:12.4f} {s.log10prob:11.4f} {format_prob(s.log10prob):>12} "
            f"{shown(s.perplexity, '.3f'):>11} {s.n_tokens:6d} {s.oov:4d} {mark}{s.text}")


def _per_token_lines(s, indent: str = "    ") -> list[str]:
    width = max([len(_show_token(t)) for t in s.tokens] + [5])
    lines = [f"{indent}{'token':<{width}} {'logprob':>10} {'log10':>9}"]
    for tok, lp in zip(s.tokens, s.per_token):
        lines.append(f"{indent}{_show_token(tok):<{width}} {lp:10.4f} {lp / math.log(10):9.4f}")
    return lines


def _single_block(s, per_token: bool) -> list[str]:
    toks = " ".join(_show_token(t) for t in s.tokens)
    lines = [
        f"sentence:     {s.text}",
        f"tokens:       {s.n_tokens}  {toks}",
        f"logprob:      {s.logprob:.4f} (ln)   {s.log10prob:.4f} (log10)",
        f"probability:  {format_prob(s.log10prob)}",
        f"perplexity:   {shown(s.perplexity, '.3f')}",
        f"oov:          {s.oov}",
    ]
    if per_token:
        lines.append("per token:")
        lines += _per_token_lines(s)
    return lines


class _Report:
    """Progress bar and token-cache lines on stderr while a large file is tokenized."""

    def __init__(self):
        self.bar = ReadingBar()

    def reading(self, done, total):
        self.bar.update(done, total)

    def note(self, text):
        self.bar.close()
        click.echo(f"charlm: {text}", err=True)

    def message(self, text):
        self.bar.close()
        warn(text)


def _label_table(names, texts, scores) -> list[str]:
    """`--all-labels`: log P(text | label) (nats) in a column per label, the likeliest marked `*`."""
    width = max([12] + [len(n) for n in names])
    lines = [" ".join(f"{n:>{width}} " for n in names) + " sentence"]
    for i, text in enumerate(texts):
        row = [scores[c][i].logprob for c in range(len(names))]
        best = max(range(len(row)), key=row.__getitem__)
        lines.append(" ".join(f"{lp:{width}.4f}" + ("*" if c == best else " ") for c, lp in enumerate(row))
                     + " " + text)
    return lines


def _all_labels(lm, sentences, file, as_json, batch_size, echo) -> None:
    """`charlm score --all-labels`: every sentence (or non-empty line of --file) scored given each
    label of a conditional model: log P(text | c), a column (a JSON key) per label."""
    if lm.labels is None:
        raise click.UsageError(f"--all-labels needs a conditional language model (trained with --condition); "
                               f"{lm.path} has no labels")
    texts = list(sentences) if file is None else [line for line in iter_lines(file) if line.strip()]
    if not texts:
        raise DataError(f"{'stdin' if file == '-' else file} has nothing to score")
    names = lm.labels.names
    scores = [scoring.score_sentences(lm.conditioned(c), lm.vocab, lm.tokenizer, texts, batch_size) for c in names]
    if as_json:
        for i, text in enumerate(texts):
            echo(json_line({"text": text, "tokens": scores[0][i].n_tokens,
                            "logprob": {c: scores[k][i].logprob for k, c in enumerate(names)}}))
    else:
        echo("\n".join(_label_table(names, texts, scores)))


# -- the command -----------------------------------------------------------------------------------

@cli.command("score")
@click.argument("sentences", nargs=-1, metavar="[SENTENCE]...")
@model_option
@click.option("-f", "--file", "file", metavar="PATH",
              help="Score every line of PATH (- for stdin) and end with a corpus summary.")
@click.option("--stream", is_flag=True,
              help="With --file: score the file as one running text, the state carried across "
                   "lines (as the model was trained); prints the summary only.")
@click.option("--per-token", is_flag=True, help="Also show each token's log-probability.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per sentence (and a final summary object with --file).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sentences scored together (sorted by length, padded, masked).")
@cache_options
@label_option(help="A conditional language model (trained with --condition): log P(SENTENCE | LABEL).")
@click.option("--all-labels", is_flag=True,
              help="A conditional language model: log P(SENTENCE | label) for every label, a column each "
                   '(--json: {"text", "tokens", "logprob": {label: nats}}).')
def score_command(sentences, model_path, file, stream, per_token, as_json, batch_size, cache_dir, no_cache,
                  label, all_labels) -> None:
    """Give each SENTENCE a probability under the model: which one is likelier?

    Each argument is one sentence. For each: the tokens scored (with <EOS> when the model was
    trained on lines), the log-probability (natural log and log10), the probability, the
    perplexity and the number of out-of-vocabulary tokens. Several sentences print as a table,
    the likeliest marked with `*`.

    Sentences start from the zero state. Lines-mode models are fed <EOS> first and also score
    the final <EOS>; stream-mode models condition the first token on a newline when the
    vocabulary has one (otherwise the first token is context only and is not scored).

    \b
    Examples:
      charlm score "The apple and pear salad" "The apple and pair salad"
      charlm score --per-token "Hello there"
      charlm score -m shakespeare.npz --file test.txt
      charlm score --file test.txt --stream        # as the training's validation sees it
      charlm score --file big.txt --stream --cache-dir cache/   # tokenized once, cached
      cat lines.txt | charlm score --file - --json
      charlm score -- "-5 degrees and falling"   # -- before a sentence that starts with -
      mpiexec -n 4 charlm score --file big.txt    # 4 processes share the lines (charlm[mpi])
      charlm score -m reviews.npz --label pos "a gorgeous film"   # a conditional model
      charlm score -m reviews.npz --all-labels "a gorgeous film" "a dull film"

    With --stream, a file of 16 MB or more is tokenized once into a token cache (next to the
    model, or in --cache-dir) that later scoring and training runs with the same tokenizer use.
    """
    comm = parallel.world()
    if file is None and not sentences:
        raise click.UsageError("nothing to score: give one or more SENTENCE arguments or --file PATH")
    if file is not None and sentences:
        raise click.UsageError("give SENTENCE arguments or --file PATH, not both")
    if stream and file is None:
        raise click.UsageError("--stream needs --file PATH")
    if stream and per_token:
        raise click.UsageError("--per-token cannot be combined with --stream")
    if no_cache and cache_dir is not None:
        raise click.UsageError("--cache-dir and --no-cache contradict each other: give one of them")
    if comm.size > 1 and stream:
        raise click.UsageError("--stream scores one running text, which cannot be shared among "
                               "processes: run it without mpiexec")
    if comm.size > 1 and file == "-":
        raise click.UsageError("under mpiexec standard input reaches only the first process: give "
                               "--file a file name")

    if all_labels and (label is not None or stream or per_token or comm.size > 1):
        what = "--label" if label is not None else "--stream" if stream else "--per-token" if per_token else "mpiexec"
        raise click.UsageError(f"--all-labels cannot be combined with {what}")
    lm = load_model(model_path)
    echo = click.echo if comm.rank == 0 else (lambda *args, **kwargs: None)  # one process prints
    if all_labels:
        _all_labels(lm, sentences, file, as_json, batch_size, echo)
        return
    model, vocab, tokenizer = lm.conditioned(label), lm.vocab, lm.tokenizer
    char_level = scoring.is_char_level(vocab)

    if file is None:
        # a sentence that tokenizes to nothing -> charlm UsageError: one line, exit 2
        results = scoring.score_sentences(model, vocab, tokenizer, list(sentences), batch_size, comm)
        if as_json:
            for s in results:
                echo(json_line(s.to_dict(per_token)))
        elif len(results) == 1:
            echo("\n".join(_single_block(results[0], per_token)))
        else:
            best = max(range(len(results)), key=lambda i: results[i].logprob)
            echo(TABLE_HEAD)
            for i, s in enumerate(results):
                echo(_table_row(s, "*" if i == best else " "))
            if per_token:
                for s in results:
                    echo(f"\n{s.text}")
                    echo("\n".join(_per_token_lines(s)))
        return

    if stream:
        folder = None if no_cache else (cache_dir or os.path.dirname(os.path.abspath(model_path)))
        tids = token_ids(file, vocab.tokenizer, folder, report=_Report())
        if lm.reverse:  # read right to left, as it was trained (lm/reverse.py)
            tids = replace(tids, ids=reversed_ids(tids.ids, tids.mode))
        summary = scoring.score_ids(model, vocab, tids)
    else:
        summary = scoring.CorpusSummary(chars=0 if char_level else None)
        for s in scoring.score_lines(model, vocab, tokenizer, iter_lines(file),
                                     batch_size, comm=comm):
            summary.add(s, char_level)
            if as_json:
                echo(json_line(s.to_dict(per_token)))
            else:
                if summary.sentences == 1:
                    echo(TABLE_HEAD)
                echo(_table_row(s))
                if per_token:
                    echo("\n".join(_per_token_lines(s)))
        if not as_json and summary.sentences:
            echo("")
    if summary.tokens == 0:
        raise DataError(f"{'stdin' if file == '-' else file} has nothing to score")
    if as_json:
        echo(json_line(summary.to_dict()))
    else:
        echo("\n".join(summary.lines()))

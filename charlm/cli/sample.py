"""`charlm sample`: generate novel text from a trained model."""

from __future__ import annotations

import sys

import click
import numpy as np

from charlm.cli.group import cli, json_line, warn
from charlm.cli.options import label_option, load_model, model_option
from charlm.errors import CharlmError


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _word_sep(prev: str | None, tok: str) -> str:
    """The separator printed before `tok` at word level when streaming."""
    if prev is None or prev == "\n" or tok == "\n":
        return ""
    return " "


BEAM_ONLY_WITHOUT = ("temperature", "top_k", "top_p", "num", "seed")


def _given(ctx: click.Context, name: str) -> bool:
    """Was option `name` given on the command line (or by an environment variable)?"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _check_options(ctx, temperature, top_k, top_p, length, num, seed, stop_at, beam, nbest,
                   length_penalty) -> None:
    """Option values and combinations that make no sense: exit 2 naming the option."""
    if not 0.0 <= temperature < float("inf"):
        raise click.BadParameter(f"must be a finite number >= 0 (0 = greedy), got {temperature}",
                                 param_hint="--temperature")
    if top_k is not None and top_k < 1:
        raise click.BadParameter(f"must be at least 1, got {top_k}", param_hint="--top-k")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise click.BadParameter(f"must be in (0, 1], got {top_p}", param_hint="--top-p")
    if length is not None and length < 1:
        raise click.BadParameter(f"must be at least 1, got {length}", param_hint="--length")
    if num < 1:
        raise click.BadParameter(f"must be at least 1, got {num}", param_hint="--num")
    if seed is not None and seed < 0:
        raise click.BadParameter(f"must be >= 0, got {seed}", param_hint="--seed")
    if any(s == "" for s in stop_at):
        raise click.BadParameter("must not be empty (it would stop every sample at once)",
                                 param_hint="--stop-at")
    if beam is None:
        for name, flag in (("nbest", "--nbest"), ("length_penalty", "--length-penalty")):
            if _given(ctx, name):
                raise click.UsageError(f"{flag} needs --beam K")
        return
    if beam < 1:
        raise click.BadParameter(f"must be at least 1, got {beam}", param_hint="--beam")
    if not 1 <= nbest <= beam:
        raise click.BadParameter(f"must be between 1 and --beam ({beam}), got {nbest}",
                                 param_hint="--nbest")
    if not 0.0 <= length_penalty < float("inf"):
        raise click.BadParameter(f"must be a finite number >= 0, got {length_penalty}",
                                 param_hint="--length-penalty")
    for name in BEAM_ONLY_WITHOUT:
        if _given(ctx, name):
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} is for sampling; --beam searches for the most "
                                   f"probable continuations (use --nbest for several)")


@cli.command("sample")
@model_option
@click.option("-t", "--temperature", type=float, default=1.0, show_default=True,
              help="Softmax temperature: <1 safer, >1 wilder; 0 = always the likeliest token.")
@click.option("-k", "--top-k", type=int, default=None, metavar="K",
              help="Sample only from the K likeliest tokens.")
@click.option("-p", "--top-p", type=float, default=None, metavar="P",
              help="Sample only from the likeliest tokens whose probability adds up to P (0 < P <= 1).")
@click.option("--prime", default="", metavar="TEXT",
              help="Text the model reads before generating (the sample continues it).")
@click.option("--prime-file", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              metavar="PATH", help="Read the priming text, newlines included, from PATH (- for stdin).")
@click.option("-l", "--length", type=int, default=None, metavar="N",
              help="Maximum tokens per sample [default: 200 for char-level models, 50 for word-level].")
@click.option("--stop-at", multiple=True, metavar="STRING",
              help="End a sample with the token that completes STRING in the generated text "
                   "(repeat for several strings).")
@click.option("-n", "--num", type=int, default=1, show_default=True,
              help="How many samples (generated together as one batch).")
@click.option("--seed", type=int, default=None, help="Random seed: same seed, same samples.")
@click.option("--beam", type=int, default=None, metavar="K",
              help="Beam search with width K instead of sampling: the most probable continuation(s).")
@click.option("--nbest", type=int, default=1, show_default=True, metavar="N",
              help="With --beam: print the N best candidates (N <= K).")
@click.option("--length-penalty", type=float, default=0.0, show_default=True, metavar="ALPHA",
              help="With --beam: rank by logprob / length^ALPHA (0: the most probable wins; "
                   "larger favours longer texts).")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per sample: {"sample", "prime", "text", "tokens", "stop"}; '
                   'with --beam {"candidate", "prime", "text", "tokens", "logprob", "score", "stop"}.')
@label_option(multiple=True, help="A conditional language model (trained with --condition): generate given "
                                  "LABEL; repeat for several (--num samples of each, the lines then start "
                                  "with LABEL and a tab).")
@click.pass_context
def sample_command(ctx, model_path, temperature, top_k, top_p, prime, prime_file, length, stop_at,
                   num, seed, beam, nbest, length_penalty, as_json, label) -> None:
    """Generate text from the model, one token at a time.

    Each step draws the next token from the model's softmax (never <UNK>) and feeds it back in.
    A model trained on lines starts after <EOS> and stops at <EOS> (or after --length tokens);
    a model trained on running text (stream mode) writes --length tokens. --prime TEXT (or
    --prime-file PATH) is read first and printed before the continuation; with a lines-mode
    model each complete line of it is an earlier sentence. --stop-at STRING ends a sample as
    soon as its generated text contains STRING.

    --beam K searches instead of sampling: K hypotheses are extended together and the most
    probable continuation found is printed (--nbest N: the N best), the same every time. A
    lines-mode model finishes a hypothesis at <EOS>. --json adds each one's log-probability.

    \b
    Examples:
      charlm sample                              # one sample from ./charlm.npz
      charlm sample --temperature 0.7 --num 5    # five safer samples
      charlm sample --temperature 0              # greedy: the likeliest path
      charlm sample --top-k 10 --top-p 0.9 --seed 42
      charlm sample -m shakespeare.npz --prime "ROMEO:" --length 500
      charlm sample --prime-file scene.txt --stop-at $'\\n\\n'   # up to the next blank line
      charlm sample -m dinos.npz --beam 10 --nbest 5 --json      # the 5 likeliest names
      charlm sample --json --num 3
      charlm sample -m names.npz --label saurus --label other --num 3   # a conditional model
    """
    from charlm.lm import beam as beam_search
    from charlm.lm import generate, scoring

    _check_options(ctx, temperature, top_k, top_p, length, num, seed, stop_at, beam, nbest,
                   length_penalty)
    if prime and prime_file is not None:
        raise click.UsageError("give --prime TEXT or --prime-file PATH, not both")

    lm = load_model(model_path)
    if beam is not None:
        lm.forward_only("--beam")
    if stop_at:
        lm.forward_only("--stop-at")
    labels = list(dict.fromkeys(label)) or [None]
    networks = [lm.conditioned(c) for c in labels]  # a missing, unknown or unwanted label: a usage error first
    vocab, tokenizer = lm.vocab, lm.tokenizer
    if prime_file is not None:
        prime = generate.read_prime_file(prime_file)
    primed = generate.Prime.from_text(tokenizer, prime)
    unknown = primed.unknown(vocab)
    if unknown:
        shown = ", ".join(repr(t) for t in list(dict.fromkeys(unknown))[:5])
        more = "" if len(set(unknown)) <= 5 else ", ..."
        option = "--prime-file" if prime_file is not None else "--prime"
        warn(f"{option} has {len(unknown)} token(s) the model does not know ({shown}{more}); "
             f"they are read as <UNK>")
    char_level = scoring.is_char_level(vocab)
    stream_mode = scoring.tokenizer_mode(vocab) == "stream"

    for c, network in zip(labels, networks):
        if beam is not None:
            try:
                results = beam_search.search(network, vocab, tokenizer, primed, beam=beam, nbest=nbest,
                                             length=length, length_penalty=length_penalty,
                                             stop_at=stop_at)
            except (MemoryError, ValueError) as err:  # numpy: "array is too big" for absurd sizes
                if not (isinstance(err, MemoryError) or "array is too big" in str(err)):
                    raise
                raise CharlmError(f"out of memory: --beam {beam} keeps {beam:,} hypotheses of "
                                  f"{len(vocab):,} scores each: try a smaller --beam or --length") from None
        else:
            on_token = None
            streaming = num == 1 and len(labels) == 1 and not as_json and _stdout_is_tty() and not lm.reverse
            if streaming:
                # after a complete prime line (lines mode) the sample starts a new line
                last = [primed.tokens[-1] if primed.tokens[primed.cut:] else None]
                if primed.text:
                    click.echo(primed.text, nl=False)

                def on_token(t, ids, emitted):  # noqa: ANN001 - callback
                    if emitted[0]:
                        tok = vocab.tokens[int(ids[0])]
                        sep = "" if char_level else _word_sep(last[0], tok)
                        click.echo(sep + tok, nl=False)  # click.echo flushes
                        last[0] = tok

            results = generate.samples(network, vocab, tokenizer, primed, num=num, length=length,
                                       temperature=temperature, top_k=top_k, top_p=top_p,
                                       stop_at=stop_at, rng=np.random.default_rng(seed),
                                       on_token=on_token)
            if streaming:
                click.echo("")
                continue
        for i, result in enumerate(results):
            if as_json:
                click.echo(json_line(result.to_dict() if c is None else dict(label=c, **result.to_dict())))
            else:
                if i and stream_mode:
                    click.echo("")  # a blank line between running-text samples
                click.echo(result.text if len(labels) == 1 else f"{c}\t{result.text}")

"""`charlm sample`: generate novel text from a trained model."""

from __future__ import annotations

import json
import sys

import click

from charlm.cli import cli, warn
from charlm.cli.options import load, model_option


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
@click.option("-l", "--length", type=int, default=None, metavar="N",
              help="Maximum tokens per sample [default: 200 for char-level models, 50 for word-level].")
@click.option("-n", "--num", type=int, default=1, show_default=True,
              help="How many samples (generated together as one batch).")
@click.option("--seed", type=int, default=None, help="Random seed: same seed, same samples.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per sample: {"sample", "prime", "text", "tokens", "stop"}.')
def sample_command(model_path, temperature, top_k, top_p, prime, length, num, seed, as_json) -> None:
    """Generate text from the model, one token at a time.

    Each step draws the next token from the model's softmax (never <UNK>) and feeds it back in.
    A model trained on lines starts after <EOS> and stops at <EOS> (or after --length tokens);
    a model trained on running text (stream mode) writes --length tokens. --prime TEXT is read
    first and printed before the continuation.

    \b
    Examples:
      charlm sample                              # one sample from ./charlm.npz
      charlm sample --temperature 0.7 --num 5    # five safer samples
      charlm sample --temperature 0              # greedy: the likeliest path
      charlm sample --top-k 10 --top-p 0.9 --seed 42
      charlm sample -m shakespeare.npz --prime "ROMEO:" --length 500
      charlm sample --json --num 3
    """
    import numpy as np

    from charlm import generate, scoring

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

    model, vocab, tokenizer, _ = load(model_path)
    char_level = scoring.is_char_level(vocab)
    if length is None:
        length = 200 if char_level else 50
    prime_tokens = tokenizer.tokenize(prime) if prime else []
    unknown = [t for t in prime_tokens if t not in vocab.index]
    if unknown:
        shown = ", ".join(repr(t) for t in list(dict.fromkeys(unknown))[:5])
        more = "" if len(set(unknown)) <= 5 else ", ..."
        warn(f"--prime has {len(unknown)} token(s) the model does not know ({shown}{more}); "
             f"they are read as <UNK>")
    prime_text = tokenizer.detokenize(prime_tokens) if prime_tokens else ""
    rng = np.random.default_rng(seed)

    on_token = None
    streaming = num == 1 and not as_json and _stdout_is_tty()
    if streaming:
        last = [prime_tokens[-1] if prime_tokens else None]
        if prime_text:
            click.echo(prime_text, nl=False)

        def on_token(t, ids, emitted):  # noqa: ANN001 - callback
            if emitted[0]:
                tok = vocab.tokens[int(ids[0])]
                sep = "" if char_level else _word_sep(last[0], tok)
                click.echo(sep + tok, nl=False)  # click.echo flushes
                last[0] = tok

    samples = generate.sample(model, vocab, num=num, length=length, temperature=temperature,
                              top_k=top_k, top_p=top_p, prime=prime_tokens, rng=rng,
                              on_token=on_token)
    if streaming:
        click.echo("")
        return
    stream_mode = scoring.tokenizer_mode(vocab) == "stream"
    for i, tokens in enumerate(samples):
        text = tokenizer.detokenize(prime_tokens + tokens) if (prime_tokens or tokens) else ""
        if as_json:
            click.echo(json.dumps({"sample": i, "prime": prime_text, "text": text,
                                   "tokens": tokens,
                                   "stop": "length" if len(tokens) >= length else "eos"},
                                  ensure_ascii=False))
        else:
            if i and stream_mode:
                click.echo("")  # a blank line between running-text samples
            click.echo(text)

"""`charlm next`: the likeliest next tokens after a prefix, with their probabilities."""

from __future__ import annotations

import json
import math

import click

from charlm.cli.group import cli, json_line
from charlm.cli.options import label_option, load_model, model_option
from charlm.text.vocab import EOS, UNK


def show_token(tok: str) -> str:
    """<EOS> and <UNK> as they are, any other token quoted (spaces and newlines visible)."""
    return tok if tok in (EOS, UNK) else json.dumps(tok, ensure_ascii=False)


@cli.command("next")
@click.argument("prefix", default="", metavar="[PREFIX]")
@model_option
@click.option("-k", "top", type=int, default=10, show_default=True, metavar="K",
              help="How many tokens to show, likeliest first.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object: {"prefix", "next": [{"token", "prob", "logprob"}, ...]}.')
@label_option()
def next_command(prefix, model_path, top, as_json, label) -> None:
    """The K likeliest tokens to come after PREFIX, with their probabilities.

    This is the model's distribution P(y<t> | y<1>, ..., y<t-1>) for the next token: <EOS>
    (the end of a sentence) is one of the candidates and <UNK> stands for every token the
    vocabulary does not know. The prefix is read as `charlm score` reads a sentence: after
    <EOS> in a lines-mode model, after a newline in a stream-mode one. No PREFIX: the first
    token of a text.

    \b
    Examples:
      charlm next "The apple and p"             # character model: the next character
      charlm next -m ptb.npz "the stock market" -k 5
      charlm next -m dinos.npz ""               # how names start
      charlm next "To be, or not to" --json
    """
    from charlm.lm import generate

    if top < 1:
        raise click.BadParameter(f"must be at least 1, got {top}", param_hint="-k")
    lm = load_model(model_path)
    lm.forward_only("charlm next")
    model, vocab, tokenizer = lm.conditioned(label), lm.vocab, lm.tokenizer
    prime = generate.Prime.from_text(tokenizer, prefix)
    best = generate.next_tokens(model, vocab, prime, top)
    if as_json:
        click.echo(json_line(generate.next_record(prefix, best)))
        return
    click.echo(f"{'probability':>11} {'logprob':>9}  token")
    for tok, lp in best:
        click.echo(f"{math.exp(lp):11.6f} {lp:9.4f}  {show_token(tok)}")

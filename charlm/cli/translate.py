"""`charlm translate`: the output sequence of each source under a sequence-to-sequence model."""

from __future__ import annotations

import json

import click

from charlm.cli.group import cli
from charlm.cli.options import load_model, model_option
from charlm.text.reader import iter_lines


@cli.command("translate")
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@model_option
@click.option("-f", "--file", "file", metavar="PATH",
              help="Translate every non-empty line of PATH (- for stdin), one source per line.")
@click.option("--beam", type=int, default=4, show_default=True, metavar="K",
              help="Beam width (1: greedy decoding).")
@click.option("--nbest", type=int, default=1, show_default=True, metavar="N",
              help="Print the N best outputs of each source (N <= --beam).")
@click.option("--length-penalty", type=float, default=0.0, show_default=True, metavar="A",
              help="Rank outputs by logprob / steps^A (0: the most probable output).")
@click.option("--max-length", type=int, default=None, metavar="N",
              help="Output tokens at most [default: 2 x the source's tokens + 10].")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per output: {"source", "output", "tokens", "logprob", "rank", "stop"}.')
@click.option("--attention", is_flag=True,
              help="With --json: add the attention matrix (one row per output step, <EOS> last; one column per "
                   "source token) and the source tokens.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sources decoded together.")
def translate_command(sources, model_path, file, beam, nbest, length_penalty, max_length, as_json, attention,
                      batch_size) -> None:
    """Write the output of each SOURCE under a model trained by `charlm train --task seq2seq`.

    Each argument is one source, cut into tokens by the model's source tokenizer; the decoder
    writes tokens until <EOS> or --max-length, found by beam search (--beam 1: greedy). The
    output is one line per source (with --nbest N: N lines, rank, log-probability in nats and
    output, tab-separated). Source tokens the model never saw are read as <UNK> (a line on
    stderr says which).

    \b
    Examples:
      charlm translate -m dates.npz "the 29th of August 1958" "5/1/2001"
      charlm translate -m g2p.npz --beam 8 --nbest 3 PHOENIX
      charlm translate -m dates.npz --json --attention "Aug 29, 1958"
      charlm translate -m g2p.npz --file words.txt > phones.txt
    """
    if file is None and not sources:
        raise click.UsageError("nothing to translate: give one or more SOURCE arguments or --file PATH")
    if file is not None and sources:
        raise click.UsageError("give SOURCE arguments or --file PATH, not both")
    if attention and not as_json:
        raise click.UsageError("--attention needs --json (or draw it: charlm plot -m MODEL --attention SOURCE)")
    model = load_model(model_path)
    texts = list(sources) if file is None else [line.strip() for line in iter_lines(file) if line.strip()]
    if not texts:
        raise click.UsageError(f"{file} has no sources to translate")
    outputs = model.translate(texts, beam=beam, nbest=nbest, length_penalty=length_penalty, max_length=max_length,
                              batch_size=batch_size)
    unknown = sorted({t for o in outputs for t in o.unknown})
    if unknown:
        click.echo(f"charlm: {len(unknown)} source token(s) the model never saw, read as <UNK>: "
                   f"{' '.join(unknown[:12])}{' ...' if len(unknown) > 12 else ''}", err=True)
    for o in outputs:
        if as_json:
            click.echo(json.dumps(o.to_dict(attention), ensure_ascii=False))
        elif nbest > 1:
            click.echo(f"{o.rank}\t{o.logprob:.4f}\t{o.output}")
        else:
            click.echo(o.output)

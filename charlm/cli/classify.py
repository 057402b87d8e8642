"""`charlm classify`: the label of each text under a trained classifier (e.g. sentiment)."""

from __future__ import annotations

import json

import click

from charlm.cli.group import cli
from charlm.cli.options import input_options, load_model, load_predictor, texts_or_file
from charlm.sentence.formats import read_labelled
from charlm.tasks.lm import LM


@cli.command("classify")
@input_options("TEXT", file_help="Classify every non-empty line of PATH (- for stdin); LABEL<TAB>TEXT and "
                                 "__label__ lines have their label removed first.",
               formats=["tab", "fasttext", "text"], format_help="The --file format [default: detected from its "
                                                                "first line].")
@click.option("-k", "--top-k", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Show the N likeliest labels with their probabilities.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per text: {"text", "label", "prob", "probs"} (probs: the --top-k labels).')
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Texts classified together (sorted by length, padded, masked).")
def classify_command(texts, model_path, file, fmt, top_k, as_json, batch_size) -> None:
    """Give each TEXT the label a model trained by `charlm train --task classify` finds likeliest,
    or a conditional language model (`charlm train --condition`) by Bayes' rule.

    Each argument is one text, cut into words by the model's tokenizer. The output is one line per
    text: the label, its probability (the softmax of the notes' many-to-one output ŷ), and the text;
    with --top-k N the N likeliest labels and their probabilities.

    A conditional language model is a generative classifier: the label is the argmax over c of
    log P(TEXT | c) + log P(c), P(c) the labels' frequencies in its training data, and the
    probability printed is the posterior P(c | TEXT) (Bayes' rule; `charlm score --all-labels`
    prints the log P(TEXT | c)).

    \b
    Examples:
      charlm classify -m sentiment.npz "a gorgeous, witty film" "dull and far too long"
      charlm classify -m sentiment.npz --top-k 2 --json "not bad at all"
      charlm classify -m sentiment.npz --file reviews.txt
      cat reviews.txt | charlm classify -m sentiment.npz --file -
      charlm classify -m reviews-lm.npz --top-k 2 "a gorgeous, witty film"   # a conditional LM
    """
    model = load_model(model_path, any_task=True)
    if isinstance(model, LM) and model.labels is not None:   # a conditional language model: Bayes' rule
        results = _bayes(model, texts, file, fmt, top_k, batch_size)
    else:  # a classifier (any other model: the message that names its task and its commands)
        results = _classified(load_predictor(model_path, batch_size), texts, file, fmt, top_k)
    for r in results:
        if as_json:
            click.echo(json.dumps(r.to_dict(), ensure_ascii=False))
        else:
            click.echo("  ".join(f"{label} {p:.4f}" for label, p in r.probs.items()) + "  " + " ".join(r.text.split()))


def _classified(predictor, texts, file, fmt, top_k) -> list:
    """A classifier's records (`Predictor.classify`) of the texts or the --file."""
    token_lists, shown = texts_or_file(texts, file, fmt, predictor, "TEXT"), list(texts)
    if token_lists is None:
        cut = predictor.encoder.tokenizer().tokenize
        examples = read_labelled(file, cut, format=fmt, need_labels=False).examples
        token_lists, shown = [e.tokens for e in examples], [e.text for e in examples]
    results = predictor.classify(token_lists, shown, top_k)
    if predictor.truncated:
        click.echo(f"charlm: {predictor.truncated} text(s) longer than {predictor.max_length} words (the model's "
                   f"--max-length): their first {predictor.max_length} words were classified", err=True)
    return results


def _bayes(lm, texts, file, fmt, top_k, batch_size) -> list:
    """A conditional language model's records (`LM.classify`, Bayes' rule) of the texts or the --file."""
    if file is None and not texts:
        raise click.UsageError("nothing to classify: give one or more TEXT arguments or --file PATH")
    if file is not None and texts:
        raise click.UsageError("give TEXT arguments or --file PATH, not both")
    if fmt is not None and file is None:
        raise click.UsageError("--format needs --file PATH")
    if file is not None:
        texts = [e.text for e in read_labelled(file, lm.tokenizer.tokenize, format=fmt, need_labels=False).examples]
    return lm.classify(list(texts), top_k, batch_size=batch_size)

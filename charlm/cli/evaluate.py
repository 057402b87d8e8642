"""`charlm eval`: a model's quality on a labelled file, whatever its task."""

from __future__ import annotations

import json

import click

from charlm.lm import scoring
from charlm.cli import cli, warn
from charlm.cli.options import load_checked, model_option
from charlm.cli.score import _summary_lines
from charlm.errors import DataError
from charlm.predict import Predictor, evaluate_file
from charlm.text.tokenizer import Tokenizer


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:6.2f}"


def _prf_table(title: str, rows: dict, count: str = "support") -> list[str]:
    width = max([len(title)] + [len(k) for k in rows])
    lines = [f"{title:<{width}}  precision  recall      F1  {count:>7}  predicted"]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}  {_pct(r['precision']):>9}  {_pct(r['recall']):>6}  {_pct(r['f1']):>6}"
                     f"  {r['support']:>7}  {r['predicted']:>9}")
    return lines


def _tag_lines(r: dict) -> list[str]:
    lines = [f"tokens: {r['tokens']} in {r['sentences']} sentences", f"token accuracy: {_pct(r['accuracy'])}%"]
    if r.get("entity_f1") is not None:
        lines.append(f"entities ({r['scheme']}, counted as conlleval counts them): {r['entities']} in the data, "
                     f"{r['predicted_entities']} found, {r['correct_entities']} correct")
        lines.append(f"entity precision: {_pct(r['entity_precision'])}%  recall: {_pct(r['entity_recall'])}%  "
                     f"F1: {_pct(r['entity_f1'])}")
        lines += [""] + _prf_table("type", r["per_type"])
    return lines + [""] + _prf_table("tag", r["per_tag"])


def _class_lines(r: dict) -> list[str]:
    lines = [f"examples: {r['examples']}", f"accuracy: {_pct(r['accuracy'])}%", f"macro-F1: {_pct(r['macro_f1'])}",
             ""] + _prf_table("label", r["per_class"]) + ["", "confusion (rows: gold label, columns: predicted)"]
    width = max(len(x) for x in r["labels"])
    cells = max([width] + [len(str(c)) for row in r["confusion"] for c in row])
    lines.append(" " * width + "  " + " ".join(f"{x:>{cells}}" for x in r["labels"]))
    for label, row in zip(r["labels"], r["confusion"]):
        lines.append(f"{label:<{width}}  " + " ".join(f"{c:>{cells}}" for c in row))
    return lines


@cli.command("eval")
@model_option
@click.argument("file", metavar="FILE")
@click.option("--format", "fmt", type=click.Choice(["conllu", "columns", "tab", "fasttext"]), default=None,
              help="The file's format (tagger: conllu or columns; classifier: tab or fasttext) "
                   "[default: detected].")
@click.option("--tag-column", default=None, metavar="upos|xpos|N",
              help="Tagger: the gold tag column [default: the one the model was trained on].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sentences evaluated together.")
def eval_command(model_path, file, fmt, tag_column, as_json, batch_size) -> None:
    """Evaluate the model on FILE (- for stdin), for every task.

    \b
    Language model: cross-entropy and perplexity of FILE read as one running text, exactly as
      `charlm score --file FILE --stream` computes them (JSON: task, tokens, nats_per_token,
      perplexity, ...).
    Tagger: FILE is CoNLL-U or a column file with gold tags. Token accuracy and per-tag
      precision/recall/F1; for entity tags (IOB1, IOB2/BIO, IOBES) also entity precision,
      recall and F1, overall and per type, counted exactly as the CoNLL conlleval script counts
      them (JSON: task, accuracy, entity_precision, entity_recall, entity_f1, per_type, per_tag).
    Classifier: FILE has LABEL<TAB>TEXT or __label__LABEL TEXT lines. Accuracy, macro-F1,
      per-class precision/recall/F1 and the confusion matrix (JSON: task, accuracy, macro_f1,
      per_class, confusion, labels).
    Gold tags or labels the model never saw are reported (a warning) and counted as errors.

    \b
    Examples:
      charlm eval -m ner.npz data/wikigold.test.txt
      charlm eval -m pos.npz en_ewt-ud-test.conllu --json
      charlm eval -m sentiment.npz test.tsv
      charlm eval -m ptb.npz ptb.test.txt                 # = charlm score --file ... --stream
    """
    loaded = load_checked(model_path, ("lm", "tag", "classify"))
    task = loaded.task
    if task == "lm":
        if fmt or tag_column:
            raise click.UsageError(f"{'--format' if fmt else '--tag-column'} applies to taggers and classifiers; "
                                   f"{model_path} is a language model")
        model, vocab, _ = loaded
        summary = scoring.score_stream(model, vocab, Tokenizer(vocab.tokenizer).iter_sentences(file))
        if summary.tokens == 0:
            raise DataError(f"{'stdin' if file == '-' else file} has nothing to score")
        if as_json:
            d = summary.to_dict()
            d.pop("summary", None)
            click.echo(json.dumps({"task": "lm", **d}))
        else:
            click.echo("\n".join(_summary_lines(summary)))
        return
    report = evaluate_file(Predictor.from_loaded(loaded, batch_size), file, fmt, tag_column)
    unknown = report["unknown_labels"]
    if unknown:
        what = "tag" if task == "tag" else "label"
        warn(f"{file} has {len(unknown)} gold {what}(s) the model never saw ({', '.join(unknown[:8])}"
             f"{', ...' if len(unknown) > 8 else ''}): counted as errors")
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo("\n".join(_tag_lines(report) if task == "tag" else _class_lines(report)))

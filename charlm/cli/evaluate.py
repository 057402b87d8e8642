"""`charlm eval`: a model's quality on a labelled file, whatever its task."""

from __future__ import annotations

import json

import click

from charlm.cli.group import cli, warn
from charlm.cli.options import load_model, model_option
from charlm.tasks import get
from charlm.tasks.sentence import FORMAT


@cli.command("eval")
@model_option
@click.argument("file", metavar="FILE")
@click.option("--format", "fmt", type=click.Choice(list(FORMAT.choices)), default=None,
              help="The file's format (tagger: conllu or columns; classifier: tab or fasttext) "
                   "[default: detected].")
@click.option("--tag-column", default=None, metavar="upos|xpos|N",
              help="Tagger: the gold tag column [default: the one the model was trained on].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sentences evaluated together.")
@click.option("--beam", type=int, default=None, metavar="K",
              help="Sequence to sequence: decode with beam search of width K [default: 1, greedy].")
def eval_command(model_path, file, fmt, tag_column, as_json, batch_size, beam) -> None:
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
    Conditional language model: FILE is labelled as for a classifier. The Bayes classifier's
      metrics (argmax over labels of log P(text | label) + log P(label)) and the cross-entropy
      given the true label, overall and per label.
    Sequence to sequence: FILE has SOURCE<TAB>TARGET lines (a source on several lines has
      several references). Sequence accuracy, word error rate (an output is right when it
      equals any reference), token error rate (edit distance to the closest reference over
      its length), and BLEU and chrF when sacrebleu is installed (JSON: task, examples,
      sequence_accuracy, wer, token_error_rate, bleu, chrf, beam, ...).
    Gold tags or labels the model never saw are reported (a warning) and counted as errors.

    \b
    Examples:
      charlm eval -m ner.npz data/wikigold.test.txt
      charlm eval -m pos.npz en_ewt-ud-test.conllu --json
      charlm eval -m sentiment.npz test.tsv
      charlm eval -m ptb.npz ptb.test.txt                 # = charlm score --file ... --stream
      charlm eval -m g2p.npz data/cmudict-g2p.test.txt --beam 4
    """
    model = load_model(model_path, any_task=True)
    task = get(model.task)
    if beam is None:
        report = task.evaluate(model, file, fmt, tag_column, batch_size)
    elif not task.decodes:   # only decoders search
        raise click.UsageError(f"--beam applies to sequence-to-sequence models; {model_path} is {task.noun} "
                               f"(task {model.task})")
    else:
        report = task.evaluate(model, file, fmt, tag_column, batch_size, beam=beam)
    if report.warning:
        warn(report.warning)
    if as_json:
        click.echo(json.dumps(report.data, ensure_ascii=False))
    else:
        click.echo("\n".join(report.lines))

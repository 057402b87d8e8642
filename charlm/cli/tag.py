"""`charlm tag`: tag each token of sentences with a trained tagger (named entities, parts of speech)."""

from __future__ import annotations

import io
import json

import click

from charlm.cli.group import cli
from charlm.cli.options import input_options, load_predictor, texts_or_file
from charlm.sentence.formats import (
    column_tags,
    detect_tag_format,
    looks_like_columns,
    read_tagged,
    read_text_sentences,
    write_columns,
)
from charlm.sentence.labels import SCHEMES
from charlm.text.reader import iter_lines, read_text


def _input_format(source, known_tags: set) -> str:
    """conllu, columns or text: what an unlabelled input to tag looks like (see --format). A
    column file whose tags are not the model's is still a column file: its tokens are tagged and
    a line on stderr says that its tags are another tag set."""
    for line in iter_lines(source):
        if line.strip() and not line.startswith("#"):
            if detect_tag_format(line) == "conllu":
                return "conllu"
            break
    _rewind(source)
    if looks_like_columns(source, known_tags):
        return "columns"
    _rewind(source)
    tags = column_tags(source)
    if tags is None:
        return "text"
    shown = ", ".join(sorted(tags)[:6]) + (", ..." if len(tags) > 6 else "")
    click.echo(f"charlm: {getattr(source, 'name', source)} is a column file whose tags ({shown}) are not this "
               "model's: its first column is tagged, its last column left out", err=True)
    return "columns"


def _rewind(source) -> None:
    if hasattr(source, "seek"):
        source.seek(0)


def _known_tags(encoder) -> set:
    """Tags an input column file may carry: the model's, and for entity tags every scheme's."""
    tags = set(encoder.labels)
    if encoder.model_scheme:
        kinds = {t.partition("-")[2] for t in tags if t != "O"}
        tags |= {f"{p}-{k}" for k in kinds for p in "BIES"}
    return tags


def _read_input(path: str, fmt: str | None, predictor) -> list[list[str]]:
    """Token lists of an input file: CoNLL-U or column files (first column / FORM), or text."""
    enc = predictor.encoder
    source = path
    if fmt is None:
        if path == "-":  # read once, look at it, read it again
            source = io.StringIO("".join(read_text("-")))
            source.name = "<stdin>"
        fmt = _input_format(source, _known_tags(enc))
        _rewind(source)
    if fmt == "text":
        return [s.tokens for s in read_text_sentences(source, enc.tokenizer().tokenize).sentences]
    return [s.tokens for s in read_tagged(source, format=fmt, need_tags=False).sentences]


@cli.command("tag")
@input_options("SENTENCE", file_help="Tag a CoNLL-U or column file (first column: the tokens) or plain text, one "
                                     "sentence per line (- for stdin).",
               formats=["conllu", "columns", "text"],
               format_help="The --file format [default: detected: CoNLL-U, a column file whose last column "
                           "holds the model's tags, else text].")
@click.option("--conll", is_flag=True, help="Write columns: token<TAB>tag, a blank line after each sentence.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per sentence: {"tokens", "tags", "probs"} (and "spans" with --spans).')
@click.option("--spans", is_flag=True,
              help="List the entities of each sentence: text, type and token range (entity tags only).")
@click.option("--scheme", type=click.Choice([s.lower() for s in SCHEMES]), default=None,
              help="Write entity tags in this scheme [default: the scheme of the training data].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sentences tagged together (sorted by length, padded, masked).")
def tag_command(texts, model_path, file, fmt, conll, as_json, spans, scheme, batch_size) -> None:
    """Tag every token of each SENTENCE with a model trained by `charlm train --task tag`.

    Each argument is one sentence, cut into words by the model's tokenizer. The output is one
    line per sentence, each token followed by /TAG. Entity tags (IOB1, IOB2, IOBES) are decoded
    with a Viterbi search over the transitions the scheme allows, so a sequence such as O I-PER
    (invalid in IOB2) is never written, and are written in the scheme of the training data.

    \b
    Examples:
      charlm tag -m ner.npz "He said, Teddy Roosevelt was a great President"
      charlm tag -m ner.npz --spans "Teddy bears are on sale!"
      charlm tag -m pos.npz --file en_ewt-ud-test.conllu --conll > tagged.txt
      charlm tag -m ner.npz --file notes.txt --json            # plain text, one sentence per line
      cat notes.txt | charlm tag -m ner.npz --file - --format text
    """
    if conll and (as_json or spans):
        raise click.UsageError("--conll cannot be combined with --json or --spans")
    predictor = load_predictor(model_path, batch_size)
    if spans or scheme:
        predictor.need_entity_tags("--spans" if spans else "--scheme")
    token_lists = texts_or_file(texts, file, fmt, predictor, "SENTENCE")
    if token_lists is None:
        token_lists = _read_input(file, fmt, predictor)
    results = predictor.tag(token_lists, scheme)
    for n, r in enumerate(results):
        if as_json:
            click.echo(json.dumps(r.to_dict(spans), ensure_ascii=False))
        elif conll:
            click.echo(write_columns(r.tokens, r.tags), nl=False)
        elif spans:
            if n:
                click.echo("")
            for text, kind, start, end in r.spans():
                click.echo(f"{text}  {kind}  {start}-{end}")
        else:
            click.echo(" ".join(f"{t}/{g}" for t, g in zip(r.tokens, r.tags)))


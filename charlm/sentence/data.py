"""A tagging or classification run's data, ready for the engine.

    read(path)                        -> token lists and gold tags (per sentence) or labels:
                                         `read_tags` or `read_labels`, as the task says
    split_validation(n, fraction, seed) -> which examples are held out (engine.batches)
    Encoder.build(...)                -> vocabularies and label set from the training part
    prepare_task_data(...)            -> TaskData: encoded training and validation sentences

Without --val-file a seeded random share (--val-fraction) of the sentences is held out, the same
share every time the same file is read with the same seed (so a resumed run splits as before).
Problems are `DataError`s: a training set with a single label, labels only the validation data
has (a warning: they count as errors), and whatever the file readers raise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.engine.batches import split_validation
from charlm.errors import DataError
from charlm.sentence.encoder import Encoder
from charlm.sentence.formats import read_labelled, read_tagged
from charlm.sentence.labels import detect_scheme
from charlm.sentence.predict import MAX_LENGTH, split_long
from charlm.text.tokenizer import TokenizerConfig


def read_tags(path, tokenizer: TokenizerConfig, format: str | None = None, tag_column=None) -> tuple[list, list, str]:
    """(token lists, a tag list per sentence, format) of a tagging file (CoNLL-U or columns)."""
    f = read_tagged(path, format=format, tag_column=tag_column)
    return [s.tokens for s in f.sentences], [s.tags for s in f.sentences], f.format


def read_labels(path, tokenizer: TokenizerConfig, format: str | None = None, tag_column=None) -> tuple[list, list, str]:
    """(token lists, a label per example, format) of a classification file; the text is cut by
    `tokenizer` (case kept when it lowercases: the word lookup lowercases, see `sentence.encoder`)."""
    cut = Encoder.text_tokenizer(tokenizer)
    f = read_labelled(path, cut.tokenize, format=format)
    return [e.tokens for e in f.examples], [e.label for e in f.examples], f.format


@dataclass
class TaskData:
    """Encoded training and validation examples of a tagger or classifier."""

    encoder: Encoder
    train: list  # EncodedSentence
    val: list  # EncodedSentence (no labels: scored against val_gold)
    val_gold: list  # gold tags (data scheme) or labels of the validation examples
    n_train_tokens: int
    n_val_tokens: int
    warning: str | None = None


def _tokens(sentences: list) -> int:
    return sum(len(s) for s in sentences)


def prepare_task_data(read, per_token: bool, corpus, tokenizer: TokenizerConfig, *, format=None, tag_column=None,
                      val_file=None, val_fraction: float = 0.1, seed: int = 0, min_count: int = 1,
                      max_vocab: int | None = None, encoder: Encoder | None = None,
                      max_length: int = MAX_LENGTH, features=None) -> TaskData:
    """Read (with `read`: `read_tags` for a tag per token, `per_token`, else `read_labels`), split,
    build the vocabularies (unless `encoder` is given: a resumed run) and encode. Examples longer
    than `max_length` tokens are split or cut (`bound_lengths`). `features`: the new encoder's
    (`Encoder.features`; a resumed run's encoder has its own)."""
    tokens, gold, fmt = read(corpus, tokenizer, format, tag_column)
    tokens, gold, cut = bound_lengths(per_token, tokens, gold, max_length)
    if val_file:
        val_tokens, val_gold, _ = read(val_file, tokenizer, format, tag_column)
        val_tokens, val_gold, val_cut = bound_lengths(per_token, val_tokens, val_gold, max_length)
        cut += val_cut
    else:
        keep, held = split_validation(len(tokens), val_fraction, seed)
        val_tokens, val_gold = [tokens[i] for i in held], [gold[i] for i in held]
        tokens, gold = [tokens[i] for i in keep], [gold[i] for i in keep]
    if encoder is None:
        scheme = detect_scheme(gold) if per_token else None
        encoder = Encoder.build(per_token, tokens, gold, tokenizer, scheme, min_count, max_vocab)
        encoder.features = features
    what, model = ("tag", "tagger") if per_token else ("label", "classifier")
    if len(encoder.labels) < 2:
        raise DataError(f"{corpus}: the training data has a single {what} ({encoder.labels[0]!r}): "
                        f"a {model} needs at least two")
    train = encoder.encode_all(tokens, gold)
    val = encoder.encode_all(val_tokens)
    unknown = encoder.unknown_labels(val_gold)
    warnings = []
    if cut:
        warnings.append(f"{cut} example(s) longer than --max-length {max_length} words: "
                        + ("split into pieces of at most that many" if per_token else "their first "
                           f"{max_length} words are used"))
    if unknown:
        shown = ", ".join(unknown[:8]) + (", ..." if len(unknown) > 8 else "")
        warnings.append(f"the validation data has {len(unknown)} {what}(s) the training data does not "
                        f"({shown}): they count as errors")
    return TaskData(encoder, train, val, val_gold, _tokens(train), _tokens(val), "; ".join(warnings) or None)


def bound_lengths(per_token: bool, token_lists: list, gold: list, max_length: int) -> tuple[list, list, int]:
    """(token lists, gold, how many were longer than max_length): a tagging sentence (`per_token`) longer than
    max_length is split into pieces of at most max_length tokens (its tags with it), a
    classification text keeps its first max_length tokens. Memory then depends on max_length
    and the batch size, never on the longest line of a file."""
    long = sum(len(t) > max_length for t in token_lists)
    if not long:
        return token_lists, gold, 0
    if per_token:
        pairs = [(t, g) for tokens, tags in zip(token_lists, gold)
                 for t, g in zip(split_long(tokens, max_length), split_long(tags, max_length))]
        return [t for t, _ in pairs], [g for _, g in pairs], long
    return [t[:max_length] for t in token_lists], gold, long

"""The language model given a label (`charlm train --task lm --condition`): the lm task's conditional
mode. Its machinery is in charlm/lm/ (`lm.conditional` the network, `lm.labelled` the batches and
validation, `lm.bayes` the scores given each label and Bayes' rule); this module joins it to the
classification formats (charlm.sentence.formats: the file is read as a classifier's is) and to the
task interface, for tasks/lm.py:

    CONDITION, LABEL_EMBEDDING, CONDITION_INPUT     the options (declared once)
    check_options(opts)          the label settings need --condition; --vocab does not apply
    is_conditional(meta)         a checkpoint of a conditional model (its settings name the labels)
    prepare(opts, vocab, labels) -> CondData: the labelled file read, split and encoded
    start(opts, ...), resume_data(opts, model, ...)      a run, fresh or resumed: whole texts
                                 (--mode lines, the default with --condition) or the stream form
                                 (--mode stream: each label's running text in --seq-len windows,
                                 the state carried; charlm.lm.labelstreams)
    classified(bayes, names, texts, top_k)               `charlm classify`'s records
    evaluation(model, source, format, batch_size)        `charlm eval`'s report

A checkpoint of a conditional model is a language model's file (task "lm") whose model settings
have num_labels, label_embedding and condition_input, and whose metadata has "labels" and
"label_counts" (`LabelSet.to_meta`, the prior of the Bayes classifier). Its tokenizer's mode says how
it was trained: lines (whole texts, each ending in <EOS>) or stream (running texts, "\n" a token).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from charlm.engine.memory import check_memory
from charlm.engine.optim import make_optimizer
from charlm.engine.options import Option
from charlm.engine.run import Run
from charlm.engine.state import TrainState
from charlm.errors import CharlmError, CheckpointError, DataError, UsageError
from charlm.lm.bayes import bayes_classify, true_label_sums
from charlm.lm.conditional import CONDITION_INPUTS, CondConfig, ConditionalLM
from charlm.lm.corpus import eval_streams
from charlm.lm.labelled import LabelSet, LinesValidation, encode_lines, pad_lines
from charlm.lm.labelstreams import (
    LabelStreamBatches,
    LabelStreamValidation,
    lay_out,
    running_sums,
    running_texts,
    stream_form,
)
from charlm.lm.model import memory_need
from charlm.lm.scoring import LN2, NEWLINE
from charlm.sentence.data import split_validation
from charlm.sentence.formats import LABEL_FORMATS, read_labelled
from charlm.sentence.metrics import classification_report
from charlm.sentence.predict import Classified
from charlm.sentence.source import SentenceBatches
from charlm.tasks.base import Report
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import EOS, Vocab

CONDITION = Option("condition", bool, False,
                   help="lm: CORPUS is labelled, one text per line (LABEL<TAB>TEXT or __label__LABEL TEXT): train "
                        "a language model given the label (`charlm sample --label L`); whole texts (--mode lines, "
                        "the default), or --mode stream: each label's texts as one running text in --seq-len "
                        "windows (long texts).")
LABEL_EMBEDDING = Option("label_embedding", int, low=1, high=8192, group="model",
                         help=f"lm --condition: size of the label's embedding e(c) [default: "
                              f"{CondConfig.defaults()['label_embedding']}].")
CONDITION_INPUT = Option("condition_input", choices=CONDITION_INPUTS, group="model",
                         help="lm --condition: e(c) goes in beside the input at every step, or at the first only "
                              f"[default: {CondConfig.defaults()['condition_input']}].")
OPTIONS = (CONDITION, LABEL_EMBEDDING, CONDITION_INPUT)


def check_options(opts) -> None:
    """--condition fills the label settings' defaults (its tokenizer mode defaults to lines:
    `LMTask.default`); without it the label settings are refused."""
    label_settings = [o for o in OPTIONS[1:] if o.name in opts.model]
    if not opts.condition:
        if label_settings:
            raise UsageError(f"{label_settings[0].flag} needs --condition (a labelled corpus)")
        return
    if opts.vocab:
        raise UsageError("--vocab does not apply to --condition: the vocabulary is built from the labelled texts")
    defaults = CondConfig.defaults()
    for option in OPTIONS[1:]:
        opts.model.setdefault(option.name, defaults[option.name])


def is_conditional(meta: dict) -> bool:
    """Whether a checkpoint's metadata is a conditional language model's."""
    return isinstance(meta.get("model"), dict) and "num_labels" in meta["model"]


def labels_of(meta: dict, config, path: str) -> LabelSet:
    """The LabelSet of a conditional model's file (CheckpointError naming the file)."""
    try:
        return LabelSet.from_meta(meta, config.num_labels)
    except CharlmError as err:
        raise CheckpointError(f"{path}: {err}") from None


# -- data ------------------------------------------------------------------------------------------

def read_conditional(path, tokenizer: TokenizerConfig, format: str | None = None):
    """(token lists, label names, format) of a labelled file, the texts cut by `tokenizer`
    (the classification formats' reader: a line without a label or text, a file that mixes the
    formats are DataErrors naming the line)."""
    f = read_labelled(path, Tokenizer(tokenizer).tokenize, format=format)
    return [e.tokens for e in f.examples], [e.label for e in f.examples], f.format


@dataclass
class CondData:
    """A conditional language model's training and validation texts."""

    vocab: Vocab
    labels: LabelSet
    train: list                 # LabelledLine
    val_tokens: list            # token lists of the validation texts
    val_labels: np.ndarray      # (Nv,) their label ids
    format: str
    n_train_tokens: int         # predictions: tokens + one <EOS> per text
    n_val_tokens: int


def prepare(corpus, tokenizer: TokenizerConfig, *, format: str | None = None, val_file=None,
            val_fraction: float = 0.1, seed: int = 0, min_count: int = 1, max_vocab: int | None = None,
            vocab: Vocab | None = None, labels: LabelSet | None = None, stream: bool = False) -> CondData:
    """Read and split a labelled file, build the vocabulary and label set from the training part
    (unless given: a resumed run) and encode. The tokenizer reads lines (each text ends in <EOS>),
    or with `stream` it is a stream-mode one (each text is followed by "\n", a token).

    Without `val_file` a seeded share `val_fraction` of the texts is held out
    (`sentence.data.split_validation`: the same share for the same file and seed). A training
    part with one label, and validation labels it does not have, are DataErrors.
    """
    tokenizer = replace(vocab.tokenizer if vocab is not None else tokenizer, mode="stream" if stream else "lines")
    tokens, names, fmt = read_conditional(corpus, tokenizer, format)
    if val_file:
        val_tokens, val_names, _ = read_conditional(val_file, tokenizer, format)
    else:
        keep, held = split_validation(len(tokens), val_fraction, seed)
        val_tokens, val_names = [tokens[i] for i in held], [names[i] for i in held]
        tokens, names = [tokens[i] for i in keep], [names[i] for i in keep]
    if labels is None:
        labels = LabelSet.count(names)
        if len(labels) < 2:
            raise DataError(f"{corpus}: the training data has a single label ({labels.names[0]!r}): "
                            "a conditional language model needs at least two")
    if vocab is None:
        counts = Counter(t for toks in tokens for t in toks)
        counts[NEWLINE if stream else EOS] += len(tokens)
        vocab = Vocab.from_counts(counts, min_count=min_count, max_vocab=max_vocab, tokenizer=tokenizer)
    train = encode_lines(tokens, names, vocab, labels)
    val_ids = np.array([labels.id(n) for n in val_names], dtype=np.int64)
    return CondData(vocab, labels, train, val_tokens, val_ids, fmt, sum(map(len, train)),
                    sum(len(t) + 1 for t in val_tokens))


def batch_source(data: CondData, batch_size: int, seed: int, clock) -> SentenceBatches:
    """The engine's batch source: `batch_size` texts per batch, Batch.inputs = (LabelledLines,),
    Batch.tokens = predictions (tokens + <EOS>); `clock.epoch` (the run's TrainState) picks the
    epoch's order (the sentence tasks' `SentenceBatches`)."""
    return SentenceBatches(data.train, partial(pad_lines, eos=data.vocab.eos_id), batch_size, seed, clock)


# -- a run -----------------------------------------------------------------------------------------

def _data(opts, vocab=None, labels=None):
    """(validation, data, info) of a run; the batch source is made by the caller (`_source`)."""
    stream = opts.tokenizer.get("mode") == "stream"
    data = prepare(opts.corpus, TokenizerConfig.from_dict(opts.tokenizer), val_file=opts.val_file,
                   val_fraction=opts.val_fraction, seed=opts.seed, min_count=opts.min_count,
                   max_vocab=opts.max_vocab, vocab=vocab, labels=labels, stream=stream)
    info = {"vocab": len(data.vocab), "train_tokens": data.n_train_tokens, "val_tokens": data.n_val_tokens,
            "batch": opts.batch_size, "level": data.vocab.tokenizer.level, "task": "lm",
            "labels": len(data.labels), "texts": len(data.train)}
    if not data.val_tokens:
        validation = None
    elif stream:
        val = [data.vocab.encode(t).tolist() for t in data.val_tokens]
        validation = LabelStreamValidation(_layout(data, val, data.val_labels, opts.seq_len,
                                                   eval_streams(data.n_val_tokens)))
    else:
        validation = LinesValidation(data.vocab, data.val_tokens, data.val_labels, data.labels.log_prior(),
                                     batch_size=64)
    if stream:
        info["seq_len"] = opts.seq_len
    return validation, data, info


def _layout(data: CondData, id_lists, labels, seq_len: int, rows: int):
    """The stream form's windows (`labelstreams.lay_out`) of the texts `id_lists` of `labels`,
    each label's texts as one running text."""
    texts = running_texts(id_lists, labels, len(data.labels), newline=data.vocab.index[NEWLINE])
    return lay_out([np.array(t, dtype=np.int32) for t in texts], range(len(data.labels)), seq_len, rows,
                   data.vocab.eos_id)


def _source(opts, data: CondData, clock):
    """The batch source: whole texts (`batch_source`), or the stream form's windows of every
    label's running text."""
    if opts.tokenizer.get("mode") != "stream":
        return batch_source(data, opts.batch_size, opts.seed, clock)
    return LabelStreamBatches(_layout(data, [line.ids.tolist() for line in data.train],
                                      [line.label for line in data.train], opts.seq_len, opts.batch_size))


def _check_memory(opts, config, data: CondData, source) -> None:
    """Refuse a run whose batch cannot fit in memory: a window of the stream form, or in the
    lines form a batch of the longest text (back-propagated whole), for which the stream form
    is the way out."""
    slots = len(make_optimizer(opts.optimizer, 1.0).slots)
    if isinstance(source, LabelStreamBatches):
        check_memory(*memory_need(config, source.batch_size, opts.seq_len, slots),
                     "--hidden, --layers, --embedding, --batch-size or --seq-len")
        return
    longest = max(len(line) for line in data.train)
    check_memory(*memory_need(config, opts.batch_size, longest, slots),
                 f"--batch-size, --hidden or --layers: the longest text has {longest:,} tokens and is "
                 "back-propagated whole; or train the stream form (--mode stream), which reads long texts "
                 "in --seq-len windows")


def start(opts, reporter, verify: bool) -> Run:
    """A fresh run of a conditional language model (the network starts as the unconditional one of
    the same seed, `ConditionalLM`)."""
    validation, data, info = _data(opts)
    config = CondConfig(vocab_size=len(data.vocab), num_labels=len(data.labels), **opts.model)
    state = TrainState(n_train=info["train_tokens"], rng=np.random.default_rng(opts.seed + 1))
    source = _source(opts, data, state)
    _check_memory(opts, config, data, source)
    model = ConditionalLM(config, seed=opts.seed)
    info.update(steps_per_epoch=source.steps_per_epoch(), batch=source.batch_size)
    run = Run(opts, model, data.vocab, source, validation, make_optimizer(opts.optimizer, opts.lr), state,
              dict(info, params=model.num_params()), None, data.labels.to_meta())
    state.hidden = run.initial_hidden()
    return run


def resume_data(opts, model, state):
    """(source, validation, info, warning, extra meta) of a resumed conditional run: its
    vocabulary and labels."""
    validation, data, info = _data(opts, vocab=model.vocab, labels=model.labels)
    source = _source(opts, data, state)
    info.update(steps_per_epoch=source.steps_per_epoch(), batch=source.batch_size)
    return source, validation, info, None, data.labels.to_meta()


# -- predictions -----------------------------------------------------------------------------------

def classified(result, names, texts, top_k: int | None = None) -> list[Classified]:
    """The records `charlm classify` prints (`sentence.predict.Classified`): the label of each text
    by Bayes' rule, its posterior, and the top_k labels' posteriors (None: all), likeliest first."""
    out = []
    for i, text in enumerate(texts):
        order = np.argsort(-result.posterior[i], kind="stable")[:top_k]
        probs = {names[c]: float(result.posterior[i, c]) for c in order}
        c = int(result.labels[i])
        out.append(Classified(text, names[c], float(result.posterior[i, c]), probs))
    return out


def evaluation(model, source, format, batch_size: int) -> Report:
    """`charlm eval` of a conditional model on a labelled file: the Bayes classifier's accuracy,
    macro-F1, per-class P/R/F1 and confusion matrix (the classifier's report), and the language
    model's figures given the true label (nats per token, perplexity, per label too): each text
    from its label's a<0> (whole texts), or for a model of the stream form each label's texts
    as one running text, as it was trained (`running_sums`; "form" says which). Gold labels the
    model does not have count as classification errors and are left out of the language model's
    figures (a warning names them)."""
    if format is not None and format not in LABEL_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(LABEL_FORMATS)} for a conditional language model")
    net, vocab, labels = model.network, model.vocab, model.labels
    examples = read_labelled(source, model.tokenizer.tokenize, format=format).examples
    tokens, gold = [e.tokens for e in examples], [e.label for e in examples]
    bayes = bayes_classify(net, vocab, tokens, labels.log_prior(), batch_size)
    report = classification_report(gold, [labels.names[c] for c in bayes.labels], labels.names)
    known = [i for i, g in enumerate(gold) if g in labels.index]
    report["unknown_labels"] = sorted({g for g in gold if g not in labels.index})
    known_tokens, known_labels = [tokens[i] for i in known], np.array([labels.id(gold[i]) for i in known], np.int64)
    stream = stream_form(vocab)
    nats, count = running_sums(net, vocab, known_tokens, known_labels) if stream else \
        true_label_sums(net, vocab, known_tokens, known_labels, batch_size)
    per_label = {labels.names[c]: _lm_figures(nats[c], count[c]) for c in range(len(labels)) if count[c]}
    report = {"task": "lm", "conditional": True, **report, "form": "stream" if stream else "lines",
              **_lm_figures(nats.sum(), count.sum()), "per_label": per_label}
    return Report(report, _lines(report, vocab.tokenizer.level))


def _lm_figures(nats: float, count: float) -> dict:
    per = float(nats / count) if count else float("nan")
    return {"tokens": int(count), "nats_per_token": per, "bits_per_token": per / LN2,
            "perplexity": float(np.exp(min(per, 700.0)))}


def _lines(r: dict, level: str) -> list[str]:
    """The report as `charlm eval` prints it: the classifier's figures (`--json` has them all: per-class
    P/R/F1 too), then the language model's."""
    unit = "bits/char" if level == "char" else "perplexity"

    def fig(d):
        return f"{d['bits_per_token']:.4f}" if level == "char" else f"{d['perplexity']:.2f}"
    confusion = "; ".join(f"{gold}: " + " ".join(f"{guess} {n}" for guess, n in zip(r["labels"], row))
                          for gold, row in zip(r["labels"], r["confusion"]))
    lines = ["generative classifier (Bayes' rule with the training prior):",
             f"examples: {r['examples']}  accuracy: {100 * r['accuracy']:.2f}%  macro-F1: {100 * r['macro_f1']:.2f}",
             f"confusion (gold: predicted counts): {confusion}"]
    how = " (each label's texts as one running text)" if r["form"] == "stream" else ""
    lines += ["", f"language model given the true label{how}: {unit} {fig(r)} over {r['tokens']} tokens "
                  f"({r['nats_per_token']:.4f} nats/token)"]
    lines += [f"  {name:<12} {unit} {fig(d)} ({d['tokens']} tokens)" for name, d in r["per_label"].items()]
    return lines

"""What the sentence tasks share (tagging, tasks/tag.py; classification, tasks/classify.py): their
options, training data and network, checkpoints, figures, and `SentenceModel`, the base of the
`Tagger` and `Classifier` that `charlm.load` returns.

A sentence task reads a labelled file (its `read`: `sentence.data.read_tags` or `read_labels`),
holds out a seeded share of the examples (or reads --val-file), builds its vocabularies and label
set (`sentence.encoder.Encoder`), and trains a bidirectional network (`sentence.network`) on
bucketed batches of whole sentences (`sentence.source`). A checkpoint also holds the character
vocabulary, the labels and the data's tag scheme (`Encoder.to_meta`).
"""

from __future__ import annotations

import os
from typing import IO, ClassVar

import numpy as np

from charlm.checkpoint import arrays_under
from charlm.engine.optim import make_optimizer
from charlm.engine.options import Option
from charlm.engine.run import Run
from charlm.engine.state import TrainState
from charlm.errors import CharlmError, CheckpointError, DataError, UsageError
from charlm.sentence.batch import make_batch
from charlm.sentence.data import prepare_task_data
from charlm.sentence.encoder import Encoder
from charlm.sentence.formats import LABEL_FORMATS, TAG_FORMATS
from charlm.sentence.network import TaggerConfig
from charlm.sentence.predict import BATCH_SIZE, MAX_LENGTH, Predictor
from charlm.sentence.source import SentenceBatches, SentenceValidation
from charlm.tasks.base import Model, Task, read_vocab, text_source
from charlm.tasks import features
from charlm.tasks.lm import INIT_FROM
from charlm.tasks.transfer import frozen_names, init_from_lm
from charlm.text.tokenizer import TokenizerConfig

# The options of the sentence tasks (`engine.options` declares the shared ones).
FORMAT = Option("format", choices=TAG_FORMATS + LABEL_FORMATS,
                help="tag: conllu or columns; classify: tab (LABEL<TAB>TEXT) or fasttext (__label__LABEL TEXT) "
                     "[default: detected from the file].")
CHAR_EMBEDDING = Option("char_embedding", int, low=1, high=1024, group="model",
                        help="tag/classify: character embedding size of the character encoder.")
CHAR_HIDDEN = Option("char_hidden", int, low=0, high=1024, group="model",
                     help="tag/classify: units per direction of the character encoder, 0 for none.")
BIDIRECTIONAL = Option("bidirectional", bool, group="model", switch=True,
                       help="tag/classify/seq2seq: --no-bidirectional keeps the left-to-right layers only (the notes' "
                            "one-directional comparison) [default: bidirectional].")
MAX_LENGTH_OPTION = Option("max_length", int, MAX_LENGTH, low=1, metavar="N",
                           help="tag/classify: tokens per example read at once: a longer sentence is split into "
                                "pieces (tag), a longer text keeps its first N words (classify); memory depends "
                                "on it and --batch-size, never on the longest line.")
FREEZE_EPOCHS = Option("freeze_epochs", int, 0, low=0, metavar="N",
                       help="tag/classify: with --init-from, leave what the language model gave unchanged for the "
                            "first N epochs.")
SENTENCE_OPTIONS = (FORMAT, CHAR_EMBEDDING, CHAR_HIDDEN, BIDIRECTIONAL, MAX_LENGTH_OPTION, INIT_FROM, FREEZE_EPOCHS,
                    features.LM_FEATURES)


class SentenceModel(Model):
    """A tagger or classifier: its `predictor` (`charlm.sentence.predict.Predictor`, the commands'
    code) computes; `tokenizer` cuts a text into words as `charlm tag` / `classify` do; `labels`
    are the tags or classes it predicts (entity tags in the scheme it decodes in)."""

    def __init__(self, network, vocab, meta: dict, path: str, encoder: Encoder, *, task: Task | None = None) -> None:
        super().__init__(network, vocab, meta, path, task=task)
        self.predictor = Predictor(network, encoder, BATCH_SIZE, meta)
        self.tokenizer = encoder.tokenizer()
        self.labels = list(encoder.labels)

    def _predictor(self, batch_size: int) -> Predictor:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer (got {batch_size!r})")
        p = self.predictor
        return p if batch_size == p.batch_size else Predictor(p.model, p.encoder, batch_size, p.meta)

    def _evaluate(self, path_or_text: str | os.PathLike | IO[str], format, tag_column, batch_size: int) -> dict:
        return self._task.evaluate(self, text_source(path_or_text), format, tag_column, batch_size).data


class SentenceTask(Task):
    """A task that labels sentences: a tag per token (`per_token`) or one label per example."""

    per_token: ClassVar[bool]            # a label per token, else one per example
    formats: ClassVar[tuple]             # the training file formats it reads
    read: ClassVar[staticmethod]         # its file reader: sentence.data.read_tags or read_labels
    level = "word"
    config = TaggerConfig
    refusals = {"seq_len": "it reads whole sentences",
                "tie_weights": "its output layer predicts labels, not words",
                "vocab": "it builds its vocabularies from the training file",
                "val_tokens": "it holds out whole sentences (--val-fraction)",
                "cache_dir": "it keeps no token cache", "no_cache": "it keeps no token cache"}
    lines_reason: ClassVar[str]          # why --mode stream makes no sense for it at word level

    @property
    def example(self) -> str:
        """What it labels one of at a time: a sentence (tags) or an example."""
        return "sentence" if self.per_token else "example"

    @property
    def label(self) -> str:
        """What it predicts: a tag (per token) or a label."""
        return "tag" if self.per_token else "label"

    @property
    def unit(self) -> str:
        """What its progress bar counts per second: tokens (tags), examples (labels)."""
        return "tok" if self.per_token else "ex"

    def check_options(self, opts) -> None:
        tok = opts.tokenizer
        if tok["level"] == "word" and tok["mode"] == "stream":
            raise UsageError(f"--mode stream does not apply to --task {self.name}: {self.lines_reason}")
        if opts.format is not None and opts.format not in self.formats:
            raise UsageError(f"--format must be one of {', '.join(self.formats)} for --task {self.name} "
                             f"(got {opts.format!r})")
        if opts.lm_features and tok["level"] != "word":
            raise UsageError("--lm-features applies to --level word: it gives each word features")
        if opts.freeze_epochs and not opts.init_from:
            raise UsageError("--freeze-epochs needs --init-from (it holds still what the language model gave)")

    # -- training ---------------------------------------------------------------------------------
    def _data(self, opts, state: TrainState, encoder: Encoder | None = None, lm_features=None):
        """(source, validation, encoder, info, warning) of a run; `encoder` is given when resuming
        (the vocabularies and labels of the saved run); `lm_features` (tasks/features.py) a new
        encoder's."""
        data = prepare_task_data(self.read, self.per_token, opts.corpus, TokenizerConfig.from_dict(opts.tokenizer),
                                 format=opts.format, tag_column=opts.tag_column, val_file=opts.val_file,
                                 val_fraction=opts.val_fraction, seed=opts.seed, min_count=opts.min_count,
                                 max_vocab=opts.max_vocab, encoder=encoder, max_length=opts.max_length,
                                 features=lm_features)
        enc = data.encoder
        source = SentenceBatches(data.train, make_batch, opts.batch_size, opts.seed, state,
                                 per_sentence=not self.per_token)
        validation = SentenceValidation(data.val, data.val_gold, enc) if data.val else None
        info = {"vocab": len(enc.vocab), "train_tokens": data.n_train_tokens, "val_tokens": data.n_val_tokens,
                "batch": source.batch_size, "seq_len": None, "steps_per_epoch": source.steps_per_epoch(),
                "level": enc.vocab.tokenizer.level, "task": self.name, "sentences": len(data.train),
                "val_sentences": len(data.val), "labels": len(enc.labels), "chars": len(enc.chars),
                "scheme": enc.scheme}
        return source, validation, enc, info, data.warning

    def start(self, opts, reporter, verify: bool) -> Run:
        state = TrainState(rng=np.random.default_rng(opts.seed + 1))
        lm_features = None
        if opts.lm_features:   # computed in the network's dtype, as when its file is loaded
            lm_features = features.from_option(opts.lm_features, opts.model.get("dtype", TaggerConfig.dtype))
        source, validation, enc, info, warning = self._data(opts, state, lm_features=lm_features)
        state.n_train = info["sentences"]
        config = TaggerConfig.from_dict(dict(opts.model, task=self.name, vocab_size=len(enc.vocab),
                                             char_vocab_size=len(enc.chars), num_labels=len(enc.labels),
                                             lm_feature_size=lm_features.size if lm_features else 0))
        model = self.network(config, seed=opts.seed, **self.network_args(enc))
        if lm_features:
            model.fixed = lm_features.arrays()
        if opts.init_from:
            reporter.note(init_from_lm(model, enc.vocab, opts.init_from))
        return Run(opts, model, enc.vocab, source, validation, make_optimizer(opts.optimizer, opts.lr), state,
                   dict(info, params=model.num_params()), warning, enc.to_meta(), *self.frozen(opts, model))

    def network_args(self, encoder: Encoder) -> dict:
        """What its network is built with besides the settings and parameters (a tagger: the
        transitions its labels allow)."""
        return {}

    def frozen(self, opts, network) -> tuple[tuple, int]:
        """(the parameters --freeze-epochs holds still, for how many epochs): what --init-from gave
        (`tasks.transfer.frozen_names`)."""
        return (tuple(frozen_names(network)), opts.freeze_epochs) if opts.freeze_epochs else ((), 0)

    def resume_data(self, opts, model, state, reporter, verify: bool):
        source, validation, encoder, info, warning = self._data(opts, state, model.predictor.encoder)
        if info["sentences"] != state.n_train:
            raise DataError(f"{opts.corpus} changed since the run started ({state.n_train} training "
                            f"sentences then, {info['sentences']} now): train again without --resume")
        return source, validation, info, warning, encoder.to_meta()

    # -- files ------------------------------------------------------------------------------------
    def open(self, arrays: dict, meta: dict, path: str) -> SentenceModel:
        """Its model file; one trained with --lm-features also carries its language models
        (`tasks.features.attach`)."""
        model = super().open(arrays, meta, path)
        features.attach(model, arrays_under(arrays, "fixed"), meta, path)
        return model

    def model(self, config, params: dict, vocab, meta: dict, path: str) -> SentenceModel:
        """Its model file also holds "char_vocab" (a Vocab; may be absent or null without a
        character encoder) and "labels" (the names of label ids 0..K-1)."""
        if config.task != meta["task"]:
            raise CheckpointError(f"{path} is inconsistent: a {meta['task']!r} file with settings for "
                                  f"{config.task!r}")
        char_vocab = None if meta.get("char_vocab") is None else read_vocab(meta["char_vocab"], path,
                                                                           "character vocabulary")
        if config.char_hidden and (char_vocab is None or len(char_vocab) != config.char_vocab_size):
            have = "none" if char_vocab is None else f"{len(char_vocab)} characters"
            raise CheckpointError(f"{path} is inconsistent: the model reads {config.char_vocab_size} "
                                  f"characters but the character vocabulary has {have}")
        labels = meta.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) \
                or len(labels) != config.num_labels:
            raise CheckpointError(f"{path} is inconsistent: the model predicts {config.num_labels} labels "
                                  f"but the file names {len(labels) if isinstance(labels, list) else 'no'} labels")
        try:
            encoder = Encoder.from_meta(self.per_token, vocab, meta, char_vocab)
        except CharlmError as err:
            raise CheckpointError(f"{path}: the model file is unusable: {err}") from None
        try:
            extra = self.network_args(encoder)
        except CharlmError as err:
            raise CheckpointError(f"{path} is inconsistent: {err}") from None
        return self.api_class(self.build(config, params, path, **extra), vocab, meta, path, encoder, task=self)

    # -- figures ----------------------------------------------------------------------------------
    def figures(self, record: dict, level: str) -> dict:
        """The loss, accuracy and (entity or macro) F1 of an evaluation."""
        figures = {"val_loss": record.get("val_loss"), "accuracy": record.get("val_accuracy"),
                   "f1": record.get("val_f1")}
        return {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def headline(self, info: dict) -> str:
        scheme = f" ({info['scheme']})" if info.get("scheme") else ""
        return (f"{info['vocab']:,} words, {info['chars']:,} characters, {info['labels']} {self.label}s{scheme}, "
                f"{info['sentences']:,} training and {info['val_sentences']:,} validation {self.example}s "
                f"({info['train_tokens']:,} and {info['val_tokens']:,} words), batch {info['batch']} sentences")


def percent(x) -> str:
    """A share as `charlm eval` prints it: "  93.20", or "-"."""
    return "-" if x is None else f"{100 * x:6.2f}"


def prf_table(title: str, rows: dict, count: str = "support") -> list[str]:
    """Precision, recall, F1, support and predicted count per row, as `charlm eval` prints them."""
    width = max([len(title)] + [len(k) for k in rows])
    lines = [f"{title:<{width}}  precision  recall      F1  {count:>7}  predicted"]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}  {percent(r['precision']):>9}  {percent(r['recall']):>6}  "
                     f"{percent(r['f1']):>6}  {r['support']:>7}  {r['predicted']:>9}")
    return lines


def unknown_warning(file, unknown: list, what: str) -> str | None:
    """The line `charlm eval` warns with when the gold data has labels the model never saw."""
    if not unknown:
        return None
    return (f"{file} has {len(unknown)} gold {what}(s) the model never saw ({', '.join(unknown[:8])}"
            f"{', ...' if len(unknown) > 8 else ''}): counted as errors")

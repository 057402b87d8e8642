"""The training engine: one loop for every task and every process count.

A run is a model, an optimizer, a batch source with a validation set (`charlm.batches`) and a
`TrainState`. One step:

    loss, state', cache = model.loss(*batch.inputs, state, train=True, rng=rng)    forward
    grads = model.backward(cache)                                                  BPTT
    grads, loss, n = comm.reduce_gradients(grads, loss, n)    the gradient hook (identity for one
                                                              process; an all-reduce under MPI)
    clip_grad_norm(grads, clip);  optimizer.step(params, grads)                    update

(with --accumulate K, forward and backward run for K batches and their gradients are averaged).

Every --eval-every steps the model is evaluated: the best one (lowest validation objective) is
written to --output, and everything an exact resume needs to NAME.last.npz — parameters,
optimizer state, the `TrainState` (step, epoch, data position, best/patience counters, metrics,
carried hidden state, random-generator state) and the run's options. A scheduled evaluation that
does not improve on the best one halves the learning rate (with --optimizer asgd the first one
starts the averaging of the weights instead, and the average is what is evaluated and saved from
then on: `Optimizer.evaluated`, `Optimizer.plateau`); --patience of them in a row stop the run.
Only scheduled evaluations make these decisions, so a run interrupted after any step and resumed
ends with the same parameters, bit for bit, as one that was never interrupted.

A step whose loss or gradient is not finite is skipped and the learning rate halved; five in a
row stop the run ("diverged") with the last good files on disk. Ctrl-C / SIGTERM finish the
step, save and return; --time-limit stops cleanly.

Nothing here prints: progress goes through `Reporter` callbacks, errors are `CharlmError`s.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from charlm import __version__
from charlm import checkpoint as ckpt
from charlm.batches import Accumulated, SentenceBatches, SentenceValidation, StreamBatches, StreamValidation
from charlm.corpus import prepare_lm_data
from charlm.errors import CharlmError, CheckpointError, DataError, UsageError
from charlm.files import CHECKPOINT, METRICS, Output, check_outputs, is_foreign
from charlm.model import LanguageModel, ModelConfig
from charlm.nn.cells import cell_from_config
from charlm.nn.regularize import DROPOUT_KINDS
from charlm.optim import OPTIMIZERS, clip_grad_norm, make_optimizer
from charlm.sentences import Encoder
from charlm.tagdata import LABEL_FORMATS, TAG_FORMATS, parse_tag_column
from charlm.tagger import TaggerConfig, make_model
from charlm.taskdata import prepare_task_data
from charlm.tokenizer import TokenizerConfig
from charlm.vocab import Vocab

MAX_BAD_STEPS = 5  # consecutive non-finite steps before training gives up
MIN_LR_FRACTION = 1e-3  # the learning rate never decays below this fraction of --lr
TASKS = ("lm", "tag", "classify")
# model settings of the sentence tasks (tagger, classifier) only, with their options
SENTENCE_MODEL_OPTIONS = {"char_embedding": "--char-embedding", "char_hidden": "--char-hidden",
                          "bidirectional": "--no-bidirectional", "pool": "--pool"}
# model settings of the language model only (its regularisers, charlm.nn.regularize), with their options
LM_MODEL_OPTIONS = {"dropout_kind": "--dropout-kind", "embedding_dropout": "--embedding-dropout",
                    "weight_drop": "--weight-drop"}


def _int_at_least(name: str, value, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"{name} must be a whole number >= {low} (got {value!r})")


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class TrainOptions:
    """What `charlm train` was asked to do (field = option without "--", "-" as "_").

    Validated on construction (UsageError naming the option). Stored in the "last" checkpoint to
    resume the same run; `lr=None` means the optimizer's default learning rate.
    """

    corpus: str
    output: str = "charlm.npz"
    task: str = "lm"
    tokenizer: dict = field(default_factory=dict)  # TokenizerConfig.to_dict()
    min_count: int = 1
    max_vocab: int | None = None
    vocab: str | None = None  # a vocabulary file made by `charlm tokenize --vocab-out`
    model: dict = field(default_factory=dict)  # ModelConfig fields except vocab_size
    seq_len: int | None = None  # language model: None means 100; the sentence tasks have none
    batch_size: int = 32
    accumulate: int = 1  # batches per update: the gradient is their token-weighted mean
    optimizer: str = "adam"
    lr: float | None = None
    clip: float = 5.0
    epochs: int = 20
    max_steps: int | None = None
    time_limit: float | None = None
    val_fraction: float = 0.1
    val_file: str | None = None
    val_tokens: int | None = None  # None: corpus.DEFAULT_VAL_TOKENS from the corpus, a --val-file whole; 0: no limit
    eval_every: int = 200
    patience: int = 5
    lr_decay: float = 0.5
    seed: int = 0
    metrics: str | None = None
    force: bool = False  # replace an existing output that is not a charlm file
    cache_dir: str | None = None  # the token cache's folder (None: the output's folder)
    no_cache: bool = False
    format: str | None = None  # tag/classify: the training file's format (None: detected)
    tag_column: str | None = None  # tag: upos, xpos or a column number (None: the format's default)

    # On --resume the run keeps its own options. These may be given again to change them (with a
    # notice); any other option given with a value that differs from the run's is refused.
    PER_INVOCATION = ("epochs", "max_steps", "time_limit", "patience", "metrics", "cache_dir", "no_cache")
    # ... and these always come from the command that resumes: where the run's files are, and --force.
    WHERE = ("output", "force")

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, str) or not self.corpus:
            raise UsageError("the corpus must be a file name")
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)} (got {self.task!r})")
        self._check_task()
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        for name in ("seq_len", "batch_size", "accumulate", "epochs", "eval_every", "patience", "min_count"):
            _int_at_least("--" + name.replace("_", "-"), getattr(self, name), 1, allow_none=name == "seq_len")
        _int_at_least("--max-steps", self.max_steps, 1, allow_none=True)
        _int_at_least("--max-vocab", self.max_vocab, 2, allow_none=True)
        _int_at_least("--val-tokens", self.val_tokens, 0, allow_none=True)
        if self.val_tokens == 1:
            raise UsageError("--val-tokens must be 0 (no limit) or at least 2 (got 1)")
        _int_at_least("--seed", self.seed, 0)
        if self.lr is None:
            self.lr = OPTIMIZERS[self.optimizer].default_lr
        if not (_number(self.lr) > 0 and math.isfinite(_number(self.lr))):
            raise UsageError(f"--lr must be a positive number (got {self.lr!r})")
        if not (_number(self.clip) >= 0 and math.isfinite(_number(self.clip))):
            raise UsageError(f"--clip must be >= 0 (0 turns clipping off; got {self.clip!r})")
        if self.time_limit is not None and not _number(self.time_limit) > 0:
            raise UsageError(f"--time-limit must be a positive number of seconds (got {self.time_limit!r})")
        if not 0 <= _number(self.val_fraction) < 1:
            raise UsageError(f"--val-fraction must be in [0, 1) (got {self.val_fraction!r})")
        if not 0 < _number(self.lr_decay) < 1:
            raise UsageError(f"the learning-rate decay must be in (0, 1) (got {self.lr_decay!r})")
        for key in ("dropout", "embedding_dropout", "weight_drop"):
            rate = self.model.get(key, 0.0)
            if not 0 <= _number(rate) < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be in [0, 1) (got {rate!r})")
        if self.model.get("dropout_kind", "standard") not in DROPOUT_KINDS:
            raise UsageError(f"--dropout-kind must be one of {', '.join(DROPOUT_KINDS)} "
                             f"(got {self.model.get('dropout_kind')!r})")
        if self.model.get("tie_weights") and self.model.get("embedding") != self.model.get("hidden"):
            raise UsageError(f"--tie-weights needs --embedding equal to --hidden "
                             f"({self.model.get('embedding')} != {self.model.get('hidden')})")
        self.lr, self.clip, self.val_fraction = float(self.lr), float(self.clip), float(self.val_fraction)

    def _check_task(self) -> None:
        """Refuse the options that make no sense for the task (UsageError naming the option)."""
        if self.task == "lm":
            given = [flag for key, flag in SENTENCE_MODEL_OPTIONS.items() if key in self.model]
            given += [flag for flag, v in (("--format", self.format), ("--tag-column", self.tag_column)) if v]
            if given:
                raise UsageError(f"{given[0]} applies to --task tag and --task classify, not to a language model")
            self.seq_len = 100 if self.seq_len is None else self.seq_len
            return
        tok = self.tokenizer
        lm_only = next((flag for key, flag in LM_MODEL_OPTIONS.items() if key in self.model), None)
        refused = (
            (lm_only, lm_only is not None, "it applies to the language model only"),
            ("--seq-len", self.seq_len is not None, "it reads whole sentences"),
            ("--tie-weights", self.model.get("tie_weights"), "its output layer predicts labels, not words"),
            ("--vocab", self.vocab is not None, "it builds its vocabularies from the training file"),
            ("--val-tokens", self.val_tokens is not None, "it holds out whole sentences (--val-fraction)"),
            ("--cache-dir", self.cache_dir is not None, "it keeps no token cache"),
            ("--no-cache", self.no_cache, "it keeps no token cache"),
            ("--pool", self.task == "tag" and "pool" in self.model, "it predicts a tag at every token"),
            ("--tag-column", self.task == "classify" and self.tag_column is not None, "it reads labelled lines"),
            ("--level char", self.task == "tag" and tok.get("level") == "char", "it tags words"),
            ("--mode stream", tok.get("level") == "word" and tok.get("mode") == "stream",
             "it reads one example per line"),
        )
        for flag, bad, why in refused:
            if bad:
                raise UsageError(f"{flag} does not apply to --task {self.task}: {why}")
        formats = TAG_FORMATS if self.task == "tag" else LABEL_FORMATS
        if self.format is not None and self.format not in formats:
            raise UsageError(f"--format must be one of {', '.join(formats)} for --task {self.task} "
                             f"(got {self.format!r})")
        if self.tag_column is not None:
            self.tag_column = str(parse_tag_column(self.tag_column))
        self.seq_len = None

    # Flat option names (as on the command line) grouped under `tokenizer` and `model`.
    TOKENIZER_FLAGS = ("level", "mode", "split", "lowercase", "graphemes")
    MODEL_FLAGS = ("cell", "layers", "hidden", "embedding", "dropout", "tie_weights", "activation", "peephole",
                   *SENTENCE_MODEL_OPTIONS, *LM_MODEL_OPTIONS)
    # a language model's defaults on the command line (a tagger's or classifier's: TaggerConfig's)
    LM_MODEL_DEFAULTS = {"cell": "gru", "layers": 2, "hidden": 256, "embedding": 64, "dropout": 0.1}

    @classmethod
    def from_flags(cls, **flags) -> "TrainOptions":
        """Options from flat names, as the command line and `charlm.train()` spell them
        (`level=`, `cell=`, `seq_len=`, ...; `vocab_path` or `vocab` for --vocab). A tokenizer or
        model flag that is None (or a False --tie-weights/--peephole) takes the task's default; the
        level is "char" for a language model and "word" for the sentence tasks unless given."""
        task = flags.get("task", "lm")
        tokenizer = {k: v for k in cls.TOKENIZER_FLAGS if (v := flags.pop(k, None)) is not None}
        tokenizer.setdefault("level", "char" if task == "lm" else "word")
        model = {k: v for k in cls.MODEL_FLAGS if (v := flags.pop(k, None)) is not None}
        if task == "lm":
            model = {**cls.LM_MODEL_DEFAULTS, **model}
        else:
            model = {k: v for k, v in model.items() if v is not False or k not in ("tie_weights", "peephole")}
        return cls(tokenizer=TokenizerConfig(**tokenizer).to_dict(), model=model, **flags)

    def outputs(self) -> list[Output]:
        """The files a run writes (checked against the inputs before anything is done)."""
        out = [Output(self.output, CHECKPOINT, "-o/--output"),
               Output(str(last_path(self.output)), CHECKPOINT, "-o/--output (its resumable state)")]
        if self.metrics:
            out.append(Output(self.metrics, METRICS, "--metrics"))
        return out

    def inputs(self) -> dict:
        return {"the corpus": self.corpus, "the validation file": self.val_file, "the vocabulary": self.vocab}


class Reporter:
    """Progress callbacks; the CLI subclasses this to draw a progress bar. All are optional.

    `start`'s info: params, vocab, train_tokens, val_tokens, batch, seq_len, steps_per_epoch, and
    level ("char"/"word": the unit losses are quoted in — the run's own, also when resumed); for
    the sentence tasks also task, sentences, val_sentences, labels, chars and scheme (seq_len None)."""

    def start(self, total_steps: int | None, done_steps: int, info: dict) -> None: ...

    def step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None: ...

    def evaluate(self, record: dict, improved: bool) -> None: ...

    def message(self, text: str) -> None: ...

    def reading(self, done_bytes: int, total_bytes: int | None) -> None:
        """Progress while a corpus is tokenized (before `start`)."""

    def note(self, text: str) -> None:
        """Information that is not a warning (e.g. the token cache was used)."""
        self.message(text)

    def close(self) -> None: ...


class SingleProcess:
    """The process group of an ordinary run: one process, so every reduction is the identity.
    (A data-parallel run passes an object with the same methods that talks to the others:
    `charlm.parallel.MPIComm`.)"""

    rank, size = 0, 1

    def reduce_gradients(self, grads: dict, loss: float, tokens: int) -> tuple[dict, float, int]:
        """The gradient hook, between backward and clipping: (grads, loss, tokens) of all processes."""
        return grads, loss, tokens

    def allreduce(self, x: np.ndarray) -> np.ndarray:
        """Element-wise sum over processes."""
        return x

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any (collective stop decisions)."""
        return bool(flag)

    def first(self, value):
        """The value of the lowest-ranked process whose value is not None, on every process."""
        return value

    def root_first(self, make):
        """make(True) on rank 0 first (it reads the corpus, checks or builds the token cache);
        once it has returned, make(False) on the others (they map that cache unverified)."""
        return make(True)

    def part(self, run: "Run") -> "Run":
        """This process's share of the run (its streams, its carried state)."""
        return run

    def gather_state(self, state: "TrainState") -> "TrainState":
        """On rank 0, the state with every process's carried hidden state (for the last file)."""
        return state


def last_path(output: str | os.PathLike) -> Path:
    """Where the resumable training state lives: `charlm.npz` -> `charlm.last.npz`."""
    p = Path(output)
    stem = p.name[: -len(".npz")] if p.name.endswith(".npz") else p.name
    return p.with_name(stem + ".last.npz")


# ------------------------------------------------------------------------------ state


@dataclass
class TrainState:
    """Where a run stands: all an exact resume needs besides the parameters and the optimizer.

    The fields (except `rng` and `hidden`) are the keys of `meta["train"]` in NAME.last.npz, a
    compatibility contract: files written by earlier versions resume. `hidden` is stored as the
    arrays "state/LAYER/K". The "best" counters hold the validation objective (for a language
    model, the loss in nats per token).
    """

    step: int = 0
    epoch: int = 0
    position: int = 0  # where the next batch starts in the epoch (Batch.end of the last one)
    tokens_seen: int = 0
    n_train: int = 0  # training tokens (sentences for tag/classify): how the corpus was split
    best_val_loss: float | None = None  # best of the scheduled evaluations (drives decay/stopping)
    bad_evals: int = 0  # scheduled evaluations in a row without improvement
    saved_val_loss: float | None = None  # the model at --output: its objective ...
    best_step: int | None = None  # ... and the step that produced it
    metrics: list = field(default_factory=list)  # one record per evaluation
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    hidden: list | None = None  # carried hidden state: list over layers of tuples of (B, H)

    RECORD = ("step", "epoch", "position", "tokens_seen", "n_train", "best_val_loss", "bad_evals",
              "saved_val_loss", "best_step", "metrics")

    def observe(self, objective: float | None, scheduled: bool) -> tuple[bool, bool]:
        """Record an evaluation of the model at `self.step`. Returns (save, plateau):

        save:    the model beats the one at --output (always, without validation data);
        plateau: a scheduled evaluation that does not beat the best scheduled one (the
                 learning rate decays; --patience of these in a row stop the run).
        Evaluations outside the schedule (at the end of a run) may replace the model at
        --output but never change the decisions, so an interrupted run decides as one that ran
        straight through.
        """
        save = objective is None or self.saved_val_loss is None or objective < self.saved_val_loss
        if save:
            self.saved_val_loss, self.best_step = objective, self.step
        if not scheduled or objective is None:
            return save, False
        if self.best_val_loss is None or objective < self.best_val_loss:
            self.best_val_loss, self.bad_evals = objective, 0
            return save, False
        self.bad_evals += 1
        return save, True

    def to_checkpoint(self) -> tuple[dict, dict]:
        """(record for meta["train"], arrays {"state/L/K": (B, H)})."""
        record = {k: getattr(self, k) for k in self.RECORD}
        record["rng"] = self.rng.bit_generator.state
        arrays = {f"state/{l}/{k}": a for l, layer in enumerate(self.hidden or []) for k, a in enumerate(layer)}
        return record, arrays

    @classmethod
    def from_checkpoint(cls, record: dict, arrays: dict, dtype) -> "TrainState":
        """The state saved by `to_checkpoint`; KeyError/TypeError/ValueError if it is unusable."""
        rng = np.random.default_rng()
        rng.bit_generator.state = record["rng"]
        hidden, l = [], 0
        while f"state/{l}/0" in arrays:
            k, layer = 0, []
            while f"state/{l}/{k}" in arrays:
                layer.append(arrays[f"state/{l}/{k}"].astype(dtype))
                k += 1
            hidden.append(tuple(layer))
            l += 1
        return cls(**{k: record[k] for k in cls.RECORD}, rng=rng, hidden=hidden or None)


def _check_hidden(hidden: list | None, want: list | None, where: Path) -> None:
    """A carried state read from a checkpoint must fit the model and batch."""
    shapes = None if hidden is None else [[a.shape for a in layer] for layer in hidden]
    if shapes != (None if want is None else [[a.shape for a in layer] for layer in want]):
        raise CheckpointError(f"{where} has a corrupt training state (the carried hidden state does not "
                              "fit the model): train again without --resume")


# ------------------------------------------------------------------------- the run


@dataclass
class Run:
    """What a run trains with: built fresh by `_start` or read back by `_resume`."""

    opts: TrainOptions
    model: LanguageModel
    vocab: Vocab
    source: StreamBatches
    validation: StreamValidation | None
    optimizer: object  # charlm.optim.Optimizer
    state: TrainState
    info: dict  # for Reporter.start
    warning: str | None = None
    extra_meta: dict = field(default_factory=dict)  # more checkpoint metadata (tag/classify: Encoder.to_meta)

    def initial_hidden(self):
        return self.model.init_state(self.source.batch_size) if self.source.carries_state else None


def _lm_data(opts: TrainOptions, vocab: Vocab | None = None, n_train: int | None = None, reporter=None,
             verify: bool = True):
    """(source, validation, vocab, info, warning) of a language-model run (verify: see
    `charlm.tokencache.token_ids`)."""
    if vocab is None and opts.vocab:
        vocab = Vocab.load(opts.vocab)
    cache_dir = None if opts.no_cache else (opts.cache_dir or os.path.dirname(os.path.abspath(opts.output)))
    data = prepare_lm_data(opts.corpus, TokenizerConfig.from_dict(opts.tokenizer), vocab=vocab,
                           val_file=opts.val_file, val_fraction=opts.val_fraction, val_tokens=opts.val_tokens,
                           min_count=opts.min_count, max_vocab=opts.max_vocab, batch_size=opts.batch_size,
                           seq_len=opts.seq_len, n_train=n_train, cache_dir=cache_dir, verify=verify,
                           report=reporter)
    source = StreamBatches(data.train, data.seq_len)
    validation = StreamValidation(data.val, data.seq_len) if data.val is not None else None
    info = {"vocab": len(data.vocab), "train_tokens": data.n_train_tokens, "val_tokens": data.n_val_tokens,
            "batch": data.batch_size, "seq_len": data.seq_len, "steps_per_epoch": source.steps_per_epoch(),
            "level": data.vocab.tokenizer.level, "val_note": data.val_note}
    return source, validation, data.vocab, info, data.warning


def _sentence_data(opts: TrainOptions, state: TrainState, encoder: Encoder | None = None):
    """(source, validation, encoder, info, warning) of a tagging or classification run; `encoder`
    is given when resuming (the vocabularies and labels of the saved run)."""
    data = prepare_task_data(opts.task, opts.corpus, TokenizerConfig.from_dict(opts.tokenizer), format=opts.format,
                             tag_column=opts.tag_column, val_file=opts.val_file, val_fraction=opts.val_fraction,
                             seed=opts.seed, min_count=opts.min_count, max_vocab=opts.max_vocab, encoder=encoder)
    enc = data.encoder
    source = SentenceBatches(data.train, enc.batch, opts.batch_size, opts.seed, state,
                             per_sentence=opts.task == "classify")
    validation = SentenceValidation(data.val, data.val_gold, enc) if data.val else None
    info = {"vocab": len(enc.vocab), "train_tokens": data.n_train_tokens, "val_tokens": data.n_val_tokens,
            "batch": source.batch_size, "seq_len": None, "steps_per_epoch": source.steps_per_epoch(),
            "level": enc.vocab.tokenizer.level, "task": opts.task, "sentences": len(data.train),
            "val_sentences": len(data.val), "labels": len(enc.labels), "chars": len(enc.chars), "scheme": enc.scheme}
    return source, validation, enc, info, data.warning


def _start_sentences(opts: TrainOptions) -> Run:
    state = TrainState(rng=np.random.default_rng(opts.seed + 1))
    source, validation, enc, info, warning = _sentence_data(opts, state)
    state.n_train = info["sentences"]
    config = TaggerConfig.from_dict(dict(opts.model, task=opts.task, vocab_size=len(enc.vocab),
                                         char_vocab_size=len(enc.chars), num_labels=len(enc.labels)))
    model = make_model(config, seed=opts.seed)
    return Run(opts, model, enc.vocab, source, validation, make_optimizer(opts.optimizer, opts.lr), state,
               dict(info, params=model.num_params()), warning, enc.to_meta())


def _start(opts: TrainOptions, reporter=None, verify: bool = True) -> Run:
    if opts.task != "lm":
        return _start_sentences(opts)
    source, validation, vocab, info, warning = _lm_data(opts, reporter=reporter, verify=verify)
    config = ModelConfig(vocab_size=len(vocab), **opts.model)
    _check_memory(config, source.batch_size, source.seq_len, opts.optimizer)
    model = LanguageModel(config, seed=opts.seed)
    state = TrainState(n_train=info["train_tokens"], rng=np.random.default_rng(opts.seed + 1))
    run = Run(opts, model, vocab, source, validation, make_optimizer(opts.optimizer, opts.lr), state,
              dict(info, params=model.num_params()), warning)
    state.hidden = run.initial_hidden()
    return run


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option(opts: TrainOptions, name: str, config=None):
    """The value of option `name` (as `from_flags` spells it) in `opts`; a model setting is read
    from the model's `config` when it is given (it holds the task's defaults too)."""
    if name in TrainOptions.TOKENIZER_FLAGS:
        return opts.tokenizer.get(name)
    if name in TrainOptions.MODEL_FLAGS:
        return getattr(config, name, None) if config is not None else opts.model.get(name)
    value = getattr(opts, name, None)
    if name in ("val_file", "vocab") and value is not None:
        return str(Path(value).resolve())
    return value


def _resumed_options(saved: TrainOptions, opts: TrainOptions, given, config, where: Path,
                     record: dict, reporter) -> TrainOptions:
    """The options a resumed run continues with: its own (`saved`), where its files are and
    --force from the command (`opts`), and the PER_INVOCATION options the command gave (`given`:
    the option names given explicitly; None: take all of them from `opts`). A given option that
    would change the model, the data or the task is refused (UsageError naming it)."""
    keep = {k: getattr(opts, k) for k in TrainOptions.WHERE}
    if given is None:
        return replace(saved, **keep, **{k: getattr(opts, k) for k in TrainOptions.PER_INVOCATION})
    given = set(given) - {"corpus", "resume", *TrainOptions.WHERE}
    changed = [k for k in sorted(given - set(TrainOptions.PER_INVOCATION))
               if _option(opts, k) != _option(saved, k, config)]
    if changed:
        k = changed[0]
        others = f" (and {', '.join(_flag(c) for c in changed[1:])})" if changed[1:] else ""
        raise UsageError(
            f"--resume continues the run in {where} with its own options: {_flag(k)} {_option(opts, k)} "
            f"differs from the run's {_option(saved, k, config)}{others}; only "
            f"{', '.join(_flag(c) for c in TrainOptions.PER_INVOCATION)} may change on --resume "
            "(train a new run with another -o to change the others)")
    for k in sorted(given & set(TrainOptions.PER_INVOCATION)):
        if getattr(opts, k) != getattr(saved, k):
            keep[k] = getattr(opts, k)
            reporter.note(f"resuming with {_flag(k)} {getattr(opts, k)} (the run had {getattr(saved, k)})")
    if "metrics" not in keep:
        keep["metrics"] = _continued_metrics(saved, opts, record, reporter)
    return replace(saved, **keep)


def _continued_metrics(saved: TrainOptions, opts: TrainOptions, record: dict, reporter) -> str | None:
    """The metrics log a resumed run appends to when --metrics is not given: the run's own log,
    if the state was read from where the run wrote it (not from a copy elsewhere)."""
    paths = record.get("paths") if isinstance(record.get("paths"), dict) else {}
    log, home = paths.get("metrics"), paths.get("output")
    if not saved.metrics:
        return None
    if isinstance(log, str) and isinstance(home, str) and os.path.abspath(opts.output) == home:
        reporter.note(f"continuing the metrics log {log}")
        return log
    reporter.message(f"the run kept a metrics log ({log or saved.metrics}) that this resumed copy does not "
                     "continue: add --metrics PATH to keep one")
    return None


def resumed_task(output: str | os.PathLike) -> str | None:
    """The task of the run saved next to `output` (None when there is none or it is unreadable):
    what a resumed command trains, whatever its --task default."""
    try:
        _, meta = ckpt.load_checkpoint(last_path(output))
    except (CharlmError, OSError):
        return None
    task = meta.get("task", "lm")
    return task if task in TASKS else None


def _resume(opts: TrainOptions, reporter=None, verify: bool = True, given=None) -> Run:
    """Read the run saved next to opts.output. It continues with its own options and writes to
    opts.output (see `_resumed_options`)."""
    reporter = reporter or Reporter()
    last_file = last_path(opts.output)
    if not last_file.exists():
        raise DataError(f"nothing to resume: no training state at {last_file} (train without --resume first)")
    arrays, meta = ckpt.load_checkpoint(last_file)
    if meta.get("kind") != "last":
        raise DataError(f"{last_file} holds no training state to resume")
    record = meta.get("train")
    try:
        saved = TrainOptions(**record["options"])
        missing = [k for k in (*TrainState.RECORD, "optimizer", "rng") if k not in record]
    except (KeyError, TypeError, ValueError, AttributeError, CharlmError):
        missing = ["options"]
    if missing:
        raise CheckpointError(f"{last_file} has no usable training state (missing {', '.join(missing)}): "
                              "train again without --resume")
    if Path(saved.corpus).resolve() != Path(opts.corpus).resolve():
        raise UsageError(f"--resume continues the run on {saved.corpus}, not {opts.corpus}")
    loaded = ckpt.model_from_checkpoint(arrays, meta, str(last_file))
    model, vocab, _ = loaded
    saved = _resumed_options(saved, opts, given, model.config, last_file, record, reporter)
    try:
        optimizer = make_optimizer(saved.optimizer, saved.lr)
        optimizer.load_state_dict(record["optimizer"], ckpt.arrays_under(arrays, "optim"))
        state = TrainState.from_checkpoint(record, arrays, model.dtype)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{last_file} has a corrupt training state ({type(err).__name__}: {err}): "
                              "train again without --resume") from None
    extra = {}
    if saved.task == "lm":
        source, validation, vocab, info, warning = _lm_data(saved, vocab=vocab, n_train=record["n_train"],
                                                            reporter=reporter, verify=verify)
    else:
        try:
            encoder = Encoder.from_meta(saved.task, vocab, meta, loaded.char_vocab)
        except CharlmError as err:
            raise CheckpointError(f"{last_file}: {err}") from None
        source, validation, encoder, info, warning = _sentence_data(saved, state, encoder)
        if info["sentences"] != state.n_train:
            raise DataError(f"{saved.corpus} changed since the run started ({state.n_train} training "
                            f"sentences then, {info['sentences']} now): train again without --resume")
        extra = encoder.to_meta()
    run = Run(saved, model, vocab, source, validation, optimizer, state, dict(info, params=model.num_params()),
              warning, extra)
    _check_hidden(state.hidden, run.initial_hidden(), last_file)
    if not Path(saved.output).exists():  # e.g. a copied .last file: the next evaluation writes -o
        state.saved_val_loss, state.best_step = None, None
    return run


# ----------------------------------------------------------------------- the loop


class _Stop(Exception):
    """Ends training early, with the reason as its message."""


class _SignalFlag:
    """While active, Ctrl-C / SIGTERM set `.name` (the loop finishes the step, saves and stops);
    a second one raises KeyboardInterrupt at once (the last saved files stay intact)."""

    def __init__(self):
        self.name: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.name:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Trainer:
    """One training step, evaluate-and-save and save-last, on a `Run` (see the module docstring)."""

    def __init__(self, run: Run, reporter: Reporter, comm):
        self.run, self.rep, self.comm = run, reporter, comm
        self.started = time.perf_counter()
        self.last_file = last_path(run.opts.output)
        self.bad_steps = 0
        self.window_loss, self.window_count = 0.0, 0  # training loss since the last evaluation
        self.tick, self.tick_tokens = time.perf_counter(), 0

    def total_steps(self) -> int:
        total = self.run.source.steps_per_epoch() * self.run.opts.epochs
        return total if self.run.opts.max_steps is None else min(total, self.run.opts.max_steps)

    def step(self, batch) -> None:
        """Forward, backward, gradient hook, clip, update (or skip a non-finite step)."""
        run, st = self.run, self.run.state
        loss, hidden, grads = self._gradients(batch)
        grads, loss, tokens = self.comm.reduce_gradients(grads, loss, batch.tokens)
        norm = clip_grad_norm(grads, run.opts.clip)
        if math.isfinite(loss) and math.isfinite(norm):
            self.bad_steps = 0
            run.optimizer.step(run.model.params, grads)
            st.hidden = hidden
            self.window_loss += loss
            self.window_count += 1
        else:
            self._skip_step()
        st.step += 1
        st.position = batch.end
        st.tokens_seen += tokens
        self.tick_tokens += tokens
        self.rep.step(st.step, loss, run.optimizer.lr,
                      self.tick_tokens / max(time.perf_counter() - self.tick, 1e-9))

    def _gradients(self, batch) -> tuple[float, list | None, dict]:
        """(mean loss, carried state after the batch, gradient of the mean loss) of one batch. A
        batch of --accumulate parts takes one forward/backward per part, the state carried from
        part to part, and returns the means over the parts weighted by their tokens."""
        model, st = self.run.model, self.run.state
        parts = batch.parts or (batch,)
        hidden, mean_loss, mean_grads = st.hidden, 0.0, None
        for part in parts:
            loss, hidden, cache = model.loss(*part.inputs, hidden, train=True, rng=st.rng)
            grads = model.backward(cache)
            if len(parts) == 1:
                return loss, hidden, grads
            w = part.tokens / batch.tokens
            mean_loss += w * loss
            if mean_grads is None:
                mean_grads = {k: g * w for k, g in grads.items()}
            else:
                for k, g in grads.items():
                    mean_grads[k] += g * w
        return mean_loss, hidden, mean_grads

    def _skip_step(self) -> None:
        opt = self.run.optimizer
        self.bad_steps += 1
        opt.lr *= 0.5
        self.rep.message(f"step {self.run.state.step + 1}: non-finite loss or gradient; update skipped, "
                         f"learning rate lowered to {opt.lr:.3g}")
        if self.bad_steps >= MAX_BAD_STEPS:
            raise CharlmError(f"training diverged ({self.bad_steps} non-finite steps in a row); the last good "
                              f"model is in {self.run.opts.output}: try a lower --lr or --clip")
        self.run.state.hidden = self.run.initial_hidden()

    def end_epoch(self) -> None:
        st = self.run.state
        st.epoch += 1
        st.position = 0
        st.hidden = self.run.initial_hidden()

    def should_stop(self, flag: _SignalFlag) -> str | None:
        """The reason to stop after this step (a signal or --time-limit), decided by all processes."""
        name = self.comm.first(flag.name)  # the signal any process caught: all stop and say so
        if name is not None:
            flag.name = name
            return f"interrupted by {name}"
        limit = self.run.opts.time_limit
        if self.comm.any(limit is not None and time.perf_counter() - self.started >= limit):
            return "reached --time-limit"
        return None

    def evaluate(self, scheduled: bool = True) -> bool:
        """Evaluate; save the best model and the resumable state. True: stop early (patience).

        Only scheduled evaluations (every --eval-every steps) decay the learning rate and count
        towards --patience; any evaluation may replace the model at --output.
        """
        run, st, opts = self.run, self.run.state, self.run.opts
        tick = time.perf_counter()
        with run.optimizer.evaluated(run.model.params):  # the weights to judge and save (ASGD: the average)
            ev = run.validation.evaluate(run.model, self.comm) if run.validation is not None else None
            elapsed = time.perf_counter() - self.started
            save, plateau = st.observe(None if ev is None else ev.objective, scheduled)
            if save:
                self.save_best(None if ev is None else ev.loss)
        record = {
            "step": st.step, "epoch": st.epoch + run.source.epoch_fraction(st.position),
            "train_loss": self.window_loss / self.window_count if self.window_count else None,
            "val_loss": None if ev is None else ev.loss, **({} if ev is None else ev.metrics),
            "lr": run.optimizer.lr, "tokens_per_s": self.tick_tokens / elapsed if elapsed > 0 else None,
            "elapsed": elapsed, "eval_seconds": elapsed - (tick - self.started),
        }
        self.window_loss, self.window_count = 0.0, 0
        if plateau and not run.optimizer.plateau(run.model.params):  # ASGD: starts averaging instead
            run.optimizer.lr = max(run.optimizer.lr * opts.lr_decay, opts.lr * MIN_LR_FRACTION)
        st.metrics.append(record)
        if opts.metrics and self.comm.rank == 0:
            with open(opts.metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        self.rep.evaluate(record, save)
        self.save_last()
        return scheduled and ev is not None and st.bad_evals >= opts.patience

    def _meta(self, kind: str, train: dict) -> dict:
        run = self.run
        return {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "charlm_version": __version__,
                "kind": kind, "task": run.opts.task, "model": run.model.config.to_dict(),
                "vocab": run.vocab.to_dict(), **run.extra_meta, "train": dict(train, processes=self.comm.size)}

    def _check_finite(self) -> None:
        """Never overwrite a good checkpoint with parameters that are inf/NaN (the loader would
        refuse them): stop with the previous files intact instead."""
        if not all(np.isfinite(p).all() for p in self.run.model.params.values()):
            raise CharlmError(
                f"training diverged at step {self.run.state.step}: the parameters are no longer finite; "
                f"the last good model is in {self.run.opts.output} (resumable state in {self.last_file}): "
                "try a lower --lr or --clip")

    def save_best(self, val_loss: float | None) -> None:
        run, st = self.run, self.run.state
        self._check_finite()
        if self.comm.rank == 0:
            info = {"step": st.step, "epoch": st.epoch, "val_loss": val_loss, "train_tokens": st.tokens_seen,
                    "options": asdict(run.opts)}
            ckpt.save_checkpoint(run.opts.output, ckpt.model_arrays(run.model), self._meta("best", info))

    def save_last(self) -> None:
        run = self.run
        self._check_finite()
        record, state_arrays = self.comm.gather_state(run.state).to_checkpoint()
        scalars, opt_arrays = run.optimizer.state_dict()
        record.update(options=asdict(run.opts), optimizer=scalars,
                      schedule={"factor": run.opts.lr_decay, "min_lr": run.opts.lr * MIN_LR_FRACTION},
                      paths={"output": os.path.abspath(run.opts.output),  # where this run writes
                             "metrics": os.path.abspath(run.opts.metrics) if run.opts.metrics else None})
        arrays = dict(ckpt.model_arrays(run.model), **{f"optim/{k}": v for k, v in opt_arrays.items()},
                      **state_arrays)
        if self.comm.rank == 0:
            ckpt.save_checkpoint(self.last_file, arrays, self._meta("last", record))

    def finish(self) -> None:
        """Evaluate and save at the end, unless the last thing the loop did was exactly that."""
        st = self.run.state
        last_eval_step = st.metrics[-1]["step"] if st.metrics else None
        if last_eval_step != st.step or not Path(self.run.opts.output).exists():
            self.evaluate(scheduled=False)

    def summary(self, reason: str, interrupted: str | None) -> dict:
        run, st = self.run, self.run.state
        return {"reason": reason, "interrupted": interrupted, "step": st.step, "epoch": st.epoch,
                "best_val_loss": st.saved_val_loss, "best_step": st.best_step, "output": str(run.opts.output),
                "last": str(self.last_file), "level": run.vocab.tokenizer.level, "task": run.opts.task,
                "best_record": next((r for r in st.metrics if r["step"] == st.best_step), None),
                "elapsed": time.perf_counter() - self.started}


def train(opts: TrainOptions, resume: bool = False, reporter: Reporter | None = None, comm=None,
          given=None) -> dict:
    """Train as `opts` says; return a summary dict (reason, interrupted, step, epoch, best_val_loss
    (the validation objective) and best_step of the model at --output, best_record (its
    evaluation record: val_loss, val_accuracy, ...), output, last, level, task, elapsed).

    With `resume`, the run saved next to opts.output continues with its own options; `given`
    names the options the caller set explicitly (see `_resumed_options`). Raises `CharlmError`
    for user mistakes and for a diverged run; on a signal, saves and returns with
    summary["interrupted"] set to the signal's name. `comm` is the process group
    (`SingleProcess()` when None).
    """
    rep, comm = reporter or Reporter(), comm or SingleProcess()
    if not resume:
        _check_files(opts, fresh=True)
    if resume:
        prepare = lambda first: _resume(opts, rep, verify=first, given=given)  # noqa: E731
    else:
        prepare = lambda first: _start(opts, rep, verify=first)  # noqa: E731
    run = comm.part(comm.root_first(prepare))
    if run.opts.accumulate > 1:  # one update per --accumulate batches
        run.source = Accumulated(run.source, run.opts.accumulate)
        run.info["steps_per_epoch"] = run.source.steps_per_epoch()
    if resume:
        _check_files(run.opts)  # checked against the resumed run's own inputs
        done = run.state.epoch + run.source.epoch_fraction(run.state.position)
        rep.note(f"resuming from {last_path(opts.output)} at step {run.state.step} ({done:.2f} epochs done)")
    if run.warning:
        rep.message(run.warning)
    if run.validation is None and not resume:
        rep.message("no validation text: the model at the output is the latest, not the best")
    trainer, st, o = Trainer(run, rep, comm), run.state, run.opts
    rep.start(trainer.total_steps(), st.step, run.info)
    reason = "finished"
    with _SignalFlag() as flag:
        try:
            while st.epoch < o.epochs:
                for batch in run.source.batches(st.position):
                    if o.max_steps is not None and st.step >= o.max_steps:
                        raise _Stop("reached --max-steps")
                    trainer.step(batch)
                    if st.step % o.eval_every == 0 and trainer.evaluate():
                        raise _Stop(f"early stop: no improvement in {o.patience} evaluations")
                    stop = trainer.should_stop(flag)
                    if stop:
                        raise _Stop(stop)
                trainer.end_epoch()
        except _Stop as stop:
            reason = str(stop)
    trainer.finish()
    rep.close()
    return trainer.summary(reason, flag.name)


def _describe_run(path: Path) -> str:
    """What the checkpoint at `path` holds, for a refusal: task, steps, corpus."""
    try:
        _, meta = ckpt.load_checkpoint(path)
        record = meta.get("train") or {}
        corpus = (record.get("options") or {}).get("corpus")
        return (f"a model of another run (task {meta.get('task', 'lm')}, {record.get('step', '?')} steps"
                + (f" on {corpus}" if corpus else "") + ")")
    except (CharlmError, OSError, AttributeError):
        return "a charlm checkpoint that cannot be read"


def _check_fresh(opts: TrainOptions) -> None:
    """A new run never silently replaces another run's model or metrics log (unless --force)."""
    if opts.force:
        return
    for path in (last_path(opts.output), Path(opts.output)):
        if path.is_file() and path.stat().st_size > 0:
            raise UsageError(f"-o {opts.output}: {path} holds {_describe_run(path)}: continue that run with "
                             "--resume, choose another -o, or add --force to replace it")
    if opts.metrics and os.path.isfile(opts.metrics) and os.path.getsize(opts.metrics) > 0:
        raise UsageError(f"--metrics {opts.metrics} already holds the log of another run: choose another "
                         "file, or add --force to replace it")


def _check_files(opts: TrainOptions, fresh: bool = False) -> None:
    """The file-safety rule (charlm.files), and find out now — not at the first evaluation —
    that the metrics log cannot be written. A `fresh` run (not --resume) refuses to replace
    another run's files (`_check_fresh`); with --force it replaces them, and a foreign metrics
    file, from scratch."""
    check_outputs(opts.outputs(), opts.inputs(), force=opts.force)
    if fresh:
        _check_fresh(opts)
    if opts.metrics:
        mode = "w" if opts.force and (fresh or is_foreign(Output(opts.metrics, METRICS, "--metrics"))) else "a"
        try:
            open(opts.metrics, mode, encoding="utf-8").close()
        except OSError as err:
            raise UsageError(f"cannot write --metrics {opts.metrics}: {err.strerror}") from None


# ------------------------------------------------------------------------ memory


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(config: ModelConfig, batch: int, seq_len: int, optimizer: str) -> None:
    """Refuse a model that cannot fit in memory (rather than being killed by the OS later).

    A rough lower bound: parameters, gradients and optimizer slots (Adam keeps two), plus the
    activations of one window: about (4 + 2 per gate) H values per layer per token and the
    (T*B, V) logits/probabilities.
    """
    itemsize = np.dtype(config.dtype).itemsize
    cell = cell_from_config(config)
    V, E, H, L = config.vocab_size, config.embedding, config.hidden, config.layers
    n = V * E + V + (0 if config.tie_weights else H * V)
    for l in range(L):
        n += sum(int(np.prod(s)) for s in cell.param_shapes(E if l == 0 else H, H).values())
    slots = len(make_optimizer(optimizer, 1.0).slots)  # state arrays per parameter
    tokens = batch * seq_len
    need = itemsize * (n * (2 + slots) + tokens * (L * H * (4 + 2 * cell.G) + 3 * V))
    have = _available_memory()
    if have is not None and need > have:
        gib = 1 << 30
        raise UsageError(
            f"this model needs about {need / gib:.1f} GiB of memory ({n:,} parameters) but only "
            f"{have / gib:.1f} GiB is available: use a smaller --hidden, --layers, --embedding, "
            "--batch-size or --seq-len")

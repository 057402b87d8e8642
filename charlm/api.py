"""The Python API: load a model once and query it many times, or train one from Python.

    import charlm
    lm = charlm.load("charlm.npz")              # a charlm.LM for a language model
    lm.score(["The apple and pear salad"])      # [SentenceScore]: as `charlm score --json`
    lm.next_tokens("The apple and p", k=5)      # [(token, probability)], likeliest first
    lm.sample(num=3, temperature=0.8, seed=1)   # [Sample]: as `charlm sample --json`
    lm.complete("ROMEO:", beam=5)               # [Candidate]: beam search
    lm.perplexity("test.txt")                   # a file (or a text) as one running stream
    lm.info()                                   # as `charlm info --json`
    lm = charlm.train("corpus.txt", hidden=128, max_steps=500)   # options as on the command line

    ner = charlm.load("ner.npz")                # a charlm.Tagger (task "tag")
    ner.tag("Teddy Roosevelt was a President")  # [Tagged]: as `charlm tag --json`
    ner.spans("Teddy bears are on sale!")       # [[(text, type, start, end)]]: `charlm tag --spans`
    ner.evaluate("test.txt")                    # as `charlm eval --json`
    clf = charlm.load("sentiment.npz")          # a charlm.Classifier (task "classify")
    clf.classify(["a witty film"], top_k=2)     # [Classified]: as `charlm classify --json`

The methods compute with the same functions as the commands (`charlm.scoring`,
`charlm.generate`, `charlm.beam`, `charlm.info`, `charlm.predict`); the commands only format.

Tasks. `load` reads the file's task (`meta["task"]`, "lm" when absent) and builds the `Model`
subclass registered for it with `@register_task(name)`: `LM`, `Tagger`, `Classifier`. A method
of another task's class (`sample` on a tagger) is an AttributeError that names the model's task.

`charlm.train` is two things: the package attribute is `train()` below, while the module
`charlm/train.py` is the training engine. `charlm/__init__.py` imports the engine module first,
so `from charlm.train import TrainOptions, train` (the form the tests and the CLI use) still
finds the module in `sys.modules`, and then binds the attribute to the function. Only the
attribute form `import charlm.train; charlm.train.TrainOptions` reaches the function instead;
use `from charlm.train import ...` or `importlib.import_module("charlm.train")` for the engine.
"""

from __future__ import annotations

import inspect
import io
import logging
import math
import os
from typing import IO, Callable, ClassVar, Iterable, Sequence, TypeVar

import numpy as np

from charlm.beam import Candidate, search
from charlm.checkpoint import Loaded, load_checkpoint, model_from_checkpoint
from charlm.errors import CheckpointError, DataError, UsageError
from charlm.generate import (
    Prime,
    Sample,
    next_tokens,
    read_prime_file,
    samples,
)
from charlm.info import describe
from charlm.predict import BATCH_SIZE, Classified, Predictor, Tagged, evaluate_file
from charlm.scoring import (
    CorpusSummary,
    SentenceScore,
    is_char_level,
    iter_lines,
    score_lines,
    score_sentences,
    score_stream,
)
from charlm.tokenizer import Tokenizer
from charlm.train import Reporter, TrainOptions, resumed_task
from charlm.train import train as _train_engine

__all__ = ["Model", "LM", "Tagger", "Classifier", "load", "train", "register_task", "TASKS"]

log = logging.getLogger("charlm")

M = TypeVar("M", bound="type[Model]")

TASKS: dict[str, type["Model"]] = {}
"""task name (a checkpoint's meta["task"]) -> the Model subclass that loads it."""


def register_task(name: str) -> Callable[[M], M]:
    """Class decorator: `load` builds files whose task is `name` with this class."""

    def register(cls: M) -> M:
        cls.task = name
        TASKS[name] = cls
        return cls

    return register


class Model:
    """A trained model loaded from a charlm file.

    Attributes: `network` (the NumPy network), `vocab`, `tokenizer` (re-created from the
    settings the model was trained with), `meta` (the file's metadata), `path`.
    """

    task: ClassVar[str] = ""

    def __init__(self, network, vocab, meta: dict, path: str = "") -> None:
        self.network = network
        self.vocab = vocab
        self.tokenizer = Tokenizer(vocab.tokenizer)
        self.meta = meta
        self.path = path

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict, path: str) -> "Model":
        """Build the model from what `charlm.checkpoint.load_checkpoint(path)` returned."""
        raise NotImplementedError

    def num_params(self) -> int:
        """Number of trained parameters."""
        return int(sum(p.size for p in self.network.params.values()))

    def info(self) -> dict:
        """What the file holds: settings, vocabulary, training summary (see `charlm.info`)."""
        return describe(self.path, self.meta, self.num_params())

    def __getattr__(self, name: str):
        """Only for names the class lacks: a method of another task's model says which it is."""
        owners = [c.__name__ for c in TASKS.values() if not name.startswith("_")
                  and callable(getattr(c, name, None)) and not isinstance(self, c)]
        if not owners:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        mine = [n for n in dir(type(self)) if not n.startswith("_") and callable(getattr(type(self), n))
                and n not in ("from_checkpoint", "num_params")]
        raise AttributeError(f"{self.__dict__.get('path', '')}: a {type(self).__name__} (task {self.task}) has no "
                             f"{name}(), a method of {' and '.join(owners)}; it has {', '.join(mine)}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path!r}, {self.num_params():,} parameters, "
                f"{len(self.vocab)} tokens, {self.vocab.tokenizer.describe()})")


def load(path: str | os.PathLike) -> Model:
    """Load a model file written by `charlm train` (a best model or a NAME.last.npz).

    Returns the class registered for the file's task: `LM` for a language model. Raises
    `CheckpointError` for a missing, corrupt, unsafe or incompatible file.
    """
    path = os.fspath(path)
    arrays, meta = load_checkpoint(path)
    task = meta.get("task", "lm")
    cls = TASKS.get(task) if isinstance(task, str) else None
    if cls is None:
        known = ", ".join(sorted(TASKS))
        raise CheckpointError(f"{path} holds a model for the task {task!r}, which this charlm "
                              f"cannot load (it knows: {known}); upgrade charlm")
    return cls.from_checkpoint(arrays, meta, path)


def _items(texts) -> list:
    """A lone str is one text (or sentence); any other iterable gives one text per item."""
    return [texts] if isinstance(texts, str) else list(texts)


def _texts(texts: str | Iterable[str]) -> list[str]:
    """One text or an iterable of texts, as a list (a lone string is one sentence)."""
    items = _items(texts)
    for t in items:
        if not isinstance(t, str):
            raise UsageError(f"expected text (str), got {type(t).__name__}")
    return items


def _source(path_or_text: str | os.PathLike | IO[str]):
    """A path (os.PathLike, or a str naming an existing file and without a newline), a file
    object, or else the text itself (as a file object)."""
    if isinstance(path_or_text, os.PathLike):
        return os.fspath(path_or_text)
    if isinstance(path_or_text, str):
        if "\n" not in path_or_text and os.path.isfile(path_or_text):
            return path_or_text
        text = io.StringIO(path_or_text)
        text.name = "<text>"  # in messages
        return text
    if hasattr(path_or_text, "read"):
        return path_or_text
    raise UsageError(f"expected a path, a file or a text, got {type(path_or_text).__name__}")


@register_task("lm")
class LM(Model):
    """A language model: P(y<1>, ..., y<n>) = prod_t P(y<t> | y<1>, ..., y<t-1>).

    Sentences are scored from the zero state with the conventions of `charlm score` (a
    lines-mode model scores the final <EOS>; see `charlm.scoring`).
    """

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict, path: str) -> "LM":
        network, vocab, meta = model_from_checkpoint(arrays, meta, path)
        return cls(network, vocab, meta, path)

    # -- scoring ----------------------------------------------------------------------------
    def score(self, texts: str | Iterable[str], *, batch_size: int = 64) -> list[SentenceScore]:
        """Score each text as one sentence (a lone string is one sentence).

        Returns one `SentenceScore` per text, in order; `to_dict(per_token=True)` gives the
        fields of `charlm score --json --per-token`. A text with no tokens raises UsageError.
        """
        return score_sentences(self.network, self.vocab, self.tokenizer, _texts(texts), batch_size)

    def evaluate(self, path_or_text: str | os.PathLike | IO[str], *, stream: bool = True, batch_size: int = 64) -> CorpusSummary:
        """Cross-entropy of a file or text: nats/bits per token (and per character), perplexity.

        stream=True scores it as one running text, the state carried across lines (as the
        model was trained, `charlm score --file F --stream`); stream=False scores each non-empty
        line as a sentence from the zero state. A str is a file path when it names an existing
        file and has no newline; pass a `pathlib.Path` to be explicit, or any file object.
        """
        source = _source(path_or_text)
        net, vocab, tok = self.network, self.vocab, self.tokenizer
        if stream:
            summary = score_stream(net, vocab, tok.iter_sentences(source))
        else:
            char_level = is_char_level(vocab)
            summary = CorpusSummary(chars=0 if char_level else None)
            for s in score_lines(net, vocab, tok, iter_lines(source), batch_size):
                summary.add(s, char_level)
        if summary.tokens == 0:
            raise DataError("nothing to score: the text has no tokens")
        return summary

    def perplexity(self, path_or_text: str | os.PathLike | IO[str], stream: bool = True) -> float:
        """exp(nats per token) of a file or text (see `evaluate`)."""
        return self.evaluate(path_or_text, stream=stream).perplexity

    def next_tokens(self, prefix: str = "", k: int = 10) -> list[tuple[str, float]]:
        """The k likeliest next tokens after `prefix` with their probabilities, likeliest first:
        P(y<t> | y<1>, ..., y<t-1>) over the whole vocabulary, <EOS> and <UNK> included.

        The prefix is read as `score` and `sample` read text: after <EOS> (lines mode) or a
        newline (stream mode); a lines-mode prefix's complete lines are earlier sentences.
        """
        prime = Prime.from_text(self.tokenizer, prefix)
        return [(tok, math.exp(lp)) for tok, lp in next_tokens(self.network, self.vocab, prime, k)]

    # -- generation -------------------------------------------------------------------------
    def _prime(self, prime: str, prime_file: str | os.PathLike | None) -> Prime:
        if prime_file is not None:
            if prime:
                raise UsageError("give prime or prime_file, not both")
            prime = read_prime_file(prime_file)
        return Prime.from_text(self.tokenizer, prime)

    def sample(self, num: int = 1, *, length: int | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, prime: str = "",
               prime_file: str | os.PathLike | None = None, stop_at: str | Sequence[str] = (),
               seed: int | None = None) -> list[Sample]:
        """Generate `num` texts (one batch), as `charlm sample` does with the same options.

        length: maximum generated tokens (default 200 characters or 50 words); temperature 0 is
        greedy; prime (or prime_file) is read first and starts each text; a sample ends at
        <EOS> (lines mode), after `length` tokens, or with the token that completes a stop
        string. Same seed, same samples. Returns `Sample`s: `str(s)` / `s.text` is the text.
        """
        rng = np.random.default_rng(seed)
        return samples(self.network, self.vocab, self.tokenizer, self._prime(prime, prime_file),
                       num=num, length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                       stop_at=stop_at, rng=rng)

    def complete(self, prefix: str = "", beam: int = 5, *, nbest: int = 1,
                 length: int | None = None, length_penalty: float = 0.0,
                 stop_at: str | Sequence[str] = ()) -> list[Candidate]:
        """The `nbest` most probable continuations of `prefix` found by beam search of width
        `beam` (`charlm sample --beam`). Deterministic. Each `Candidate` has the text, tokens,
        log-probability and score = logprob / length^length_penalty; best first.
        """
        prime = Prime.from_text(self.tokenizer, prefix)
        return search(self.network, self.vocab, self.tokenizer, prime, beam=beam, nbest=nbest,
                      length=length, length_penalty=length_penalty, stop_at=stop_at)


class _SentenceModel(Model):
    """A tagger or classifier: its `predictor` (`charlm.predict.Predictor`, the commands' code)
    computes; `tokenizer` cuts a text into words as `charlm tag` / `classify` do; `labels` are
    the tags or classes it predicts (entity tags in the scheme it decodes in)."""

    def __init__(self, loaded: Loaded, path: str = "") -> None:
        super().__init__(loaded.model, loaded.vocab, loaded.meta, path)
        self.predictor = Predictor.from_loaded(loaded)
        self.tokenizer = self.predictor.encoder.tokenizer()
        self.labels = list(self.predictor.encoder.labels)

    @classmethod
    def from_checkpoint(cls, arrays: dict, meta: dict, path: str) -> "_SentenceModel":
        return cls(model_from_checkpoint(arrays, meta, path), path)

    def _predictor(self, batch_size: int) -> Predictor:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer (got {batch_size!r})")
        p = self.predictor
        return p if batch_size == p.batch_size else Predictor(p.model, p.encoder, batch_size, p.meta)

    def _evaluate(self, path_or_text, format, tag_column, batch_size: int) -> dict:
        return evaluate_file(self._predictor(batch_size), _source(path_or_text), format, tag_column)


@register_task("tag")
class Tagger(_SentenceModel):
    """A tagger (many-to-many, Tx = Ty): ŷ<t> = softmax(W_y[a→<t>, a←<t>] + b_y) at every token.

    A sentence is a str, cut into words by the model's tokenizer as `charlm tag` cuts it, or a
    list of tokens (pre-tokenized). Entity tags are decoded with the constrained Viterbi search of
    `charlm tag` (never an invalid sequence) and given in the training data's scheme.
    """

    def tag(self, sentences: str | Iterable[str] | Iterable[Sequence[str]], *, scheme: str | None = None,
            batch_size: int = BATCH_SIZE) -> list[Tagged]:
        """Tag each sentence (a lone str is one sentence): one `Tagged` (tokens, tags, probs =
        the probability of each token's tag) per sentence, in order; `to_dict()` is a line of
        `charlm tag --json`. scheme "iob1", "iob2" or "iobes" rewrites entity tags (`--scheme`)."""
        return self._predictor(batch_size).tag(self.predictor.token_lists(_items(sentences)), scheme)

    def spans(self, sentences: str | Iterable[str] | Iterable[Sequence[str]], *,
              batch_size: int = BATCH_SIZE) -> list[list[tuple[str, str, int, int]]]:
        """The entities of each sentence, as `charlm tag --spans` lists them: (text, type, start,
        end), tokens start..end-1. Only for entity tags (else UsageError)."""
        self.predictor.need_entity_tags("spans")
        return [t.spans() for t in self.tag(sentences, batch_size=batch_size)]

    def evaluate(self, path_or_text: str | os.PathLike | IO[str], *, format: str | None = None,
                 tag_column: str | int | None = None, batch_size: int = BATCH_SIZE) -> dict:
        """Token accuracy, per-tag P/R/F1 and, for entity tags, entity P/R/F1 overall and per type
        (counted as conlleval counts them) of a CoNLL-U or column file (or text): the dict
        `charlm eval --json` prints. tag_column: the gold tags' column (default: the model's)."""
        return self._evaluate(path_or_text, format, tag_column, batch_size)


@register_task("classify")
class Classifier(_SentenceModel):
    """A classifier (many-to-one): ŷ = softmax(W_y[a→<Tx>, a←<1>] + b_y) (or pooled over t).

    A text is a str, cut into words by the model's tokenizer as `charlm classify` cuts it, or a
    list of tokens."""

    def classify(self, texts: str | Iterable[str] | Iterable[Sequence[str]], top_k: int | None = 1, *,
                 batch_size: int = BATCH_SIZE) -> list[Classified]:
        """The likeliest label of each text (a lone str is one text): one `Classified` (text,
        label, prob, probs) per text, in order; `probs` holds the top_k likeliest labels, best
        first (None: every label), and `to_dict()` is a line of `charlm classify --json --top-k`."""
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise UsageError(f"top_k must be a positive integer or None (got {top_k!r})")
        items = _items(texts)
        token_lists = self.predictor.token_lists(items)
        shown = [t if isinstance(t, str) else " ".join(t) for t in items]
        return self._predictor(batch_size).classify(token_lists, shown, top_k)

    def evaluate(self, path_or_text: str | os.PathLike | IO[str], *, format: str | None = None,
                 batch_size: int = BATCH_SIZE) -> dict:
        """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix of a LABEL<TAB>TEXT or
        fastText file (or text): the dict `charlm eval --json` prints."""
        return self._evaluate(path_or_text, format, None, batch_size)


# -- training -------------------------------------------------------------------------------

class _LogReporter(Reporter):
    """No progress bar: the engine's messages go to the "charlm" logger (level INFO)."""

    def message(self, text: str) -> None:
        log.info(text)


def _path(p: str | os.PathLike | None) -> str | None:
    return None if p is None else os.fspath(p)


def _progress_reporter() -> Reporter:
    from charlm.cli.train import BarReporter  # the command's bar (tqdm on stderr)

    return BarReporter(quiet=False)


def train(corpus: str | os.PathLike, *, output: str | os.PathLike = "charlm.npz", task: str = "lm",
          format: str | None = None, tag_column: str | None = None,
          level: str | None = None, mode: str | None = None, split: str = "regex",
          lowercase: bool = False, graphemes: bool = False, min_count: int = 1,
          max_vocab: int | None = None, vocab: str | os.PathLike | None = None,
          cell: str | None = None, layers: int = 2, hidden: int | None = None, embedding: int | None = None,
          dropout: float | None = None, dropout_kind: str | None = None, embedding_dropout: float | None = None,
          weight_drop: float | None = None, char_embedding: int | None = None, char_hidden: int | None = None,
          bidirectional: bool | None = None, pool: str | None = None, tie_weights: bool = False,
          activation: str = "tanh", peephole: bool = False, seq_len: int | None = None,
          batch_size: int = 32, accumulate: int = 1,
          optimizer: str = "adam", lr: float | None = None, clip: float = 5.0, epochs: int = 20,
          max_steps: int | None = None, time_limit: float | None = None,
          val_fraction: float = 0.1, val_file: str | os.PathLike | None = None,
          val_tokens: int | None = None, eval_every: int = 200, patience: int = 5, seed: int = 0,
          metrics: str | os.PathLike | None = None, resume: bool = False, force: bool = False,
          cache_dir: str | os.PathLike | None = None, no_cache: bool = False,
          progress: bool = False) -> Model:
    """Train a model on `corpus` as `charlm train` does, and return the best one: an `LM`, or
    with task="tag" a `Tagger`, with task="classify" a `Classifier`.

    The options are those of `charlm train`, with the same names (`--seq-len` is `seq_len`,
    `--vocab` is `vocab`, `--no-bidirectional` is `bidirectional=False`) and defaults (None:
    the task's default); `lr` None means the optimizer's default. The best model is written to
    `output` and the resumable state beside it (NAME.last.npz); `resume=True`
    continues that run with its own options (only epochs, max_steps, time_limit, patience,
    metrics, cache_dir and no_cache may be given again to change them); a new run refuses to
    replace another run's files at `output` unless `force=True`, which also lets it replace an
    output that is not a charlm file (never an input). No progress bar unless `progress=True`; the engine's messages go to the
    "charlm" logger. Ctrl-C saves the run, then raises KeyboardInterrupt.
    """
    flags = dict(locals())
    for name in ("corpus", "output", "vocab", "val_file", "metrics", "cache_dir"):
        flags[name] = _path(flags[name])
    resume, progress = flags.pop("resume"), flags.pop("progress")
    defaults = {k: p.default for k, p in inspect.signature(train).parameters.items()}
    given = {k for k, v in flags.items() if k != "corpus" and v != defaults[k]}
    if resume and "task" not in given:
        flags["task"] = resumed_task(flags["output"]) or task  # the saved run's task
    opts = TrainOptions.from_flags(**flags)
    reporter = _progress_reporter() if progress else _LogReporter()
    summary = _train_engine(opts, resume=resume, reporter=reporter, given=given)
    if summary.get("interrupted"):
        raise KeyboardInterrupt(f"training {summary['reason']} at step {summary['step']}; saved "
                                f"(resume with resume=True)")
    return load(summary["output"])

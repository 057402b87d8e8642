"""The language model task (`--task lm`, the default): P(y<1>, ..., y<n>) = prod_t P(y<t> | y<t-1>, ...).

The network is `lm.model.LanguageModel`; a run reads its corpus as B streams of windows with the
state carried (`lm.corpus`, `lm.batches`), through the token cache for a large corpus; quality is
the validation loss in nats per token, quoted as bits per character or perplexity. `LM` is what
`charlm.load` returns for its files: scoring, sampling, beam search.

With --init-from LM.npz a run starts from another language model's weights, its vocabulary mapped by
token (`fine_tune_from`): ULMFiT's fine-tuning of a general model on the task's own text.

With --condition the corpus is labelled and the model is a language model given the label
(`lm.conditional.ConditionalLM`; its data, options and evaluation are tasks/conditional.py): its
files are the task's files too, and `LM` then scores, samples and searches given a label
(`label=`) and classifies by Bayes' rule (`classify`).
"""

from __future__ import annotations

import math
import os
from typing import IO, Iterable, Sequence

import numpy as np

from charlm.checkpoint import DEFAULT_TASK, load_checkpoint
from charlm.engine.memory import check_memory
from charlm.engine.optim import make_optimizer
from charlm.engine.options import Option
from charlm.engine.run import Run
from charlm.engine.state import TrainState
from charlm.errors import CheckpointError, DataError, UsageError
from charlm.info import loss_figures
from charlm.lm.batches import StreamBatches, StreamValidation
from charlm.lm.beam import Candidate, search
from charlm.lm.corpus import prepare_lm_data
from charlm.lm.generate import Prime, Sample, next_tokens, read_prime_file, samples
from charlm.lm.bayes import bayes_classify
from charlm.lm.conditional import CondConfig, ConditionalLM, Given
from charlm.lm.model import LanguageModel, ModelConfig, memory_need
from charlm.lm.reverse import ReversedTokenizer
from charlm.lm.scoring import (
    LN2,
    CorpusSummary,
    SentenceScore,
    is_char_level,
    score_lines,
    score_sentences,
    score_stream,
)
from charlm.nn.regularize import DROPOUT_KINDS
from charlm.sentence.predict import Classified
from charlm.tasks import conditional
from charlm.tasks.base import Model, Report, Task, items, text_source
from charlm.text.reader import iter_lines
from charlm.text.tokenizer import TokenizerConfig
from charlm.text.vocab import Vocab

# The options only a language model has (`engine.options` declares the shared ones).
VOCAB = Option("vocab", path="any",
               help="Use a vocabulary made by `charlm tokenize --vocab-out` (its tokenizer settings win).")
TIE_WEIGHTS = Option("tie_weights", bool, False, group="model",
                     help="Share the embedding and output weights (needs --embedding = --hidden).")
DROPOUT_KIND = Option("dropout_kind", choices=DROPOUT_KINDS, group="model",
                      help="lm: standard: a fresh --dropout mask at every step; locked: one mask per stream and unit, "
                           "the same at every step of a window (variational dropout).")
EMBEDDING_DROPOUT = Option("embedding_dropout", float, low=0, high=1, high_open=True, group="model", metavar="P",
                           help="lm: drop whole words of the vocabulary, each with probability P per batch (the others "
                                "scaled by 1/(1-P)); 0: off.")
WEIGHT_DROP = Option("weight_drop", float, low=0, high=1, high_open=True, group="model", metavar="P",
                     help="lm: DropConnect on each layer's recurrent weights, one mask per batch; 0: off.")
REVERSE = Option("reverse", bool, group="model", only="it is how a language model reads its corpus",
                 help="lm: train on the text read right to left (each line reversed in lines mode, the whole stream "
                      "in stream mode): the backward model of --lm-features; score and sample read it so.")
REGULARISERS = (DROPOUT_KIND, EMBEDDING_DROPOUT, WEIGHT_DROP)  # charlm.nn.regularize; defaults: ModelConfig's
SEQ_LEN = Option("seq_len", int, 100, low=1, high=100000, help="lm: truncated-BPTT window, in tokens.")
VAL_TOKENS = Option("val_tokens", int, low=0, metavar="N",
                    help="lm: at most N validation tokens: the last N of the corpus, or the first N of --val-file "
                         "(0: no limit) [default: 131072 from the corpus, a --val-file whole].")
CACHE_DIR = Option("cache_dir", path="dir", resumable=True, metavar="DIR",
                   help="Where the token cache of a corpus of 16 MB or more is kept [default: the model's folder].")
NO_CACHE = Option("no_cache", bool, False, resumable=True, help="Neither use nor write a token cache.")
CACHE_OPTIONS = (CACHE_DIR, NO_CACHE)  # `charlm score` has them too
INIT_FROM = Option("init_from", path="file", metavar="LM.npz",
                   help="lm: start from this charlm language model and go on training it on the corpus (fine-tuning, "
                        "ULMFiT's second step; same level, case folding, cell, sizes and layers; its vocabulary is "
                        "mapped by token). tag/classify: start the word (or character) embeddings and the forward "
                        "recurrent layers from it (same level, cell and sizes; at least as many layers).")
# the settings a model started from a language model (--init-from) shares with it, and the option of each
INIT_MATCH = (("cell", "--cell"), ("hidden", "--hidden"), ("embedding", "--embedding"), ("peephole", "--peephole"),
              ("activation", "--activation"))


class LM(Model):
    """A language model: P(y<1>, ..., y<n>) = prod_t P(y<t> | y<1>, ..., y<t-1>).

    Sentences are scored from the zero state with the conventions of `charlm score` (a
    lines-mode model scores the final <EOS>; see `charlm.lm.scoring`).

    A conditional model (trained with --condition) has `labels` (a `lm.labelled.LabelSet`: the
    names and their training counts); its scoring, sampling, search and next tokens need a label
    (`label="pos"`), from whose state a<0> each text starts. `labels` is None otherwise.

    A model trained with --reverse (`reverse` True) read its text right to left (`lm.reverse`): its
    `tokenizer` gives the tokens in that order, so `score` and `evaluate` give P(text) read so, and
    `sample` generates right to left (the prime is the end of the text) and returns the text in
    reading order (`tokens` in the order generated). `next_tokens`, `complete` and stop strings
    refuse it (`forward_only`): they extend a text to the right.
    """

    def __init__(self, network, vocab, meta: dict, path: str = "", *, task: Task | None = None) -> None:
        super().__init__(network, vocab, meta, path, task=task)
        self.labels = conditional.labels_of(meta, network.config, path) \
            if isinstance(network, ConditionalLM) else None
        self.reverse = bool(getattr(network.config, "reverse", False))
        if self.reverse:
            self.tokenizer = ReversedTokenizer(vocab.tokenizer)

    def forward_only(self, what: str) -> None:
        """UsageError if the model reads right to left (--reverse): `what` extends a text to the right."""
        if self.reverse:
            raise UsageError(f"{self.path or 'the model'} reads text right to left (trained with --reverse): "
                             f"{what} continues a text to the right, which it cannot predict; use score or sample "
                             f"(without --stop-at)")

    def conditioned(self, label: str | None = None) -> LanguageModel | Given:
        """The network that computes P(text) (label None), or P(text | label) for a conditional
        model. UsageError: a label for a model without labels, none (or an unknown one) for a
        conditional model (the message lists its labels)."""
        if self.labels is None:
            if label is not None:
                raise UsageError(f"{self.path or 'the model'} is not a conditional language model (it was "
                                 "trained without --condition): it takes no label")
            return self.network
        if label is None:
            raise UsageError(f"{self.path or 'the model'} is a conditional language model: give a label "
                             f"(--label; the labels are: {self.labels.known()})")
        if label not in self.labels.index:
            raise UsageError(f"unknown label {label!r} (the labels are: {self.labels.known()})")
        return self.network.given(self.labels.id(label))

    def classify(self, texts: str | Iterable[str], top_k: int | None = 1, *,
                 batch_size: int = 64) -> list[Classified]:
        """The label of each text by Bayes' rule (a conditional model only): argmax over c of
        log P(text | c) + log P(c), P(c) the training texts' label frequencies. One
        `sentence.predict.Classified` per text (text, label, its posterior P(c | text), the top_k
        labels' posteriors, best first; None: all), as a classifier's `classify` returns."""
        if self.labels is None:
            raise UsageError(f"{self.path or 'the model'} is a language model without labels: train one with "
                             "--condition to classify with it (or a classifier, --task classify)")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise UsageError(f"top_k must be a positive integer or None (got {top_k!r})")
        texts = items(texts)
        for t in texts:
            if not isinstance(t, str):
                raise UsageError(f"expected text (str), got {type(t).__name__}")
        token_lists = [self.tokenizer.tokenize(t) for t in texts]
        if any(not t for t in token_lists):
            raise UsageError("a text has no tokens: nothing to classify")
        result = bayes_classify(self.network, self.vocab, token_lists, self.labels.log_prior(), batch_size)
        return conditional.classified(result, self.labels.names, texts, top_k)

    # -- scoring ----------------------------------------------------------------------------
    def score(self, texts: str | Iterable[str], *, label: str | None = None,
              batch_size: int = 64) -> list[SentenceScore]:
        """Score each text as one sentence (a lone string is one sentence); a conditional model
        gives log P(text | label).

        Returns one `SentenceScore` per text, in order; `to_dict(per_token=True)` gives the
        fields of `charlm score --json --per-token`. A text with no tokens raises UsageError.
        """
        texts = items(texts)
        for t in texts:
            if not isinstance(t, str):
                raise UsageError(f"expected text (str), got {type(t).__name__}")
        return score_sentences(self.conditioned(label), self.vocab, self.tokenizer, texts, batch_size)

    def evaluate(self, path_or_text: str | os.PathLike | IO[str], *, stream: bool = True,
                 batch_size: int = 64) -> CorpusSummary:
        """Cross-entropy of a file or text: nats/bits per token (and per character), perplexity.

        stream=True scores it as one running text, the state carried across lines (as the
        model was trained, `charlm score --file F --stream`); stream=False scores each non-empty
        line as a sentence from the zero state. A str is a file path when it names an existing
        file and has no newline; pass a `pathlib.Path` to be explicit, or any file object.
        """
        source = text_source(path_or_text)
        net, vocab, tok = self.conditioned(), self.vocab, self.tokenizer
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

    def next_tokens(self, prefix: str = "", k: int = 10, *, label: str | None = None) -> list[tuple[str, float]]:
        """The k likeliest next tokens after `prefix` with their probabilities, likeliest first:
        P(y<t> | y<1>, ..., y<t-1>) over the whole vocabulary, <EOS> and <UNK> included.

        The prefix is read as `score` and `sample` read text: after <EOS> (lines mode) or a
        newline (stream mode); a lines-mode prefix's complete lines are earlier sentences.
        """
        self.forward_only("next")
        prime = Prime.from_text(self.tokenizer, prefix)
        return [(tok, math.exp(lp)) for tok, lp in next_tokens(self.conditioned(label), self.vocab, prime, k)]

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
               seed: int | None = None, label: str | None = None) -> list[Sample]:
        """Generate `num` texts (one batch), as `charlm sample` does with the same options.

        length: maximum generated tokens (default 200 characters or 50 words); temperature 0 is
        greedy; prime (or prime_file) is read first and starts each text; a sample ends at
        <EOS> (lines mode), after `length` tokens, or with the token that completes a stop
        string. Same seed, same samples. Returns `Sample`s: `str(s)` / `s.text` is the text.
        A conditional model samples given `label` (P(text | label)).
        """
        network = self.conditioned(label)
        if stop_at:
            self.forward_only("a stop string")
        rng = np.random.default_rng(seed)
        return samples(network, self.vocab, self.tokenizer, self._prime(prime, prime_file),
                       num=num, length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                       stop_at=stop_at, rng=rng)

    def complete(self, prefix: str = "", beam: int = 5, *, nbest: int = 1,
                 length: int | None = None, length_penalty: float = 0.0,
                 stop_at: str | Sequence[str] = (), label: str | None = None) -> list[Candidate]:
        """The `nbest` most probable continuations of `prefix` found by beam search of width
        `beam` (`charlm sample --beam`). Deterministic. Each `Candidate` has the text, tokens,
        log-probability and score = logprob / length^length_penalty; best first. A conditional
        model searches given `label`.
        """
        network = self.conditioned(label)
        self.forward_only("beam search")
        prime = Prime.from_text(self.tokenizer, prefix)
        return search(network, self.vocab, self.tokenizer, prime, beam=beam, nbest=nbest,
                      length=length, length_penalty=length_penalty, stop_at=stop_at)


class LMTask(Task):
    """The language model (see the module docstring)."""

    name = "lm"
    noun = "a language model"
    commands = ("score", "sample", "next")  # and `charlm classify` for a conditional model (cli/classify.py)
    options = (VOCAB, TIE_WEIGHTS, REVERSE, *REGULARISERS, SEQ_LEN, VAL_TOKENS, *CACHE_OPTIONS, INIT_FROM,
               *conditional.OPTIONS)
    level = "char"
    unit = "tok"
    config = ModelConfig
    network = LanguageModel
    api_class = LM

    def default(self, option, opts=None):
        """--condition reads whole texts (--mode lines) unless --mode stream is given."""
        if option.name == "mode" and opts is not None and opts.condition:
            return "lines"
        return super().default(option, opts)

    def check_options(self, opts) -> None:
        conditional.check_options(opts)
        if opts.condition and opts.init_from:
            raise UsageError("--init-from does not apply to --condition (a conditional model has label states a "
                             "language model does not have)")
        if opts.condition and opts.model.get("reverse"):
            raise UsageError("--reverse does not apply to --condition (a conditional model reads its labelled texts "
                             "left to right)")
        if opts.no_cache and opts.cache_dir is not None:
            raise UsageError("--cache-dir and --no-cache contradict each other: give one of them")
        if opts.val_tokens == 1:
            raise UsageError("--val-tokens must be 0 (no limit) or at least 2 (got 1)")
        model = opts.model
        if model["tie_weights"] and model["embedding"] != model["hidden"]:
            raise UsageError(f"--tie-weights needs --embedding equal to --hidden "
                             f"({model['embedding']} != {model['hidden']})")

    # -- training ---------------------------------------------------------------------------------
    def _data(self, opts, vocab: Vocab | None = None, n_train: int | None = None, reporter=None,
              verify: bool = True):
        """(source, validation, vocab, info, warning) of a run (verify: see
        `charlm.text.tokencache.token_ids`)."""
        if vocab is None and opts.vocab:
            vocab = Vocab.load(opts.vocab)
        cache_dir = None if opts.no_cache else (opts.cache_dir or os.path.dirname(os.path.abspath(opts.output)))
        data = prepare_lm_data(opts.corpus, TokenizerConfig.from_dict(opts.tokenizer), vocab=vocab,
                               val_file=opts.val_file, val_fraction=opts.val_fraction, val_tokens=opts.val_tokens,
                               min_count=opts.min_count, max_vocab=opts.max_vocab, batch_size=opts.batch_size,
                               seq_len=opts.seq_len, n_train=n_train, cache_dir=cache_dir, verify=verify,
                               report=reporter, reverse=opts.model["reverse"])
        source = StreamBatches(data.train, data.seq_len)
        validation = StreamValidation(data.val, data.seq_len) if data.val is not None else None
        info = {"vocab": len(data.vocab), "train_tokens": data.n_train_tokens, "val_tokens": data.n_val_tokens,
                "batch": data.batch_size, "seq_len": data.seq_len, "steps_per_epoch": source.steps_per_epoch(),
                "level": data.vocab.tokenizer.level, "task": self.name, "val_note": data.val_note}
        return source, validation, data.vocab, info, data.warning

    def start(self, opts, reporter, verify: bool) -> Run:
        if opts.condition:
            return conditional.start(opts, reporter, verify)
        source, validation, vocab, info, warning = self._data(opts, reporter=reporter, verify=verify)
        config = ModelConfig(vocab_size=len(vocab), **opts.model)
        slots = len(make_optimizer(opts.optimizer, 1.0).slots)  # state arrays per parameter
        check_memory(*memory_need(config, source.batch_size, source.seq_len, slots),
                     "--hidden, --layers, --embedding, --batch-size or --seq-len")
        model = LanguageModel(config, seed=opts.seed)
        if opts.init_from:
            reporter.note(fine_tune_from(model, vocab, opts.init_from))
        state = TrainState(n_train=info["train_tokens"], rng=np.random.default_rng(opts.seed + 1))
        run = Run(opts, model, vocab, source, validation, make_optimizer(opts.optimizer, opts.lr), state,
                  dict(info, params=model.num_params()), warning)
        state.hidden = run.initial_hidden()
        return run

    def resume_data(self, opts, model, state, reporter, verify: bool):
        if opts.condition:
            return conditional.resume_data(opts, model, state)
        source, validation, _, info, warning = self._data(opts, vocab=model.vocab, n_train=state.n_train,
                                                          reporter=reporter, verify=verify)
        return source, validation, info, warning, {}

    # -- figures ----------------------------------------------------------------------------------
    def figures(self, record: dict, level: str) -> dict:
        return loss_figures(record.get("val_loss"), level)

    def headline(self, info: dict) -> str:
        if "labels" in info:
            return (f"vocabulary {info['vocab']:,}, {info['labels']} labels, {info['texts']:,} training texts "
                    f"({info['train_tokens']:,} tokens) and {info['val_tokens']:,} validation tokens, "
                    + (f"batch {info['batch']} x {info['seq_len']} steps of each label's running text"
                       if "seq_len" in info else f"batch {info['batch']} whole texts"))
        return (f"vocabulary {info['vocab']:,}, {info['train_tokens']:,} training and {info['val_tokens']:,} "
                f"validation tokens, batch {info['batch']} x {info['seq_len']} steps")

    def progress(self, loss: float, level: str) -> str:
        return f"{loss / LN2:.3f}bpc " if level == "char" else f"ppl={math.exp(min(loss, 700)):.1f} "

    # -- files --------------------------------------------------------------------------------------
    def open(self, arrays: dict, meta: dict, path: str):
        """A language model's file; a conditional model's (its settings name labels) is built as a
        `ConditionalLM` with its labels."""
        if conditional.is_conditional(meta):
            return _CONDITIONAL_FILES.open(arrays, meta, path)
        return super().open(arrays, meta, path)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model, source, format=None, tag_column=None, batch_size: int = 64) -> Report:
        """Cross-entropy and perplexity of the file read as one running text (`charlm score
        --file --stream`); a conditional model's file is labelled: the Bayes classifier's metrics
        and the figures given the true label (tasks/conditional.py `evaluation`)."""
        if model.labels is not None and not tag_column:
            return conditional.evaluation(model, source, format, batch_size)
        if format or tag_column:
            raise UsageError(f"{'--format' if format else '--tag-column'} applies to taggers and classifiers; "
                             f"{model.path} is a language model")
        summary = score_stream(model.network, model.vocab, model.tokenizer.iter_sentences(source))
        if summary.tokens == 0:
            raise DataError(f"{'stdin' if source == '-' else source} has nothing to score")
        data = summary.to_dict()
        data.pop("summary", None)
        return Report({"task": self.name, **data}, summary.lines())


class _ConditionalFiles(LMTask):
    """How `LMTask.open` reads a conditional model's file: its settings and network classes."""

    config, network = CondConfig, ConditionalLM
    open = Task.open  # the settings checked against CondConfig, the network built as a ConditionalLM

    def model(self, config, params, vocab, meta, path):
        return LM(self.build(config, params, path), vocab, meta, path, task=TASK)


def open_file(path: str, option: str) -> LM:
    """The language model file that `option` (--init-from, --lm-features) names: UsageError if it
    holds a model of another task, its CheckpointError prefixed with the option."""
    try:
        arrays, meta = load_checkpoint(path)
        task = meta.get("task", DEFAULT_TASK)
        if task != TASK.name:
            raise UsageError(f"{option} {path} is not a language model (task {task}): give a model made by "
                             f"`charlm train` without --task")
        return TASK.open(arrays, meta, path)
    except CheckpointError as err:
        raise CheckpointError(f"{option}: {err}") from None


def checked_source(path: str, config, tokenizer, what: str, also: tuple = ()) -> LM:
    """The language model that --init-from names, for a new model (`what`: "the tagger", ...) with
    settings `config` reading with `tokenizer`: not a conditional one, the same token level and case
    folding and the same INIT_MATCH settings (and `also`'s, (name, flag) pairs), or one UsageError
    naming the option to change."""
    loaded = open_file(path, "--init-from")
    if isinstance(loaded.network, ConditionalLM):
        raise UsageError(f"--init-from {path} is a conditional language model (trained with --condition): give "
                         f"one trained without it")
    theirs = loaded.vocab.tokenizer
    if tokenizer.level != theirs.level:
        raise UsageError(f"--init-from {path} is a {theirs.level}-level language model; {what} reading "
                         f"{tokenizer.level}s needs a {tokenizer.level}-level one (--level {tokenizer.level})")
    if tokenizer.lowercase != theirs.lowercase:
        raise UsageError(f"--init-from {path} was trained {'with' if theirs.lowercase else 'without'} "
                         f"--lowercase; train {what} the same way")
    for name, flag in (*INIT_MATCH, *also):
        value, ours = getattr(loaded.network.config, name), getattr(config, name)
        if value != ours:
            fix = f"both with or both without {flag}" if isinstance(value, bool) else f"{what} with {flag} {value}"
            raise UsageError(f"--init-from {path}: the language model's {name} is {value}, {what}'s {ours}: "
                             f"train {fix}")
    return loaded


def shared_tokens(path: str, vocab: Vocab, theirs: Vocab, data: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids in `vocab`, ids in `theirs`) of the tokens both vocabularies have (<UNK> and <EOS>
    always), for --init-from `path`; UsageError when `data` (the new model's text) shares no other."""
    found = np.array([theirs.index.get(t, -1) for t in vocab.tokens])
    mine = np.flatnonzero(found >= 0)
    if len(mine) <= 2:
        raise UsageError(f"--init-from {path}: no token of {data} is in the language model's vocabulary "
                         f"(another language or tokenizer?)")
    return mine, found[mine]


def fine_tune_from(model: LanguageModel, vocab: Vocab, path: str) -> str:
    """Start `model` (a fresh LanguageModel over `vocab`, the new corpus's) from the language model
    at `path`, in place (`--init-from`): ULMFiT's fine-tuning of a general model on the task's text.

        embed.W[w], out.W[:, w], out.b[w]  <- the LM's rows for the same token w   (<UNK>, <EOS> too;
                                              the new corpus's other tokens keep their initialisation)
        rnn.{l}.*                          <- the LM's, l = 1..L (the same cell, sizes and layers)

    The two must match (level, case folding, INIT_MATCH, --layers, --tie-weights, --reverse): one
    UsageError otherwise. -> a one-line note."""
    loaded = checked_source(path, model.config, vocab.tokenizer, "the new model",
                            also=(("layers", "--layers"), ("tie_weights", "--tie-weights"), ("reverse", "--reverse")))
    mine, theirs_ids = shared_tokens(path, vocab, loaded.vocab, "the corpus")
    p, q = model.params, loaded.network.params
    p["embed.W"][mine] = q["embed.W"][theirs_ids]
    p["out.b"][mine] = q["out.b"][theirs_ids]
    if "out.W" in p:
        p["out.W"][:, mine] = q["out.W"][:, theirs_ids]
    for key in p:
        if key.startswith("rnn."):
            p[key][...] = q[key]
    unit = "words" if vocab.tokenizer.level == "word" else "characters"
    return (f"initialised from {path}: its {model.config.layers} recurrent layer(s), and the embeddings and output weights of "
            f"{len(mine) - 2:,} of the corpus's {len(vocab) - 2:,} {unit}")


TASK = LMTask()
LM._task = TASK  # the task of the files an LM is made from
_CONDITIONAL_FILES = _ConditionalFiles()

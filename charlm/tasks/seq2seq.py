"""The sequence-to-sequence task (`--task seq2seq`): many-to-many with Tx ≠ Ty (the notes' machine
translation; here grapheme-to-phoneme conversion, date normalisation).

An encoder RNN reads the source x<1..Tx>, a decoder RNN writes y<1..Ty> and <EOS>, with attention
over the encoder's states (`seq2seq.network.Seq2Seq`). The training file has SOURCE<TAB>TARGET
lines; a source on several lines is one example with several references (`seq2seq.pairs`). Each
side has its own tokenizer (--source-level/--target-level, --source-split/--target-split,
--source-lowercase/--target-lowercase; default characters on both sides). Quality: sequence
accuracy (its complement, the word error rate as the G2P literature counts it) and the token error
rate against the closest reference; "best" is the lowest validation token error rate. `Translator`
is what `charlm.load` returns for its files.
"""

from __future__ import annotations

import os
from typing import IO, Iterable

import numpy as np

from charlm.engine.batches import split_validation
from charlm.engine.optim import make_optimizer
from charlm.engine.options import Option
from charlm.engine.run import Run
from charlm.engine.state import TrainState
from charlm.errors import CharlmError, CheckpointError, DataError, UsageError
from charlm.nn.attention import ATTENTIONS
from charlm.seq2seq.metrics import Counts
from charlm.seq2seq.network import Seq2Seq, Seq2SeqConfig
from charlm.seq2seq.pairs import FORMAT, PairFile, PairVocab, read_pairs
from charlm.seq2seq.source import PairBatches, PairValidation
from charlm.seq2seq.translate import MAX_SOURCE, Translated, translate
from charlm.tasks.base import Model, Report, Task, items, read_vocab, text_source
from charlm.tasks.sentence import BIDIRECTIONAL, percent
from charlm.text.tokenizer import TokenizerConfig

BATCH_SIZE = 64  # sources decoded together


def _side_options(side: str) -> tuple:
    """--SIDE-level, --SIDE-split, --SIDE-lowercase: the tokenizer of one side of the pairs."""
    return (Option(f"{side}_level", choices=("char", "word"), default="char",
                   help=f"seq2seq: the {side} side's tokens are characters or words."),
            Option(f"{side}_split", choices=("regex", "whitespace"), default="regex",
                   help=f"seq2seq: how the {side} side is cut into words (word level; whitespace for phones, "
                        "pre-tokenized text)."),
            Option(f"{side}_lowercase", bool, False, help=f"seq2seq: lowercase the {side} side first."))


ATTENTION = Option("attention", choices=ATTENTIONS, group="model",
                   help="seq2seq: how the decoder reads the encoder's states: additive or dot attention, or none "
                        "(the decoder starts from the encoder's final states only: the notes' encoder-decoder).")
# the decoder's and the attention's own sizes (Seq2SeqConfig's; 0: the size they follow)
SIZE_OPTIONS = (
    Option("decoder_hidden", int, low=0, high=8192, group="model", metavar="N",
           help="seq2seq: the decoder's units (0: --hidden) [default: 0]."),
    Option("target_embedding", int, low=1, high=8192, group="model", metavar="N",
           help="seq2seq: the target (output token) embedding size; --embedding is the source's [default: 64]."),
    Option("attention_hidden", int, low=0, high=8192, group="model", metavar="N",
           help="seq2seq: the units of additive attention's scores vᵀ tanh(W_1 s<t> + W_2 a<t'>) (0: the "
                "decoder's) [default: 0]."))
SIDE_OPTIONS = _side_options("source") + _side_options("target")
TOKENIZER_OPTIONS = ("level", "mode", "split", "lowercase", "graphemes")


def side_tokenizers(opts) -> tuple[TokenizerConfig, TokenizerConfig]:
    """The source's and the target's tokenizer settings of a run's options (one pair per line)."""
    return tuple(TokenizerConfig(level=getattr(opts, f"{s}_level"), mode="lines", split=getattr(opts, f"{s}_split"),
                                 lowercase=bool(getattr(opts, f"{s}_lowercase"))) for s in ("source", "target"))


class Translator(Model):
    """A sequence-to-sequence model: an encoder reads x<1..Tx>, a decoder writes ŷ<1..Ty> then <EOS>.

    `pairs` holds the two vocabularies and tokenizers (`seq2seq.pairs.PairVocab`); `vocab` and
    `tokenizer` are the source side's."""

    def __init__(self, network, vocab, meta: dict, path: str, pairs: PairVocab, *, task: Task | None = None) -> None:
        super().__init__(network, vocab, meta, path, task=task)
        self.pairs = pairs

    def translate(self, sources: str | Iterable[str], *, beam: int = 4, nbest: int = 1, length_penalty: float = 0.0,
                  max_length: int | None = None, batch_size: int = BATCH_SIZE) -> list[Translated]:
        """The `nbest` best outputs of each source (a lone str is one source), found by beam search
        of width `beam` (1: greedy), in order: nbest `Translated` per source, best first (`rank`);
        `to_dict()` is a line of `charlm translate --json`. Output tokens allowed: `max_length`
        (default 2·Tx + 10); scores are logprob / steps^length_penalty."""
        return translate(self.network, self.pairs, items(sources), beam, nbest, length_penalty, max_length,
                         batch_size)

    def evaluate(self, path_or_text: str | os.PathLike | IO[str], *, beam: int = 1,
                 batch_size: int = BATCH_SIZE) -> dict:
        """Sequence accuracy, word error rate, token error rate (and BLEU, chrF with sacrebleu) of a
        SOURCE<TAB>TARGET file: the dict `charlm eval --json` prints."""
        return self._task.evaluate(self, text_source(path_or_text), batch_size=batch_size, beam=beam).data


class Seq2SeqTask(Task):
    """Sequence to sequence (see the module docstring)."""

    name, noun, commands = "seq2seq", "a sequence-to-sequence model", ("translate",)
    decodes = True
    options = (*SIDE_OPTIONS, ATTENTION, *SIZE_OPTIONS, BIDIRECTIONAL)
    refusals = {"seq_len": "it reads whole examples", "tie_weights": "its source and target vocabularies differ",
                "vocab": "it builds its vocabularies from the training file",
                "val_tokens": "it holds out whole examples (--val-fraction)",
                "cache_dir": "it keeps no token cache", "no_cache": "it keeps no token cache",
                **{k: "each side has its own tokenizer: --source-level, --target-level, --source-split, "
                      "--target-split, --source-lowercase, --target-lowercase" for k in TOKENIZER_OPTIONS}}
    level, unit = "char", "tok"
    config, network, api_class = Seq2SeqConfig, Seq2Seq, Translator

    @property
    def accepts(self) -> frozenset:
        """The engine's options but the one tokenizer's (each side has its own), and its own."""
        return super().accepts - set(TOKENIZER_OPTIONS)

    def check_options(self, opts) -> None:
        side_tokenizers(opts)  # UsageError for a bad mix (--source-split whitespace at char level)

    # -- training ---------------------------------------------------------------------------------
    def _data(self, opts, state: TrainState, vocab: PairVocab | None = None):
        """(source, validation, vocab, info, warning) of a run; `vocab` is given when resuming."""
        corpus = read_pairs(opts.corpus)
        if opts.val_file:
            train, val = corpus.examples, read_pairs(opts.val_file).examples
        else:
            keep, held = split_validation(len(corpus.examples), opts.val_fraction, opts.seed)
            train, val = [corpus.examples[i] for i in keep], [corpus.examples[i] for i in held]
        if vocab is None:
            vocab = PairVocab.build(PairFile(train, corpus.name), *side_tokenizers(opts), min_count=opts.min_count,
                                    max_vocab=opts.max_vocab)
        sources, targets = [], []
        for e in train:
            ids = vocab.source_ids(e.source)
            if len(ids) > MAX_SOURCE:
                raise DataError(f"{corpus.name} line {e.lines[0]}: a source of {len(ids)} tokens; the model reads "
                                f"at most {MAX_SOURCE}")
            for ref in e.references:
                sources.append(ids)
                targets.append(vocab.target_ids(ref))
        validation = None
        if val:
            validation = PairValidation([vocab.source_ids(e.source) for e in val],
                                        [[vocab.target_ids(r) for r in e.references] for e in val])
        source = PairBatches(sources, targets, opts.batch_size, opts.seed, state)
        info = {"vocab": len(vocab.source), "target_vocab": len(vocab.target),
                "train_tokens": int(sum(len(t) + 1 for t in targets)),
                "val_tokens": int(sum(len(r) + 1 for v in (validation.references if val else []) for r in v)),
                "batch": source.batch_size, "seq_len": None, "steps_per_epoch": source.steps_per_epoch(),
                "level": vocab.target.tokenizer.level, "task": self.name, "examples": len(train),
                "pairs": len(sources), "val_examples": len(val)}
        return source, validation, vocab, info, None

    def start(self, opts, reporter, verify: bool) -> Run:
        state = TrainState(rng=np.random.default_rng(opts.seed + 1))
        source, validation, vocab, info, warning = self._data(opts, state)
        state.n_train = info["pairs"]
        config = Seq2SeqConfig.from_dict(dict(opts.model, source_vocab_size=len(vocab.source),
                                              target_vocab_size=len(vocab.target)))
        model = Seq2Seq(config, seed=opts.seed)
        return Run(opts, model, vocab.source, source, validation, make_optimizer(opts.optimizer, opts.lr), state,
                   dict(info, params=model.num_params()), warning, {"target_vocab": vocab.target.to_dict()})

    def resume_data(self, opts, model, state, reporter, verify: bool):
        source, validation, vocab, info, warning = self._data(opts, state, model.pairs)
        if info["pairs"] != state.n_train:
            raise DataError(f"{opts.corpus} changed since the run started ({state.n_train} training pairs then, "
                            f"{info['pairs']} now): train again without --resume")
        return source, validation, info, warning, {"target_vocab": vocab.target.to_dict()}

    # -- files ------------------------------------------------------------------------------------
    def model(self, config, params: dict, vocab, meta: dict, path: str) -> Translator:
        """Its model file holds the source vocabulary as "vocab" (checked by `open`) and the target's
        as "target_vocab"."""
        target = read_vocab(meta.get("target_vocab"), path, "target vocabulary")
        if len(target) != config.target_vocab_size:
            raise CheckpointError(f"{path} is inconsistent: the target vocabulary has {len(target)} tokens but the "
                                  f"model expects {config.target_vocab_size}")
        try:
            pairs = PairVocab(vocab, target)
        except CharlmError as err:
            raise CheckpointError(f"{path}: the model file is unusable: {err}") from None
        return Translator(self.build(config, params, path), vocab, meta, path, pairs, task=self)

    # -- figures ----------------------------------------------------------------------------------
    def figures(self, record: dict, level: str) -> dict:
        """The loss, the sequence accuracy and the token error rate of an evaluation."""
        figures = {"val_loss": record.get("val_loss"), "accuracy": record.get("val_accuracy"),
                   "token_error_rate": record.get("val_ter")}
        return {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def headline(self, info: dict) -> str:
        return (f"{info['vocab']:,} source and {info['target_vocab']:,} target tokens, {info['examples']:,} "
                f"training examples ({info['pairs']:,} pairs, {info['train_tokens']:,} target tokens) and "
                f"{info['val_examples']:,} validation examples, batch {info['batch']} pairs")

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model, source, format=None, tag_column=None, batch_size: int = BATCH_SIZE,
                 beam: int = 1) -> Report:
        """Sequence accuracy, WER, token error rate, and BLEU/chrF (sacrebleu, if installed) of the
        outputs (beam search of width `beam`, greedy by default) against a pair file's references."""
        if format or tag_column:
            raise UsageError(f"{'--format' if format else '--tag-column'} applies to taggers and classifiers; "
                             f"{model.path} is a sequence-to-sequence model (its file has {FORMAT} lines)")
        data = read_pairs(source)
        outputs = model.translate([e.source for e in data.examples], beam=beam, batch_size=batch_size)
        pairs, counts = model.pairs, Counts()
        unknown = sorted({t for o in outputs for t in o.unknown})
        for e, o in zip(data.examples, outputs):
            counts.add(o.tokens, [pairs.target_tokens(r) for r in e.references])
        bleu, chrf, note = sacrebleu_scores([o.output for o in outputs], [e.references for e in data.examples])
        report = {"task": self.name, "examples": counts.examples, "sequence_accuracy": counts.sequence_accuracy,
                  "wer": counts.wer, "token_error_rate": counts.token_error_rate, "bleu": bleu, "chrf": chrf,
                  "unknown_source_tokens": unknown, "beam": beam}
        lines = [f"examples: {counts.examples} (references: {sum(len(e.references) for e in data.examples)})",
                 f"sequence accuracy: {percent(counts.sequence_accuracy)}%  WER: {percent(counts.wer)}%",
                 f"token error rate: {percent(counts.token_error_rate)}% ({counts.edits} edits in {counts.length} "
                 "tokens of the closest references)",
                 f"BLEU: {'-' if bleu is None else f'{bleu:.2f}'}  chrF: {'-' if chrf is None else f'{chrf:.2f}'}"]
        warnings = [note] if note else []
        if unknown:
            warnings.append(f"{source if isinstance(source, str) else data.name}: {len(unknown)} source token(s) the "
                            f"model never saw, read as <UNK>: {' '.join(unknown[:12])}{' ...' if len(unknown) > 12 else ''}")
        return Report(report, lines, "; ".join(warnings) or None)


def sacrebleu_scores(outputs: list, references: list) -> tuple:
    """(BLEU, chrF, note) of the outputs as sacrebleu computes them (corpus level; an example with
    fewer references than the most has its first one repeated); (None, None, why) without sacrebleu."""
    try:
        import sacrebleu
    except ImportError:
        return None, None, ("BLEU and chrF need sacrebleu: pip install 'charlm[seq2seq]' (or pip install "
                            "sacrebleu); the other figures do not")
    m = max(len(r) for r in references)
    streams = [[r[j] if j < len(r) else r[0] for r in references] for j in range(m)]
    return (float(sacrebleu.corpus_bleu(outputs, streams).score),
            float(sacrebleu.corpus_chrf(outputs, streams).score), None)


TASK = Seq2SeqTask()
Translator._task = TASK  # the task of the files a Translator is made from

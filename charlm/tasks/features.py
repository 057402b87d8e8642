"""Character language-model features of words (`charlm train --task tag|classify --lm-features
FWD.npz[,BWD.npz]`): flair's contextual string embeddings (Akbik et al. 2018), from charlm's own
character language models, which stay frozen.

A sentence of words w_1..w_n is the text s = w_1 + " " + w_2 + " " + ... + w_n (each word's
characters as the language model's tokenizer cuts them, lowercased if it was trained so); s_k is
its k-th character, e_i and b_i the positions of the last and the first character of w_i. The
forward model reads s from its start symbol x<0> (<EOS> in lines mode, "\\n" in stream mode: as
`charlm score` reads a sentence), the backward model (trained with --reverse) reads s reversed:

    →h<k> = a[L]<k> of the forward LM after reading x<0>, s_1, ..., s_k            (H_f,)
    ←h<k> = a[L]<k> of the backward LM after reading x<0>, s_|s|, ..., s_k          (H_b,)
    f(w_i) = [→h<e_i>, ←h<b_i>]                                                    (F,) = (H_f + H_b,)

(a[L] the top layer's state, no dropout.) f(w_i) is concatenated to the word's input of the
tagger or classifier, x<t> = [E[w<t>], c(w<t>), f(w<t>)] (sentence.network), and is a constant to
it: no gradient flows into the language models.

Computed once: `Encoder.encode_all` asks `LMFeatures` for the features of the training and the
validation sentences when the run starts, and each `EncodedSentence` keeps its (n, F) array for
the whole run; the batches copy them. The cache therefore takes (training + validation words) x
F x 4 bytes (float32; 8 in float64), which is checked against the memory available before it is
computed (`check_cache`, a UsageError naming the size). Prediction computes them per batch.

Padding: the language models read B sentences padded at the end and widened to a multiple of
ROW_ALIGN columns (`nn.padded`), so a word's features are the same bit for bit alone and in any
batch (the recurrence reads left to right; the padding comes after).

A tagger or classifier file holds the language models whole: their settings and vocabularies in
meta["lm_features"], their parameters as arrays "fixed/lm.fwd.*", "fixed/lm.bwd.*" (the network's
`fixed`, which `checkpoint.model_arrays` writes): it loads without the files it was trained with.
This module spans the two independent sides, as tasks/transfer.py does: it opens language model
files (the `lm` task) and gives a sentence task's encoder its features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from charlm.engine.memory import available_memory
from charlm.engine.options import Option
from charlm.errors import CharlmError, CheckpointError, UsageError
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.lm.scoring import start_id, tokenizer_mode
from charlm.nn.padded import widen
from charlm.tasks import lm
from charlm.tasks.base import read_vocab
from charlm.text.tokenizer import Tokenizer
from charlm.text.vocab import Vocab

__all__ = ["LM_FEATURES", "CharLM", "LMFeatures", "from_option", "attach"]

LM_FEATURES = Option("lm_features", metavar="FWD.npz[,BWD.npz]",
                     help="tag/classify: add to each word the states of charlm character language models, frozen: "
                          "a forward one's at the word's last character and a backward one's (trained with "
                          "--reverse) at its first (flair's contextual string embeddings); they go into the model "
                          "file.")
BATCH = 64          # sentences the language models read at once
DIRECTIONS = ("fwd", "bwd")


@dataclass
class CharLM:
    """One frozen character language model: `direction` "fwd" (reads left to right) or "bwd"
    (trained with --reverse), its `network`, `vocab`, and the name of the file it came from."""

    direction: str
    network: LanguageModel
    vocab: Vocab
    source: str = ""

    @property
    def size(self) -> int:
        """H, the width of its top layer's state."""
        return self.network.config.hidden

    @staticmethod
    def _chars(tokens, cut) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(the characters of the sentence's text s, cut by `cut`, and the positions of each word's
        first and last character)."""
        chars: list[str] = []
        first, last = np.empty(len(tokens), np.int64), np.empty(len(tokens), np.int64)
        for i, word in enumerate(tokens):
            if i:
                chars.append(" ")
            first[i] = len(chars)
            chars += cut(word) or list(word)
            last[i] = len(chars) - 1
        return chars, first, last

    def states(self, token_lists) -> list[np.ndarray]:
        """Its state at each word of each sentence: (n_i, H) arrays in the network's dtype; →h<e_i>
        for "fwd", ←h<b_i> for "bwd" (see the module docstring)."""
        start = start_id(self.vocab, tokenizer_mode(self.vocab))
        off = 0 if start is None else 1
        inputs, picks, cut = [], [], Tokenizer(self.vocab.tokenizer).tokenize
        for tokens in token_lists:
            chars, first, last = self._chars(tokens, cut)
            ids = self.vocab.encode(chars).astype(np.int64)
            if self.direction == "fwd":
                pick = last
            else:
                ids, pick = ids[::-1], len(ids) - 1 - first
            inputs.append(ids if start is None else np.concatenate(([start], ids)))
            picks.append(pick + off)
        out: list = [None] * len(inputs)
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        for b0 in range(0, len(order), BATCH):
            idx = order[b0:b0 + BATCH]
            T, B = max(len(inputs[i]) for i in idx), widen(len(idx))
            x = np.full((T, B), self.vocab.eos_id, dtype=np.int64)    # padding after the end: never read
            for j, i in enumerate(idx):
                x[:len(inputs[i]), j] = inputs[i]
            a, _ = self.network.hidden(x, self.network.init_state(B))   # (T, B, H)
            for j, i in enumerate(idx):
                out[i] = a[picks[i], j]
        return out

    def to_meta(self) -> dict:
        return {"direction": self.direction, "file": self.source, "model": self.network.config.to_dict(),
                "vocab": self.vocab.to_dict()}

    def arrays(self) -> dict:
        return {f"lm.{self.direction}.{k}": v for k, v in self.network.params.items()}


class LMFeatures:
    """The features of words: [→h, ←h] of one or two `CharLM`s (fwd first), F = the sum of their H."""

    def __init__(self, models: list[CharLM]):
        self.models = models

    @property
    def size(self) -> int:
        """F, features per word."""
        return sum(m.size for m in self.models)

    def __call__(self, token_lists) -> list[np.ndarray]:
        """(n_i, F) features of each sentence (a list of words), in order (`check_cache` first)."""
        check_cache(sum(len(t) for t in token_lists), self.size, self.models[0].network.dtype)
        parts = [m.states(token_lists) for m in self.models]
        return [np.concatenate(p, axis=1) for p in zip(*parts)]

    def to_meta(self) -> list:
        """meta["lm_features"] of a tagger or classifier file."""
        return [m.to_meta() for m in self.models]

    def arrays(self) -> dict:
        """The language models' parameters, by the names they have in the file under "fixed/"."""
        return {k: v for m in self.models for k, v in m.arrays().items()}


def check_cache(words: int, size: int, dtype) -> None:
    """UsageError when the features of `words` words would not fit in the memory available now."""
    need, have = words * size * np.dtype(dtype).itemsize, available_memory()
    if have is not None and need > have:
        raise UsageError(f"--lm-features: the features of {words:,} words ({size} values each) take "
                         f"{need / 2 ** 30:.1f} GiB, more than the {have / 2 ** 30:.1f} GiB available: use smaller "
                         f"language models (--hidden) or less data")


def _open(path: str, direction: str, dtype: str) -> CharLM:
    """The language model file at `path`, checked (a character-level, unconditional language
    model, trained with --reverse exactly when it is the backward one), computing in `dtype`."""
    flag = "--lm-features"
    if not os.path.isfile(path):
        raise UsageError(f"{flag}: no language model file {path}")
    model = lm.open_file(path, flag)
    if model.labels is not None:
        raise UsageError(f"{flag} {path} is a conditional language model (--condition): give one without labels")
    level = model.vocab.tokenizer.level
    if level != "char":
        raise UsageError(f"{flag} {path} is a {level}-level language model: the features are states at "
                         f"characters, so it needs a character-level one (--level char)")
    if model.reverse != (direction == "bwd"):
        raise UsageError(f"{flag} {path} " + ("was trained with --reverse: give it second, as BWD.npz"
                                              if model.reverse else "was not trained with --reverse: the backward "
                                              "model (BWD.npz) must read the text right to left"))
    network = LanguageModel(replace(model.network.config, dtype=dtype), params=model.network.params)
    return CharLM(direction, network, model.vocab, os.path.basename(path))


def from_option(spec: str, dtype: str) -> LMFeatures:
    """The models that `--lm-features FWD.npz[,BWD.npz]` names, checked (UsageError, one line each),
    computing in the tagger's or classifier's `dtype` (as they will when its file is loaded)."""
    paths = [p.strip() for p in spec.split(",")]
    if not 1 <= len(paths) <= 2 or not all(paths):
        raise UsageError(f"--lm-features takes FWD.npz or FWD.npz,BWD.npz (got {spec!r})")
    return LMFeatures([_open(p, d, dtype) for p, d in zip(paths, DIRECTIONS)])


def attach(model, arrays: dict, meta: dict, path: str) -> None:
    """Give a loaded tagger or classifier (a `tasks.sentence.SentenceModel` with its file's
    `arrays` under "fixed/" and `meta`) the language models its file carries; CheckpointError
    naming the file when they are missing or do not fit."""
    size = model.network.config.lm_feature_size
    described = meta.get("lm_features")
    if not size and described is None:
        return
    if not isinstance(described, list) or not 1 <= len(described) <= 2:
        raise CheckpointError(f"{path} is inconsistent: the model reads {size} language-model features "
                              "but the file describes no usable language models")
    models = []
    for d, direction in zip(described, DIRECTIONS):
        prefix = f"lm.{direction}."
        try:
            config = ModelConfig.from_dict(dict(d["model"], dtype=model.network.config.dtype))
            vocab = read_vocab(d["vocab"], path, f"{direction} language model's vocabulary")
            params = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            network = LanguageModel(config, params=params)
        except (CharlmError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: its {direction} language model is unusable: {err}") from None
        models.append(CharLM(direction, network, vocab, str(d.get("file", ""))))
    features = LMFeatures(models)
    if features.size != size:
        raise CheckpointError(f"{path} is inconsistent: the model reads {size} language-model features, "
                              f"its language models give {features.size}")
    model.predictor.encoder.features = features
    model.network.fixed = features.arrays()

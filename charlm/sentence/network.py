"""Sentence models on the recurrent core: a tagger (many-to-many, Tx = Ty) and a classifier
(many-to-one), bidirectional by default (the notes, "Bidirectional RNNs" and "Deep RNNs").

    x<t>   = [E[w<t>], [→c, ←c](w<t>), f(w<t>)]   embed.W E (V, Emb); the word's character code
                                                  (nn.layers.CharEncoder, char.*; omitted if char_hidden = 0);
                                                  f (F,) its language-model features, batch.features (T,B,F),
                                                  constants (tasks/features.py; omitted if lm_feature_size = 0)
    →a[l]<t>, ←a[l]<t>  stacked bidirectional     rnn.{l}.fwd.*, rnn.{l}.bwd.* (one-directional: rnn.{l}.*)
                        layers; a[l+1] reads [→a[l]<t>, ←a[l]<t>]
    Tagger:      ŷ<t> = softmax(W_y[→a<t>, ←a<t>] + b_y)   at every real t    out.W (2H, K), out.b (K,)
                 L = mean over the batch's real tokens of −log ŷ<t>[y<t>]
    CRF tagger:  e<t> = W_y[→a<t>, ←a<t>] + b_y scores tag sequences with learned transitions
                 (nn.crf: crf.trans (K,K), crf.start (K,), crf.end (K,); the scheme's forbidden
                 transitions −∞), decoded by Viterbi;
                 L = Σ over the batch's sentences of −log P(y | x), divided by its real tokens
                 (with zero transition scores this is the plain tagger's L exactly)
    Classifier:  ŷ = softmax(W_y[→a<Tx>, ←a<1>] + b_y)      (pool "last"; "mean"/"max": over real t)
                 L = mean over the batch's sentences of −log ŷ[y]

A batch (`sentence.batch.SentenceBatch`, made by `pad_sentences`) holds sentences padded to the longest, with
their lengths; ←a starts at each sentence's own last word, so padding never reaches a real
position. Dropout (inverted, training only) sits on x<t>, between layers and on what W_y reads;
word dropout (training only) gives a random share of the words <UNK>'s embedding (id 0) while
the character encoder still reads their spelling, so that the model learns to tag unknown words.

Every matrix product of these models has a multiple of ROW_ALIGN rows: a batch is widened with
dummy one-word sentences (and dummy one-character words) that no loss or output sees, so that a
sentence gets the same numbers alone as in any batch, bit for bit in float64 (`nn.padded` says why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError, DataError
from charlm.nn import crf
from charlm.nn.cells import CellSettings, cell_from_config
from charlm.nn.config import check_rate, check_settings, is_int
from charlm.nn.layers import (
    POOLS,
    Bidirectional,
    CharEncoder,
    StackedRecurrent,
    dense_forward,
    dropout_mask,
    embedding_backward,
    log_softmax,
    pool_backward,
    pool_forward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
from charlm.nn.padded import PaddedNetwork, param_name
from charlm.sentence.batch import SentenceBatch, aligned
from charlm.sentence.decode import decode_batch

__all__ = ["TaggerConfig", "SentenceNetwork", "TaggerNetwork", "ClassifierNetwork"]


# -- configuration ----------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class TaggerConfig(CellSettings):
    """Hyper-parameters of a TaggerNetwork or ClassifierNetwork. Construction validates (CharlmError on nonsense).

    hidden and char_hidden are per direction; char_hidden = 0 turns the character encoder off;
    bidirectional = False is the one-directional comparison the notes make; pool is the
    classifier's read-out ("last": [→a<Tx>, ←a<1>], "mean", "max").
    """

    task: str                   # the read-out: "tag" (TaggerNetwork) or "classify" (ClassifierNetwork)
    vocab_size: int             # V, words
    char_vocab_size: int        # characters (0 is fine without a character encoder)
    num_labels: int             # K, tags or classes
    cell: str = "lstm"          # rnn | gru | lstm, for the sentence and the character RNNs (CellSettings)
    layers: int = 2             # stacked (bidirectional) layers
    hidden: int = 128           # H per direction
    embedding: int = 100        # word embedding size
    char_embedding: int = 25    # character embedding size
    char_hidden: int = 25       # Hc per direction; 0: no character encoder
    bidirectional: bool = True
    dropout: float = 0.25       # on x<t>, between layers, before W_y (0.5 was worse on UD EWT)
    word_dropout: float = 0.1   # training: a word's embedding is <UNK>'s (id 0), its spelling kept
    pool: str = "last"          # the classifier's read-out: last | mean | max
    crf: bool = False           # tag only: a linear-chain CRF output layer (nn.crf)
    lm_feature_size: int = 0    # F: language-model features per word in x<t> (--lm-features); 0: none
    dtype: str = "float32"

    REQUIRED = ("task", "vocab_size", "char_vocab_size", "num_labels")

    def validate(self) -> None:
        readouts = (TaggerNetwork.task, ClassifierNetwork.task)
        if self.task not in readouts:
            raise CharlmError(f"model task must be {' or '.join(readouts)}, got {self.task!r}")
        check_settings(self, ("vocab_size", "num_labels", "layers", "hidden", "embedding", "char_embedding"),
                       ("bidirectional", "crf"))
        self.check_cell()
        for name in ("char_hidden", "char_vocab_size", "lm_feature_size"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                raise CharlmError(f"model setting {name} must be a whole number >= 0, got {v!r}")
            setattr(self, name, int(v))
        if self.vocab_size < 2:
            raise CharlmError(f"vocab_size must be at least 2, got {self.vocab_size}")
        if self.num_labels < 2:
            raise CharlmError(f"num_labels must be at least 2, got {self.num_labels}")
        if self.char_hidden and self.char_vocab_size < 2:
            raise CharlmError(f"the character encoder needs char_vocab_size >= 2, got {self.char_vocab_size}")
        check_rate(self, "word_dropout")
        if self.crf and self.task != TaggerNetwork.task:
            raise CharlmError(f"a CRF output layer is for taggers (task 'tag'), not for task {self.task!r}")
        if self.pool not in POOLS:
            raise CharlmError(f"unknown pool {self.pool!r}; choose one of {', '.join(POOLS)}")


# -- models ---------------------------------------------------------------------------------------------------
class SentenceNetwork(PaddedNetwork):
    """What the tagger and the classifier share: parameters, the encoder x -> [→a<t>, ←a<t>] and its
    backward pass. Subclasses add the read-out (`loss`, `backward`, `log_probs`)."""

    task = ""

    def __init__(self, config: TaggerConfig, params: dict | None = None, seed: int = 0):
        if config.task != self.task:
            raise CharlmError(f"{type(self).__name__} is for task {self.task!r}, the settings say {config.task!r}")
        self.config = config
        self.dtype = np.dtype(config.dtype)
        self.cell = cell_from_config(config)
        self.directions = ("fwd", "bwd") if config.bidirectional else ("",)
        self.rnn = StackedRecurrent(Bidirectional(self.cell) if config.bidirectional else self.cell, config.layers)
        self.chars = CharEncoder(self.cell) if config.char_hidden else None
        self.fixed: dict = {}   # arrays the file carries untrained: the language models of the features
        self._set_params(params, seed)

    # -- parameters ----------------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple]:
        c = self.config
        shapes = {"embed.W": (c.vocab_size, c.embedding)}
        if self.chars is not None:
            shapes["char.embed.W"] = (c.char_vocab_size, c.char_embedding)
            for d in ("fwd", "bwd"):
                for k, s in self.cell.param_shapes(c.char_embedding, c.char_hidden).items():
                    shapes[f"char.{d}.{k}"] = tuple(s)
        for l in range(c.layers):
            D = self._input_width() if l == 0 else self._width()       # layer l+1 reads [→a, ←a]
            for d in self.directions:
                for k, s in self.cell.param_shapes(D, c.hidden).items():
                    shapes[param_name(f"rnn.{l}", d, k)] = tuple(s)
        shapes["out.W"] = (self._width(), c.num_labels)
        shapes["out.b"] = (c.num_labels,)
        if c.crf:
            K = c.num_labels
            shapes.update({"crf.trans": (K, K), "crf.start": (K,), "crf.end": (K,)})
        return shapes

    def _input_width(self) -> int:
        return self.config.embedding + 2 * self.config.char_hidden + self.config.lm_feature_size

    def _width(self) -> int:
        """Features per position of the top layer: 2H, or H one-directional."""
        return self.config.hidden * len(self.directions)

    def _init_params(self, rng: np.random.Generator) -> dict:
        """Embeddings ~ N(0, 1) (as the language model's); cells as in nn.cells; out.W ~ U(±1/sqrt(2H));
        the CRF's transition scores 0 (it starts as the plain tagger)."""
        c, dt = self.config, self.dtype
        p = {"embed.W": rng.standard_normal((c.vocab_size, c.embedding)).astype(dt)}
        if self.chars is not None:
            p["char.embed.W"], pair = self.chars.init_params(c.char_vocab_size, c.char_embedding, c.char_hidden,
                                                             rng, dt)
            p.update(self._flat("char", pair))
        for l, layer in enumerate(self.rnn.init_params(self._input_width(), c.hidden, rng, dt)):
            p.update(self._flat(f"rnn.{l}", layer))
        s = 1.0 / np.sqrt(self._width())
        p["out.W"] = rng.uniform(-s, s, size=(self._width(), c.num_labels)).astype(dt)
        p["out.b"] = np.zeros(c.num_labels, dtype=dt)
        for k, shape in self.param_shapes().items():
            if k.startswith("crf."):
                p[k] = np.zeros(shape, dtype=dt)
        return {k: p[k] for k in self.param_shapes()}

    def _layer_params(self) -> list:
        return [self._group(f"rnn.{l}", self.directions) for l in range(self.config.layers)]

    # -- the encoder -------------------------------------------------------------------------------
    def _check(self, batch: SentenceBatch, need_labels: bool) -> SentenceBatch:
        """The batch, checked against the model and widened to whole row blocks."""
        c = self.config
        if batch.words.size and (batch.words.min() < 0 or batch.words.max() >= c.vocab_size):
            raise DataError(f"word ids must be in [0, {c.vocab_size})")
        if self.chars is not None:
            if batch.char_lengths.size == 0:
                raise DataError("this model reads the characters of each word: the batch has none")
            if batch.chars.min() < 0 or batch.chars.max() >= c.char_vocab_size:
                raise DataError(f"character ids must be in [0, {c.char_vocab_size})")
        F = c.lm_feature_size
        if F and (batch.features is None or batch.features.shape != batch.words.shape + (F,)):
            have = "none" if batch.features is None else f"shape {batch.features.shape}"
            raise DataError(f"this model reads {F} language-model features per word: the batch has {have}")
        if need_labels:
            if batch.labels is None:
                raise DataError("the batch has no labels to train on")
            if batch.labels.min() < 0 or batch.labels.max() >= c.num_labels:
                raise DataError(f"label ids must be in [0, {c.num_labels})")
        return aligned(batch)

    def _encode(self, batch: SentenceBatch, rate: float, rng):
        """An aligned batch -> (a (T,B,2H) = [→a<t>, ←a<t>] of the top layer, cache). Training when
        rng is given (dropout at `rate`, word dropout), evaluation when it is None."""
        c, p = self.config, self.params
        T, B = batch.words.shape
        words = batch.words
        if rng is not None and c.word_dropout > 0.0:            # word dropout: <UNK>'s embedding instead
            words = np.where(rng.random(words.shape) < c.word_dropout, 0, words)
        x = p["embed.W"][words]                                 # E[w<t>]   (T,B,Emb)
        char_cache = None
        if self.chars is not None:
            codes, char_cache = self.chars.forward(p["char.embed.W"], self._group("char", ("fwd", "bwd")),
                                                   batch.chars, batch.char_lengths)       # (W, 2Hc)
            x = np.concatenate([x, codes[batch.word_index]], axis=-1)   # x<t> = [E[w<t>], code(w<t>)]
        if c.lm_feature_size:                                   # ... and f(w<t>), a constant
            x = np.concatenate([x, batch.features.astype(self.dtype, copy=False)], axis=-1)
        m_in = dropout_mask(x.shape, rate, rng, self.dtype)
        if m_in is not None:
            x *= m_in
        zero = self.cell.init_state(B, c.hidden, self.dtype)
        state = [(zero, zero) if c.bidirectional else zero] * c.layers
        layer_params = self._layer_params()
        a, _, rnn_cache = self.rnn.forward(layer_params, x, state, rate, rng,
                                           batch.lengths if c.bidirectional else None)
        return a, (batch, words, char_cache, m_in, layer_params, rnn_cache)

    def _encode_backward(self, da: np.ndarray, cache) -> dict:
        """da (T,B,2H) -> gradients of every parameter but out.* (none for the features: constants)."""
        batch, words, char_cache, m_in, layer_params, rnn_cache = cache
        c = self.config
        dx, rgrads, _ = self.rnn.backward(layer_params, da, rnn_cache)
        if m_in is not None:
            dx *= m_in
        grads = {"embed.W": embedding_backward(dx[..., :c.embedding], words, c.vocab_size)}
        if self.chars is not None:
            dcodes = embedding_backward(dx[..., c.embedding:c.embedding + 2 * c.char_hidden], batch.word_index,
                                        batch.char_lengths.shape[0])
            grads["char.embed.W"], pair = self.chars.backward(self._group("char", ("fwd", "bwd")), dcodes,
                                                              char_cache)
            grads.update(self._flat("char", pair))
        for l, g in enumerate(rgrads):
            grads.update(self._flat(f"rnn.{l}", g))
        return grads

    def _out_backward(self, dlogits: np.ndarray, features: np.ndarray, grads: dict) -> np.ndarray:
        """logits = features @ W_y + b_y: adds out.W, out.b to grads; -> dfeatures."""
        grads["out.W"] = features.T @ dlogits
        grads["out.b"] = dlogits.sum(axis=0)
        return dlogits @ self.params["out.W"].T

    def _ordered(self, grads: dict) -> dict:
        return {k: grads[k] for k in self.param_shapes()}


class TaggerNetwork(SentenceNetwork):
    """A tag for every word: ŷ<t> = softmax(W_y[→a<t>, ←a<t>] + b_y), or with config.crf a CRF on
    those scores (see the module docstring).

    constraints: the transitions the tags allow, (allowed (K,K), start_allowed (K,), end_allowed
    (K,)) as `sentence.decode.tag_constraints` gives them, or None (all allowed). A CRF never scores
    nor decodes a forbidden one; the plain tagger's decoding takes its constraints from the caller.
    """

    task = "tag"

    def __init__(self, config: TaggerConfig, params: dict | None = None, seed: int = 0, constraints=None):
        super().__init__(config, params, seed)
        self.constraints = constraints

    def _scores(self, batch: SentenceBatch, rate: float, rng):
        """An aligned batch -> (e (T,Bp,K) = W_y[→a<t>, ←a<t>] + b_y, cache); dropout on what W_y reads."""
        a, enc_cache = self._encode(batch, rate, rng)
        m_out = dropout_mask(a.shape, rate, rng, self.dtype)
        if m_out is not None:
            a = a * m_out
        T, B, F = a.shape
        a2 = a.reshape(T * B, F)
        logits = dense_forward(a2, self.params["out.W"], self.params["out.b"])       # (T*B, K)
        return logits.reshape(T, B, -1), (enc_cache, m_out, a2)

    def _crf_params(self) -> tuple:
        p = self.params
        return p["crf.trans"], p["crf.start"], p["crf.end"], self.constraints

    def loss(self, batch: SentenceBatch, state=None, train: bool = False, rng=None):
        """-> (mean over real tokens of −log ŷ<t>[y<t>], None, cache for backward); with a CRF the
        sum over sentences of −log P(y | x) divided by the real tokens."""
        rate, rng = self._dropout(train, rng)
        B = batch.size
        batch = self._check(batch, need_labels=True)
        logits, cache = self._scores(batch, rate, rng)
        if not self.config.crf:
            loss, head = softmax_cross_entropy(logits.reshape(-1, logits.shape[2]), batch.labels.reshape(-1),
                                               batch.mask.reshape(-1))
            return loss, None, (*cache, head)
        y, lengths = batch.labels[:, :B], batch.lengths[:B]                 # the real sentences
        if crf.forbidden(y, lengths, self.constraints).any():
            raise DataError("a gold tag sequence takes a transition that its tag scheme forbids")
        nll, head = crf.crf_loss(logits[:, :B], y, lengths, *self._crf_params())
        tokens = float(lengths.sum())
        return float(nll.sum() / tokens), None, (*cache, (head, tokens, logits.shape))

    def backward(self, cache) -> dict:
        enc_cache, m_out, a2, head = cache
        grads: dict = {}
        if self.config.crf:
            crf_cache, tokens, shape = head
            B = len(crf_cache[2])
            de, grads["crf.trans"], grads["crf.start"], grads["crf.end"] = crf.crf_loss_backward(
                np.full(B, 1.0 / tokens), crf_cache)                        # ∂L/∂e<t>, L = Σ nll / tokens
            dlogits = np.zeros(shape, dtype=self.dtype)
            dlogits[:, :B] = de
            dlogits = dlogits.reshape(-1, shape[2])
        else:
            dlogits = softmax_cross_entropy_backward(head)
        da = self._out_backward(dlogits, a2, grads)
        da = da.reshape(enc_cache[0].words.shape + (a2.shape[1],))
        if m_out is not None:
            da *= m_out
        grads.update(self._encode_backward(da, enc_cache))
        return self._ordered(grads)

    def log_probs(self, batch: SentenceBatch) -> np.ndarray:
        """-> log ŷ<t> (T,B,K) in the model's dtype (a CRF: the log marginals log P(y<t> = k | x));
        evaluation mode. Padding rows are meaningless."""
        B = batch.size
        logits, _ = self._scores(self._check(batch, need_labels=False), 0.0, None)
        if self.config.crf:
            return crf.log_marginals(logits[:, :B], batch.lengths, *self._crf_params())
        return log_softmax(logits)[:, :B]

    def crf_decode(self, batch: SentenceBatch) -> tuple[np.ndarray, list]:
        """A CRF tagger's prediction -> (log marginals (T,B,K) as `log_probs`, the Viterbi tag ids
        of each sentence: B arrays (L_b,), never through a forbidden transition)."""
        B = batch.size
        logits, _ = self._scores(self._check(batch, need_labels=False), 0.0, None)
        e = logits[:, :B]
        trans, start, end, constraints = self._crf_params()
        paths = decode_batch(e, batch.lengths, constraints, (trans, start, end))
        return crf.log_marginals(e, batch.lengths, trans, start, end, constraints), paths


class ClassifierNetwork(SentenceNetwork):
    """A label for every sentence: ŷ = softmax(W_y[→a<Tx>, ←a<1>] + b_y), or W_y applied to the mean
    or the maximum of [→a<t>, ←a<t>] over the sentence (see the module docstring)."""

    task = "classify"

    def _features(self, batch: SentenceBatch, rate: float, rng):
        a, enc_cache = self._encode(batch, rate, rng)
        pooled, pool_cache = pool_forward(a, batch.lengths, self.config.pool, self.config.hidden)  # (B, 2H)
        return pooled, (enc_cache, pool_cache)

    def loss(self, batch: SentenceBatch, state=None, train: bool = False, rng=None):
        """-> (mean over sentences of −log ŷ[y], None, cache for backward)."""
        rate, rng = self._dropout(train, rng)
        B = batch.size
        batch = self._check(batch, need_labels=True)
        pooled, feat_cache = self._features(batch, rate, rng)
        m_out = dropout_mask(pooled.shape, rate, rng, self.dtype)
        if m_out is not None:
            pooled = pooled * m_out
        logits = dense_forward(pooled, self.params["out.W"], self.params["out.b"])   # (B, K)
        real = (np.arange(batch.size) < B).astype(np.float64)                        # not the dummies
        loss, sm_cache = softmax_cross_entropy(logits, batch.labels, real)
        return loss, None, (feat_cache, m_out, pooled, sm_cache)

    def backward(self, cache) -> dict:
        (enc_cache, pool_cache), m_out, pooled, sm_cache = cache
        grads: dict = {}
        dpooled = self._out_backward(softmax_cross_entropy_backward(sm_cache), pooled, grads)
        if m_out is not None:
            dpooled *= m_out
        grads.update(self._encode_backward(pool_backward(dpooled, pool_cache), enc_cache))
        return self._ordered(grads)

    def log_probs(self, batch: SentenceBatch) -> np.ndarray:
        """-> log ŷ (B,K) in the model's dtype; evaluation mode."""
        B = batch.size
        pooled, _ = self._features(self._check(batch, need_labels=False), 0.0, None)
        return log_softmax(dense_forward(pooled, self.params["out.W"], self.params["out.b"]))[:B]

"""The recurrent language model: embedding -> stacked RNN/GRU/LSTM -> dense -> softmax.

    e<t>    = E[x<t>]                                   embed.W  E (V, Emb)
    a[l]<t> = cell(W[l][a[l]<t-1>, a[l-1]<t>] + b[l])   rnn.{l}.W (H+D_l, G*H), rnn.{l}.b, [rnn.{l}.P]
    ŷ<t>    = softmax(a[L]<t> @ W_y + b_y)              out.W (H, V) (E.T when tied), out.b (V,)
    L       = mean over unmasked (t, b) of -log ŷ<t>[y<t>]

Dropout (inverted; training only) sits on the non-recurrent connections: on the embeddings fed to
layer 0, between layers, and on the top layer's output before the dense layer; a fresh mask per
step, or with dropout_kind "locked" one mask per stream for all steps. Embedding dropout and weight
drop (`charlm.nn.regularize`) drop whole words of the vocabulary and recurrent weights per batch.
Parameters live in one flat dict[str, ndarray] whose names are the checkpoint's names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError
from charlm.nn.cells import CellSettings, cell_from_config
from charlm.nn.config import check_rate, check_settings, checked_params
from charlm.nn.layers import (
    StackedRecurrent,
    dense_forward,
    dropout_mask,
    embedding_backward,
    log_softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    target_log_probs,
)
from charlm.nn.regularize import DROPOUT_KINDS, embedding_dropout_mask, weight_drop, weight_drop_backward

__all__ = ["ModelConfig", "LanguageModel", "State"]

State = list  # list over layers of tuples of (B, H) arrays: (a,) for rnn/gru, (a, c) for lstm
EVAL_ROWS = 1 << 16  # evaluation reads at most this many (t, b) positions at once (target_log_probs)


@dataclass(kw_only=True)
class ModelConfig(CellSettings):
    """Hyper-parameters of a LanguageModel (and the cell settings of CellSettings). Construction
    validates (CharlmError on nonsense). These defaults are the language model's defaults of
    `charlm train` too (tasks/lm.py reads them)."""

    vocab_size: int
    cell: str = "gru"
    layers: int = 2
    hidden: int = 256
    embedding: int = 64
    dropout: float = 0.1
    tie_weights: bool = False
    dtype: str = "float32"
    dropout_kind: str = "standard"  # "locked": one dropout mask per stream, reused at every step
    embedding_dropout: float = 0.0  # drop whole words of the vocabulary (per batch)
    weight_drop: float = 0.0  # DropConnect on the recurrent weights W[:H] (per batch)
    reverse: bool = False  # trained on the text read right to left (lm/reverse.py); the network is the same

    REQUIRED = ("vocab_size",)

    def validate(self) -> None:
        check_settings(self, ("vocab_size", "layers", "hidden", "embedding"), ("tie_weights", "reverse"))
        self.check_cell()
        if self.dropout_kind not in DROPOUT_KINDS:
            raise CharlmError(f"dropout_kind must be one of {', '.join(DROPOUT_KINDS)}, got {self.dropout_kind!r}")
        check_rate(self, "embedding_dropout")
        check_rate(self, "weight_drop")
        if self.vocab_size < 2:
            raise CharlmError(f"vocab_size must be at least 2, got {self.vocab_size}")
        if self.tie_weights and self.embedding != self.hidden:
            raise CharlmError(f"tie_weights needs embedding == hidden "
                              f"(got embedding {self.embedding}, hidden {self.hidden})")


class LanguageModel:
    """Left-to-right recurrent language model over token ids (time-major (T,B) arrays)."""

    task = "lm"

    def __init__(self, config: ModelConfig, params: dict | None = None, seed: int = 0):
        self.config = config
        self.dtype = np.dtype(config.dtype)
        self.cell = cell_from_config(config)
        self.rnn = self._recurrent()
        self._rng = np.random.default_rng(seed)
        if params is None:
            params = self._init_params(np.random.default_rng(seed))
        else:
            params = checked_params(params, self.param_shapes(), self.dtype)
        self.params: dict[str, np.ndarray] = params

    def _recurrent(self):
        """The recurrent layers (a conditional model, lm/conditional.py, wraps them)."""
        return StackedRecurrent(self.cell, self.config.layers)

    # -- parameters ----------------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple]:
        c = self.config
        V, E, H = c.vocab_size, c.embedding, c.hidden
        shapes = {"embed.W": (V, E)}
        for l, layer in enumerate(self.rnn.param_shapes(E, H)):
            for k, s in layer.items():
                shapes[f"rnn.{l}.{k}"] = tuple(s)
        if not c.tie_weights:
            shapes["out.W"] = (H, V)
        shapes["out.b"] = (V,)
        return shapes

    def num_params(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes().values()))

    def _init_params(self, rng: np.random.Generator) -> dict:
        """embed.W ~ N(0, 1), or U(-0.1, 0.1) when tied; cells as in nn.cells; out.W ~ U(±1/sqrt(H)).

        Unit-variance embeddings give the first layer's input rows W[H:] ~ U(±1/sqrt(H)) a
        pre-activation of useful size from the start (an embedding of U(-0.1, 0.1) starts the
        input signal about 17 times weaker, and training on tiny Shakespeare was then far
        slower). Tied weights are also the output matrix, so they start small instead.
        """
        c = self.config
        V, E, H, dt = c.vocab_size, c.embedding, c.hidden, self.dtype
        if c.tie_weights:
            embed = rng.uniform(-0.1, 0.1, size=(V, E))
        else:
            embed = rng.standard_normal((V, E))
        p = {"embed.W": embed.astype(dt)}
        for l, layer in enumerate(self.rnn.init_params(E, H, rng, dt)):
            for k, v in layer.items():
                p[f"rnn.{l}.{k}"] = v
        if not c.tie_weights:
            s = 1.0 / np.sqrt(H)
            p["out.W"] = rng.uniform(-s, s, size=(H, V)).astype(dt)
        p["out.b"] = np.zeros(V, dtype=dt)
        return p

    def _layer_params(self, params=None) -> list[dict]:
        params = self.params if params is None else params
        return [{k: params[f"rnn.{l}.{k}"] for k in self.cell.param_shapes(1, 1)}
                for l in range(self.config.layers)]

    def _out_W(self) -> np.ndarray:
        """W_y (H, V): out.W, or embed.W.T when the weights are tied."""
        return self.params["embed.W"].T if self.config.tie_weights else self.params["out.W"]

    def init_state(self, batch: int) -> State:
        """Zero state: list over layers of tuples of (batch, H) arrays."""
        return [self.cell.init_state(batch, self.config.hidden, self.dtype)
                for _ in range(self.config.layers)]

    def epoch_state(self, batch: int) -> State:
        """The state a run of streams carries into an epoch's first window: the zero state."""
        return self.init_state(batch)

    # -- training ----------------------------------------------------------------------------------------
    def loss(self, x, y, state: State, mask=None, train: bool = False, rng=None):
        """x, y (T,B) int ids (y = next tokens), mask (T,B) 0/1 or None.

        Returns (mean NLL in nats over unmasked positions, new state, cache for backward).
        Dropout and the other regularisers only when train=True (masks drawn from `rng`, or the
        model's own generator), in this order: embedding dropout, weight drop, the dropout masks.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        T, B = x.shape
        c, p = self.config, self.params
        rate, emb_rate, w_rate = (c.dropout, c.embedding_dropout, c.weight_drop) if train else (0.0, 0.0, 0.0)
        locked = c.dropout_kind == "locked"
        if max(rate, emb_rate, w_rate) > 0.0 and rng is None:
            rng = self._rng
        e = p["embed.W"][x]                                  # e<t> = E[x<t>]   (T,B,E)
        m_emb = embedding_dropout_mask(x, c.vocab_size, emb_rate, rng, self.dtype)
        if m_emb is not None:
            e *= m_emb                                       # E[x<t>] * m_e[x<t>]
        layer_params, m_w = weight_drop(self._layer_params(), c.hidden, w_rate, rng)
        m_in = dropout_mask(e.shape, rate, rng, self.dtype, locked=locked)
        if m_in is not None:
            e *= m_in
        a, new_state, rnn_cache = self.rnn.forward(layer_params, e, state, rate, rng, locked=locked)
        m_out = dropout_mask(a.shape, rate, rng, self.dtype, locked=locked)
        if m_out is not None:
            a = a * m_out
        a2 = a.reshape(T * B, -1)
        logits = dense_forward(a2, self._out_W(), p["out.b"])       # (T*B, V)
        loss, sm_cache = softmax_cross_entropy(
            logits, y.reshape(-1), None if mask is None else np.asarray(mask).reshape(-1))
        cache = (x, (m_emb, m_in), (layer_params, m_w), rnn_cache, m_out, a2, sm_cache)
        return loss, new_state, cache

    def backward(self, cache, return_dstate: bool = False):
        """Gradients of the mean loss: dict with the same keys/shapes as params.

        With return_dstate=True returns (grads, dstate0), dstate0 the gradient w.r.t. the initial
        state passed to loss() (same structure as a State). A cache can be back-propagated once.
        """
        x, (m_emb, m_in), (layer_params, m_w), rnn_cache, m_out, a2, sm_cache = cache
        c = self.config
        T, B = x.shape
        p = self.params
        grads = {}
        dlogits = softmax_cross_entropy_backward(sm_cache)  # (T*B, V)
        grads["out.b"] = dlogits.sum(axis=0)
        if c.tie_weights:                                    # logits = a @ E.T
            dE_out = dlogits.T @ a2
            da = dlogits @ p["embed.W"]
        else:
            grads["out.W"] = a2.T @ dlogits
            da = dlogits @ p["out.W"].T
        da = da.reshape(T, B, -1)
        if m_out is not None:
            da *= m_out
        de, rgrads, dstate0 = self.rnn.backward(layer_params, da, rnn_cache)
        weight_drop_backward(rgrads, m_w, c.hidden)
        if m_in is not None:
            de *= m_in
        if m_emb is not None:
            de *= m_emb
        dE = embedding_backward(de, x, c.vocab_size)
        if c.tie_weights:
            dE += dE_out
        grads["embed.W"] = dE
        for l, g in enumerate(rgrads):
            for k, v in g.items():
                grads[f"rnn.{l}.{k}"] = v
        grads = {k: grads[k] for k in self.param_shapes() if k in grads}   # params' order (a subclass adds its own)
        return (grads, dstate0) if return_dstate else grads

    # -- evaluation ----------------------------------------------------------------------------------
    def hidden(self, x, state):
        """x (T,B) -> (a (T,B,H) of the top layer, new state): the evaluation-only forward."""
        e = self.params["embed.W"][np.asarray(x)]
        return self.rnn.run(self._layer_params(), e, state)

    def log_probs(self, x, state: State):
        """x (T,B) -> (log ŷ (T,B,V), new state); evaluation mode (no dropout)."""
        a, new_state = self.hidden(x, state)
        T, B, H = a.shape
        logits = dense_forward(a.reshape(T * B, H), self._out_W(), self.params["out.b"])
        return log_softmax(logits).reshape(T, B, -1), new_state

    def target_log_probs(self, x, y, state: State):
        """x, y (T,B) -> (log p(y<t> | x<1..t>) (T,B) float64, new state); evaluation mode.

        Works through the rows in chunks, so the full (T,B,V) log-probabilities never exist, and
        through time in windows of at most EVAL_ROWS // B steps with the state carried (exact: the
        model reads left to right), so memory does not grow with T: a sentence as long as a book
        costs what a window does.
        """
        x, y = np.asarray(x), np.asarray(y)
        T, B = x.shape
        steps = max(1, EVAL_ROWS // max(B, 1))
        out = np.empty((T, B), dtype=np.float64)
        for t in range(0, T, steps):
            a, state = self.hidden(x[t:t + steps], state)
            n, _, H = a.shape
            out[t:t + n] = target_log_probs(a.reshape(n * B, H), self._out_W(), self.params["out.b"],
                                            y[t:t + steps].reshape(-1)).reshape(n, B)
        return out, state

    def step(self, ids, state: State):
        """ids (B,) -> (logits (B,V), new state): one decoding step, evaluation mode, no cache."""
        e = self.params["embed.W"][np.asarray(ids)]
        a, new_state = self.rnn.step(self._layer_params(), e, state)
        return dense_forward(a, self._out_W(), self.params["out.b"]), new_state


def memory_need(config: ModelConfig, batch: int, seq_len: int, slots: int) -> tuple[int, int]:
    """(bytes, parameters) a training run of this model needs at least, with `slots` optimizer
    arrays per parameter (Adam keeps two): parameters, gradients and optimizer slots, plus the
    activations of one window, about (4 + 2 per gate) H values per layer per token and the (T*B, V)
    logits/probabilities. A rough lower bound, for `engine.memory.check_memory`."""
    itemsize = np.dtype(config.dtype).itemsize
    cell = cell_from_config(config)
    V, E, H, L = config.vocab_size, config.embedding, config.hidden, config.layers
    n = V * E + V + (0 if config.tie_weights else H * V)
    for l in range(L):
        n += sum(int(np.prod(s)) for s in cell.param_shapes(E if l == 0 else H, H).values())
    tokens = batch * seq_len
    return itemsize * (n * (2 + slots) + tokens * (L * H * (4 + 2 * cell.G) + 3 * V)), n

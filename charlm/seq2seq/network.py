"""Sequence to sequence (many-to-many, Tx ≠ Ty): an encoder RNN reads x<1..Tx>, a decoder RNN writes
y<1..Ty> and then <EOS> (the notes, "Different types of RNNs": machine translation), with attention.

    encoder   e<t'>    = E_x[x<t'>]                                   src.embed.W  E_x (Vx, Ex)
              a[l]<t'>   stacked RNN, bidirectional by default:         enc.{l}.fwd.*, enc.{l}.bwd.*
                         a<t'> = [→a<t'>, ←a<t'>] of the top layer,     (one-directional: enc.{l}.*)
                         (Tx, B, F), F = 2H (H one-directional)
    bridge    s[l]<0>  = tanh(W_b[l] [→a[l]<Tx>, ←a[l]<1>] + b_b[l])  bridge.{l}.a.W (F, Hd), bridge.{l}.a.b
                         the LSTM's c[l]<0> with its own weights from the same [→a[l]<Tx>, ←a[l]<1>]:
                         bridge.{l}.c.W, bridge.{l}.c.b (→c<Tx> is not an output; see nn.lengthcell)
                         (a one-directional encoder as wide as the decoder has no bridge: s[l]<0> is its
                         final state itself, (a<Tx>, c<Tx>) for the LSTM: the notes' encoder–decoder)
    decoder   d<t>     = E_y[y<t-1>],  y<0> = <EOS> (the start token)  tgt.embed.W  E_y (Vy, Ey)
              s[l]<t>    stacked RNN from s[l]<0>; s<t> its top layer   dec.{l}.*
    none      ŷ<t>     = softmax(W_y s<t> + b_y)                        out.W (Hd, Vy), out.b (Vy,)
    attention c<t>     = Σ_t' α<t,t'> a<t'>   (nn.attention: additive or dot scores, padding masked)   att.*
              ã<t>     = tanh(W_c [s<t>, c<t>] + b_c)                   att.Wc (Hd + F, Hd), att.bc (Hd,)
              ŷ<t>     = softmax(W_y ã<t> + b_y)
    loss      L = (1/N) Σ_b Σ_{t=1..n_b+1} −log ŷ<t>[y<t>],  y<n_b+1> = <EOS>,  N = Σ_b (n_b + 1)

Training is teacher-forced: the decoder reads the reference y<t-1>, not its own prediction. The
loss is the summed cross-entropy of the batch's target tokens (each <EOS> included) divided by
their number: a mean per target token, as the engine reports for the other tasks (Batch.tokens is
that number). Attention reads the decoder's output s<t> after its recurrent layers (Luong's order),
so the decoder RNN runs over all Ty steps as one forward call of each cell, and attention is one
batched computation over all t. One `layers` for the encoder and the decoder; the decoder and the
encoder share the cell kind. Dropout (inverted, training only) sits on e<t'> and d<t>, between the
layers of both RNNs, and on what W_y reads.

A batch (`PairBatch`, made by `pad_pairs`) holds sources and targets padded at the end; the encoder's
columns stop at their own lengths (masked ←a as in the tagger; each final state taken at the column's
length by nn.lengthcell.LengthCell), the decoder's padding comes after its real steps, and attention
gives source padding a weight of exactly 0. As in the tagger (nn.padded), batches are widened to a multiple of
ROW_ALIGN examples so that every matrix product has whole row blocks: an example gets the same
numbers alone as in any batch, bit for bit in float64 (tests/test_seq2seq.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError, DataError
from charlm.nn.attention import ATTENTIONS, Attention
from charlm.nn.cells import CellSettings, cell_from_config
from charlm.nn.config import check_settings, is_int
from charlm.nn.layers import (
    Bidirectional,
    StackedRecurrent,
    dense_forward,
    dropout_mask,
    embedding_backward,
    log_softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
from charlm.nn.lengthcell import LengthCell
from charlm.nn.padded import PaddedNetwork, param_name, widen

__all__ = ["PairBatch", "pad_pairs", "Seq2SeqConfig", "Seq2Seq", "Memory", "START"]

UNK, EOS = 0, 1   # the vocabularies' ids of <UNK> and <EOS> (charlm.text.vocab)
START = EOS       # y<0>: the decoder's first input


# -- batches -------------------------------------------------------------------------------------------
@dataclass
class PairBatch:
    """B (source, target) pairs padded at the end, time-major.

    source (Tx,B) int: x<1..Tx_b>, padding 0          source_lengths (B,) int: Tx_b (>= 1)
    target_in (Ty,B) int: <EOS>, y<1..n_b>, padding 0  (the decoder's inputs, y<t-1>)
    target (Ty,B) int: y<1..n_b>, <EOS>, padding 0     (what ŷ<t> predicts)
    target_lengths (B,) int: n_b + 1, the predictions of each pair
    Without targets (decoding) the three target fields are None.
    """

    source: np.ndarray
    source_lengths: np.ndarray
    target_in: np.ndarray | None = None
    target: np.ndarray | None = None
    target_lengths: np.ndarray | None = None

    @property
    def size(self) -> int:
        """B, the number of pairs."""
        return int(self.source_lengths.shape[0])

    @property
    def tokens(self) -> int:
        """Target tokens predicted (each <EOS> included): what the loss is a mean over."""
        return 0 if self.target_lengths is None else int(self.target_lengths.sum())

    @property
    def source_mask(self) -> np.ndarray:
        """(Tx,B) bool: True at real source steps."""
        return np.arange(self.source.shape[0])[:, None] < self.source_lengths

    @property
    def target_mask(self) -> np.ndarray:
        """(Ty,B) float64: 1.0 at real predictions, 0.0 at padding."""
        return (np.arange(self.target.shape[0])[:, None] < self.target_lengths).astype(np.float64)


def _ids(seqs, what: str, allow_empty: bool) -> list[np.ndarray]:
    out = [np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs]
    if not allow_empty:
        for i, s in enumerate(out):
            if s.size == 0:
                raise DataError(f"{what} {i + 1} of the batch is empty")
    return out


def _columns(seqs: list[np.ndarray], T: int) -> np.ndarray:
    """(T, B) int64: column b holds seqs[b] from the top, 0 after it."""
    out = np.zeros((T, len(seqs)), dtype=np.int64)
    for b, s in enumerate(seqs):
        out[:len(s), b] = s
    return out


def pad_pairs(sources, targets=None) -> PairBatch:
    """A `PairBatch` of the pairs in the order given. sources: B 1-D int arrays (x<1..Tx_b>, not empty);
    targets: B 1-D int arrays (y<1..n_b>, without <EOS>; may be empty) or None."""
    srcs = _ids(sources, "source", allow_empty=False)
    if not srcs:
        raise DataError("no pairs to batch")
    lengths = np.array([len(s) for s in srcs], dtype=np.int64)
    batch = PairBatch(_columns(srcs, int(lengths.max())), lengths)
    if targets is None:
        return batch
    tgts = _ids(targets, "target", allow_empty=True)
    if len(tgts) != len(srcs):
        raise DataError(f"{len(srcs)} sources but {len(tgts)} targets")
    eos = np.array([EOS], dtype=np.int64)
    batch.target_in = _columns([np.concatenate([[START], t]) for t in tgts], max(map(len, tgts)) + 1)
    batch.target = _columns([np.concatenate([t, eos]) for t in tgts], batch.target_in.shape[0])
    batch.target_lengths = np.array([len(t) + 1 for t in tgts], dtype=np.int64)
    return batch


def _aligned(batch: PairBatch) -> PairBatch:
    """The batch widened to a multiple of ROW_ALIGN pairs: dummy pairs of a one-step source (id 0) and
    no target predictions (length 0), which no loss or output sees."""
    B = batch.size
    pad = widen(B) - B
    if pad == 0:
        return batch
    cols = ((0, 0), (0, pad))
    more = np.ones(pad, dtype=np.int64)
    widened = PairBatch(np.pad(batch.source, cols), np.concatenate([batch.source_lengths, more]))
    if batch.target is not None:
        widened.target_in = np.pad(batch.target_in, cols)
        widened.target = np.pad(batch.target, cols)
        widened.target_lengths = np.concatenate([batch.target_lengths, 0 * more])
    return widened


# -- configuration ----------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Seq2SeqConfig(CellSettings):
    """Hyper-parameters of a Seq2Seq model. Construction validates (CharlmError on nonsense) and resolves
    decoder_hidden = 0 (-> hidden) and attention_hidden = 0 (-> decoder_hidden), so that to_dict() holds
    the sizes in use."""

    source_vocab_size: int      # Vx
    target_vocab_size: int      # Vy (<UNK> and <EOS> included)
    cell: str = "lstm"          # rnn | gru | lstm, encoder and decoder
    layers: int = 2             # stacked layers of the encoder and of the decoder
    hidden: int = 256           # H, the encoder's units per direction
    decoder_hidden: int = 0     # Hd; 0: H
    embedding: int = 64         # Ex, source embedding
    target_embedding: int = 64  # Ey, target embedding
    attention: str = "additive" # none | additive | dot
    attention_hidden: int = 0   # Ha, additive scores; 0: Hd
    bidirectional: bool = True  # False: the notes' plain encoder
    dropout: float = 0.0
    dtype: str = "float32"

    REQUIRED = ("source_vocab_size", "target_vocab_size")

    @property
    def vocab_size(self) -> int:
        """Vx: what a checkpoint's "vocab" (the source vocabulary) must have."""
        return self.source_vocab_size

    def validate(self) -> None:
        check_settings(self, ("source_vocab_size", "target_vocab_size", "layers", "hidden", "embedding",
                              "target_embedding"), ("bidirectional",))
        self.check_cell()
        for name in ("source_vocab_size", "target_vocab_size"):
            if getattr(self, name) < 2:
                raise CharlmError(f"{name} must be at least 2, got {getattr(self, name)}")
        if self.attention not in ATTENTIONS:
            raise CharlmError(f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTIONS)}")
        for name in ("decoder_hidden", "attention_hidden"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                raise CharlmError(f"model setting {name} must be a whole number >= 0, got {v!r}")
        self.decoder_hidden = int(self.decoder_hidden) or self.hidden
        self.attention_hidden = int(self.attention_hidden) or self.decoder_hidden


# -- the model ------------------------------------------------------------------------------------------------
@dataclass
class Memory:
    """What the decoder reads of the encoded sources, one row per decoder column (R rows):
    a (Tx,R,F) the encoder's states, keys (Tx,R,K) their part of the scores (None without attention),
    mask (Tx,R) bool True at real source steps, lengths (R,) source lengths."""

    a: np.ndarray
    keys: np.ndarray | None
    mask: np.ndarray
    lengths: np.ndarray

    def take(self, rows) -> "Memory":
        """The memory of the given rows (a source's row repeated once per hypothesis of a beam)."""
        rows = np.asarray(rows)
        return Memory(self.a[:, rows], None if self.keys is None else self.keys[:, rows], self.mask[:, rows],
                      self.lengths[rows])


class Seq2Seq(PaddedNetwork):
    """Encoder–decoder with optional attention over padded pairs (see the module docstring; what it
    shares with the sentence networks: nn.padded)."""

    def __init__(self, config: Seq2SeqConfig, params: dict | None = None, seed: int = 0):
        self.config = c = config
        self.dtype = np.dtype(c.dtype)
        self.cell = cell_from_config(c)
        self.bridged = c.bidirectional or c.hidden != c.decoder_hidden
        enc_cell = LengthCell(self.cell, outputs_only=self.bridged)   # the bridge reads a<Tx> only
        self.directions = ("fwd", "bwd") if c.bidirectional else ("",)
        self.encoder = StackedRecurrent(Bidirectional(enc_cell) if c.bidirectional else enc_cell, c.layers)
        self.decoder = StackedRecurrent(self.cell, c.layers)
        self.attention = None if c.attention == "none" else Attention(c.attention)
        self.width = c.hidden * len(self.directions)             # F
        self.state_names = ("a", "c")[:self.cell.n_states]
        self._set_params(params, seed)

    # -- parameters ----------------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple]:
        c, F, Hd = self.config, self.width, self.config.decoder_hidden
        shapes = {"src.embed.W": (c.source_vocab_size, c.embedding)}
        for l in range(c.layers):
            for d in self.directions:
                for k, s in self.cell.param_shapes(c.embedding if l == 0 else F, c.hidden).items():
                    shapes[param_name(f"enc.{l}", d, k)] = tuple(s)
        if self.bridged:
            for l in range(c.layers):
                for n in self.state_names:
                    shapes[f"bridge.{l}.{n}.W"], shapes[f"bridge.{l}.{n}.b"] = (F, Hd), (Hd,)
        shapes["tgt.embed.W"] = (c.target_vocab_size, c.target_embedding)
        for l in range(c.layers):
            for k, s in self.cell.param_shapes(c.target_embedding if l == 0 else Hd, Hd).items():
                shapes[f"dec.{l}.{k}"] = tuple(s)
        if self.attention is not None:
            for k, s in self.attention.param_shapes(F, Hd, c.attention_hidden).items():
                shapes[f"att.{k}"] = s
            shapes["att.Wc"], shapes["att.bc"] = (Hd + F, Hd), (Hd,)
        shapes["out.W"], shapes["out.b"] = (Hd, c.target_vocab_size), (c.target_vocab_size,)
        return shapes

    def _init_params(self, rng: np.random.Generator) -> dict:
        """Embeddings ~ N(0, 1) (as the other models'); cells as in nn.cells; every other matrix
        ~ U(±1/sqrt(rows)), biases 0."""
        c, dt, F, Hd = self.config, self.dtype, self.width, self.config.decoder_hidden

        def uniform(shape):
            return (rng.uniform(-1, 1, size=shape) / np.sqrt(shape[0])).astype(dt)

        p = {"src.embed.W": rng.standard_normal((c.source_vocab_size, c.embedding)).astype(dt)}
        for l, layer in enumerate(self.encoder.init_params(c.embedding, c.hidden, rng, dt)):
            p.update(self._flat(f"enc.{l}", layer))
        if self.bridged:
            for l in range(c.layers):
                for n in self.state_names:
                    p[f"bridge.{l}.{n}.W"], p[f"bridge.{l}.{n}.b"] = uniform((F, Hd)), np.zeros(Hd, dtype=dt)
        p["tgt.embed.W"] = rng.standard_normal((c.target_vocab_size, c.target_embedding)).astype(dt)
        for l, layer in enumerate(self.decoder.init_params(c.target_embedding, Hd, rng, dt)):
            p.update(self._flat(f"dec.{l}", layer))
        if self.attention is not None:
            p.update({f"att.{k}": v for k, v in self.attention.init_params(F, Hd, c.attention_hidden, rng,
                                                                           dt).items()})
            p["att.Wc"], p["att.bc"] = uniform((Hd + F, Hd)), np.zeros(Hd, dtype=dt)
        p["out.W"], p["out.b"] = uniform((Hd, c.target_vocab_size)), np.zeros(c.target_vocab_size, dtype=dt)
        return {k: p[k] for k in self.param_shapes()}

    def _layers(self, prefix: str, directions) -> list:
        """Per layer: the params of prefix.{l} (a (fwd, bwd) pair for two directions)."""
        return [self._group(f"{prefix}.{l}", directions) for l in range(self.config.layers)]

    def _named(self, prefix: str) -> dict:
        """{key: array} of the parameters named prefix.key."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.params.items() if k.startswith(prefix + ".")}

    # -- forward pieces ----------------------------------------------------------------------------------
    def _check(self, batch: PairBatch, need_target: bool) -> PairBatch:
        """The batch, checked against the model and widened to whole row blocks."""
        c = self.config
        sides = [("source", batch.source, c.source_vocab_size)]
        if need_target:
            sides.append(("target", batch.target, c.target_vocab_size))
        for side, ids, n in sides:
            if ids is None:
                raise DataError("the batch has no targets to train on")
            if ids.min() < 0 or ids.max() >= n:
                raise DataError(f"{side} ids must be in [0, {n})")
        return _aligned(batch)

    def _encode(self, batch: PairBatch, rate: float, rng):
        """-> (a (Tx,B,F), final states per layer, cache): e<t'> = E_x[x<t'>] -> the encoder RNN."""
        c = self.config
        x = self.params["src.embed.W"][batch.source]                  # e<t'>  (Tx,B,Ex)
        m_x = dropout_mask(x.shape, rate, rng, self.dtype)
        if m_x is not None:
            x *= m_x
        zero = self.cell.init_state(batch.size, c.hidden, self.dtype)
        state = [(zero, zero) if c.bidirectional else zero] * c.layers
        layers = self._layers("enc", self.directions)
        a, finals, cache = self.encoder.forward(layers, x, state, rate, rng, batch.source_lengths)
        return a, finals, (batch.source, m_x, layers, cache)

    def _encode_backward(self, da, dfinals, cache, grads: dict) -> None:
        source, m_x, layers, rnn_cache = cache
        dx, layer_grads, _ = self.encoder.backward(layers, da, rnn_cache, dfinals)
        if m_x is not None:
            dx *= m_x
        grads["src.embed.W"] = embedding_backward(dx, source, self.config.source_vocab_size)
        for l, g in enumerate(layer_grads):
            grads.update(self._flat(f"enc.{l}", g))

    def _bridge(self, finals):
        """The decoder's initial state: s[l]<0> = tanh(W_b[l] [→a[l]<Tx>, ←a[l]<1>] + b_b[l]) for each
        state component (a; and c for the LSTM, with its own W_b, b_b), or the encoder's final states
        themselves (no bridge)."""
        if not self.bridged:
            return list(finals), None
        state0, cache = [], []
        for l, final in enumerate(finals):
            inp = np.concatenate([final[0][0], final[1][0]], axis=1) if self.config.bidirectional \
                else final[0]                                          # [→a[l]<Tx>, ←a[l]<1>]  (B, F)
            s0 = tuple(np.tanh(dense_forward(inp, self.params[f"bridge.{l}.{n}.W"], self.params[f"bridge.{l}.{n}.b"]))
                       for n in self.state_names)
            state0.append(s0)
            cache.append((inp, s0))
        return state0, cache

    def _bridge_backward(self, dstate0: list, cache, grads: dict) -> list:
        """dL/ds[l]<0> -> dL/d(the encoder's final outputs)."""
        if cache is None:
            return dstate0
        H, dfinals = self.config.hidden, []
        for l, (inp, s0) in enumerate(cache):
            dinp = 0.0
            for n, s, ds in zip(self.state_names, s0, dstate0[l]):
                dz = ds * (1.0 - s * s)                                # tanh' = 1 - s²
                grads[f"bridge.{l}.{n}.W"] = inp.T @ dz
                grads[f"bridge.{l}.{n}.b"] = dz.sum(axis=0)
                dinp = dinp + dz @ self.params[f"bridge.{l}.{n}.W"].T  # (B, F)
            dfinals.append(((dinp[:, :H],), (dinp[:, H:],)) if self.config.bidirectional else (dinp,))
        return dfinals

    def _decode(self, state0, target_in: np.ndarray, rate: float, rng):
        """-> (s (Ty,B,Hd), cache): d<t> = E_y[y<t-1>] -> the decoder RNN from s<0> (teacher forcing)."""
        d = self.params["tgt.embed.W"][target_in]                     # d<t>  (Ty,B,Ey)
        m_d = dropout_mask(d.shape, rate, rng, self.dtype)
        if m_d is not None:
            d *= m_d
        layers = self._layers("dec", ("",))
        s, _, cache = self.decoder.forward(layers, d, state0, rate, rng)
        return s, (target_in, m_d, layers, cache)

    def _decode_backward(self, ds, cache, grads: dict) -> list:
        """-> dL/ds[l]<0> per layer."""
        target_in, m_d, layers, rnn_cache = cache
        dd, layer_grads, dstate0 = self.decoder.backward(layers, ds, rnn_cache)
        if m_d is not None:
            dd *= m_d
        grads["tgt.embed.W"] = embedding_backward(dd, target_in, self.config.target_vocab_size)
        for l, g in enumerate(layer_grads):
            grads.update(self._flat(f"dec.{l}", g))
        return dstate0

    def _memory(self, a: np.ndarray, batch: PairBatch) -> Memory:
        keys = None if self.attention is None else self.attention.keys(self._named("att"), a)
        return Memory(a, keys, batch.source_mask, batch.source_lengths)

    def _head(self, s: np.ndarray, memory: Memory, rate: float, rng):
        """s (Ty,R,Hd) -> (logits (Ty·R, Vy), α (Tx,Ty,R) or None, cache): attention, ã<t> and W_y."""
        p = self.params
        alpha, att = None, None
        h = s
        if self.attention is not None:
            c, alpha, att_cache = self.attention.forward(self._named("att"), s, memory.a, memory.keys, memory.mask)
            sc = np.concatenate([s, c], axis=-1)                       # [s<t>, c<t>]
            h = np.tanh(dense_forward(sc.reshape(-1, sc.shape[-1]), p["att.Wc"], p["att.bc"]))   # ã<t>
            h = h.reshape(s.shape)
            att = (att_cache, sc, h)
        m_o = dropout_mask(h.shape, rate, rng, self.dtype)
        if m_o is not None:
            h = h * m_o
        h2 = h.reshape(-1, h.shape[-1])
        return dense_forward(h2, p["out.W"], p["out.b"]), alpha, (att, m_o, h2, s.shape)

    def _head_backward(self, dlogits: np.ndarray, cache, grads: dict):
        """-> (dL/ds (Ty,R,Hd), dL/da (Tx,R,F) or None)."""
        att, m_o, h2, shape = cache
        p = self.params
        grads["out.W"], grads["out.b"] = h2.T @ dlogits, dlogits.sum(axis=0)
        dh = (dlogits @ p["out.W"].T).reshape(shape)
        if m_o is not None:
            dh *= m_o
        if att is None:
            return dh, None
        att_cache, sc, h = att
        dz = dh * (1.0 - h * h)                                        # ã = tanh(z)
        dz2 = dz.reshape(-1, dz.shape[-1])
        grads["att.Wc"] = sc.reshape(-1, sc.shape[-1]).T @ dz2
        grads["att.bc"] = dz2.sum(axis=0)
        dsc = (dz2 @ p["att.Wc"].T).reshape(sc.shape)
        Hd = shape[-1]
        ds_att, da, att_grads = self.attention.backward(self._named("att"), dsc[..., Hd:], att_cache)
        grads.update({f"att.{k}": v for k, v in att_grads.items()})
        return dsc[..., :Hd] + ds_att, da

    # -- training ---------------------------------------------------------------------------------------
    def loss(self, batch: PairBatch, state=None, train: bool = False, rng=None):
        """-> (mean over target tokens of −log ŷ<t>[y<t>], None, cache for backward)."""
        rate, rng = self._dropout(train, rng)
        batch = self._check(batch, need_target=True)
        a, finals, enc_cache = self._encode(batch, rate, rng)
        state0, bridge_cache = self._bridge(finals)
        s, dec_cache = self._decode(state0, batch.target_in, rate, rng)
        logits, _, head_cache = self._head(s, self._memory(a, batch), rate, rng)
        loss, sm_cache = softmax_cross_entropy(logits, batch.target.reshape(-1), batch.target_mask.reshape(-1))
        return loss, None, (enc_cache, bridge_cache, dec_cache, head_cache, sm_cache, a.shape)

    def backward(self, cache) -> dict:
        """Gradients of the mean loss: a dict with the params' names, shapes and order."""
        enc_cache, bridge_cache, dec_cache, head_cache, sm_cache, a_shape = cache
        grads: dict = {}
        ds, da = self._head_backward(softmax_cross_entropy_backward(sm_cache), head_cache, grads)
        dstate0 = self._decode_backward(ds, dec_cache, grads)
        dfinals = self._bridge_backward(dstate0, bridge_cache, grads)
        self._encode_backward(np.zeros(a_shape, dtype=self.dtype) if da is None else da, dfinals, enc_cache,
                              grads)
        return {k: grads[k] for k in self.param_shapes()}

    # -- evaluation ---------------------------------------------------------------------------------------
    def token_log_probs(self, batch: PairBatch, attention: bool = False):
        """log ŷ<t>[y<t>] of every target token (teacher-forced, evaluation mode) -> (Ty,B) float64,
        0 at padding; with attention=True also α (Tx,Ty,B) (None without attention)."""
        B = batch.size
        batch = self._check(batch, need_target=True)
        a, finals, _ = self._encode(batch, 0.0, None)
        s, _ = self._decode(self._bridge(finals)[0], batch.target_in, 0.0, None)
        logits, alpha, _ = self._head(s, self._memory(a, batch), 0.0, None)
        lp = log_softmax(logits.astype(np.float64))
        picked = lp[np.arange(lp.shape[0]), batch.target.reshape(-1)].reshape(batch.target.shape)
        picked = np.where(batch.target_mask > 0, picked, 0.0)[:, :B]
        if not attention:
            return picked
        return picked, None if alpha is None else alpha[:, :, :B]

    def encode(self, sources) -> tuple[Memory, list, int]:
        """Evaluation: sources (B 1-D int arrays) -> (memory of the widened batch, the decoder's initial
        state s<0> (list over layers), B). Rows B.. of both are dummies."""
        batch = self._check(pad_pairs(sources), need_target=False)
        a, finals, _ = self._encode(batch, 0.0, None)
        return self._memory(a, batch), self._bridge(finals)[0], len(sources)

    def step(self, ids: np.ndarray, state: list, memory: Memory):
        """One decoding step for R rows: ids (R,) y<t-1>, state s<t-1> (list over layers), memory (R rows)
        -> (log ŷ<t> (R,Vy) float64, s<t>, α<t> (Tx,R) or None)."""
        d = self.params["tgt.embed.W"][np.asarray(ids)]
        s, state = self.decoder.step(self._layers("dec", ("",)), d, state)
        logits, alpha, _ = self._head(s[None], memory, 0.0, None)
        return log_softmax(logits.astype(np.float64)), state, None if alpha is None else alpha[:, 0]

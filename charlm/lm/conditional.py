"""The conditional language model: text generated given a label (the notes' one-to-many, "where we
might input an integer (indicating a genre)"; the LanguageModel is the "0-vector" case).

A label c in {0, ..., C-1} (a polarity, a speaker, ...) has an embedding e(c) that sets the initial
state of every layer and goes in with the input x<t>:

    e(c)    = L[c]                                          label.embed.W     L (C, Ec)
    a[l]<0> = tanh(W_0[l] e(c) + b_0[l])                    label.init.{l}.W  (Ec, S*H), label.init.{l}.b (S*H,)
              LSTM (S = 2): [a[l]<0>, c[l]<0>] = tanh(W_0[l] e(c) + b_0[l]): the memory cell starts
              from the label too; RNN, GRU (S = 1): a[l]<0> (= c[l]<0> for the GRU)
    x<t>    = [E[x<t>]; v<t>]                               rnn.0.W reads H + Emb + Ec rows
    v<t>    = e(c) at every step ("every"), or e(c) at the first step and 0 after ("first": the notes
              feed the input at step 1 only)
    a[l]<t>, ŷ<t>, the loss: as in the LanguageModel (charlm.lm.model)

so P(y<1>..y<Ty> | c) = Π_t ŷ<t>[y<t>]: a text is read as in lines mode, inputs `<EOS> t1..tn`,
targets `t1..tn <EOS>`, from the label's state. (The issue writes the projection W_c, b_c; here it
is W_0, b_0, since W_c is the candidate's weight c~ in the notes' GRU and LSTM.) Dropout acts on the
token embeddings, between layers and below the output, as in the LanguageModel; never on v<t>.
At initialisation L = 0, b_0 = 0 and layer 0's rows for v are 0 (W_0 is drawn): the model starts as
the LanguageModel of the same seed (the same draws; a<0> = 0, v = 0) and learns how to use the label.

The state of a conditional model is the LanguageModel's list over layers with one more entry at the
end, (v,): v (B, Ec) is the label input that goes with the next x<t> (e(c), or 0 once "first" has
fed it). So a state carries its label: `target_log_probs`, `step` and `log_probs` are the
LanguageModel's, and `given(label)` is the model with `init_state` starting from that label, which
charlm.lm.scoring, .generate and .beam use as they use a LanguageModel.

Training (the engine's interface): `loss(batch, state, train, rng)` on a `charlm.lm.labelled.LabelledLines`
batch, then `backward`. Whole texts (lines, the default): a padded batch, every row from its own
label's a<0>, nothing carried. The stream form (`--mode stream`, charlm.lm.labelstreams): a window of
truncated BPTT whose rows continue from the carried state, except those where a segment of a label's
running text starts (`batch.starts`), which start from their label's a<0>; v = e(c) is taken from the
current parameters at every window. `epoch_state(B)` is the placeholder carried into an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError, UsageError
from charlm.lm.model import LanguageModel, ModelConfig, State
from charlm.nn.config import check_settings
from charlm.nn.layers import dense_backward, dense_forward, embedding_backward

__all__ = ["CondConfig", "ConditionalLM", "ConditionedStack", "Given", "CONDITION_INPUTS"]

CONDITION_INPUTS = ("every", "first")


@dataclass(kw_only=True)
class CondConfig(ModelConfig):
    """A LanguageModel's settings and the label's: num_labels C (>= 2), label_embedding Ec, and
    condition_input "every" or "first" (see the module docstring)."""

    num_labels: int = 2
    label_embedding: int = 32
    condition_input: str = "every"

    REQUIRED = ("vocab_size", "num_labels")

    def validate(self) -> None:
        super().validate()
        check_settings(self, ("num_labels", "label_embedding"))
        if self.num_labels < 2:
            raise CharlmError(f"a conditional language model needs at least two labels, got {self.num_labels}")
        if self.condition_input not in CONDITION_INPUTS:
            raise CharlmError(f"condition_input must be every or first, got {self.condition_input!r}")


class ConditionedStack:
    """Recurrent layers whose first layer also reads the label input v carried in the state.

    Wraps a `StackedRecurrent` (`stack`) and has its interface; a state is the stack's list over
    layers followed by (v,), v (B, Ec). Layer 0 reads [x<t>; v<t>] (D + Ec features): v<t> = v at
    every step ("every"), or at the first step only and 0 after ("first"); the state after a
    sequence carries v ("every") or 0 ("first"). dstate0 ends with (dL/dv,).
    """

    def __init__(self, stack, width: int, mode: str):
        self.stack, self.width, self.mode = stack, int(width), mode
        self.layers = stack.layers

    def param_shapes(self, D: int, H: int) -> list[dict]:
        return self.stack.param_shapes(D + self.width, H)

    def init_params(self, D: int, H: int, rng, dtype="float32") -> list:
        """The stack's parameters for D inputs (the same draws), layer 0's W with Ec more rows, at
        zero, that read v (W's rows: [:H] on a<t-1>, [H:H+D] on x<t>, [H+D:] on v<t>)."""
        layers = self.stack.init_params(D, H, rng, dtype)
        W = layers[0]["W"]
        layers[0]["W"] = np.concatenate([W, np.zeros((self.width, W.shape[1]), dtype=W.dtype)])
        return layers

    def _join(self, x: np.ndarray, state):
        """x (T,B,D) -> ([x<t>; v<t>] (T,B,D+Ec), the layers' state, the state's v after T steps)."""
        *layers, (v,) = state
        T = x.shape[0]
        vt = np.zeros((T, *v.shape), dtype=x.dtype)            # v<t>
        if self.mode == "every":
            vt[:] = v
        elif T:
            vt[0] = v
        after = v if self.mode == "every" or T == 0 else np.zeros_like(v)
        return np.concatenate([x, vt], axis=-1), layers, after

    def forward(self, params, x, state, dropout: float = 0.0, rng=None, **kw):
        """x (T,B,D) -> (a (T,B,H) of the top layer, new state, cache); `kw` as the stack's."""
        xv, layers, after = self._join(x, state)
        a, new_state, cache = self.stack.forward(params, xv, layers, dropout, rng, **kw)
        return a, new_state + [(after,)], (cache, x.shape[-1])

    def backward(self, params, da, cache, dstate=None):
        """da (T,B,H) -> (dx (T,B,D), layer grads, dstate0: the layers' then (dL/dv,))."""
        cache, D = cache
        dxv, grads, dstate0 = self.stack.backward(params, da, cache, None if dstate is None else dstate[:-1])
        dvt = dxv[..., D:]                                     # dL/dv<t> (T,B,Ec)
        if self.mode == "every":                               # v<t> = v at every step ...
            dv = dvt.sum(axis=0)
            if dstate is not None and dstate[-1][0] is not None:
                dv += dstate[-1][0]                            # ... and the state after is v
        else:                                                  # v<1> = v, then 0
            dv = dvt[0].copy()
        return dxv[..., :D], grads, dstate0 + [(dv,)]

    def run(self, params, x, state):
        """x (T,B,D) -> (a (T,B,H), new state); evaluation only."""
        xv, layers, after = self._join(x, state)
        a, new_state = self.stack.run(params, xv, layers)
        return a, new_state + [(after,)]

    def step(self, params, x, state):
        """x (B,D) -> (a (B,H), new state); evaluation mode."""
        xv, layers, after = self._join(x[None], state)
        a, new_state = self.stack.step(params, xv[0], layers)
        return a, new_state + [(after,)]


class ConditionalLM(LanguageModel):
    """Left-to-right language model over token ids given a label (see the module docstring)."""

    conditional = True

    def _recurrent(self):
        return ConditionedStack(super()._recurrent(), self.config.label_embedding, self.config.condition_input)

    # -- parameters ----------------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple]:
        c = self.config
        SH = self.cell.n_states * c.hidden
        shapes = super().param_shapes()
        shapes["label.embed.W"] = (c.num_labels, c.label_embedding)
        for l in range(c.layers):
            shapes[f"label.init.{l}.W"] = (c.label_embedding, SH)
            shapes[f"label.init.{l}.b"] = (SH,)
        return shapes

    def _init_params(self, rng: np.random.Generator) -> dict:
        """The LanguageModel's draws (so those parameters start as a LanguageModel's of the same
        seed), then W_0 ~ U(±1/sqrt(Ec)); the label's embedding L, b_0 and the rows of rnn.0.W that
        read v start at 0. So the model starts as the unconditional one, a<0> = tanh(0) = 0 and
        v = 0, and learns to use the label: the gradient reaches L through W_0 from the first step."""
        p = super()._init_params(rng)
        c, dt = self.config, self.dtype
        p["label.embed.W"] = np.zeros((c.num_labels, c.label_embedding), dtype=dt)
        s, SH = 1.0 / np.sqrt(c.label_embedding), self.cell.n_states * c.hidden
        for l in range(c.layers):
            p[f"label.init.{l}.W"] = rng.uniform(-s, s, size=(c.label_embedding, SH)).astype(dt)
            p[f"label.init.{l}.b"] = np.zeros(SH, dtype=dt)
        return p

    # -- the label's state ---------------------------------------------------------------------------
    def _labels(self, labels) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or \
                (labels.size and not 0 <= labels.min() <= labels.max() < self.config.num_labels):
            raise UsageError(f"labels must be ids 0..{self.config.num_labels - 1}, got {labels!r}")
        return labels.astype(np.int64)

    def _label_forward(self, labels, starts=None, carried: State | None = None):
        """labels (B,) ids -> (State: a[l]<0> (and c[l]<0>) of every layer, then (v,); cache).

        Whole texts (`starts` None): every row starts from its label, v = e(c). The stream form
        (charlm.lm.labelstreams) passes `starts` (B,) bool and the `carried` State: a row that
        starts here takes its label's a[l]<0>, the others keep their carried a[l]; v = e(c) of the
        current parameters on every row ("every"), or on the starting rows only and 0 on the
        others ("first": the label went in at the first step of the segment)."""
        labels = self._labels(labels)
        p, H, S = self.params, self.config.hidden, self.cell.n_states
        e = p["label.embed.W"][labels]                                     # e(c) (B, Ec)
        fresh = None if starts is None or carried is None else np.asarray(starts, dtype=bool)[:, None]
        state, outs = [], []
        for l in range(self.config.layers):
            s0 = np.tanh(dense_forward(e, p[f"label.init.{l}.W"], p[f"label.init.{l}.b"]))   # (B, S*H)
            outs.append(s0)
            parts = tuple(np.ascontiguousarray(s0[:, k * H:(k + 1) * H]) for k in range(S))
            if fresh is not None:                                          # a<0> where a segment starts
                parts = tuple(np.where(fresh, a0, a) for a0, a in zip(parts, carried[l]))
            state.append(parts)
        v = e if fresh is None or self.config.condition_input == "every" else e * fresh
        return state + [(v,)], (labels, e, outs, fresh)

    def _label_backward(self, dstate0, cache) -> dict:
        """dstate0 (as a State) -> grads of label.embed.W and label.init.* (the stream form: the
        rows that started from their label only; a carried state's gradient is truncated)."""
        labels, e, outs, fresh = cache
        grads, de = {}, np.array(dstate0[-1][0], dtype=e.dtype)           # dL/dv, v = e(c)
        if fresh is not None and self.config.condition_input == "first":
            de *= fresh
        for l, s0 in enumerate(outs):
            dz = np.concatenate(dstate0[l], axis=1) * (1.0 - s0 * s0)       # tanh' = 1 - a<0>²
            if fresh is not None:
                dz *= fresh
            dx, grads[f"label.init.{l}.W"], grads[f"label.init.{l}.b"] = dense_backward(
                dz, e, self.params[f"label.init.{l}.W"])
            de += dx
        grads["label.embed.W"] = embedding_backward(de[None], labels[None], self.config.num_labels)
        return grads

    def label_state(self, labels, starts=None, carried: State | None = None) -> State:
        """labels (B,) ids -> the initial State of B texts, each given its label (with `starts`
        and `carried`: the stream form's state at a window, see `_label_forward`)."""
        return self._label_forward(labels, starts, carried)[0]

    def init_state(self, batch: int) -> State:
        raise UsageError("this language model is conditional: it needs a label (model.given(label))")

    def epoch_state(self, batch: int) -> State:
        """The stream form's carried state before an epoch's first window, where every row starts
        from its label: zeros of the State's shapes (a placeholder: the engine carries it)."""
        return LanguageModel.init_state(self, batch) + [(np.zeros((batch, self.config.label_embedding), self.dtype),)]

    def given(self, label: int) -> "Given":
        """The model with the label fixed: `init_state(B)` starts B rows from it."""
        return Given(self, int(self._labels([label])[0]))

    # -- training ------------------------------------------------------------------------------------
    def loss(self, batch, state=None, train: bool = False, rng=None):
        """batch: LabelledLines (x, y, mask (T,B), labels (B,), starts).

        Returns (mean NLL in nats over the real target positions, state after, cache for
        backward). Whole texts (batch.starts None): every row starts from its own label's state,
        `state` is unused and the state after is None (nothing is carried between batches). A
        window of the stream form (charlm.lm.labelstreams): the rows of batch.starts start from
        their label, the others continue from `state`, and the state after is carried.
        """
        s0, label_cache = self._label_forward(batch.labels, batch.starts, state)
        loss, after, cache = LanguageModel.loss(self, batch.x, batch.y, s0, batch.mask, train, rng)
        return loss, (None if batch.starts is None else after), (cache, label_cache)

    def backward(self, cache):
        """Gradients of the mean loss: dict with the same keys/shapes as params."""
        cache, label_cache = cache
        grads, dstate0 = LanguageModel.backward(self, cache, return_dstate=True)
        grads.update(self._label_backward(dstate0, label_cache))
        return {k: grads[k] for k in self.param_shapes()}


class Given:
    """A conditional model with its label fixed: what charlm.lm.scoring, .generate and .beam call on
    a LanguageModel (`init_state`, `target_log_probs`, `step`, ...), each row given `label`."""

    def __init__(self, model: ConditionalLM, label: int):
        self.model, self.label = model, label

    def init_state(self, batch: int) -> State:
        return self.model.label_state(np.full(batch, self.label, dtype=np.int64))

    def __getattr__(self, name):
        return getattr(self.model, name)

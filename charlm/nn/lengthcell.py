"""A recurrent cell over padded columns whose final state is each column's state at its OWN length.

A batch of sequences of lengths L_b is padded at the end to T = max L_b steps. A cell run over it
ends at step T, so its final state has read the padding of every shorter column. An encoder whose
final state starts a decoder (the notes' encoder–decoder) needs a<L_b> instead, for the LSTM with its
c<L_b>. `LengthCell` gets it with the cell's own forward and backward, unchanged: the time axis is
cut at every distinct length,

    [0, L(1)), [L(1), L(2)), ...,  L(1) < L(2) < ... the distinct lengths (and T),

each piece is one `cell.forward` that starts from the state the previous piece ended in, and after
the piece that ends at step L the columns of length L keep that state as their final state. Every
step computes exactly what one forward over all T steps computes (the same products on the same
columns, so the outputs are the same bit for bit); only the loop over time is cut into pieces.
Backward runs the pieces in reverse: the gradient of a column's final state enters at the end of its
piece, added to the gradient of the state that the next piece started from.

A cell whose whole state is its output (RNN, GRU: a<t> = c<t>) needs no pieces: one forward over all
T steps, the final state of column b is its output a<L_b>, and the gradient of that final state is
added to the output gradient at step L_b. So does an LSTM asked for its final output only
(`outputs_only=True`: the final "state" is then the 1-tuple (a<L_b>,)). The pieces are for the
LSTM's whole final state (a<L_b>, c<L_b>): c<t> is not an output. They cost a forward and a
backward call per distinct length (measured, forward and backward of the G2P-sized model of
benchmarks/bench_seq2seq.py, batches of 64 words, one thread: +17 % for a batch of 4 source lengths,
+8 % for one of 2), so a model reads the whole state only where it needs it.

Interface (the cells', with `lengths`):
    forward(p, x (T,B,D), state, lengths (B,) or None)  -> (a (T,B,H), final state at L_b, cache)
    backward(p, da (T,B,H), cache, dstate)               -> (dx (T,B,D), grads, dstate0)
`stops_at_length` tells `nn.layers.Bidirectional` to pass the lengths on, so that its ←a (which runs
over each column reversed within its length) ends at ←a<1>, and it returns both final states.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LengthCell"]


class LengthCell:
    """Wraps a cell (nn.cells) so that its final state is taken at each column's length."""

    stops_at_length = True

    def __init__(self, cell, outputs_only: bool = False):
        self.cell = cell
        self.kind, self.G, self.n_states = cell.kind, cell.G, cell.n_states
        self.pieces = cell.n_states > 1 and not outputs_only     # else the final state is (a<L_b>,)

    def param_shapes(self, D: int, H: int) -> dict:
        return self.cell.param_shapes(D, H)

    def init_params(self, D: int, H: int, rng, dtype="float32") -> dict:
        return self.cell.init_params(D, H, rng, dtype)

    def init_state(self, B: int, H: int, dtype="float32") -> tuple:
        return self.cell.init_state(B, H, dtype)

    @staticmethod
    def _bounds(lengths, T: int) -> list[int]:
        """0 and the ends of the pieces: the distinct lengths, and T."""
        return [0] + sorted((set(np.minimum(np.asarray(lengths), T).tolist()) | {T}) - {0})

    def forward(self, p, x, state, lengths=None):
        """x (T,B,D), state (tuple of (B,H)), lengths (B,) -> (a (T,B,H), state at L_b, cache)."""
        T = x.shape[0]
        L = np.full(x.shape[1], T) if lengths is None else np.asarray(lengths)
        if not self.pieces:                                      # the final output a<L_b>
            a, _, cache = self.cell.forward(p, x, state)
            cols = np.arange(x.shape[1])
            final = np.where((L > 0)[:, None], a[np.maximum(L, 1) - 1, cols], state[0])   # a<L_b>
            return a, (final,), (cache, None, L)
        bounds = self._bounds(L, T)
        final = [np.array(s, dtype=p["W"].dtype) for s in state]    # (a length 0 keeps state0)
        outputs, caches = [], []
        for t0, t1 in zip(bounds[:-1], bounds[1:]):
            a, state, cache = self.cell.forward(p, x[t0:t1], state)
            done = L == t1
            for f, s in zip(final, state):
                f[done] = s[done]                             # a<L_b> (and c<L_b>)
            outputs.append(a)
            caches.append(cache)
        a = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        return a, tuple(final), (caches, bounds, L)

    def backward(self, p, da, cache, dstate=None):
        """da (T,B,H), dstate: dL/d(final state) (a tuple; entries may be None, or left out at the end)
        -> (dx, grads, dstate0)."""
        caches, bounds, L = cache
        if bounds is None:                                       # dL/da<L_b> += dL/d(final output)
            given = dstate is not None and dstate[0] is not None
            ended = L > 0
            if given:
                da = np.array(da)
                da[L[ended] - 1, np.flatnonzero(ended)] += dstate[0][ended]
            dx, grads, d0 = self.cell.backward(p, da, caches)
            if given and not ended.all():                        # a length 0 keeps state0
                d0 = (d0[0] + np.where(ended[:, None], 0.0, dstate[0]),) + tuple(d0[1:])
            return dx, grads, d0
        dnext, grads, dxs = None, None, []
        for k in reversed(range(len(caches))):
            t0, t1 = bounds[k], bounds[k + 1]
            done = (L == t1)[:, None]
            ds = []
            for i in range(self.n_states):
                g = None if dnext is None else dnext[i]
                if dstate is not None and i < len(dstate) and dstate[i] is not None and done.any():
                    mine = np.where(done, dstate[i], 0.0)             # the columns that end here
                    g = mine if g is None else g + mine
                ds.append(g)
            dx, g, dnext = self.cell.backward(p, da[t0:t1], caches[k], tuple(ds))
            dxs.append(dx)
            grads = g if grads is None else {n: grads[n] + g[n] for n in grads}
        dx = dxs[0] if len(dxs) == 1 else np.concatenate(dxs[::-1])
        return dx, grads, dnext

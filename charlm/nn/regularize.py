"""Two regularisers of AWD-LSTM (Merity et al. 2017) that act on the model's own rows rather than
on the activations of the streams: embedding dropout and weight drop. (Locked dropout, the third,
is `layers.dropout_mask(..., locked=True)`.)

    embedding dropout   e<t> = E[x<t>] * m_e[x<t>]    m_e (V,): a token of the vocabulary is dropped
                                                      everywhere in the batch, its embedding zero
    weight drop         W_a ⊙ M                       DropConnect on the recurrent rows W[:H] of each
                                                      layer's W (H+D, G·H); M (H, G·H)

Both masks are inverted (0 with probability p, else 1/(1-p)), drawn once per batch from the run's
generator, and applied before the time loop: the cells run on the dropped weights unchanged, and
the gradient flows back through the mask (dL/dW_a = dL/d(W_a ⊙ M) ⊙ M).

A mask over streams (dropout, locked dropout) is cut by columns in a data-parallel run; a mask over
the vocabulary or the weights must be the same on every process, as one process would draw it.
`shared(rng)` is the generator for those: a data-parallel run's wrappers (`charlm.engine.parallel`) hand
out the run's generator itself, which every process holds in the same state; a plain generator
is itself.
"""

from __future__ import annotations

import numpy as np

from charlm.nn.layers import dropout_mask

__all__ = ["DROPOUT_KINDS", "shared", "embedding_dropout_mask", "weight_drop", "weight_drop_backward"]

DROPOUT_KINDS = ("standard", "locked")  # a fresh mask per step, or one per stream for all steps


def shared(rng):
    """The generator whose draws are the same on every process (see the module docstring)."""
    return getattr(rng, "shared", rng)


def embedding_dropout_mask(ids: np.ndarray, V: int, rate: float, rng, dtype) -> np.ndarray | None:
    """ids (T,B) -> m_e[x<t>] (T,B,1): the scale of each position's embedding, from one mask
    m_e (V,) over the vocabulary; None when rate == 0."""
    m = dropout_mask((V,), rate, shared(rng), dtype)
    return None if m is None else m[ids][..., None]


def weight_drop(layer_params: list, H: int, rate: float, rng) -> tuple[list, list | None]:
    """(params with W[:H] replaced by W_a ⊙ M in each layer (copies), masks M (H, G·H) per layer);
    (layer_params, None) when rate == 0. The input rows W[H:], b and peepholes P stay as they are."""
    if rate <= 0.0:
        return layer_params, None
    dropped, masks = [], []
    for p in layer_params:
        W = p["W"].copy()
        M = dropout_mask((H, W.shape[1]), rate, shared(rng), W.dtype)
        W[:H] *= M                                           # W_a ⊙ M
        dropped.append({**p, "W": W})
        masks.append(M)
    return dropped, masks


def weight_drop_backward(grads: list, masks: list | None, H: int) -> None:
    """In place: dL/dW_a = dL/d(W_a ⊙ M) ⊙ M in each layer's grads["W"][:H]."""
    for g, M in zip(grads, masks or ()):
        g["W"][:H] *= M

"""The NumPy core: recurrent cells (nn.cells) and the layers around them (nn.layers)."""

from charlm.nn.cells import GRUCell, LSTMCell, RNNCell, make_cell, sigmoid
from charlm.nn.layers import (
    Bidirectional,
    StackedRecurrent,
    dense_backward,
    dense_forward,
    dropout_mask,
    embedding_backward,
    embedding_forward,
    log_softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    target_log_probs,
)

__all__ = [
    "RNNCell", "GRUCell", "LSTMCell", "make_cell", "sigmoid",
    "StackedRecurrent", "Bidirectional", "embedding_forward", "embedding_backward", "dropout_mask",
    "dense_forward", "dense_backward", "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "log_softmax", "target_log_probs",
]

"""Predictions of a conditional language model (lm/conditional.py): log P(text | label) for each label,
and the generative classifier by Bayes' rule.

    log P(text | c)  = Σ_t log ŷ<t>[y<t>] from the state of label c     (nats; lines mode: the n
                       tokens and the final <EOS>, the scoring conventions of charlm.lm.scoring)
    ĉ                = argmax_c  log P(text | c) + log P(c)
    P(c | text)      = softmax_c (log P(text | c) + log P(c))            (Bayes' rule; the sum over
                       c of P(text | c) P(c) is the normaliser)

P(c) is the label frequency of the training texts (`charlm.lm.labelled.LabelSet.log_prior`). Every
text is scored once per label with `charlm.lm.scoring.score_token_lists` on `model.given(c)`, which
is also what `score --label c` prints, so the classifier and the scores agree by construction.
Sampling and beam search given a label are charlm.lm.generate / charlm.lm.beam on `model.given(c)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from charlm.lm.scoring import score_token_lists

__all__ = ["label_scores", "true_label_sums", "posterior", "Bayes", "bayes_classify"]


def label_scores(model, vocab, token_lists: Sequence[Sequence[str]], batch_size: int = 64,
                 comm=None) -> np.ndarray:
    """log P(text_i | c) (N, C) float64: column c scores every text given label c."""
    C = model.config.num_labels
    out = np.empty((len(token_lists), C))
    for c in range(C):
        scores = score_token_lists(model.given(c), vocab, token_lists, batch_size, comm=comm)
        out[:, c] = [s.logprob for s in scores]
    return out


def true_label_sums(model, vocab, token_lists: Sequence[Sequence[str]], labels, batch_size: int = 64):
    """(nats (C,), predictions (C,)) float64: -Σ log P(text | its own label) and the predictions
    scored (tokens + <EOS>), summed over the texts of each label; labels (N,) ids."""
    labels = np.asarray(labels)
    C = model.config.num_labels
    nats, count = np.zeros(C), np.zeros(C)
    for c in range(C):
        texts = [token_lists[i] for i in np.flatnonzero(labels == c)]
        if texts:
            scores = score_token_lists(model.given(c), vocab, texts, batch_size)
            nats[c] = -sum(s.logprob for s in scores)
            count[c] = sum(s.n_tokens for s in scores)
    return nats, count


def posterior(loglik: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """P(c | text) (N, C) = softmax over c of loglik (N, C) + log_prior (C,), computed stably."""
    z = np.asarray(loglik, dtype=np.float64) + np.asarray(log_prior, dtype=np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


@dataclass
class Bayes:
    """The generative classifier's decisions: labels (N,) ids, posterior (N, C), loglik (N, C) = log P(text | c)."""

    labels: np.ndarray
    posterior: np.ndarray
    loglik: np.ndarray


def bayes_classify(model, vocab, token_lists: Sequence[Sequence[str]], log_prior, batch_size: int = 64,
                   comm=None) -> Bayes:
    """argmax_c log P(text | c) + log P(c) for each text, with the posterior (ties: the lower id)."""
    loglik = label_scores(model, vocab, token_lists, batch_size, comm)
    post = posterior(loglik, log_prior)
    return Bayes(np.argmax(loglik + np.asarray(log_prior), axis=1), post, loglik)

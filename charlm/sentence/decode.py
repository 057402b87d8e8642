"""Decoding a tagger's per-token log-probabilities into tag sequences, optionally constrained so that
entity tags always form valid sequences (never I-PER right after O in IOB2, for example).

The tagger predicts each ŷ<t> on its own; the constrained decoder picks the sequence y<1..T> that
maximises Σ_t log ŷ<t>[y<t>] among the sequences whose every transition y<t-1> -> y<t> is allowed —
a Viterbi search over K tags, O(T K²).
"""

from __future__ import annotations

import numpy as np

from charlm.errors import CharlmError
from charlm.nn import crf
from charlm.sentence.labels import SCHEMES, scheme_named, training_scheme

__all__ = ["viterbi", "tag_constraints", "decode_batch", "label_constraints"]

_PREFIXES = {"IOB2": ("B", "I"), "IOBES": ("B", "I", "E", "S")}   # the schemes a tagger decodes in


def viterbi(log_probs: np.ndarray, allowed: np.ndarray, start_allowed: np.ndarray,
            end_allowed: np.ndarray | None = None) -> np.ndarray:
    """The best tag sequence under transition constraints.

    log_probs (T,K); allowed (K,K) bool, allowed[i, j]: tag j may follow tag i; start_allowed (K,)
    bool: may begin a sentence; end_allowed (K,) bool or None: may end one. -> (T,) int64 maximising
    Σ_t log_probs[t, y<t>]. Raises CharlmError when no sequence satisfies the constraints.

        δ<1>[j] = log_probs[0, j]                               (j allowed to start)
        δ<t>[j] = max_i (δ<t-1>[i] : allowed[i, j]) + log_probs[t, j],   ψ<t>[j] = that argmax i

    (the Viterbi search of a CRF whose transition scores are 0 or −∞: `charlm.nn.crf.viterbi`)
    """
    lp = np.asarray(log_probs)
    end = np.ones(lp.shape[1], dtype=bool) if end_allowed is None else end_allowed
    return decode_batch(lp[:, None], np.array([lp.shape[0]]), (allowed, start_allowed, end))[0]


def _parse(tag: str, scheme: str) -> tuple[str, str | None]:
    """"B-PER" -> ("B", "PER"), "O" -> ("O", None); anything else does not fit the scheme."""
    if tag == "O":
        return "O", None
    prefix, sep, kind = tag.partition("-")
    if sep and kind and prefix in _PREFIXES[scheme]:
        return prefix, kind
    raise CharlmError(f"tag {tag!r} is not an {scheme} entity tag "
                      f"(expected O or {'/'.join(_PREFIXES[scheme])}-TYPE)")


def tag_constraints(tags: list[str], scheme: str):
    """Allowed transitions of entity tags -> (allowed (K,K), start_allowed (K,), end_allowed (K,)).

    iob2 (or bio):  I-X only after B-X or I-X (so never first); any tag may end a sentence.
    iobes:          I-X and E-X only after B-X or I-X; O, B-Y and S-Y never after B-X or I-X (an entity
                    ends with E or is a single S); B-X and I-X never last.
    IOB1 data is converted to IOB2 before training and decoding.
    """
    name, scheme = scheme, scheme_named(scheme)
    if scheme not in _PREFIXES:
        raise CharlmError(f"unknown tag scheme {name!r} (expected iob2, bio or iobes)")
    parsed = [_parse(t, scheme) for t in tags]
    K = len(parsed)
    allowed = np.ones((K, K), dtype=bool)
    start, end = np.ones(K, dtype=bool), np.ones(K, dtype=bool)
    opens = np.array([p in ("B", "I") for p, _ in parsed])          # an entity that must go on
    for j, (pj, xj) in enumerate(parsed):
        if pj in ("I", "E"):                                        # continues an entity of type xj
            start[j] = False
            allowed[:, j] = [pi in ("B", "I") and xi == xj for pi, xi in parsed]
        elif scheme == "IOBES":
            allowed[:, j] = ~opens
    if scheme == "IOBES":
        end &= ~opens
    return allowed, start, end


def decode_batch(scores: np.ndarray, lengths: np.ndarray, constraints=None, transitions=None) -> list[np.ndarray]:
    """scores (T,B,K), lengths (B,) -> B arrays of tag ids (length L_b each): the argmax of every
    token, or the Viterbi paths under `constraints` = tag_constraints(...) and, for a CRF, its
    `transitions` = (trans (K,K), start (K,), end (K,)) scores added to the emissions `scores`
    (in float64; CharlmError when a sentence has no allowed sequence)."""
    lengths = np.asarray(lengths)
    if constraints is None and transitions is None:
        return [scores[:n, b].argmax(axis=1).astype(np.int64) for b, n in enumerate(lengths)]
    e = np.asarray(scores, dtype=np.float64)
    K = e.shape[2]
    transitions = (np.zeros((K, K)), np.zeros(K), np.zeros(K)) if transitions is None else transitions
    paths, best = crf.viterbi(e, lengths, *(np.asarray(x, dtype=np.float64) for x in transitions), constraints)
    if not np.isfinite(best).all():
        raise CharlmError("no tag sequence satisfies the decoding constraints")
    return [paths[:n, b] for b, n in enumerate(lengths)]


def label_constraints(labels: list[str], data_scheme: str | None):
    """The constraints of a tagger's labels: `tag_constraints` in the scheme it learns
    (`labels.training_scheme` of the training data's scheme: IOB1, IOB2 or IOBES), None for tags that
    are not entity tags (no such scheme)."""
    scheme = training_scheme(data_scheme) if data_scheme in SCHEMES else None
    return tag_constraints(labels, scheme) if scheme else None

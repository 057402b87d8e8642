"""Constrained decoding: Viterbi against brute force, and entity-tag constraints (IOB2, IOBES)."""

import itertools

import numpy as np
import pytest

from charlm.errors import CharlmError
from charlm.sentence.decode import decode_batch, tag_constraints, viterbi

IOB2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC"]


def brute_force(lp, allowed, start, end):
    """The best sequence by trying all K^T of them (None when none is allowed)."""
    T, K = lp.shape
    best, best_path = -np.inf, None
    for path in itertools.product(range(K), repeat=T):
        ok = start[path[0]] and end[path[-1]] and all(allowed[i, j] for i, j in zip(path, path[1:]))
        if ok:
            score = sum(lp[t, y] for t, y in enumerate(path))
            if score > best:
                best, best_path = score, path
    return best_path


def valid(tags, scheme):
    """Reference validity of a tag-name sequence, written from the schemes' definitions."""
    prev_p, prev_x = "O", None
    for tag in tags + ["O"]:                                  # the sentence's end acts as a following O
        p, x = ("O", None) if tag == "O" else tuple(tag.split("-", 1))
        if p in ("I", "E") and not (prev_p in ("B", "I") and x == prev_x):
            return False                                      # continues no entity of its type
        if scheme == "iobes" and prev_p in ("B", "I") and p not in ("I", "E"):
            return False                                      # an IOBES entity ends with E-X
        prev_p, prev_x = p, x
    return True


@pytest.mark.parametrize("seed", range(30))
def test_viterbi_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    K, T = int(rng.integers(2, 5)), int(rng.integers(1, 6))
    lp = np.log(rng.dirichlet(np.ones(K), size=T))
    allowed = rng.random((K, K)) < 0.6
    start, end = rng.random(K) < 0.7, rng.random(K) < 0.7
    expect = brute_force(lp, allowed, start, end)
    if expect is None:
        with pytest.raises(CharlmError):
            viterbi(lp, allowed, start, end)
    else:
        np.testing.assert_array_equal(viterbi(lp, allowed, start, end), expect)


@pytest.mark.parametrize("tags,scheme", [(IOB2, "iob2"), (IOB2, "bio"), (IOBES, "iobes")])
def test_constrained_decoding_is_valid_and_best(tags, scheme):
    allowed, start, end = tag_constraints(tags, scheme)
    rng = np.random.default_rng(1)
    K = len(tags)
    for T in (1, 2, 3, 4):
        for _ in range(15):
            lp = np.log(rng.dirichlet(np.ones(K) * 0.3, size=T))
            path = viterbi(lp, allowed, start, end)
            assert valid([tags[i] for i in path], "iobes" if scheme == "iobes" else "iob2")
            np.testing.assert_array_equal(path, brute_force(lp, allowed, start, end))
    # the constraints admit exactly the valid sequences (all of them, up to length 4)
    s = "iobes" if scheme == "iobes" else "iob2"
    for T in (1, 2, 3, 4):
        for path in itertools.product(range(K), repeat=T):
            ok = start[path[0]] and end[path[-1]] and all(allowed[i, j] for i, j in zip(path, path[1:]))
            assert ok == valid([tags[i] for i in path], s), [tags[i] for i in path]


def test_iob2_examples():
    allowed, start, end = tag_constraints(IOB2, "iob2")
    i = {t: k for k, t in enumerate(IOB2)}
    assert not allowed[i["O"], i["I-PER"]] and not start[i["I-PER"]]
    assert allowed[i["B-PER"], i["I-PER"]] and allowed[i["I-PER"], i["I-PER"]]
    assert not allowed[i["B-LOC"], i["I-PER"]] and allowed[i["I-PER"], i["B-PER"]] and end.all()
    # argmax would say O I-PER I-PER; the best valid sequence is B-PER I-PER I-PER or O O O
    lp = np.log(np.array([[0.5, 0.45, 0.05, 0, 0], [0.1, 0, 0.9, 0, 0], [0.1, 0, 0.9, 0, 0]]) + 1e-12)
    assert [IOB2[k] for k in viterbi(lp, allowed, start, end)] == ["B-PER", "I-PER", "I-PER"]


def test_iobes_examples():
    allowed, start, end = tag_constraints(IOBES, "iobes")
    i = {t: k for k, t in enumerate(IOBES)}
    assert not end[i["B-PER"]] and not end[i["I-PER"]] and end[i["E-PER"]] and end[i["S-PER"]]
    assert not allowed[i["B-PER"], i["O"]] and not allowed[i["B-PER"], i["E-LOC"]]
    assert allowed[i["B-LOC"], i["E-LOC"]] and allowed[i["E-PER"], i["B-LOC"]]
    assert not start[i["E-PER"]] and start[i["S-PER"]]


def test_bad_tags_and_schemes():
    with pytest.raises(CharlmError, match="IOB2"):
        tag_constraints(["O", "E-PER"], "iob2")
    with pytest.raises(CharlmError):
        tag_constraints(["O", "NOUN"], "iob2")
    with pytest.raises(CharlmError):
        tag_constraints(["O", "B-"], "iobes")
    with pytest.raises(CharlmError, match="scheme"):
        tag_constraints(["O"], "iob1")


def test_decode_batch():
    rng = np.random.default_rng(3)
    lp = np.log(rng.dirichlet(np.ones(5), size=(4, 3)))
    lengths = np.array([4, 1, 2])
    plain = decode_batch(lp, lengths)
    assert [len(p) for p in plain] == [4, 1, 2]
    np.testing.assert_array_equal(plain[2], lp[:2, 2].argmax(axis=1))
    cons = tag_constraints(IOB2, "iob2")
    for b, p in enumerate(decode_batch(lp, lengths, cons)):
        np.testing.assert_array_equal(p, viterbi(lp[:lengths[b], b], *cons))
        assert valid([IOB2[k] for k in p], "iob2")

"""Tagger and classifier: finite-difference gradients of every new piece (masked bidirectional
layers, stacking, the character encoder, pooling, the per-token and per-sentence losses, whole models
with dropout), padding that never leaks (bit for bit in float64), batches, settings, and a tiny
learning run that needs the words to the right."""

import numpy as np
import pytest

from charlm.errors import CharlmError, DataError
from charlm.nn import cells as C
from charlm.nn import layers as L
from charlm.sentence.batch import pad_sentences
from charlm.sentence.network import ClassifierNetwork as Classifier
from charlm.sentence.network import TaggerConfig
from charlm.sentence.network import TaggerNetwork as Tagger
from charlm.tasks import load as load_model
from gradcheck import check_grad
from test_cells import CASES, IDS, TOL
LENGTHS = [4, 9, 1, 6, 3, 12, 2, 5, 7, 10]      # 10 sentences: more than one block of 8 rows
D, H = 5, 4


def randomise(params, rng, scale=0.3):
    """Cell params away from their initialisation (non-zero biases and peepholes)."""
    for p in params:
        for k in p:
            p[k] += rng.normal(0, scale, p[k].shape)


def padded(rng, lengths, D=D):
    """x (T,B,D) with random values everywhere, padding included."""
    return rng.normal(size=(max(lengths), len(lengths), D))


# -- masked bidirectional layer -------------------------------------------------------------------------
def relu_margin(cell, params, x, lengths):
    """Smallest |pre-activation| of a masked bidirectional relu layer (finite differences need a margin
    from the kink)."""
    Hn = params[0]["W"].shape[1]
    y, _, _ = L.Bidirectional(cell).forward(params, x, zeros(cell, x.shape[1], Hn), lengths)
    flip = L.reverse_within(lengths, x.shape[0])
    z = []
    for p, a, xs in ((params[0], y[..., :Hn], x), (params[1], y[..., Hn:][flip], x[flip])):
        prev = np.concatenate([np.zeros_like(a[:1]), a[:-1]])
        z.append(prev @ p["W"][:Hn] + xs @ p["W"][Hn:] + p["b"])
    return min(np.abs(v).min() for v in z)


def zeros(cell, B, Hn, dtype="float64"):
    s = cell.init_state(B, Hn, dtype)
    return (s, s)


def bi_setup(kind, opts, seed):
    rng = np.random.default_rng(seed)
    cell = C.make_cell(kind, **opts)
    params = L.Bidirectional(cell).init_params(D, H, rng, "float64")
    randomise(params, rng)
    lengths = np.array([3, 5, 1, 4])
    return cell, params, padded(rng, lengths), lengths, rng


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_masked_bidirectional_gradients(kind, opts):
    seed = 0
    cell, params, x, lengths, rng = bi_setup(kind, opts, seed)
    while kind == "rnn" and opts["activation"] == "relu" and relu_margin(cell, params, x, lengths) < 0.05:
        seed += 1
        cell, params, x, lengths, rng = bi_setup(kind, opts, seed)
    bi = L.Bidirectional(cell)
    s0 = zeros(cell, len(lengths), H)
    wy = rng.normal(size=(x.shape[0], len(lengths), 2 * H))   # weights on padding too: any f of y

    def loss():
        return np.sum(wy * bi.forward(params, x, s0, lengths)[0])

    y, final, cache = bi.forward(params, x, s0, lengths)
    assert y.shape == (x.shape[0], len(lengths), 2 * H) and final is None
    dx, grads, _ = bi.backward(params, wy, cache)
    for d in range(2):
        for k in params[d]:
            assert check_grad(loss, params[d][k], grads[d][k]) < TOL, (d, k)
    assert check_grad(loss, x, dx) < TOL


@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
def test_masked_bidirectional_is_each_sentence_alone(kind, opts):
    """Each column's real outputs are those of the unpadded sentence run alone (→a left to right,
    ←a from its own last word), and nothing written into the padding changes them."""
    cell, params, x, lengths, rng = bi_setup(kind, opts, seed=1)
    bi = L.Bidirectional(cell)
    y, _, _ = bi.forward(params, x, zeros(cell, len(lengths), H), lengths)
    x2 = x.copy()
    for b, n in enumerate(lengths):
        x2[n:, b] = rng.normal(size=x2[n:, b].shape) * 100        # other padding
    y2, _, _ = bi.forward(params, x2, zeros(cell, len(lengths), H), lengths)
    for b, n in enumerate(lengths):
        alone, _, _ = bi.forward(params, x[:n, b:b + 1], zeros(cell, 1, H))
        np.testing.assert_allclose(y[:n, b], alone[:, 0], rtol=0, atol=1e-13)
        np.testing.assert_array_equal(y2[:n, b], y[:n, b])
    # ←a before a sentence's last word depends on it, →a does not
    n = lengths[1]
    x3 = x.copy()
    x3[n - 1, 1] += rng.normal(size=D)
    y3, _, _ = bi.forward(params, x3, zeros(cell, len(lengths), H), lengths)
    assert np.abs(y3[:n - 1, 1, H:] - y[:n - 1, 1, H:]).max() > 1e-6
    np.testing.assert_array_equal(y3[:n - 1, 1, :H], y[:n - 1, 1, :H])


def test_reverse_within():
    rev, cols = L.reverse_within(np.array([3, 1, 4]), 4)
    np.testing.assert_array_equal(rev, [[2, 0, 3], [1, 1, 2], [0, 2, 1], [3, 3, 0]])
    np.testing.assert_array_equal(cols, [0, 1, 2])
    x = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(x[rev, cols][rev, cols], x)      # an involution


@pytest.mark.parametrize("kind,opts", [c for c in CASES if c[1].get("activation") != "relu"],
                         ids=[i for i in IDS if i != "rnn-relu"])
def test_stacked_bidirectional_gradients_with_dropout(kind, opts):
    rng = np.random.default_rng(2)
    cell = C.make_cell(kind, **opts)
    stack = L.StackedRecurrent(L.Bidirectional(cell), 3)
    params = stack.init_params(D, H, rng, "float64")
    assert [lp[0]["W"].shape[0] for lp in params] == [H + D, 3 * H, 3 * H]    # layer l+1 reads 2H
    for layer in params:
        randomise(layer, rng)
    lengths = np.array([2, 5, 3])
    x = padded(rng, lengths)
    s0 = [zeros(cell, 3, H)] * 3
    wy = rng.normal(size=(5, 3, 2 * H))

    def run():
        return stack.forward(params, x, s0, dropout=0.4, rng=np.random.default_rng(3), lengths=lengths)

    def loss():
        return np.sum(wy * run()[0])

    y, _, cache = run()
    assert all(m is not None for m in cache[1][1:]) and any((m == 0).any() for m in cache[1][1:])
    dx, grads, _ = stack.backward(params, wy, cache)
    for l in range(3):
        for d in range(2):
            for k in params[l][d]:
                assert check_grad(loss, params[l][d][k], grads[l][d][k], n_samples=16) < TOL, (l, d, k)
    assert check_grad(loss, x, dx) < TOL


# -- pooling and the character encoder ------------------------------------------------------------------
@pytest.mark.parametrize("how", L.POOLS)
def test_pool_gradients_and_values(how):
    rng = np.random.default_rng(4)
    lengths = np.array([3, 1, 5, 2])
    y = padded(rng, lengths, D=6)
    w = rng.normal(size=(4, 6))
    split = 4

    def loss():
        return np.sum(w * L.pool_forward(y, lengths, how, split)[0])

    p, cache = L.pool_forward(y, lengths, how, split)
    dy = L.pool_backward(w, cache)
    assert check_grad(loss, y, dy) < TOL
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(dy[n:, b], 0.0)                 # nothing flows into padding
        expect = {"last": np.r_[y[n - 1, b, :split], y[0, b, split:]],
                  "mean": y[:n, b].mean(axis=0), "max": y[:n, b].max(axis=0)}[how]
        np.testing.assert_allclose(p[b], expect, rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        L.pool_forward(y, lengths, "median", split)


@pytest.mark.parametrize("kind,opts", [("lstm", {}), ("gru", {}), ("rnn", {"activation": "tanh"})])
def test_char_encoder(kind, opts):
    rng = np.random.default_rng(5)
    enc = L.CharEncoder(C.make_cell(kind, **opts))
    Cw, params = enc.init_params(7, 3, H, rng, "float64")
    randomise(params, rng)
    char_lengths = np.array([2, 5, 1, 3])
    chars = rng.integers(0, 7, size=(5, 4))
    w = rng.normal(size=(4, 2 * H))

    def loss():
        return np.sum(w * enc.forward(Cw, params, chars, char_lengths)[0])

    codes, cache = enc.forward(Cw, params, chars, char_lengths)
    assert codes.shape == (4, 2 * H)
    dC, grads = enc.backward(params, w, cache)
    assert check_grad(loss, Cw, dC) < TOL
    for d in range(2):
        for k in params[d]:
            assert check_grad(loss, params[d][k], grads[d][k]) < TOL, (d, k)
    # the code is [→a at the last character, ←a at the first] of the word spelled alone
    bi = L.Bidirectional(enc.bi.fwd)
    for i, n in enumerate(char_lengths):
        y, _, _ = bi.forward(params, Cw[chars[:n, i:i + 1]], zeros(enc.bi.fwd, 1, H))
        np.testing.assert_allclose(codes[i], np.r_[y[n - 1, 0, :H], y[0, 0, H:]], rtol=0, atol=1e-13)


# -- whole models -----------------------------------------------------------------------------------------
def sentences(seed, lengths=LENGTHS, V=12, n_chars=9):
    """Random word ids, the characters of each word (a word id has one spelling; <UNK>, id 0, has
    several, as unknown words do) and tags."""
    rng = np.random.default_rng(seed)
    spell = {w: rng.integers(1, n_chars, size=rng.integers(1, 6)) for w in range(V)}
    words = [rng.integers(0, V, size=n) for n in lengths]
    chars = [[spell[w] if w else rng.integers(1, n_chars, size=rng.integers(1, 4)) for w in s] for s in words]
    tags = [rng.integers(0, 3, size=n) for n in lengths]
    return words, chars, tags


def model(task, kind="lstm", opts=None, seed=0, **kw):
    settings = dict(task=task, vocab_size=12, char_vocab_size=9, num_labels=3, cell=kind, layers=2, hidden=H,
                    embedding=D, char_embedding=3, char_hidden=3, dropout=0.3, dtype="float64")
    settings.update(opts or {}, **kw)
    m = (Tagger if task == "tag" else Classifier)(TaggerConfig(**settings), seed=seed)
    rng = np.random.default_rng(seed + 100)
    for k, v in m.params.items():                              # away from the initialisation
        v += rng.normal(0, 0.3, v.shape)
    return m


def batch_for(task, seed=6, lengths=(3, 6, 1, 4)):
    words, chars, tags = sentences(seed, lengths)
    labels = tags if task == "tag" else [int(t[0]) for t in tags]
    return pad_sentences(words, chars, labels)


def whole_model_check(m, batch, n_samples=12):
    def loss():
        return m.loss(batch, train=True, rng=np.random.default_rng(7))[0]

    value, state, cache = m.loss(batch, train=True, rng=np.random.default_rng(7))
    assert state is None and np.isfinite(value)
    grads = m.backward(cache)
    assert list(grads) == list(m.params)
    for k, v in m.params.items():
        assert grads[k].shape == v.shape and grads[k].dtype == v.dtype
        assert check_grad(loss, v, grads[k], n_samples=n_samples) < TOL, k


@pytest.mark.parametrize("kind,opts", [c for c in CASES if c[1].get("activation") != "relu"],
                         ids=[i for i in IDS if i != "rnn-relu"])
def test_tagger_gradients(kind, opts):
    whole_model_check(model("tag", kind, opts), batch_for("tag"))


@pytest.mark.parametrize("pool", L.POOLS)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_classifier_gradients(pool, kind):
    whole_model_check(model("classify", kind, pool=pool), batch_for("classify"))


@pytest.mark.parametrize("task", ["tag", "classify"])
def test_one_directional_and_no_char_encoder_gradients(task):
    whole_model_check(model(task, bidirectional=False), batch_for(task))
    m = model(task, char_hidden=0)
    assert not any(k.startswith("char.") for k in m.params)
    whole_model_check(m, batch_for(task))


def test_losses_are_the_means_the_notes_define():
    """Tagger: mean over real tokens of −log ŷ<t>[y<t>]; classifier: mean over sentences of −log ŷ[y]."""
    tb = batch_for("tag")
    m = model("tag")
    lp = m.log_probs(tb)
    real = tb.mask > 0
    picked = np.take_along_axis(lp, tb.labels[..., None], axis=2)[..., 0]
    assert m.loss(tb)[0] == pytest.approx(-picked[real].mean(), abs=1e-13)
    cb = batch_for("classify")
    c = model("classify", pool="mean")
    lp = c.log_probs(cb)
    assert lp.shape == (cb.size, 3)
    assert c.loss(cb)[0] == pytest.approx(-lp[np.arange(cb.size), cb.labels].mean(), abs=1e-13)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-12)


# -- padding never leaks: bit for bit --------------------------------------------------------------------
@pytest.mark.parametrize("kind,opts", CASES, ids=IDS)
@pytest.mark.parametrize("task,pool", [("tag", "last"), ("classify", "last"), ("classify", "mean"),
                                       ("classify", "max")])
def test_padding_bit_for_bit(kind, opts, task, pool):
    """A sentence gets exactly the same outputs alone as inside a padded batch of longer and
    shorter sentences (float64, every cell)."""
    m = model(task, kind, opts, pool=pool)
    words, chars, _ = sentences(8)
    whole = m.log_probs(pad_sentences(words, chars))
    part = m.log_probs(pad_sentences(words[3:7], chars[3:7]))     # another batch, other T
    for i, n in enumerate(LENGTHS):
        alone = m.log_probs(pad_sentences(words[i:i + 1], chars[i:i + 1]))
        if task == "tag":
            np.testing.assert_array_equal(alone[:n, 0], whole[:n, i])
            if 3 <= i < 7:
                np.testing.assert_array_equal(part[:n, i - 3], whole[:n, i])
        else:
            np.testing.assert_array_equal(alone[0], whole[i])
            if 3 <= i < 7:
                np.testing.assert_array_equal(part[i - 3], whole[i])


def test_tagger_direction_matters():
    """Bidirectional: the tag of word 1 depends on later words; one-directional: it cannot."""
    words, chars, _ = sentences(9, lengths=[6])
    other = [words[0].copy()]
    other[0][4] = (other[0][4] + 1) % 12
    chars2 = [list(chars[0])]
    chars2[0][4] = np.array([1, 2, 3])
    for bidirectional, differs in ((True, True), (False, False)):
        m = model("tag", bidirectional=bidirectional)
        a = m.log_probs(pad_sentences(words, chars))
        b = m.log_probs(pad_sentences(other, chars2))
        assert (np.abs(a[:4] - b[:4]).max() > 1e-6) == differs
        assert np.abs(a[4:] - b[4:]).max() > 1e-6


def test_word_dropout_gives_training_words_the_unknown_embedding():
    """With word dropout p, training sees <UNK> (id 0) for a random share p of the words (the spelling
    stays); evaluation sees every word."""
    from dataclasses import replace

    m = model("tag", dropout=0.0, word_dropout=0.5)
    b = batch_for("tag")
    T, B = b.words.shape
    dropped = np.random.default_rng(3).random((T, 8)) < 0.5            # the batch widened to 8 columns
    assert 0 < dropped[:, :B][b.mask > 0].sum() < b.tokens
    unknown = replace(b, words=np.where(dropped[:, :B], 0, b.words))
    assert m.loss(b, train=True, rng=np.random.default_rng(3))[0] == m.loss(unknown)[0]
    assert m.loss(b)[0] != m.loss(unknown)[0]
    np.testing.assert_array_equal(m.log_probs(b), model("tag", dropout=0.0, word_dropout=0.0).log_probs(b))


def test_float32_model_matches_float64():
    m64 = model("tag")
    m32 = Tagger(TaggerConfig(**{**m64.config.to_dict(), "dtype": "float32"}), params=m64.params)
    b = batch_for("tag")
    lp32 = m32.log_probs(b)
    assert lp32.dtype == np.float32 and m64.log_probs(b).dtype == np.float64
    np.testing.assert_allclose(lp32, m64.log_probs(b), rtol=0, atol=1e-4)
    g32 = m32.backward(m32.loss(b)[2])              # no dropout: masks depend on the dtype
    g64 = m64.backward(m64.loss(b)[2])
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=0, atol=1e-4 * max(1.0, np.abs(g64[k]).max()))


# -- batches ------------------------------------------------------------------------------------------------
def test_pad_sentences():
    words = [np.array([4, 5, 0]), np.array([0])]
    chars = [[np.array([1, 2]), np.array([3]), np.array([7, 7, 7])], [np.array([8])]]
    b = pad_sentences(words, chars, [np.array([1, 2, 0]), np.array([2])])
    np.testing.assert_array_equal(b.words, [[4, 0], [5, 0], [0, 0]])
    np.testing.assert_array_equal(b.lengths, [3, 1])
    np.testing.assert_array_equal(b.mask, [[1, 1], [1, 0], [1, 0]])
    np.testing.assert_array_equal(b.labels, [[1, 2], [2, 0], [0, 0]])
    # the two <UNK>s (id 0) are spelled differently: distinct words for the character encoder
    np.testing.assert_array_equal(b.char_lengths, [2, 1, 3, 1])
    np.testing.assert_array_equal(b.chars, [[1, 3, 7, 8], [2, 0, 7, 0], [0, 0, 7, 0]])
    np.testing.assert_array_equal(b.word_index[:, 0], [0, 1, 2])
    assert b.word_index[0, 1] == 3 and b.size == 2 and b.tokens == 4
    same = pad_sentences([np.array([4, 4])], [[np.array([1, 2]), np.array([1, 2])]])
    np.testing.assert_array_equal(same.word_index[:, 0], [0, 0])       # encoded once
    c = pad_sentences(words, None, [1, 0])                              # a label per sentence
    assert c.labels.tolist() == [1, 0] and c.chars.shape == (0, 0) and c.labels.dtype == np.int64
    assert pad_sentences(words).labels is None


@pytest.mark.parametrize("call", [
    lambda: pad_sentences([]),
    lambda: pad_sentences([np.array([1]), np.array([], dtype=int)]),
    lambda: pad_sentences([np.array([1, 2])], [[np.array([1])]]),
    lambda: pad_sentences([np.array([1])], [[np.array([], dtype=int)]]),
    lambda: pad_sentences([np.array([1])], [[np.array([1])], [np.array([1])]]),
    lambda: pad_sentences([np.array([1, 2])], None, [np.array([1])]),
    lambda: pad_sentences([np.array([1, 2])], None, [[1, 1], [1]]),
    lambda: pad_sentences([np.array([1, 2])], None, [1, 2]),
])
def test_pad_sentences_refuses_inconsistent_input(call):
    with pytest.raises(DataError):
        call()


def test_model_refuses_bad_batches():
    m = model("tag")
    words, chars, tags = sentences(10, lengths=[3])
    with pytest.raises(DataError, match="no labels"):
        m.loss(pad_sentences(words, chars))
    with pytest.raises(DataError, match="characters"):
        m.log_probs(pad_sentences(words))
    with pytest.raises(DataError, match="label ids"):
        m.loss(pad_sentences(words, chars, [np.array([0, 3, 1])]))
    with pytest.raises(DataError, match="word ids"):
        m.log_probs(pad_sentences([np.array([1, 12])], [chars[0][:2]]))
    with pytest.raises(DataError, match="character ids"):
        m.log_probs(pad_sentences(words, [[np.array([9])] * 3]))
    with pytest.raises(CharlmError, match="task"):
        Classifier(m.config)


# -- settings -----------------------------------------------------------------------------------------------
def test_config_defaults_and_round_trip():
    c = TaggerConfig(task="tag", vocab_size=100, char_vocab_size=40, num_labels=17)
    assert (c.cell, c.layers, c.hidden, c.embedding, c.char_embedding, c.char_hidden, c.bidirectional,
            c.dropout, c.word_dropout, c.pool, c.dtype) == ("lstm", 2, 128, 100, 25, 25, True, 0.25, 0.1, "last",
                                                            "float32")
    assert TaggerConfig.from_dict(c.to_dict()) == c
    m = Tagger(c)
    assert m.params["embed.W"].dtype == np.float32 and m.num_params() == sum(v.size for v in m.params.values())
    assert m.params["rnn.1.fwd.W"].shape == (128 + 256, 512) and m.params["out.W"].shape == (256, 17)
    assert m.params["rnn.0.bwd.W"].shape == (128 + 100 + 50, 512)
    assert m.params["char.fwd.W"].shape == (25 + 25, 100) and m.init_state(32) is None
    one = Tagger(TaggerConfig(task="tag", vocab_size=100, char_vocab_size=0, num_labels=3, char_hidden=0,
                              bidirectional=False, layers=1))
    assert sorted(one.params) == ["embed.W", "out.W", "out.b", "rnn.0.W", "rnn.0.b"]
    again = Tagger(one.config, params=one.params)
    for k in one.params:
        np.testing.assert_array_equal(again.params[k], one.params[k])


@pytest.mark.parametrize("bad", [
    {"task": "lm"}, {"vocab_size": 1}, {"num_labels": 1}, {"hidden": 0}, {"char_hidden": -1},
    {"char_vocab_size": 1}, {"pool": "median"}, {"cell": "transformer"}, {"dropout": 1.0},
    {"bidirectional": "yes"}, {"peephole": True, "cell": "gru"}, {"activation": "relu"}, {"dtype": "float16"},
    {"layers": 2.5}, {"word_dropout": 1.0}, {"word_dropout": "0.1"},
])
def test_config_refuses_nonsense(bad):
    base = dict(task="tag", vocab_size=10, char_vocab_size=5, num_labels=3)
    with pytest.raises(CharlmError):
        TaggerConfig(**{**base, **bad})
    with pytest.raises(CharlmError):
        TaggerConfig.from_dict({**base, "colour": "red"})
    with pytest.raises(CharlmError):
        TaggerConfig.from_dict({"task": "tag"})


# -- learning -------------------------------------------------------------------------------------------------
def test_bidirectional_tagger_learns_what_only_the_right_context_tells():
    """The notes' "Teddy" problem in miniature: a word is tagged 1 when the word AFTER it is 2 or 3, so
    only a model that reads to the right can learn it (the best a left-to-right model can do is about
    60 %). A few hundred Adam steps on a tiny model."""
    from charlm.engine.optim import make_optimizer

    rng = np.random.default_rng(11)

    def data(n):
        words = [rng.integers(1, 6, size=rng.integers(2, 7)) for _ in range(n)]
        tags = [np.r_[(s[1:] == 2) | (s[1:] == 3), False].astype(int) for s in words]
        return pad_sentences(words, None, tags)

    train, test = [data(16) for _ in range(30)], data(200)
    accuracy = {}
    for bidirectional in (True, False):
        m = Tagger(TaggerConfig(task="tag", vocab_size=6, char_vocab_size=0, num_labels=2, layers=1, hidden=8,
                                embedding=6, char_hidden=0, dropout=0.0, word_dropout=0.0,
                                bidirectional=bidirectional), seed=1)
        opt = make_optimizer("adam", 0.02)
        for epoch in range(8):
            for b in train:
                opt.step(m.params, m.backward(m.loss(b, train=True)[2]))
        pred = m.log_probs(test).argmax(axis=2)
        has_next = test.mask[1:] > 0                                       # tokens with a word after them
        accuracy[bidirectional] = (pred[:-1] == test.labels[:-1])[has_next].mean()
    assert accuracy[True] > 0.95 and accuracy[False] < 0.7, accuracy


# -- checkpoints ----------------------------------------------------------------------------------------------
def saved(tmp_path, m, **meta_changes):
    """Save a tagger/classifier as the training engine does; -> path."""
    from charlm import checkpoint as ckpt
    from charlm.text.vocab import Vocab

    c = m.config
    words = Vocab.from_counts({f"w{i}": 100 - i for i in range(c.vocab_size - 2)})
    chars = Vocab.from_counts({chr(97 + i): 50 - i for i in range(c.char_vocab_size - 2)})
    meta = {"kind": "best", "task": c.task, "model": c.to_dict(), "vocab": words.to_dict(),
            "char_vocab": chars.to_dict() if c.char_hidden else None,
            "labels": [f"L{i}" for i in range(c.num_labels)], "train": {}}
    meta.update(meta_changes)
    path = tmp_path / "m.npz"
    ckpt.save_checkpoint(path, ckpt.model_arrays(m), meta)
    return path


@pytest.mark.parametrize("task,kw", [("tag", {}), ("classify", {"pool": "max", "char_hidden": 0}),
                                     ("tag", {"bidirectional": False})])
def test_checkpoint_round_trip(tmp_path, task, kw):
    m = model(task, **kw)
    loaded = load_model(saved(tmp_path, m))
    assert loaded.task == task and type(loaded.network) is type(m) and loaded.network.task == task
    assert loaded.labels == ["L0", "L1", "L2"] and loaded.network.config == m.config
    if m.config.char_hidden:
        assert len(loaded.predictor.encoder.chars) == m.config.char_vocab_size
    model2, vocab, meta = loaded.network, loaded.vocab, loaded.meta
    assert len(vocab) == m.config.vocab_size and meta["task"] == task
    b = batch_for(task)
    np.testing.assert_array_equal(model2.log_probs(b), m.log_probs(b))


def test_checkpoint_of_a_language_model_has_task_lm(tmp_path):
    from charlm import checkpoint as ckpt
    from charlm.lm.model import LanguageModel, ModelConfig
    from charlm.text.vocab import Vocab

    vocab = Vocab.from_counts({"a": 3, "b": 2})
    lm = LanguageModel(ModelConfig(vocab_size=len(vocab), hidden=4, embedding=3))
    ckpt.save_checkpoint(tmp_path / "lm.npz", ckpt.model_arrays(lm),
                         {"kind": "best", "model": lm.config.to_dict(), "vocab": vocab.to_dict()})  # no task
    loaded = load_model(tmp_path / "lm.npz")
    assert loaded.task == "lm" and loaded.labels is None and not hasattr(loaded, "predictor")  # no label set: unconditional
    assert isinstance(loaded.network, LanguageModel) and loaded.network.task == "lm"


@pytest.mark.parametrize("change,message", [
    ({"labels": ["A", "B"]}, "predicts 3 labels but the file names 2"),
    ({"labels": None}, "names no labels"),
    ({"char_vocab": None}, "character vocabulary has none"),
    ({"task": "classify"}, "settings for 'tag'"),
    ({"task": "translate"}, "task 'translate'"),
    ({"char_vocab": {"tokens": 3}}, "bad character vocabulary"),
])
def test_checkpoint_refuses_inconsistent_files(tmp_path, change, message):
    from charlm.errors import CheckpointError

    with pytest.raises(CheckpointError, match=message):
        load_model(saved(tmp_path, model("tag"), **change))


def test_checkpoint_refuses_parameters_of_another_model(tmp_path):
    from charlm.errors import CheckpointError

    m = model("tag")
    path = saved(tmp_path, m, model=dict(m.config.to_dict(), bidirectional=False))
    with pytest.raises(CheckpointError, match="does not match its model settings: missing rnn.0.W"):
        load_model(path)

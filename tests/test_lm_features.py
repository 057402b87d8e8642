"""Language models of text read right to left (`charlm train --reverse`, charlm.lm.reverse) and
character-LM features of words (`--lm-features FWD.npz[,BWD.npz]`, charlm.tasks.features): what
reversed means, exactly; scoring and sampling a reversed model; each word's feature equal to the
language model's own state on the prefix; bit-for-bit padding invariance of the features and the
tagger's loss in float64; the tagger's gradients with features; a tagger file that loads and tags
without the language model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import charlm
from charlm import checkpoint as ckpt
from charlm.cli import cli
from charlm.engine.run import last_path
from charlm.errors import UsageError
from charlm.lm import reverse as R
from charlm.lm import corpus
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.sentence.batch import pad_sentences
from charlm.tasks.features import CharLM, LMFeatures
from charlm.text.tokenizer import TokenizerConfig
from charlm.text.vocab import Vocab
from tasksdata import column_text, ner_sentences
from test_tagger import model as tagger_model
from test_tagger import sentences, whole_model_check

CHARS = list("abcdefgh ABC\n")


def char_lm(reverse=False, mode="stream", seed=0, hidden=5, dtype="float64"):
    """A character LM with random parameters (away from the initialisation) over CHARS."""
    vocab = Vocab.from_counts({c: 50 - i for i, c in enumerate(CHARS)},
                              tokenizer=TokenizerConfig(level="char", mode=mode))
    config = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=hidden, embedding=4, dtype=dtype,
                         reverse=reverse)
    net = LanguageModel(config, seed=seed)
    rng = np.random.default_rng(seed + 10)
    for v in net.params.values():
        v += rng.normal(0, 0.3, v.shape)
    return net, vocab


def save(path, net, vocab):
    ckpt.save_checkpoint(path, ckpt.model_arrays(net), {"kind": "best", "task": "lm", "model": net.config.to_dict(),
                                                        "vocab": vocab.to_dict()})


# -- reading right to left ----------------------------------------------------------------------------
def test_reversed_ids_lines_and_stream(monkeypatch):
    ids = np.array([0, 5, 6, 7, 0, 8, 0, 9, 4, 0, 3, 2], dtype=np.uint16)       # the last line cut short
    np.testing.assert_array_equal(R.reversed_ids(ids, "stream"), ids[::-1])
    want = [0, 7, 6, 5, 0, 8, 0, 4, 9, 0, 2, 3]
    np.testing.assert_array_equal(R.reversed_ids(ids, "lines"), want)
    monkeypatch.setattr(R, "CHUNK", 3)                                           # chunks cut at an <EOS>
    out = R.reversed_ids(ids, "lines")
    assert out.dtype == ids.dtype
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("mode", ["stream", "lines"])
def test_reverse_trains_on_each_part_reversed(tmp_path, mode, monkeypatch):
    """The training and validation tokens are those of the forward run, each read right to left."""
    monkeypatch.setattr(corpus, "eval_streams", lambda n: 1)                  # one stream: nothing dropped
    (tmp_path / "c.txt").write_text("abc de\nfgh\nab ba\nhead\n" * 3)
    config = TokenizerConfig(level="char", mode=mode)
    fwd, bwd = (corpus.prepare_lm_data(str(tmp_path / "c.txt"), config, val_fraction=0.2, batch_size=1, seq_len=4,
                                reverse=r, cache_dir=None) for r in (False, True))
    for part in ("train", "val"):
        f, b = np.asarray(getattr(fwd, part))[:, 0], np.asarray(getattr(bwd, part))[:, 0]
        np.testing.assert_array_equal(b, R.reversed_ids(f, mode, fwd.vocab.eos_id))
    assert fwd.vocab.tokens == bwd.vocab.tokens


@pytest.mark.parametrize("mode", ["stream", "lines"])
def test_a_reversed_model_scores_and_samples_the_text_reversed(tmp_path, mode, run):
    net, vocab = char_lm(reverse=True, mode=mode)
    save(tmp_path / "bwd.npz", net, vocab)
    as_forward = LanguageModel(ModelConfig(**dict(net.config.to_dict(), reverse=False)), params=net.params)
    save(tmp_path / "same.npz", as_forward, vocab)
    bwd, same = charlm.load(tmp_path / "bwd.npz"), charlm.load(tmp_path / "same.npz")
    assert bwd.reverse and not same.reverse
    assert bwd.score("abc dh")[0].logprob == same.score("hd cba")[0].logprob
    text = "abc dh\nfAB\n\nhhe\n"
    (tmp_path / "t.txt").write_text(text)
    (tmp_path / "r.txt").write_text("\n".join(line[::-1] for line in text.split("\n")) if mode == "lines"
                                    else text[::-1])
    want = same.evaluate(tmp_path / "r.txt").nats_per_token
    assert bwd.evaluate(tmp_path / "t.txt").nats_per_token == pytest.approx(want, rel=1e-12)
    r = run("score", "-m", tmp_path / "bwd.npz", "--file", tmp_path / "t.txt", "--stream", "--json", "--no-cache")
    assert r.exit_code == 0 and abs(json.loads(r.stdout.splitlines()[-1])["nats_per_token"] - want) < 1e-9
    s = bwd.sample(prime="fab", length=6, seed=3)[0]
    assert s.text.endswith("fab") and s.text == "".join(reversed(list("baf") + list(s.tokens)))
    for call in (lambda: bwd.next_tokens("ab"), lambda: bwd.complete("ab"),
                 lambda: bwd.sample(stop_at="a")):
        with pytest.raises(UsageError, match="reads text right to left"):
            call()


# -- the features --------------------------------------------------------------------------------------
def features(hidden=(5, 3)):
    """A forward (stream mode, starts after "\\n") and a backward (lines mode, starts after <EOS>) LM."""
    f, fv = char_lm(mode="stream", seed=1, hidden=hidden[0])
    b, bv = char_lm(reverse=True, mode="lines", seed=2, hidden=hidden[1])
    return LMFeatures([CharLM("fwd", f, fv), CharLM("bwd", b, bv)])


SENTS = [["ab", "Cde", "h"], ["gg"], ["a", "bb", "zc", "d", "ee", "f"], ["hAh", "b"], ["c"] * 9,
         ["abc", "de"], ["f", "g", "h"], ["BA", "cab"], ["e"], ["d", "dd"]]          # 10: more than 8 columns


def test_each_feature_is_the_language_models_own_state_at_the_word():
    """f(w_i) = [→h at w_i's last character, ←h at its first], each computed on the prefix alone."""
    lmf = features()
    out = lmf(SENTS)
    for tokens, got in zip(SENTS, out):
        text = " ".join(tokens)
        assert got.shape == (len(tokens), 8)
        starts = np.cumsum([0] + [len(t) + 1 for t in tokens[:-1]])
        for i, (s, w) in enumerate(zip(starts, tokens)):
            for m, cols, prefix in ((lmf.models[0], slice(0, 5), "\n" + text[:s + len(w)]),
                                    (lmf.models[1], slice(5, 8), text[s:][::-1])):
                ids = [m.vocab.index.get(c, m.vocab.unk_id) for c in prefix]
                if m.vocab.tokenizer.mode == "lines":
                    ids = [m.vocab.eos_id] + ids
                a, _ = m.network.hidden(np.array(ids)[:, None], m.network.init_state(1))
                np.testing.assert_allclose(got[i, cols], a[-1, 0], rtol=0, atol=1e-12)


def test_features_and_the_taggers_loss_are_the_same_alone_and_in_any_batch():
    """Bit for bit in float64: a sentence's features, and the tagger's log-probabilities and loss."""
    lmf = features()
    whole = lmf(SENTS)
    for i in range(len(SENTS)):
        np.testing.assert_array_equal(lmf(SENTS[i:i + 1])[0], whole[i])
    np.testing.assert_array_equal(lmf(SENTS[3:7])[1], whole[4])
    lengths = [len(s) for s in SENTS]
    words, chars, tags = sentences(8, lengths)
    m = tagger_model("tag", lm_feature_size=8)
    full = pad_sentences(words, chars, tags, whole)
    lp = m.log_probs(full)
    for i, n in enumerate(lengths):
        alone = pad_sentences(words[i:i + 1], chars[i:i + 1], tags[i:i + 1], whole[i:i + 1])
        np.testing.assert_array_equal(m.log_probs(alone)[:n, 0], lp[:n, i])
    batch = pad_sentences(words[2:5], chars[2:5], tags[2:5], whole[2:5])
    loss = m.loss(batch)[0]
    batch.features[batch.mask == 0] = 1e3                          # whatever the padding holds
    assert m.loss(batch)[0] == loss


@pytest.mark.parametrize("task,kw", [("tag", {}), ("classify", {"pool": "mean"})])
def test_gradients_with_features(task, kw):
    """The features are constants: every parameter's gradient still checks in float64."""
    lengths = (3, 6, 1, 4)
    words, chars, tags = sentences(6, lengths)
    rng = np.random.default_rng(3)
    feats = [rng.normal(size=(n, 7)) for n in lengths]
    labels = tags if task == "tag" else [int(t[0]) for t in tags]
    m = tagger_model(task, layers=1, lm_feature_size=7, **kw)
    assert m.params["rnn.0.fwd.W"].shape[0] == 4 + 5 + 2 * 3 + 7             # [a<t-1>, E[w], c(w), f(w)]
    whole_model_check(m, pad_sentences(words, chars, labels, feats), n_samples=6)


# -- through the command line ---------------------------------------------------------------------------
def test_cli_reverse_lms_then_a_self_contained_tagger(tmp_path):
    """charlm train (forward) and --reverse (backward) char LMs -> a tagger with --lm-features, which
    loads and tags the same after the LM files are gone, and resumes."""
    sents = ner_sentences(24, seed=3)
    (tmp_path / "ner.txt").write_text(column_text(sents))
    (tmp_path / "text.txt").write_text("\n".join(" ".join(w for w, _ in s) for s in sents) + "\n")
    run = CliRunner()
    lm = ["--hidden", "6", "--embedding", "4", "--layers", "1", "--seq-len", "16", "--max-steps", "3", "-q"]
    for name, extra in (("fwd", []), ("bwd", ["--reverse"])):
        r = run.invoke(cli, ["train", str(tmp_path / "text.txt"), "-o", str(tmp_path / f"{name}.npz"), *lm, *extra],
                       catch_exceptions=False)
        assert r.exit_code == 0, r.output
    assert charlm.load(tmp_path / "bwd.npz").reverse
    tag = ["train", "--task", "tag", str(tmp_path / "ner.txt"), "--hidden", "5", "--embedding", "4", "--layers",
           "1", "--char-hidden", "2", "--char-embedding", "3", "--batch-size", "8", "-q",
           "--lm-features", f"{tmp_path / 'fwd.npz'},{tmp_path / 'bwd.npz'}", "-o", str(tmp_path / "ner.npz")]
    r = run.invoke(cli, [*tag, "--max-steps", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    sentence = "Teddy Roosevelt visited Paris ."
    before = charlm.load(tmp_path / "ner.npz").tag(sentence)[0]
    lms = {d: charlm.load(tmp_path / f"{d}.npz").network.params for d in ("fwd", "bwd")}
    for name in ("fwd", "bwd", "fwd.last", "bwd.last"):
        (tmp_path / f"{name}.npz").unlink()
    tagger = charlm.load(tmp_path / "ner.npz")
    assert tagger.network.config.lm_feature_size == 12 and tagger.meta["lm_features"][1]["file"] == "bwd.npz"
    after = tagger.tag(sentence)[0]
    for d, params in lms.items():                                        # the LM files' contents, whole
        for k, v in params.items():
            np.testing.assert_array_equal(tagger.network.fixed[f"lm.{d}.{k}"], v)
    assert after.tags == before.tags and after.probs == before.probs
    r = run.invoke(cli, [*tag, "--max-steps", "5", "--resume"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert ckpt.load_checkpoint(last_path(tmp_path / "ner.npz"))[1]["train"]["step"] == 5

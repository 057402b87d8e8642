"""`charlm export`: ONNX Runtime running the exported graph gives charlm's outputs (float32, <= 1e-5) for
every kind of model, the ONNX checker passes, the metadata round-trips, and the README's example runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import regex
import pytest

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install 'charlm[export]'")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'charlm[export]'")

from charlm import checkpoint  # noqa: E402
from charlm.export import builders, onnxfile, recurrent  # noqa: E402
from charlm.export import check as checking  # noqa: E402
from charlm.lm.model import LanguageModel, ModelConfig  # noqa: E402
from charlm.nn import crf  # noqa: E402
from charlm.nn.layers import dense_forward  # noqa: E402
from charlm.sentence.batch import pad_sentences  # noqa: E402
from charlm.sentence.decode import tag_constraints  # noqa: E402
from charlm.sentence.encoder import Encoder  # noqa: E402
from charlm.sentence.network import TaggerConfig  # noqa: E402
from charlm.tasks import get  # noqa: E402
from charlm.tasks.lm import LM  # noqa: E402
from charlm.text.tokenizer import TokenizerConfig  # noqa: E402
from charlm.text.vocab import Vocab  # noqa: E402
from charlm.version import __version__  # noqa: E402

TOL = 1e-5
README = Path(__file__).resolve().parent.parent / "README.md"
CHARS = Vocab(["<UNK>", "<EOS>"] + list("abcdefghij\n"), [1] * 13, TokenizerConfig(level="char"))
WORDS = Vocab(["<UNK>", "<EOS>", "the", "cat", "Sat", "on", "a", "mat", "Paris"], [1] * 9,
              TokenizerConfig(level="word", lowercase=False))
LETTERS = Vocab(["<UNK>", "<EOS>"] + list("thecaSonmPris"), [1] * 15, TokenizerConfig(level="char"))
LABELS = ["B-LOC", "I-LOC", "O"]


def randomized(network, seed: int = 0):
    """Every parameter drawn at random (biases too: the tests must see every weight's place)."""
    rng = np.random.default_rng(seed)
    for k, v in network.params.items():
        network.params[k] = (0.5 * rng.standard_normal(v.shape)).astype(v.dtype)
    return network


def language_model(**settings) -> LM:
    settings = dict(dict(hidden=6, embedding=6, layers=1), **settings)
    return LM(randomized(LanguageModel(ModelConfig(vocab_size=len(CHARS), **settings))), CHARS, {})


def sentence_model(task: str, **settings):
    """A Tagger or Classifier (what charlm.load returns) of random weights."""
    settings = dict(dict(hidden=5, embedding=4, layers=2, char_embedding=3, char_hidden=3), **settings)
    config = TaggerConfig(task=task, vocab_size=len(WORDS), char_vocab_size=len(LETTERS), num_labels=3, **settings)
    kind = get(task)
    encoder = Encoder(kind.per_token, WORDS, LETTERS, LABELS, "IOB2" if kind.per_token else None)
    return kind.api_class(randomized(kind.network(config)), WORDS, dict(encoder.to_meta(), task=task), "", encoder)


def run(model, feeds: dict):
    proto = onnxfile.export_model(model)
    onnx.checker.check_model(proto, full_check=True)
    return checking.session(proto).run(None, feeds)


def largest(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# -- language models ------------------------------------------------------------------------------------------
LM_CASES = {
    "rnn-tanh": dict(cell="rnn"),
    "rnn-relu-2": dict(cell="rnn", activation="relu", layers=2),
    "gru-tied": dict(cell="gru", tie_weights=True),
    "gru-2": dict(cell="gru", layers=2),
    "lstm": dict(cell="lstm"),
    "lstm-2-tied": dict(cell="lstm", layers=2, tie_weights=True),
    "lstm-peephole": dict(cell="lstm", peephole=True),
    "lstm-peephole-2-tied": dict(cell="lstm", peephole=True, layers=2, tie_weights=True),
    "gru-2-float64": dict(cell="gru", layers=2, dtype="float64"),
}


@pytest.mark.parametrize("case", LM_CASES)
def test_a_language_model_scores_a_window_and_streams_as_charlm(case):
    loaded = language_model(**LM_CASES[case])
    model = loaded.network
    c = model.config
    proto = onnxfile.export_model(loaded)
    onnx.checker.check_model(proto, full_check=True)
    sess = checking.session(proto)
    names = ["a0", "c0"][:model.cell.n_states]
    rng = np.random.default_rng(1)
    # a window of T=6 tokens for B=3 streams, from a random state
    state = [tuple(rng.standard_normal((3, c.hidden)).astype(model.dtype) for _ in names) for _ in range(c.layers)]
    x = rng.integers(0, c.vocab_size, size=(6, 3))
    feeds = {n: np.stack([s[i] for s in state]).astype(np.float32) for i, n in enumerate(names)}
    out = sess.run(None, {"tokens": x, **feeds})
    lp, state = model.log_probs(x, state)
    got = out[0] - np.log(np.exp(out[0].astype(np.float64)).sum(-1, keepdims=True))
    assert out[0].shape == (6, 3, c.vocab_size)
    assert largest(got, lp) <= TOL
    for i, n in enumerate(names):
        assert out[1 + i].shape == (c.layers, 3, c.hidden)
        assert largest(out[1 + i], np.stack([s[i] for s in state])) <= TOL
    # streaming: one token at a time from the zero state, the state carried: logits as model.step's
    state = model.init_state(2)
    feeds = {n: np.zeros((c.layers, 2, c.hidden), np.float32) for n in names}
    for t in range(5):
        ids = rng.integers(0, c.vocab_size, size=2)
        out = sess.run(None, {"tokens": ids[None], **feeds})
        feeds = dict(zip(names, out[1:]))
        logits, state = model.step(ids, state)
        assert largest(out[0][0], logits) <= TOL
        for i, n in enumerate(names):
            assert largest(feeds[n], np.stack([s[i] for s in state])) <= TOL


# -- taggers and classifiers -----------------------------------------------------------------------------------
SENTENCE_CASES = {
    "tag-gru-chars": ("tag", dict(cell="gru")),
    "tag-lstm-no-chars-1": ("tag", dict(cell="lstm", char_hidden=0, layers=1)),
    "tag-rnn-relu-one-directional": ("tag", dict(cell="rnn", activation="relu", bidirectional=False)),
    "tag-lstm-peephole": ("tag", dict(cell="lstm", peephole=True)),
    "classify-last": ("classify", dict(cell="gru", pool="last")),
    "classify-mean-no-chars": ("classify", dict(cell="lstm", pool="mean", char_hidden=0)),
    "classify-max": ("classify", dict(cell="rnn", pool="max")),
    "classify-last-one-directional": ("classify", dict(cell="gru", pool="last", bidirectional=False)),
    "classify-peephole-max": ("classify", dict(cell="lstm", peephole=True, pool="max", layers=1)),
}


def padded_batch(rng, lengths):
    """A SentenceBatch of random words (ids and their spellings), padded to the longest."""
    words = [rng.integers(0, len(WORDS), size=n) for n in lengths]
    spell = [[LETTERS.encode(list(WORDS.tokens[i])).astype(np.int64) for i in s] for s in words]
    return pad_sentences(words, spell)


@pytest.mark.parametrize("case", SENTENCE_CASES)
def test_a_tagger_or_classifier_gives_charlm_logits_on_a_padded_batch(case):
    task, settings = SENTENCE_CASES[case]
    loaded = sentence_model(task, **settings)
    model = loaded.network
    batch = padded_batch(np.random.default_rng(2), [4, 1, 6, 3, 6])
    names = ["words", "lengths"] + (["chars", "char_lengths", "word_index"] if model.chars else [])
    logits = run(loaded, {n: getattr(batch, n) for n in names})[0]
    W, b = model.params["out.W"], model.params["out.b"]
    aligned = model._check(batch, need_labels=False)          # widened with dummy sentences
    if task == "tag":
        a, _ = model._encode(aligned, 0.0, None)
        ref = dense_forward(a.reshape(-1, a.shape[-1]), W, b).reshape(a.shape[:2] + (-1,))[:, :batch.size]
        real = batch.mask.astype(bool)
        assert logits.shape == (6, 5, 3)
        assert largest(logits[real], ref[real]) <= TOL
    else:
        pooled, _ = model._features(aligned, 0.0, None)
        assert logits.shape == (5, 3)
        assert largest(logits, dense_forward(pooled, W, b)[:batch.size]) <= TOL


def test_a_sentence_alone_and_in_a_padded_batch_get_the_same_scores():
    loaded = sentence_model("tag", cell="lstm")
    batch = padded_batch(np.random.default_rng(3), [2, 7, 4])
    alone = pad_sentences([batch.words[:2, 0]], [[LETTERS.encode(list(WORDS.tokens[i])) for i in batch.words[:2, 0]]])
    names = ["words", "lengths", "chars", "char_lengths", "word_index"]
    together = run(loaded, {n: getattr(batch, n) for n in names})[0]
    single = run(loaded, {n: getattr(alone, n) for n in names})[0]
    assert largest(together[:2, 0], single[:, 0]) <= 1e-6
    # the words need not be distinct: one spelling per real position (padding reads word 0)
    t, b = np.nonzero(batch.mask)
    spellings = [LETTERS.encode(list(WORDS.tokens[i])) for i in batch.words[t, b]]
    chars = np.zeros((max(map(len, spellings)), len(t)), dtype=np.int64)
    for k, s in enumerate(spellings):
        chars[:len(s), k] = s
    index = np.zeros_like(batch.word_index)
    index[t, b] = np.arange(len(t))
    feeds = dict(words=batch.words, lengths=batch.lengths, chars=chars,
                 char_lengths=np.array([len(s) for s in spellings]), word_index=index)
    assert len(t) > batch.chars.shape[1]                     # more words than distinct ones
    assert largest(run(loaded, feeds)[0][t, b], together[t, b]) <= 1e-6


# -- what the check and the metadata promise ---------------------------------------------------------------------
def test_the_check_catches_a_wrong_weight_mapping(monkeypatch):
    loaded = language_model(cell="gru", layers=2)
    assert onnxfile.check(onnxfile.export_model(loaded), loaded).largest <= TOL
    monkeypatch.setitem(recurrent.ONNX_GATES, "gru", ((1, 1), (0, 1), (2, 1)))   # z = Γu: the sign forgotten
    assert onnxfile.check(onnxfile.export_model(loaded), loaded).largest > 1e-2


@pytest.mark.parametrize("kind", ["lm", "tag", "classify"])
def test_the_metadata_round_trips(kind, tmp_path):
    loaded = language_model(cell="lstm", layers=2) if kind == "lm" else sentence_model(kind, cell="gru")
    path = tmp_path / "m.onnx"
    onnxfile.save(onnxfile.export_model(loaded), path)
    proto = onnx.load(str(path))
    meta = onnxfile.read_metadata(proto)
    assert meta["task"] == kind and meta["charlm_version"] == __version__
    assert meta["vocab"] == loaded.vocab.tokens and (meta["unk_id"], meta["eos_id"]) == (0, 1)
    assert TokenizerConfig.from_dict(meta["tokenizer"]) == loaded.vocab.tokenizer
    assert meta["model"] == loaded.network.config.to_dict()
    sess = checking.session(proto)
    assert meta["inputs"] == [i.name for i in sess.get_inputs()]
    assert meta["outputs"] == [o.name for o in sess.get_outputs()]
    assert sess.get_modelmeta().custom_metadata_map["vocab"] == proto.metadata_props[
        [p.key for p in proto.metadata_props].index("vocab")].value
    if kind == "lm":
        assert meta["inputs"] == ["tokens", "a0", "c0"] and meta["outputs"] == ["logits", "aT", "cT"]
        assert meta["token_pattern"] is None                       # characters: code points
    else:
        assert meta["labels"] == LABELS and meta["char_vocab"] == LETTERS.tokens
        assert meta["tag_scheme"] == ("IOB2" if kind == "tag" else None) and meta["max_word_chars"] == 32
        assert regex.findall(meta["token_pattern"], "the cat, 3.5") == ["the", "cat", ",", "3.5"]


@pytest.mark.parametrize("scheme", [None, "IOB2"])
def test_a_crf_tagger_exports_its_scores_and_transitions_and_viterbi_on_them_gives_charlm_tags(scheme):
    """The graph gives e<t> and A, s, f (−∞ where the scheme forbids); Viterbi over them is charlm's."""
    loaded = sentence_model("tag", cell="gru", crf=True)
    net = loaded.network
    if scheme:
        net.constraints = tag_constraints(LABELS, scheme)
        net.params["out.b"][LABELS.index("I-LOC")] += 3.0         # a forbidden start would be chosen if allowed
    batch = padded_batch(np.random.default_rng(4), [4, 1, 6, 3])
    names = ["words", "lengths", "chars", "char_lengths", "word_index"]
    logits, A, s, f = run(loaded, {n: getattr(batch, n) for n in names})
    assert np.isneginf(A).any() == bool(scheme) and np.isneginf(s).any() == bool(scheme)
    paths, _ = crf.viterbi(logits.astype(np.float64), batch.lengths, A, s, f)
    _, expected = net.crf_decode(batch)
    for b, tags in enumerate(expected):
        assert list(paths[:len(tags), b]) == list(tags)
    assert any(len(t) for t in expected)
    check = onnxfile.check(onnxfile.export_model(loaded), loaded)
    assert check.largest <= TOL and "log-marginals" in check.parts


def save_model(path: Path, loaded) -> Path:
    meta = dict(loaded.meta, kind="best", task=loaded.task, model=loaded.network.config.to_dict(),
                vocab=loaded.vocab.to_dict(), train={})
    checkpoint.save_checkpoint(path, checkpoint.model_arrays(loaded.network), meta)
    return path


@pytest.mark.parametrize("kind", ["lm", "tag", "classify"])
def test_the_command_writes_checks_and_replaces_its_own_file(kind, run, tmp_path):
    loaded = language_model(cell="lstm", peephole=True) if kind == "lm" else sentence_model(kind, cell="gru")
    model = save_model(tmp_path / "m.npz", loaded)
    for _ in range(2):                                          # the second run replaces its own export
        r = run("export", "-m", model)
        assert r.exit_code == 0, r.output
        found = re.search(r"largest absolute difference (\S+)", r.stdout)
        assert found and float(found.group(1)) <= TOL, r.stdout
        assert "wrote" in r.stderr and (tmp_path / "m.onnx").exists()
    r = run("export", "-m", model, "-o", tmp_path / "other.onnx", "--no-check")
    assert r.exit_code == 0 and r.stdout == "" and (tmp_path / "other.onnx").exists()
    onnx.checker.check_model(str(tmp_path / "other.onnx"))


# -- the README's example ----------------------------------------------------------------------------------------------
def readme_blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Using a model elsewhere\n")
    end = text.find("\n## ", start + 1)
    return re.findall(rf"```{lang}\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


def test_the_readme_example_runs(run, tmp_path, monkeypatch, data_dir, capsys):
    import charlm

    shutil.copy(data_dir / "dinos.txt", tmp_path / "dinos.txt")
    monkeypatch.chdir(tmp_path)
    charlm.train("dinos.txt", output="dinos.npz", mode="lines", lowercase=True, hidden=16, embedding=8, layers=1,
                 max_steps=30, seq_len=16)                # the quick start's dinosaur names, briefly
    commands = [line for block in readme_blocks("bash") for line in block.splitlines()
                if line.startswith("charlm export")]
    assert commands
    for line in commands:
        r = run(*line.split("#")[0].split()[1:])
        assert r.exit_code == 0, r.output
    blocks = readme_blocks("python")
    assert blocks
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md export block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    lm = charlm.load("dinos.npz")
    expected = lm.score(["tyrannosaurus"])[0].logprob
    assert abs(namespace["logprob"] - expected) <= 1e-4, (namespace["logprob"], expected)
    assert all(ch in namespace["index"] for ch in namespace["name"])
    assert "tyrannosaurus" in out

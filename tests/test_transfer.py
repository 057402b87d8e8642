"""Starting a tagger or classifier from a charlm language model (`--init-from LM.npz`, charlm.tasks.transfer)
and holding what it took still (`--freeze-epochs N`): what is copied where, every refusal, frozen
parameters that do not move while the others do, an exact resume, and Adam's step count of a
parameter that joins late (charlm.engine.optim). And a language model fine-tuned from another
(`charlm train --init-from LM.npz`, charlm.tasks.lm.fine_tune_from): what it takes, its refusals."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from click.testing import CliRunner

from charlm import checkpoint as ckpt
from charlm.cli import cli
from charlm.engine.optim import Adam
from charlm.engine.run import last_path
from charlm.errors import CheckpointError, UsageError
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.sentence.network import ClassifierNetwork, TaggerConfig, TaggerNetwork
from charlm.tasks import load as load_model
from charlm.tasks.lm import fine_tune_from
from charlm.tasks.training import TrainOptions, train
from charlm.tasks.transfer import frozen_names, init_from_lm
from charlm.text.tokenizer import TokenizerConfig
from charlm.text.vocab import Vocab
from tasksdata import classification_text, column_text, ner_sentences
from test_train import KillAt

H, E = 6, 5


def save_lm(path, tokens, level="word", lowercase=False, **settings):
    """A language model over `tokens` with random parameters, written as `charlm train` writes one."""
    vocab = Vocab.from_counts({t: 100 - i for i, t in enumerate(tokens)},
                              tokenizer=TokenizerConfig(level=level, lowercase=lowercase))
    config = ModelConfig(**{"vocab_size": len(vocab), "cell": "lstm", "layers": 2, "hidden": H, "embedding": E,
                            **settings})
    lm = LanguageModel(config, seed=4)
    rng = np.random.default_rng(5)
    for v in lm.params.values():                      # away from any initialisation (biases included)
        v += rng.normal(0, 0.1, v.shape).astype(v.dtype)
    ckpt.save_checkpoint(path, ckpt.model_arrays(lm), {"kind": "best", "task": "lm", "model": config.to_dict(),
                                                       "vocab": vocab.to_dict()})
    return lm, vocab


def sentence_model(task="tag", tokens=("Paris", "visited", "Zork"), **settings):
    vocab = Vocab.from_counts({t: 10 for t in tokens}, tokenizer=TokenizerConfig(level="word"))
    config = TaggerConfig(**{"task": task, "vocab_size": len(vocab), "char_vocab_size": 7, "num_labels": 3,
                             "layers": 2, "hidden": H, "embedding": E, "char_embedding": 3, "char_hidden": 2,
                             **settings})
    return (TaggerNetwork if task == "tag" else ClassifierNetwork)(config, seed=1), vocab


@pytest.mark.parametrize("task,settings", [("tag", {}), ("tag", {"bidirectional": False, "layers": 1}),
                                           ("classify", {"char_hidden": 0, "crf": False})])
def test_what_is_copied_where(tmp_path, task, settings):
    lm, lm_vocab = save_lm(tmp_path / "lm.npz", ["visited", "Paris", "London", "the"])
    model, vocab = sentence_model(task, **settings)
    fresh = {k: v.copy() for k, v in model.params.items()}
    note = init_from_lm(model, vocab, str(tmp_path / "lm.npz"))
    assert "the embeddings of 2 of 3 words" in note
    p, q = model.params, lm.params
    for token in ("<UNK>", "<EOS>", "Paris", "visited"):
        np.testing.assert_array_equal(p["embed.W"][vocab.index[token]], q["embed.W"][lm_vocab.index[token]])
    np.testing.assert_array_equal(p["embed.W"][vocab.index["Zork"]], fresh["embed.W"][vocab.index["Zork"]])
    fwd = "fwd." if model.config.bidirectional else ""
    for l in range(model.config.layers):
        W, W_lm = p[f"rnn.{l}.{fwd}W"], q[f"rnn.{l}.W"]
        np.testing.assert_array_equal(W[:W_lm.shape[0]], W_lm)               # [a<t-1>, the LM's inputs]
        np.testing.assert_array_equal(W[W_lm.shape[0]:], fresh[f"rnn.{l}.{fwd}W"][W_lm.shape[0]:])
        np.testing.assert_array_equal(p[f"rnn.{l}.{fwd}b"], q[f"rnn.{l}.b"])
    changed = {k for k in p if not np.array_equal(p[k], fresh[k])}
    assert changed == set(frozen_names(model))                 # nothing else: backward, chars, output
    assert all(k == "embed.W" or k.startswith("rnn.") and ".bwd." not in k for k in changed)


@pytest.mark.parametrize("lm_kw,model_kw,needle", [
    ({"level": "char"}, {}, "is a char-level language model; the tagger reading words"),
    ({"lowercase": True}, {}, "was trained with --lowercase"),
    ({"hidden": 8}, {}, "the language model's hidden is 8, the tagger's 6: train the tagger with --hidden 8"),
    ({"embedding": 4}, {}, "embedding is 4"),
    ({"cell": "gru"}, {}, "cell is gru, the tagger's lstm: train the tagger with --cell gru"),
    ({"peephole": True}, {}, "both with or both without --peephole"),
    ({"layers": 1}, {}, "has 1 layer(s), fewer than the 2 of the tagger: use --layers 1"),
    ({"tokens": ["a", "b"]}, {}, "no token of the training data"),
])
def test_mismatches_are_refused(tmp_path, lm_kw, model_kw, needle):
    tokens = lm_kw.pop("tokens", ["Paris", "visited"])
    save_lm(tmp_path / "lm.npz", tokens, **lm_kw)
    model, vocab = sentence_model(**model_kw)
    with pytest.raises(UsageError) as err:
        init_from_lm(model, vocab, str(tmp_path / "lm.npz"))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_tagger_or_a_missing_file_is_not_a_language_model(tmp_path):
    model, vocab = sentence_model()
    with pytest.raises(CheckpointError, match="--init-from: .*no such model file"):
        init_from_lm(model, vocab, str(tmp_path / "none.npz"))
    ckpt.save_checkpoint(tmp_path / "t.npz", ckpt.model_arrays(model),
                         {"kind": "best", "task": "tag", "model": model.config.to_dict(), "vocab": vocab.to_dict(),
                          "char_vocab": None, "labels": ["A", "B", "C"]})
    with pytest.raises(UsageError, match="is not a language model \\(task tag\\)"):
        init_from_lm(model, vocab, str(tmp_path / "t.npz"))


# -- a language model from a language model (fine-tuning) -------------------------------------------------
def new_lm(tokens=("Paris", "Zork", "the"), **settings):
    vocab = Vocab.from_counts({t: 10 for t in tokens}, tokenizer=TokenizerConfig(level="word"))
    config = ModelConfig(**{"vocab_size": len(vocab), "cell": "lstm", "layers": 2, "hidden": H, "embedding": E,
                            **settings})
    return LanguageModel(config, seed=1), vocab


@pytest.mark.parametrize("settings", [{}, {"tie_weights": True, "embedding": H}])
def test_a_language_model_fine_tuned_from_another(tmp_path, settings):
    lm, lm_vocab = save_lm(tmp_path / "lm.npz", ["visited", "London", "the", "Paris"], **settings)
    model, vocab = new_lm(**settings)
    fresh = {k: v.copy() for k, v in model.params.items()}
    note = fine_tune_from(model, vocab, str(tmp_path / "lm.npz"))
    assert "its 2 recurrent layer(s), and the embeddings and output weights of 2 of the corpus's 3 words" in note
    p, q = model.params, lm.params
    assert vocab.index["Paris"] != lm_vocab.index["Paris"]               # the rows are mapped, not copied in place
    for token in ("<UNK>", "<EOS>", "Paris", "the"):
        i, j = vocab.index[token], lm_vocab.index[token]
        np.testing.assert_array_equal(p["embed.W"][i], q["embed.W"][j])
        np.testing.assert_array_equal(p["out.b"][i], q["out.b"][j])
        if "out.W" in p:
            np.testing.assert_array_equal(p["out.W"][:, i], q["out.W"][:, j])
    z = vocab.index["Zork"]
    np.testing.assert_array_equal(p["embed.W"][z], fresh["embed.W"][z])
    np.testing.assert_array_equal(p["out.b"][z], fresh["out.b"][z])
    if "out.W" in p:
        np.testing.assert_array_equal(p["out.W"][:, z], fresh["out.W"][:, z])
    rnn = [k for k in p if k.startswith("rnn.")]
    assert len(rnn) == len([k for k in q if k.startswith("rnn.")]) > 0
    for k in rnn:
        np.testing.assert_array_equal(p[k], q[k])


@pytest.mark.parametrize("lm_kw,model_kw,needle", [
    ({"level": "char"}, {}, "is a char-level language model; the new model reading words needs a word-level one"),
    ({"lowercase": True}, {}, "was trained with --lowercase; train the new model the same way"),
    ({"hidden": 8}, {}, "the language model's hidden is 8, the new model's 6: train the new model with --hidden 8"),
    ({"layers": 1}, {}, "the language model's layers is 1, the new model's 2: train the new model with --layers 1"),
    ({}, {"layers": 1}, "the language model's layers is 2, the new model's 1: train the new model with --layers 2"),
    ({"tie_weights": True, "embedding": H}, {"embedding": H}, "both with or both without --tie-weights"),
    ({"reverse": True}, {}, "both with or both without --reverse"),
    ({"tokens": ["a", "b"]}, {}, "no token of the corpus is in the language model's vocabulary"),
])
def test_fine_tuning_mismatches_are_refused(tmp_path, lm_kw, model_kw, needle):
    save_lm(tmp_path / "lm.npz", lm_kw.pop("tokens", ["Paris", "the"]), **lm_kw)
    model, vocab = new_lm(**model_kw)
    with pytest.raises(UsageError) as err:
        fine_tune_from(model, vocab, str(tmp_path / "lm.npz"))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_cli_fine_tuned_language_model_starts_where_the_first_ended(tmp_path):
    """charlm train A; charlm train --init-from A on the same text: before it has learnt anything
    (one step at a negligible rate) it scores the validation text as A does, far better than a
    fresh model; then it trains on as any run does."""
    text = "\n".join(" ".join(w for w, _ in s) for s in ner_sentences(60, seed=3)) + "\n"
    (tmp_path / "text.txt").write_text(text)
    run = CliRunner()
    sizes = ["--level", "word", "--cell", "lstm", "--layers", "1", "--hidden", "8", "--embedding", "6",
             "--seq-len", "8", "--batch-size", "4", "--val-fraction", "0.2"]

    def train(name, *extra):
        r = run.invoke(cli, ["train", str(tmp_path / "text.txt"), "-o", str(tmp_path / f"{name}.npz"), *sizes,
                             *extra], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r, load_model(str(tmp_path / f"{name}.npz")).evaluate(tmp_path / "text.txt").nats_per_token

    _, first = train("a", "--max-steps", "150", "--lr", "1e-2")
    r, fine = train("b", "--init-from", str(tmp_path / "a.npz"), "--max-steps", "1", "--lr", "1e-9")
    assert "initialised from" in r.stderr and "its 1 recurrent layer(s)" in r.stderr
    _, fresh = train("c", "--max-steps", "1", "--lr", "1e-9")
    assert fine == pytest.approx(first, rel=1e-4) and fine < fresh - 0.5
    _, more = train("d", "--init-from", str(tmp_path / "a.npz"), "--max-steps", "20", "--lr", "1e-2")
    assert more < fresh


# -- the engine: freezing and resuming -------------------------------------------------------------------
SMALL = dict(cell="lstm", layers=1, hidden=H, embedding=E, char_embedding=3, char_hidden=2, dropout=0.1)


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    d = tmp_path_factory.mktemp("transfer")
    sents = ner_sentences(40, seed=1)
    (d / "ner.txt").write_text(column_text(sents))
    save_lm(d / "lm.npz", sorted({w for s in sents for w, _ in s}), layers=1)
    return d


def opts(d, out, **kw):
    base = dict(corpus=str(d / "ner.txt"), output=str(out), task="tag",
                tokenizer=TokenizerConfig(level="word").to_dict(), model=dict(SMALL), batch_size=8, lr=0.01,
                epochs=3, eval_every=4, seed=3, init_from=str(d / "lm.npz"), freeze_epochs=1, val_fraction=0.2)
    base.update(kw)
    return TrainOptions(**base)


def params_of(path) -> dict:
    return {k[len("param/"):]: v for k, v in ckpt.load_checkpoint(path)[0].items() if k.startswith("param/")}


def test_frozen_params_do_not_move_in_the_frozen_epochs_and_resume_is_exact(ner, tmp_path):
    lm = params_of(ner / "lm.npz")
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    per_epoch = 4                                     # 32 training sentences, 8 a batch
    one = opts(ner, tmp_path / "a/m.npz", max_steps=per_epoch)
    assert train(one)["epoch"] == 1
    at_one = params_of(last_path(one.output))
    model = load_model(one.output).network
    frozen = frozen_names(model)
    assert frozen == ["embed.W", "rnn.0.fwd.W", "rnn.0.fwd.b"]
    np.testing.assert_array_equal(at_one["rnn.0.fwd.W"][:H + E], lm["rnn.0.W"])   # still the LM's
    np.testing.assert_array_equal(at_one["rnn.0.fwd.b"], lm["rnn.0.b"])
    # the same run without freezing has moved them; the unfrozen ones moved in both
    free = opts(ner, tmp_path / "c/m.npz", max_steps=per_epoch, freeze_epochs=0)
    train(free)
    at_one_free = params_of(last_path(free.output))
    assert not np.array_equal(at_one_free["rnn.0.fwd.W"], at_one["rnn.0.fwd.W"])
    fresh_bwd = TaggerNetwork(model.config, seed=3).params["rnn.0.bwd.W"]
    assert not np.array_equal(at_one["rnn.0.bwd.W"], fresh_bwd)

    # straight through 2.5 epochs, against a run killed in its frozen epoch and resumed
    straight = opts(ner, tmp_path / "a/m.npz", max_steps=10)
    assert train(straight, resume=True)["step"] == 10
    broken = opts(ner, tmp_path / "b/m.npz", max_steps=10)
    assert train(broken, reporter=KillAt(2, signal.SIGINT))["step"] == 2
    assert train(opts(ner, tmp_path / "b/m.npz", max_steps=10), resume=True)["step"] == 10
    a, b = params_of(last_path(straight.output)), params_of(last_path(broken.output))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["rnn.0.fwd.W"], at_one["rnn.0.fwd.W"])         # moving after epoch 1
    _, meta = ckpt.load_checkpoint(last_path(straight.output))
    assert meta["train"]["optimizer"]["first"] == {k: per_epoch + 1 for k in frozen}


def test_adam_counts_a_late_parameters_steps_from_its_first_update():
    """A parameter that joins at step 5 moves exactly as under a fresh Adam; the count survives
    state_dict/load_state_dict; state without the record (older files) starts every parameter at 1."""
    rng = np.random.default_rng(0)
    grads = [{"a": rng.normal(size=3), "b": rng.normal(size=4)} for _ in range(9)]
    params = {"a": np.zeros(3), "b": np.ones(4)}
    opt = Adam(0.01)
    for t, g in enumerate(grads):
        opt.step(params, g if t >= 4 else {"a": g["a"]})
        if t == 5:
            scalars, arrays = opt.state_dict()
            assert scalars["first"] == {"b": 5}
            opt = Adam(0.01)
            opt.load_state_dict(scalars, arrays)
    alone, fresh = {"b": np.ones(4)}, Adam(0.01)
    for g in grads[4:]:
        fresh.step(alone, {"b": g["b"]})
    np.testing.assert_array_equal(params["b"], alone["b"])
    old = Adam(0.01)
    scalars, arrays = opt.state_dict()
    del scalars["first"]
    old.load_state_dict(scalars, arrays)
    assert old.first == {"a": 1, "b": 1}


# -- through the command line ----------------------------------------------------------------------------
def test_cli_language_model_then_tagger_and_classifier(tmp_path):
    """charlm train (word LM, LSTM) -> charlm train --task tag|classify --init-from --freeze-epochs -> tag/classify."""
    sents = ner_sentences(30, seed=2)
    (tmp_path / "ner.txt").write_text(column_text(sents))
    (tmp_path / "cls.tsv").write_text(classification_text(40, seed=1))
    text = "\n".join(" ".join(w for w, _ in s) for s in sents) + "\n" + \
        "\n".join(line.split("\t", 1)[1] for line in classification_text(40, seed=2).splitlines()) + "\n"
    (tmp_path / "text.txt").write_text(text)
    run = CliRunner()
    sizes = ["--cell", "lstm", "--layers", "1", "--hidden", "6", "--embedding", "5", "-q"]
    r = run.invoke(cli, ["train", str(tmp_path / "text.txt"), "--level", "word", "--seq-len", "8", "--max-steps", "3",
                         "-o", str(tmp_path / "lm.npz"), *sizes], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for task, data, use in (("tag", "ner.txt", ["tag", "Teddy Roosevelt visited Paris ."]),
                            ("classify", "cls.tsv", ["classify", "a fine film"])):
        r = run.invoke(cli, ["train", "--task", task, str(tmp_path / data), "--init-from", str(tmp_path / "lm.npz"),
                             "--freeze-epochs", "1", "--char-hidden", "2", "--char-embedding", "3", "--batch-size",
                             "8", "--max-steps", "6", "-o", str(tmp_path / f"{task}.npz"), *sizes[:-1]],
                       catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert "initialised from" in r.stderr and "forward recurrent layers 1-1 of its 1" in r.stderr
        r = run.invoke(cli, [*use[:1], "-m", str(tmp_path / f"{task}.npz"), *use[1:]], catch_exceptions=False)
        assert r.exit_code == 0 and r.stdout.strip(), r.output

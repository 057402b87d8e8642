"""The AWD-LSTM regularisers (locked dropout, embedding dropout, weight drop: charlm.nn.regularize)
and averaged SGD (--optimizer asgd): float64 gradient checks of the whole model with the masks
fixed, what each mask drops, exact resume, the command line, and two processes training as one."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from click.testing import CliRunner

from charlm import checkpoint as ckpt
from charlm.cli import cli
from charlm.engine.optim import ASGD, make_optimizer
from charlm.engine.parallel import SingleProcess
from charlm.engine.run import last_path
from charlm.errors import CharlmError
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.tasks import load as load_model
from charlm.tasks.training import TrainOptions, start, train
from test_model import MODEL_IDS, MODELS, data, grad_check_model, make, random_state
from test_mpi import arrays_of, needs_mpi, relative_difference, train_job, train_one
from test_train import TEXT, KillAt, assert_same_params, params_of

REGULARISERS = {  # each with the plain dropout it names (ModelConfig's default is 0.1)
    "locked": dict(dropout=0.3, dropout_kind="locked"),
    "embedding": dict(dropout=0.0, embedding_dropout=0.4),
    "weight-drop": dict(dropout=0.0, weight_drop=0.5),
    "all-tied": dict(dropout=0.3, dropout_kind="locked", embedding_dropout=0.4, weight_drop=0.5, tie_weights=True),
}
ALL = dict(dropout=0.2, dropout_kind="locked", embedding_dropout=0.2, weight_drop=0.3)


@pytest.mark.parametrize("regs", REGULARISERS.values(), ids=REGULARISERS)
@pytest.mark.parametrize("cell", [MODELS[i] for i in (0, 2, 3, 4)], ids=[MODEL_IDS[i] for i in (0, 2, 3, 4)])
def test_model_gradients_with_each_regulariser(cell, regs):
    """Relative error < 1e-6 for every parameter and the initial state, with masks that do drop."""
    m = make(**cell, **regs)
    x, y = data()
    x[0, :] = x[1, 0]  # a token seen several times: embedding dropout drops it everywhere or nowhere
    grad_check_model(m, x, y, random_state(m), train=True)
    cache = m.loss(x, y, random_state(m), train=True, rng=np.random.default_rng(3))[2]
    (m_emb, m_in), (_, m_w) = cache[1], cache[2]
    for mask, rate in ((m_emb, regs.get("embedding_dropout", 0.0)), (m_in, regs["dropout"])):
        assert (mask is None) == (rate == 0.0)
        if mask is not None:
            assert set(np.unique(mask)) <= {0.0, 1 / (1 - rate)} and (mask == 0).any() and (mask > 0).any()
    assert (m_w is None) == ("weight_drop" not in regs)
    if m_w is not None:
        assert all(M.shape == m.params["rnn.0.W"][:4].shape and (M == 0).any() for M in m_w)


def test_locked_masks_are_one_per_stream_and_unit_for_every_step():
    m = make(cell="lstm", dropout=0.5, dropout_kind="locked")
    x, y = data(T=6)
    _, _, cache = m.loss(x, y, m.init_state(3), train=True, rng=np.random.default_rng(0))
    (_, m_in), rnn_masks, m_out = cache[1], cache[3][1], cache[4]
    for mask in (m_in, rnn_masks[1], m_out):
        assert mask.shape == (1, 3, 4) and (mask == 0).any()
    assert rnn_masks[0] is None  # no dropout on the recurrent connection or below layer 0's input


def test_embedding_dropout_drops_whole_words_and_weight_drop_is_the_product_with_the_weights():
    """A dropped word's embedding is zero wherever it occurs; the loss with weight drop is the loss
    of the model whose recurrent rows are W_a ⊙ M (the input rows, b and P untouched)."""
    m = make(cell="lstm", peephole=True, dropout=0.0, embedding_dropout=0.5)
    x, y = data(T=8)
    state = m.init_state(3)
    m_emb = m.loss(x, y, state, train=True, rng=np.random.default_rng(1))[2][1][0][..., 0]
    for token in np.unique(x):
        assert len(set(m_emb[x == token])) == 1
    assert (m_emb == 0).any() and (m_emb == 2).any()

    wd = make(cell="gru", dropout=0.0, weight_drop=0.5)
    loss, _, cache = wd.loss(x, y, wd.init_state(3), train=True, rng=np.random.default_rng(2))
    masks = cache[2][1]
    plain = LanguageModel(ModelConfig(**{**wd.config.to_dict(), "weight_drop": 0.0}),
                          params={k: v.copy() for k, v in wd.params.items()})
    for l, M in enumerate(masks):
        plain.params[f"rnn.{l}.W"][:4] *= M
    assert loss == pytest.approx(plain.loss(x, y, plain.init_state(3))[0], rel=1e-12)
    assert wd.loss(x, y, wd.init_state(3))[0] != pytest.approx(loss)  # evaluation: no weight drop


def test_off_by_default_and_old_settings_load():
    config = ModelConfig.from_dict({"vocab_size": 5, "cell": "gru"})  # a checkpoint written before the options
    assert (config.dropout_kind, config.embedding_dropout, config.weight_drop) == ("standard", 0.0, 0.0)
    for bad in ({"dropout_kind": "zoneout"}, {"weight_drop": 1.0}, {"embedding_dropout": -0.1}):
        with pytest.raises(CharlmError, match="dropout_kind|weight_drop|embedding_dropout"):
            ModelConfig(vocab_size=5, **bad)


# -- averaged SGD -----------------------------------------------------------------------------------


def test_asgd_is_sgd_until_a_plateau_then_averages_the_weights_it_steps_through():
    rng = np.random.default_rng(0)
    p, q = {"w": rng.normal(size=(3, 4))}, {"w": None}
    q["w"] = p["w"].copy()
    asgd, sgd = ASGD(0.1), make_optimizer("sgd", 0.1)
    grads = [{"w": rng.normal(size=(3, 4))} for _ in range(5)]
    for g in grads[:2]:
        asgd.step(p, g), sgd.step(q, g)
    assert np.array_equal(p["w"], q["w"]) and not asgd.state.get("ax")
    with asgd.evaluated(p):
        assert np.array_equal(p["w"], q["w"])  # not averaging yet: the weights themselves
    assert asgd.plateau(p) and not asgd.plateau(p)  # starts once; later plateaus decay the rate
    seen = [p["w"].copy()]
    for g in grads[2:]:
        asgd.step(p, g), sgd.step(q, g)
        seen.append(p["w"].copy())
    assert np.array_equal(p["w"], q["w"])  # the iterate is SGD's
    kept = p["w"].copy()
    with asgd.evaluated(p):
        np.testing.assert_allclose(p["w"], np.mean(seen, axis=0), rtol=1e-12)
    assert np.array_equal(p["w"], kept)  # put back exactly
    scalars, arrays = asgd.state_dict()
    again = make_optimizer("asgd", 1.0)
    again.load_state_dict(scalars, arrays)
    asgd.step(p, grads[0])
    r = {"w": kept.copy()}
    again.step(r, grads[0])
    assert np.array_equal(r["w"], p["w"]) and np.array_equal(again.state["ax"]["w"], asgd.state["ax"]["w"])


# -- training: resume, evaluation of the average, command line ------------------------------------


def options(corpus, out, **kw) -> TrainOptions:
    base = dict(corpus=str(corpus), output=str(out), tokenizer={"level": "char"},
                model=dict(cell="lstm", layers=2, hidden=16, embedding=8, **ALL),
                seq_len=12, batch_size=4, lr=5e-3, epochs=3, eval_every=5, seed=3)
    base.update(kw)
    return TrainOptions(**base)


def word_options(corpus, out, **kw) -> TrainOptions:
    """Word level, lines, a tied GRU with every regulariser; ASGD at a learning rate that plateaus early."""
    base = dict(tokenizer={"level": "word"}, optimizer="asgd", lr=10.0, eval_every=3, patience=20,
                model=dict(cell="gru", layers=2, hidden=8, embedding=8, tie_weights=True, **ALL))
    return options(corpus, out, **{**base, **kw})


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


@pytest.mark.parametrize("make_opts", [options, word_options], ids=["char-lstm", "word-gru-asgd"])
def test_interrupted_and_resumed_equals_uninterrupted(corpus, tmp_path, make_opts):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    train(make_opts(corpus, tmp_path / "a" / "m.npz", max_steps=30))
    assert train(make_opts(corpus, tmp_path / "b" / "m.npz", max_steps=30),
                 reporter=KillAt(13, signal.SIGINT))["step"] == 13
    at_13 = ckpt.load_checkpoint(last_path(tmp_path / "b" / "m.npz"))[1]["train"]["optimizer"]
    assert train(make_opts(corpus, tmp_path / "b" / "m.npz", max_steps=30), resume=True)["step"] == 30
    for path in (last_path, str):
        assert_same_params(params_of(path(tmp_path / "a" / "m.npz")), params_of(path(tmp_path / "b" / "m.npz")))
    meta = ckpt.load_checkpoint(last_path(tmp_path / "b" / "m.npz"))[1]
    assert {k: meta["model"][k] for k in ALL} == ALL
    if make_opts is word_options:  # averaging had started before the interruption, and went on
        assert at_13["averaged_steps"] > 1
        assert meta["train"]["optimizer"]["averaged_steps"] == at_13["averaged_steps"] + 30 - 13


def test_asgd_evaluates_and_saves_the_average(corpus, tmp_path):
    """Each evaluation after averaging began is the loss of the averaged weights of the last file,
    not of its SGD iterate; the model at -o is the one whose loss is the best recorded."""
    opts = word_options(corpus, tmp_path / "m.npz", max_steps=30)
    summary = train(opts)
    arrays, meta = ckpt.load_checkpoint(last_path(opts.output))
    assert meta["train"]["optimizer"]["averaged_steps"] > 1
    run = start(opts)
    model = run.model

    def val_loss(params: dict) -> float:
        model.params = {k: np.asarray(v, dtype=model.dtype) for k, v in params.items()}
        return run.validation.evaluate(model, SingleProcess()).loss

    average = {k[len("optim/ax."):]: v for k, v in arrays.items() if k.startswith("optim/ax.")}
    iterate = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    assert average.keys() == iterate.keys() == model.params.keys()
    last = meta["train"]["metrics"][-1]
    assert last["step"] == 30 and val_loss(average) == pytest.approx(last["val_loss"], rel=1e-12)
    assert val_loss(iterate) != pytest.approx(last["val_loss"], rel=1e-6)
    best = load_model(opts.output).network
    assert val_loss(best.params) == pytest.approx(summary["best_val_loss"], rel=1e-12)


def test_cli_options_reach_the_model_and_bad_ones_are_one_line(corpus, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m.npz"
    args = ["train", str(corpus), "-o", str(out), "--hidden", "8", "--embedding", "4", "--seq-len", "8",
            "--batch-size", "4", "--max-steps", "6", "--eval-every", "3", "-q"]
    r = runner.invoke(cli, [*args, "--dropout-kind", "locked", "--embedding-dropout", "0.1", "--weight-drop",
                            "0.25", "--optimizer", "asgd"])
    assert r.exit_code == 0, r.output
    model = load_model(out)
    c, meta = model.network.config, model.meta
    assert (c.dropout_kind, c.embedding_dropout, c.weight_drop) == ("locked", 0.1, 0.25)
    assert meta["train"]["options"]["optimizer"] == "asgd"
    r = runner.invoke(cli, [*args, "--resume", "--weight-drop", "0.5"])  # a resumed run keeps its regularisers
    assert r.exit_code == 2 and "--weight-drop 0.5 differs from the run's 0.25" in r.output, r.output
    for bad, needle in ((["--weight-drop", "1"], "--weight-drop"), (["--dropout-kind", "zoneout"], "--dropout-kind"),
                        (["--task", "tag", "--embedding-dropout", "0.1"],
                         "--embedding-dropout applies to --task lm, not to a tagger"),
                        (["--task", "classify", "--dropout-kind", "locked"],
                         "--dropout-kind applies to --task lm, not to a classifier"),
                        (["--task", "tag", "--weight-drop", "0"], "--weight-drop applies to --task lm")):
        r = runner.invoke(cli, [*args, "--force", *bad])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output
    help_text = runner.invoke(cli, ["train", "--help"]).output
    assert all(f in help_text for f in ("--dropout-kind", "--embedding-dropout", "--weight-drop", "asgd"))


# -- data-parallel --------------------------------------------------------------------------------


@needs_mpi
def test_two_processes_train_as_one_with_every_regulariser_and_asgd(tmp_path, corpus):
    """Locked masks cut by columns, embedding and weight-drop masks the same on both processes:
    float64 parameters (and the average) after 20 steps agree with one process's to 1e-6."""
    model = dict(cell="lstm", layers=2, hidden=16, embedding=8, dtype="float64", **ALL)
    kw = dict(tokenizer={"level": "char"}, model=model, seq_len=12, batch_size=5, optimizer="asgd", lr=5.0,
              epochs=5, eval_every=3, seed=3, max_steps=20)
    one = dict(corpus=str(corpus), output=str(tmp_path / "one.npz"), **kw)
    two = dict(corpus=str(corpus), output=str(tmp_path / "two.npz"), **kw)
    losses = train_one(one)
    result = train_job(2, two, tmp_path)
    assert len(result["losses"]) == len(losses) == 20
    a, b = arrays_of(last_path(two["output"])), arrays_of(last_path(one["output"]))
    assert a.keys() == b.keys() and any(k.startswith("optim/ax.") for k in a)
    for k in a:
        assert relative_difference(a[k], b[k]) < 1e-6, k

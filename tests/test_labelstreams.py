"""The stream form of the conditional language model (charlm.lm.labelstreams, `charlm train --condition
--mode stream`): the layout of each label's running text in windows, the gradient of a window whose
rows restart from their label or continue from the carried state, the validation against `charlm
score --stream` and `charlm eval`, an exact resume, and the lines form's memory refusal."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from charlm import checkpoint as ckpt
from charlm.engine import memory
from charlm.engine.parallel import SingleProcess
from charlm.engine.run import last_path
from charlm.errors import UsageError
from charlm.lm.labelled import LabelledLines
from charlm.lm.labelstreams import LabelStreamValidation, lay_out, running_sums, running_texts
from charlm.tasks import get, load
from charlm.tasks.training import TrainOptions, train
from gradcheck import check_grad
from test_condlm import C, V, make
from test_train import KillAt

NAMES = ["tyrannosaurus", "stegosaurus", "velociraptor", "triceratops", "brachiosaurus", "iguanodon",
         "allosaurus", "ankylosaurus", "diplodocus", "pachycephalosaurus", "spinosaurus", "microraptor"]
TSV = "".join(f"{'saurus' if n.endswith('saurus') else 'other'}\t{n}\n" for n in NAMES)


def test_layout_of_the_running_texts():
    """Label 0's windows, then label 1's and 2's, cut into contiguous rows of R or R - 1 windows;
    a segment starts at window 0 of every row and where the label changes, each row's windows
    read back in order give the running texts, and only the real predictions are masked in."""
    streams = [np.arange(10, 10 + n) for n in (8, 3, 12)]          # 7, 2 and 11 predictions
    L = lay_out(streams, [0, 1, 2], seq_len=3, rows=2, pad=0)      # 3 + 1 + 4 = 8 windows
    assert L.x.shape == (4, 3, 2) and L.rows == 2 and L.tokens == 7 + 2 + 11
    np.testing.assert_array_equal(L.labels.T, [[0, 0, 0, 1], [2, 2, 2, 2]])
    np.testing.assert_array_equal(L.starts.T, [[1, 0, 0, 1], [1, 0, 0, 0]])   # row 1 starts inside label 2
    x, y, m = (a.transpose(2, 0, 1).reshape(2, -1) for a in (L.x, L.y, L.mask))
    read = [list(zip(x[b][m[b]], y[b][m[b]])) for b in range(2)]
    pairs = [list(zip(s[:-1], s[1:])) for s in streams]
    assert read[0] + read[1] == pairs[0] + pairs[1] + pairs[2]
    short = lay_out(streams, [0, 1, 2], seq_len=3, rows=3, pad=0)  # 8 windows in rows of 3, 3, 2 (+ 1 empty)
    assert short.x.shape[0] == 3 and not short.mask[2, :, 2].any() and short.tokens == L.tokens
    assert lay_out(streams, [0, 1, 2], seq_len=3, rows=50, pad=0).rows == 8    # no more rows than windows


@pytest.mark.parametrize("cell, mode", [("lstm", "every"), ("gru", "first")])
def test_gradient_of_a_window(cell, mode):
    """A window whose rows 0 and 2 start from their label and rows 1 and 3 continue from a carried
    state (a constant: truncated BPTT): every parameter's gradient against finite differences."""
    m = make(mode, seed=3, cell=cell)
    rng = np.random.default_rng(4)
    T, B = 4, 4
    carried = [tuple(rng.normal(0, 0.5, a.shape) for a in layer) for layer in m.epoch_state(B)]
    batch = LabelledLines(rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B)),
                          (rng.random((T, B)) < 0.8).astype(np.float64), np.array([0, 2, 1, 2]),
                          np.array([True, False, True, False]))

    def loss():
        return m.loss(batch, carried)[0]
    _, after, cache = m.loss(batch, carried)
    grads = m.backward(cache)
    assert len(after) == 3
    for k, p in m.params.items():
        assert check_grad(loss, p, grads[k], n_samples=30) < 1e-6, k     # 30 entries of each


def test_a_window_where_every_row_starts_is_a_batch_of_whole_texts():
    m = make(seed=5)
    rng = np.random.default_rng(6)
    x, y, mask = rng.integers(0, V, (5, 3)), rng.integers(0, V, (5, 3)), np.ones((5, 3))
    labels = np.array([1, 0, 2])
    whole = m.loss(LabelledLines(x, y, mask, labels))
    window = m.loss(LabelledLines(x, y, mask, labels, np.ones(3, bool)), m.epoch_state(3))
    assert whole[0] == window[0] and whole[1] is None and window[1] is not None


@pytest.mark.parametrize("mode", ["every", "first"])
def test_validation_reads_as_score_stream_and_eval(mode):
    """With one row, the stream form's validation is each label's running text scored from its
    a<0> with the state carried: `running_sums` (`charlm eval`, `charlm score --label c --stream`)."""
    from charlm.text.tokenizer import TokenizerConfig
    from charlm.text.vocab import Vocab
    vocab = Vocab.from_counts({"a": 3, "b": 2, "c": 1, "\n": 2}, tokenizer=TokenizerConfig(level="char"))
    m = make(mode, seed=7, vocab_size=len(vocab))
    texts = [list("abca"), list("bb"), list("cab"), list("aacbab"), list("c")]
    labels = np.array([2, 0, 2, 1, 0])
    streams = [vocab.encode(t) for t in running_texts(texts, labels, C)]
    ev = LabelStreamValidation(lay_out(streams, range(C), 3, 1, vocab.eos_id)).evaluate(m, SingleProcess())
    nats, count = running_sums(m, vocab, texts, labels)
    assert count.sum() == sum(len(t) + 1 for t in texts)
    assert abs(ev.loss - nats.sum() / count.sum()) < 1e-12


def opts_for(tmp_path, name, **kw):
    (tmp_path / "d.tsv").write_text(TSV, encoding="utf-8")
    base = dict(corpus=str(tmp_path / "d.tsv"), output=str(tmp_path / f"{name}.npz"), condition=True,
                tokenizer={"level": "char", "mode": "stream"}, seq_len=6, batch_size=3, seed=2, lr=1e-2,
                eval_every=4, max_steps=12, epochs=50,
                model=dict(cell="gru", layers=1, hidden=8, embedding=4, label_embedding=3, dropout=0.2,
                           dtype="float64"))
    base.update(kw)
    return TrainOptions(**base)


def test_an_interrupted_stream_run_resumes_exactly(tmp_path, run):
    """Dropout on, cut inside an epoch (the carried state, v included, is in NAME.last.npz): the
    resumed run ends with the parameters of the uninterrupted one, bit for bit. `charlm eval`
    reads each label's texts as one running text: what `charlm score --label L --stream` prints
    for a file of them."""
    straight, broken = opts_for(tmp_path, "a"), opts_for(tmp_path, "b")
    assert straight.tokenizer["mode"] == "stream"
    assert train(straight)["step"] == 12
    assert train(broken, reporter=KillAt(7, signal.SIGINT))["step"] == 7
    arrays, meta = ckpt.load_checkpoint(last_path(broken.output))
    assert 0 < meta["train"]["position"] and "state/1/0" in arrays        # mid-epoch; the label input v
    assert train(broken, resume=True)["step"] == 12
    a, b = (ckpt.load_checkpoint(last_path(o.output))[0] for o in (straight, broken))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    model = load(straight.output)
    assert model.vocab.tokenizer.mode == "stream" and model.labels.names == ["other", "saurus"]
    report = get("lm").evaluate(model, str(tmp_path / "d.tsv")).data
    assert report["form"] == "stream" and report["per_label"]["saurus"]["tokens"] == sum(
        len(n) + 1 for n in NAMES if n.endswith("saurus"))
    (tmp_path / "saurus.txt").write_text("".join(f"{n}\n" for n in NAMES if n.endswith("saurus")), encoding="utf-8")
    r = run("score", "-m", straight.output, "--label", "saurus", "--file", tmp_path / "saurus.txt", "--stream", "--json")
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["tokens"] == report["per_label"]["saurus"]["tokens"]
    assert abs(summary["nats_per_token"] - report["per_label"]["saurus"]["nats_per_token"]) < 1e-9


def test_condition_defaults_to_whole_texts_and_mode_stream_selects_the_stream_form(tmp_path):
    assert opts_for(tmp_path, "c", tokenizer={"level": "char"}).tokenizer["mode"] == "lines"
    assert opts_for(tmp_path, "d", tokenizer={"level": "word"}).tokenizer["mode"] == "lines"
    assert TrainOptions(corpus="x.txt").tokenizer["mode"] == "stream"     # without --condition: as before


def test_a_long_text_that_cannot_fit_in_memory_as_a_whole_text(tmp_path, monkeypatch):
    """The lines form back-propagates a text whole: a batch of the longest text that does not fit
    is refused before training, naming the stream form, which trains on the same file."""
    (tmp_path / "long.tsv").write_text(TSV + "other\t" + "x" * 20000 + "\n", encoding="utf-8")
    monkeypatch.setattr(memory, "available_memory", lambda: 2 << 20)
    common = dict(corpus=str(tmp_path / "long.tsv"), condition=True, batch_size=3, max_steps=2, seq_len=20,
                  model=dict(cell="gru", layers=1, hidden=8, embedding=4))
    with pytest.raises(UsageError, match=r"the longest text has 20,001 tokens .* \(--mode stream\)"):
        train(TrainOptions(output=str(tmp_path / "l.npz"), tokenizer={"level": "char"}, **common))
    assert train(TrainOptions(output=str(tmp_path / "s.npz"), tokenizer={"level": "char", "mode": "stream"},
                              **common))["step"] == 2

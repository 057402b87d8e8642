"""A conditional language model's data (charlm.lm.labelled, charlm.tasks.conditional): the labelled formats, padded batches, the
label set and prior, bad input, the validation figure, and an exact resume through the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlm.engine.loop import Trainer
from charlm.engine.optim import make_optimizer
from charlm.engine.parallel import SingleProcess
from charlm.engine.progress import Reporter
from charlm.engine.run import Run
from charlm.engine.state import TrainState
from charlm.errors import CharlmError, DataError
from charlm.lm.bayes import bayes_classify
from charlm.lm.conditional import CondConfig, ConditionalLM
from charlm.lm.labelled import LabelSet, LabelledLine, LinesValidation, pad_lines
from charlm.tasks.conditional import batch_source
from charlm.tasks.conditional import prepare as prepare_condlm_data
from charlm.tasks.training import TrainOptions
from charlm.text.tokenizer import TokenizerConfig

CHAR = TokenizerConfig(level="char")
NAMES = ["tyrannosaurus", "stegosaurus", "velociraptor", "triceratops", "brachiosaurus", "iguanodon",
         "allosaurus", "ankylosaurus", "diplodocus", "pachycephalosaurus", "spinosaurus", "microraptor",
         "apatosaurus", "compsognathus", "oviraptor", "parasaurolophus", "gallimimus", "deinonychus"]
TSV = "".join(f"{'saurus' if n.endswith('saurus') else 'other'}\t{n}\n" for n in NAMES)


def test_both_formats_read_the_same(write_corpus):
    tab = prepare_condlm_data(write_corpus(TSV, "a.tsv"), CHAR, val_fraction=0.2, seed=1)
    fast = prepare_condlm_data(write_corpus("".join(f"__label__{l.replace(chr(9), ' ')}\n" for l in TSV.splitlines()),
                                            "b.txt"), CHAR, val_fraction=0.2, seed=1)
    assert (tab.format, fast.format) == ("tab", "fasttext")
    assert tab.vocab.tokens == fast.vocab.tokens and tab.labels == fast.labels
    assert [(list(a.ids), a.label) for a in tab.train] == [(list(b.ids), b.label) for b in fast.train]
    assert tab.val_tokens == fast.val_tokens and list(tab.val_labels) == list(fast.val_labels)
    assert tab.vocab.tokenizer.mode == "lines"            # implied, even for characters
    assert len(tab.train) + len(tab.val_tokens) == len(NAMES) and len(tab.val_tokens) == 4
    assert tab.n_train_tokens == sum(len(n) + 1 for n in NAMES) - tab.n_val_tokens
    assert tab.vocab.counts[tab.vocab.eos_id] == len(tab.train)


def test_label_set_and_prior():
    labels = LabelSet.count(["b", "a", "b", "b"])
    assert labels.names == ["a", "b"] and labels.counts == [1, 3]
    np.testing.assert_allclose(np.exp(labels.log_prior()), [0.25, 0.75])
    assert labels.id("b") == 1
    with pytest.raises(DataError, match=r"unknown label 'c' \(the labels are: a, b\)"):
        labels.id("c")
    assert LabelSet.from_meta(json.loads(json.dumps(labels.to_meta())), 2) == labels
    for bad in ({"labels": ["a", "b"], "label_counts": [1]}, {"labels": ["a", "a"], "label_counts": [1, 1]},
                {"labels": ["a", "b"], "label_counts": [1, 0]}, {}):
        with pytest.raises(CharlmError, match="does not name its 2 labels"):
            LabelSet.from_meta(bad, 2)


def test_pad_lines():
    batch = pad_lines([LabelledLine(np.array([5, 6]), 1), LabelledLine(np.array([7]), 0)], eos=1)
    np.testing.assert_array_equal(batch.x, [[1, 1], [5, 7], [6, 1]])       # <EOS> t1..tn, padding
    np.testing.assert_array_equal(batch.y, [[5, 7], [6, 1], [1, 1]])       # t1..tn <EOS>
    np.testing.assert_array_equal(batch.mask, [[1, 1], [1, 1], [1, 0]])
    np.testing.assert_array_equal(batch.labels, [1, 0])
    assert batch.tokens == 5


@pytest.mark.parametrize("text, message", [
    ("a\tone\na\ttwo\n", "single label \\('a'\\)"),
    ("a\tone\nb\t  \n", "line 2: the label 'b' has no text"),
    ("a\tone\n__label__b two\n", "line 2: a fastText __label__ line in a LABEL<TAB>TEXT file"),
    ("__label__a one\nb\ttwo\n", "line 2: a LABEL<TAB>TEXT line in a fastText file"),
    ("one two\n", "line 1: no label"),
    ("\n\n", "empty"),
])
def test_bad_input(write_corpus, text, message):
    with pytest.raises(DataError, match=message):
        prepare_condlm_data(write_corpus(text), CHAR, val_fraction=0.0)


def test_unknown_label_in_the_validation_file(write_corpus):
    val = write_corpus("saurus\tnewosaurus\nbird\tpigeon\n", "val.tsv")
    with pytest.raises(DataError, match=r"unknown label 'bird' \(the labels are: other, saurus\)"):
        prepare_condlm_data(write_corpus(TSV), CHAR, val_file=val)


def model_for(data, **kw):
    return ConditionalLM(CondConfig(vocab_size=len(data.vocab), num_labels=len(data.labels), cell="gru", layers=1,
                                    hidden=8, embedding=4, label_embedding=3, dtype="float64", **kw), seed=2)


def test_validation_figure(write_corpus):
    """LinesValidation's loss is the training loss of the validation texts with their labels, and
    its accuracy that of the Bayes classifier."""
    data = prepare_condlm_data(write_corpus(TSV), CHAR, val_fraction=0.3, seed=4)
    model = model_for(data)
    prior = data.labels.log_prior()
    ev = LinesValidation(data.vocab, data.val_tokens, data.val_labels, prior, batch_size=2).evaluate(model,
                                                                                                    SingleProcess())
    lines = [LabelledLine(data.vocab.encode(t).astype(np.int64), c) for t, c in zip(data.val_tokens, data.val_labels)]
    assert abs(ev.loss - model.loss(pad_lines(lines, data.vocab.eos_id))[0]) < 1e-12 and ev.objective == ev.loss
    guess = bayes_classify(model, data.vocab, data.val_tokens, prior).labels
    assert ev.metrics == {"val_accuracy": float(np.mean(guess == data.val_labels))}


# -- exact resume: the engine's Trainer on the batch source ---------------------------------------

def make_run(path, out, snapshot=None):
    """A Run of the engine on a conditional model (dropout 0.3, batches of 4 texts), fresh or from
    a snapshot (params, optimizer state, TrainState record and arrays) as a checkpoint holds them."""
    opts = TrainOptions(corpus=str(path), output=str(out), batch_size=4, seed=5, lr=0.01)
    data = prepare_condlm_data(path, CHAR, val_fraction=0.2, seed=opts.seed)
    model = model_for(data, dropout=0.3)
    optimizer = make_optimizer("adam", opts.lr)
    state = TrainState(rng=np.random.default_rng(opts.seed + 1))
    if snapshot is not None:
        params, (scalars, arrays), (record, state_arrays) = snapshot
        model = ConditionalLM(model.config, params={k: v.copy() for k, v in params.items()})
        optimizer.load_state_dict(json.loads(json.dumps(scalars)), arrays)
        state = TrainState.from_checkpoint(json.loads(json.dumps(record)), state_arrays, model.dtype)
    run = Run(opts, model, data.vocab, batch_source(data, opts.batch_size, opts.seed, state), None, optimizer,
              state, {})
    return run, Trainer(run, Reporter(), SingleProcess())


def train_until(run, trainer, steps: int) -> None:
    """The engine's loop (charlm.engine.loop.train) up to `steps` steps."""
    st = run.state
    while st.step < steps:
        for batch in run.source.batches(st.position):
            trainer.step(batch)
            if st.step >= steps:
                return
        trainer.end_epoch()


def snapshot(run):
    params = {k: v.copy() for k, v in run.model.params.items()}
    scalars, arrays = run.optimizer.state_dict()
    record, state_arrays = run.state.to_checkpoint()
    return params, (scalars, {k: v.copy() for k, v in arrays.items()}), (record, state_arrays)


def test_interrupted_and_resumed_equals_uninterrupted(write_corpus, tmp_path):
    path = write_corpus(TSV)
    straight, trainer = make_run(path, tmp_path / "a.npz")
    assert straight.source.steps_per_epoch() == 4 and not straight.source.carries_state
    train_until(straight, trainer, 11)
    first, trainer = make_run(path, tmp_path / "b.npz")
    train_until(first, trainer, 6)                        # stopped inside the second epoch
    resumed, trainer = make_run(path, tmp_path / "b.npz", snapshot(first))
    assert (resumed.state.epoch, resumed.state.position) == (1, 2)
    train_until(resumed, trainer, 11)
    assert (resumed.state.epoch, straight.state.epoch) == (2, 2)
    for k, p in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], p, err_msg=k)
    moved = [k for k, p in straight.model.params.items() if not np.array_equal(p, first.model.params[k])]
    assert "label.embed.W" in moved and "label.init.0.W" in moved   # the steps after the cut trained them
    order = straight.source.order(0)                      # an epoch's order is the epoch's alone
    assert [list(g) for g in order] == [list(g) for g in resumed.source.order(0)]
    assert sorted(np.concatenate(order).tolist()) == list(range(len(straight.source.sentences)))

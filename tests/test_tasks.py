"""Tagging and classification end to end: the engine (charlm train --task tag|classify), the sentence
batch source and validation, `charlm tag`, `charlm classify` and `charlm eval`."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from charlm import checkpoint as ckpt
from charlm.engine.parallel import SingleProcess
from charlm.engine.run import last_path
from charlm.errors import DataError, UsageError
from charlm.sentence.batch import make_batch
from charlm.sentence.encoder import Encoder
from charlm.sentence.formats import read_tagged
from charlm.sentence.metrics import conlleval_counts
from charlm.sentence.predict import Predictor
from charlm.sentence.source import SentenceBatches, SentenceValidation
from charlm.tasks import load as load_model
from charlm.tasks.training import TrainOptions, train
from charlm.text.tokenizer import TokenizerConfig
from test_train import KillAt
from tasksdata import classification_text, column_text, conllu_text, ner_sentences

SMALL = dict(cell="lstm", layers=1, hidden=8, embedding=8, char_embedding=4, char_hidden=4, dropout=0.1)
TINY = ["--hidden", "8", "--embedding", "8", "--char-embedding", "4", "--char-hidden", "4", "--layers", "1",
        "--batch-size", "8", "-q"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    out = {}
    for name, text in {"ner.train": column_text(ner_sentences(80, seed=1)),
                       "ner.dev": column_text(ner_sentences(20, seed=2)),
                       "pos.train": conllu_text(60, seed=1), "pos.dev": conllu_text(15, seed=2),
                       "cls.train": classification_text(120, seed=1), "cls.dev": classification_text(30, seed=2),
                       "cls.ft": classification_text(30, seed=3, fasttext=True)}.items():
        out[name] = d / name
        out[name].write_text(text, encoding="utf-8")
    return out


def options(tmp_path, corpus, task, **kw) -> TrainOptions:
    base = dict(corpus=str(corpus), output=str(tmp_path / "m.npz"), task=task,
                tokenizer=TokenizerConfig(level="word").to_dict(), model=dict(SMALL), batch_size=8,
                lr=0.01, epochs=4, eval_every=5, seed=3)
    base.update(kw)
    return TrainOptions(**base)


def params_of(path) -> dict:
    arrays, _ = ckpt.load_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.startswith("param/")}


def records_of(output) -> list[dict]:
    """The evaluation records in a run's last state, without the timings."""
    _, meta = ckpt.load_checkpoint(last_path(output))
    drop = ("elapsed", "tokens_per_s", "eval_seconds", "train_loss")  # timings; the loss window restarts on resume
    return [{k: v for k, v in r.items() if k not in drop} for r in meta["train"]["metrics"]]


def records(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# ------------------------------------------------------------------------------ the engine

def test_tagger_run_saves_its_task_vocabularies_and_labels(files, tmp_path):
    opts = options(tmp_path, files["ner.train"], "tag", val_file=str(files["ner.dev"]),
                   metrics=str(tmp_path / "m.jsonl"))
    summary = train(opts)
    loaded = load_model(opts.output)
    meta = loaded.meta
    assert meta["task"] == "tag" and loaded.task == "tag" and meta["tag_scheme"] == "IOB1"
    assert meta["labels"] == sorted(meta["labels"]) and "B-PER" in meta["labels"] and "I-PER" in meta["labels"]
    assert len(loaded.predictor.encoder.chars) == loaded.network.config.char_vocab_size
    assert len(loaded.vocab) == loaded.network.config.vocab_size
    assert meta["train"]["options"]["task"] == "tag"
    recs = records(opts.metrics)
    assert all({"val_loss", "val_accuracy", "val_f1"} <= r.keys() for r in recs)
    # the model at --output is the one with the best entity F1 (first of equals)
    best = max(recs, key=lambda r: r["val_f1"])
    assert summary["best_step"] == best["step"] and summary["best_record"]["val_f1"] == best["val_f1"]
    assert summary["best_val_loss"] == -best["val_f1"]


def test_pos_tagger_objective_is_token_accuracy(files, tmp_path):
    opts = options(tmp_path, files["pos.train"], "tag", val_file=str(files["pos.dev"]),
                   metrics=str(tmp_path / "m.jsonl"), tag_column="xpos")
    summary = train(opts)
    loaded = load_model(opts.output)
    assert loaded.meta["tag_scheme"] is None and loaded.labels == ["adj", "det", "noun", "punct", "verb"]
    recs = records(opts.metrics)
    assert all("val_f1" not in r for r in recs)
    assert summary["best_val_loss"] == -max(r["val_accuracy"] for r in recs)


def test_classifier_run_and_validation_share(files, tmp_path):
    opts = options(tmp_path, files["cls.train"], "classify", val_fraction=0.25,
                   model=dict(SMALL, pool="mean"), metrics=str(tmp_path / "m.jsonl"))
    summary = train(opts)
    loaded = load_model(opts.output)
    assert loaded.task == "classify" and loaded.labels == ["neg", "pos"]
    assert loaded.network.config.pool == "mean"
    rec = records(opts.metrics)[-1]
    assert {"val_accuracy", "val_f1"} <= rec.keys()
    assert summary["best_val_loss"] == -max(r["val_accuracy"] for r in records(opts.metrics))
    # 25 % of the 120 lines held out, a seeded random share: 90 training examples
    assert loaded.meta["train"]["options"]["val_fraction"] == 0.25


@pytest.mark.parametrize("task,corpus,stop_at", [("tag", "ner.train", 7), ("tag", "pos.train", 13),
                                                 ("classify", "cls.train", 9)])
def test_interrupted_and_resumed_equals_uninterrupted(files, tmp_path, task, corpus, stop_at):
    """The batch order of an epoch depends on the epoch alone: resuming mid-epoch is bit-exact.
    (The parameters are compared; the best model may differ: the evaluation made when the run was
    interrupted may find a better one than the schedule of the straight run does.)"""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = options(tmp_path / "a", files[corpus], task, max_steps=25)
    train(straight)
    broken = options(tmp_path / "b", files[corpus], task, max_steps=25)
    assert train(broken, reporter=KillAt(stop_at, signal.SIGINT))["step"] == stop_at
    assert train(options(tmp_path / "b", files[corpus], task, max_steps=25), resume=True)["step"] == 25
    a, b = params_of(last_path(straight.output)), params_of(last_path(broken.output))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    scheduled = [r for r in records_of(straight.output) if r["step"] % 5 == 0]
    assert scheduled == [r for r in records_of(broken.output) if r["step"] % 5 == 0]


def test_time_limit_stops_a_tagger_cleanly(files, tmp_path):
    summary = train(options(tmp_path, files["ner.train"], "tag", epochs=1000, patience=10**6, time_limit=1.0))
    assert summary["reason"] == "reached --time-limit" and os.path.exists(tmp_path / "m.npz")


@pytest.mark.parametrize("task,kw,needle", [
    ("tag", {"seq_len": 50}, "--seq-len does not apply to --task tag"),
    ("tag", {"model": dict(SMALL, tie_weights=True)}, "--tie-weights"),
    ("tag", {"model": dict(SMALL, pool="max")}, "--pool does not apply to --task tag"),
    ("tag", {"tokenizer": {"level": "char"}}, "--level char"),
    ("tag", {"format": "tab"}, "--format must be one of conllu, columns"),
    ("tag", {"vocab": "v.json"}, "--vocab"),
    ("tag", {"val_tokens": 1000}, "--val-tokens does not apply"),
    ("classify", {"cache_dir": "c"}, "--cache-dir does not apply"),
    ("classify", {"tag_column": "upos"}, "--tag-column does not apply"),
    ("classify", {"format": "conllu"}, "--format must be one of tab, fasttext"),
    ("classify", {"tokenizer": {"level": "word", "mode": "stream"}}, "--mode stream"),
    ("lm", {"model": {"char_hidden": 4}}, "--char-hidden applies to --task tag"),
    ("lm", {"model": {"bidirectional": False}}, "--no-bidirectional applies"),
    ("lm", {"format": "columns", "model": {}}, "--format applies"),
    ("tag", {"tag_column": "0"}, "--tag-column must be"),
])
def test_options_that_make_no_sense_for_the_task_are_refused(files, tmp_path, task, kw, needle):
    with pytest.raises(UsageError, match=needle):
        options(tmp_path, files["ner.train"], task, **kw)


def test_single_label_training_set_is_refused(write_corpus, tmp_path):
    with pytest.raises(DataError, match="single label"):
        train(options(tmp_path, write_corpus("pos\tgood\npos\tfine\npos\tnice\n"), "classify", val_fraction=0))
    with pytest.raises(DataError, match="single tag"):
        train(options(tmp_path, write_corpus("a O\nb O\n\nc O\n"), "tag", val_fraction=0))


# ------------------------------------------------------------------------------ batch source

class Clock:
    epoch = 0


def _encoded(files, n=None):
    f = read_tagged(files["ner.train"])
    sents = f.sentences[:n]
    enc = Encoder.build(True, [s.tokens for s in sents], [s.tags for s in sents], TokenizerConfig(level="word"),
                        "IOB1")
    return enc, [enc.encode(s.tokens, s.tags) for s in sents], [s.tags for s in sents]


def test_sentence_batches_bucket_shuffle_and_resume(files):
    enc, encoded, _ = _encoded(files)
    clock = Clock()
    source = SentenceBatches(encoded, make_batch, 8, seed=5, clock=clock)
    assert source.steps_per_epoch() == 10 and not source.carries_state
    e0 = source.order(0)
    assert sorted(np.concatenate(e0).tolist()) == list(range(80))  # every sentence once
    lengths = source.lengths
    by_len = sorted(lengths.tolist())
    assert sorted(lengths[g].max() for g in e0) == sorted(by_len[i + 7] for i in range(0, 80, 8))  # buckets
    assert all(np.array_equal(a, b) for a, b in zip(e0, SentenceBatches(encoded, make_batch, 8, 5, clock).order(0)))
    assert any(not np.array_equal(a, b) for a, b in zip(e0, source.order(1)))
    full = list(source.batches(0))
    tail = list(source.batches(6))
    assert [b.end for b in tail] == [7, 8, 9, 10] and source.epoch_fraction(5) == 0.5
    for a, b in zip(full[6:], tail):
        assert np.array_equal(a.inputs[0].words, b.inputs[0].words)
        assert np.array_equal(a.inputs[0].labels, b.inputs[0].labels)
        assert a.tokens == b.tokens == int(a.inputs[0].lengths.sum())
    clock.epoch = 1
    assert not np.array_equal(next(source.batches(0)).inputs[0].words, full[0].inputs[0].words)


class Share:
    """A process group of `size` processes seen from `rank`; allreduce adds what all ranks computed."""

    def __init__(self, rank, size, results):
        self.rank, self.size, self.results = rank, size, results

    def allreduce(self, x):
        self.results[self.rank] = x
        return x


def _tiny_tagger(enc, seed=1):
    from charlm.sentence.network import TaggerConfig, TaggerNetwork

    return TaggerNetwork(TaggerConfig(task="tag", vocab_size=len(enc.vocab), char_vocab_size=len(enc.chars),
                                   num_labels=len(enc.labels), hidden=6, embedding=5, char_embedding=3,
                                   char_hidden=3, layers=1, dtype="float64"), seed=seed)


def test_validation_counts_add_up_over_processes_and_match_conlleval(files):
    enc, _, _ = _encoded(files)
    sentences = read_tagged(files["ner.dev"]).sentences
    tokens, gold = [s.tokens for s in sentences], [s.tags for s in sentences]
    model = _tiny_tagger(enc)
    val = SentenceValidation([enc.encode(t) for t in tokens], gold, enc, batch_size=4)
    whole = val.evaluate(model, SingleProcess())
    # the metric is conlleval's count on the tags `charlm tag` writes
    predicted = [t.tags for t in Predictor(model, enc).tag(tokens)]
    c = conlleval_counts(gold, predicted).report()
    assert whole.objective == pytest.approx(-c["f1"]) and whole.metrics["val_f1"] == pytest.approx(c["f1"])
    assert whole.metrics["val_accuracy"] == pytest.approx(c["accuracy"])
    # three processes: each scores its share; the sums give the same evaluation
    parts: dict = {}
    for rank in range(3):
        val.evaluate(model, Share(rank, 3, parts))
    total = sum(parts.values())

    class Summed(SingleProcess):
        def allreduce(self, x):
            return total

    shared = val.evaluate(model, Summed())  # (float64: a sentence's outputs do not depend on its batch)
    assert shared.metrics == whole.metrics and shared.objective == whole.objective
    assert shared.loss == pytest.approx(whole.loss, rel=1e-12)


def _valid_iob2(tags) -> bool:
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        prev = tag
    return True


def test_decoded_entity_tags_are_always_valid_iob2(files):
    """Constrained decoding: an untrained tagger, whose argmax often is an invalid IOB2 sequence,
    never decodes I-X after O or after another type."""
    enc, _, _ = _encoded(files)
    encoded = [enc.encode(s.tokens) for s in read_tagged(files["ner.dev"]).sentences]
    invalid_argmax = 0
    for seed in range(3):
        predictor = Predictor(_tiny_tagger(enc, seed), enc)
        for _, lp, paths in predictor.tagged(encoded):
            for b, ids in enumerate(paths):
                assert _valid_iob2([enc.labels[k] for k in ids])
                invalid_argmax += not _valid_iob2([enc.labels[k] for k in lp[:len(ids), b].argmax(1)])
    assert invalid_argmax > 0  # the constraint had something to do

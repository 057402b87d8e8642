"""`charlm train --task seq2seq`, `charlm translate`, `charlm eval` and `charlm.Translator` on tiny
date-normalisation models: the metrics and options reach the files, Ctrl-C and --resume continue
a run bit for bit, the JSON lines carry what they promise, beam 1 is the greedy path, and the
evaluation's figures are the ones its definition gives."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

import charlm
from charlm import checkpoint as ckpt
from charlm.engine.run import last_path
from charlm.seq2seq.dates import write_date_pairs
from charlm.seq2seq.metrics import Counts, edit_distance
from charlm.seq2seq.search import greedy
from charlm.tasks.training import from_flags, train
from test_train import KillAt

TINY = ["--hidden", "8", "--embedding", "4", "--layers", "1", "--batch-size", "8", "-q"]


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    d = tmp_path_factory.mktemp("dates")
    write_date_pairs(d / "train.tsv", 160, seed=1)
    write_date_pairs(d / "dev.tsv", 12, seed=2)
    return d


@pytest.fixture(scope="module")
def trained(dates):
    from click.testing import CliRunner

    from charlm.cli import cli
    out = dates / "m.npz"
    r = CliRunner().invoke(cli, ["train", "--task", "seq2seq", str(dates / "train.tsv"), "--val-file",
                                 str(dates / "dev.tsv"), "-o", str(out), "--metrics", str(dates / "m.jsonl"),
                                 "--max-steps", "6", "--eval-every", "3", *TINY], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out, r


def params_of(path) -> dict:
    arrays, _ = ckpt.load_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.startswith(("param/", "optim/"))}


def test_training_writes_the_task_figures(trained, dates):
    out, result = trained
    lines = [json.loads(x) for x in open(dates / "m.jsonl")]
    assert [r["step"] for r in lines] == [3, 6]
    assert all(0 <= r["val_accuracy"] <= 1 and r["val_ter"] >= 0 and r["val_loss"] > 0 for r in lines)
    model = charlm.load(out)
    assert {"val_loss", "accuracy", "token_error_rate"} <= set(model.info()["training"])
    assert isinstance(model, charlm.Translator) and model.task == "seq2seq"
    assert model.meta["model"]["attention"] == "additive" and model.meta["model"]["bidirectional"] is True


def test_ctrl_c_and_resume_through_the_cli_are_exact(run, dates, tmp_path):
    """Straight 8 steps = interrupted by SIGINT after step 3, then `charlm train --resume` to 8."""
    args = ["train", "--task", "seq2seq", dates / "train.tsv", "--val-file", dates / "dev.tsv", "--dropout", "0.1",
            "--eval-every", "4", *TINY]
    assert run(*args, "-o", tmp_path / "a.npz", "--max-steps", "8").exit_code == 0
    flags = dict(corpus=str(dates / "train.tsv"), val_file=str(dates / "dev.tsv"), task="seq2seq", dropout=0.1,
                 eval_every=4, hidden=8, embedding=4, layers=1, batch_size=8, max_steps=8,
                 output=str(tmp_path / "b.npz"))
    assert train(from_flags(**flags), reporter=KillAt(3, signal.SIGINT))["step"] == 3
    r = run(*args, "-o", tmp_path / "b.npz", "--max-steps", "8", "--resume")
    assert r.exit_code == 0, r.output
    a, b = params_of(last_path(tmp_path / "a.npz")), params_of(last_path(tmp_path / "b.npz"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_info_shows_both_sides_and_the_encoder_decoder(trained, stdout_of):
    out, _ = trained
    model = charlm.load(out)
    source, target = model.pairs.source, model.pairs.target
    info = json.loads(stdout_of("info", out, "--json"))
    assert info["vocabulary"]["size"] == len(source) and info["target_vocabulary"]["size"] == len(target)
    assert len(source) != len(target) and info["target_tokenizer"]["level"] == "char"
    token, count = info["target_vocabulary"]["top"][0]            # the target side's counts, not the source's
    assert count == max(target.counts) and target.counts[target.tokens.index(token)] == count
    text = stdout_of("info", out)
    assert "encoder:     layers 1, hidden 8 per direction (bidirectional), source embedding 4\n" in text
    assert "decoder:     layers 1, hidden 8, target embedding 64\n" in text
    assert "attention:   additive, hidden 8\n" in text
    assert f"vocabulary:  source {len(source)} tokens" in text and f"\n             target {len(target)} tokens" in text
    assert "tokenizer:   source level=char" in text and "\n             target level=char" in text


def test_decoder_and_attention_sizes_are_options(dates, tmp_path, stdout_of):
    """--decoder-hidden, --target-embedding, --attention-hidden reach the model (the gradient checks
    of tests/test_seq2seq.py use sizes that differ from the encoder's)."""
    out = tmp_path / "sized.npz"
    stdout_of("train", "--task", "seq2seq", dates / "train.tsv", "--val-file", dates / "dev.tsv", "-o", out,
              "--max-steps", "2", "--decoder-hidden", "6", "--target-embedding", "3", "--attention-hidden", "5", *TINY)
    model = charlm.load(out)
    c, p = model.meta["model"], model.network.params
    assert (c["hidden"], c["decoder_hidden"], c["embedding"], c["target_embedding"], c["attention_hidden"]) == (
        8, 6, 4, 3, 5)
    assert p["tgt.embed.W"].shape[1] == 3 and p["dec.0.W"].shape == (6 + 3, 4 * 6) and p["att.v"].shape == (5,)
    assert p["bridge.0.a.W"].shape == (2 * 8, 6)
    assert "decoder:     layers 1, hidden 6, target embedding 3\n" in stdout_of("info", out)


def test_translate_json_attention_and_nbest(trained, stdout_of, run):
    out, _ = trained
    r = run("translate", "-m", out, "--json", "--attention", "--max-length", "5", "5/1/2001", "Aug 29, 1958")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [d["source"] for d in lines] == ["5/1/2001", "Aug 29, 1958"]
    for d in lines:
        assert {"source", "output", "tokens", "logprob", "attention", "source_tokens"} <= set(d)
        assert "".join(d["tokens"]) == d["output"] and len(d["tokens"]) <= 5 and d["logprob"] < 0
        att = np.array(d["attention"])
        steps = len(d["tokens"]) + (d["stop"] == "eos")
        assert att.shape == (steps, len(d["source_tokens"])) and np.allclose(att.sum(axis=1), 1, atol=1e-5)
    r = run("translate", "-m", out, "--beam", "3", "--nbest", "3", "5/1/2001")
    rows = [x.split("\t") for x in r.stdout.splitlines()]
    assert [x[0] for x in rows] == ["1", "2", "3"] and [float(x[1]) for x in rows] == sorted(
        (float(x[1]) for x in rows), reverse=True)


def test_api_beam_1_is_greedy_and_eval_counts(trained, dates, run):
    out, _ = trained
    model = charlm.load(out)
    sources = [line.split("\t")[0] for line in open(dates / "dev.tsv", encoding="utf-8")]
    by_beam = model.translate(sources, beam=1)
    ids = [model.pairs.source_ids(s) for s in sources]
    assert [t.tokens for t in by_beam] == [model.pairs.target.decode(g.ids) for g in greedy(model.network, ids)]
    assert model.translate(sources[0], beam=1)[0].output == by_beam[0].output     # a lone str is one source
    refs = [line.rstrip("\n").split("\t")[1] for line in open(dates / "dev.tsv", encoding="utf-8")]
    right = sum(t.output == ref for t, ref in zip(by_beam, refs))
    edits = sum(edit_distance(t.tokens, list(ref)) for t, ref in zip(by_beam, refs))
    r = run("eval", "-m", out, dates / "dev.tsv", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert {"task", "sequence_accuracy", "wer", "token_error_rate", "bleu", "chrf", "examples"} <= set(d)
    assert d["examples"] == len(refs) and d["sequence_accuracy"] == right / len(refs)
    assert d["wer"] == 1 - d["sequence_accuracy"] and d["token_error_rate"] == edits / sum(map(len, refs))
    assert model.evaluate(dates / "dev.tsv") == d


def test_eval_beam_is_the_api_beam_and_refused_elsewhere(trained, dates, run, tmp_path):
    out, _ = trained
    model = charlm.load(out)
    r = run("eval", "-m", out, dates / "dev.tsv", "--json", "--beam", "3")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["beam"] == 3 and d == model.evaluate(dates / "dev.tsv", beam=3)
    refs = [line.rstrip("\n").split("\t")[1] for line in open(dates / "dev.tsv", encoding="utf-8")]
    outs = model.translate([line.split("\t")[0] for line in open(dates / "dev.tsv", encoding="utf-8")], beam=3)
    assert d["sequence_accuracy"] == sum(t.output == ref for t, ref in zip(outs, refs)) / len(refs)
    r = run("eval", "-m", out, dates / "dev.tsv", "--beam", "0")
    assert r.exit_code == 2 and "beam width must be at least 1" in r.stderr and "Traceback" not in r.output
    lm = tmp_path / "lm.npz"
    (tmp_path / "t.txt").write_text("abc abd abe\n" * 20, encoding="utf-8")
    assert run("train", tmp_path / "t.txt", "-o", lm, "--max-steps", "1", "--hidden", "4", "--embedding", "2",
               "--seq-len", "4", "--batch-size", "2", "-q").exit_code == 0
    r = run("eval", "-m", lm, tmp_path / "t.txt", "--beam", "2")
    assert r.exit_code == 2 and "--beam applies to sequence-to-sequence models" in r.stderr


def test_edit_distance_and_several_references():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["AE", "K", "T"], ["AE", "K", "T"]) == 0 and edit_distance("abc", "") == 3
    c = Counts()
    c.add(["D", "AA", "G"], [["D", "AO", "G"], ["D", "AA", "G"]])     # equals the second reference
    c.add(["K", "T"], [["K", "AE", "T"], ["K", "AE", "T", "S"]])       # one deletion from the closest
    assert (c.examples, c.correct, c.edits, c.length) == (2, 1, 1, 6)
    assert c.sequence_accuracy == 0.5 == c.wer and c.token_error_rate == 1 / 6
    assert Counts.from_array(c.to_array()) == c


def test_plot_attention(trained, run, tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = trained
    r = run("plot", "-m", out, "--attention", "Aug 29, 1958", "-o", tmp_path / "a.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run("plot", "-m", out, "--attention", "Aug 29, 1958", "-o", tmp_path / "a.svg")
    assert r.exit_code == 0 and b"<svg" in (tmp_path / "a.svg").read_bytes()[:2000]
    assert run("plot", "--attention", "x", "-o", tmp_path / "b.png").exit_code == 2       # no -m
    assert run("plot", "-m", out, "--attention", "x", "-o", tmp_path / "b.txt").exit_code == 2

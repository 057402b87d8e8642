"""The conditional language model through the command line and the API (issue 21, phase 2):
`charlm train --condition`, `sample --label`, `score --label` and `--all-labels`, `classify` by Bayes'
rule (equal to Bayes' rule computed from `score --all-labels`), `eval`, exact resume through the CLI,
`charlm.load(...).sample(label=...)` / `score(label=...)` / `classify`, and unconditional models as
before."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import charlm
from charlm.checkpoint import load_checkpoint
from charlm.errors import UsageError

POS = ["a good film", "good fun", "a fine film", "so good", "a fine cast", "good and fine"]
NEG = ["a bad film", "bad fun", "a dull film", "so bad", "a dull cast", "bad and dull"]
TEXT = "".join(f"pos\t{t}\nneg\t{u}\npos\t{t}!\n" for t, u in zip(POS, NEG))   # 12 pos, 6 neg: a prior
TINY = ["--hidden", "16", "--embedding", "8", "--label-embedding", "4", "--layers", "1", "--batch-size", "6",
        "--val-fraction", "0.2", "--lr", "0.03", "--dropout", "0", "-q"]


@pytest.fixture(scope="module")
def cond(tmp_path_factory):
    """A character-level conditional GRU trained for 100 steps by `charlm train --condition`, an
    unconditional model of the same size, and the labelled file."""
    from click.testing import CliRunner

    from charlm.cli import cli
    d = tmp_path_factory.mktemp("condlm")
    (d / "reviews.tsv").write_text(TEXT, encoding="utf-8")
    (d / "plain.txt").write_text("".join(t + "\n" for t in POS + NEG), encoding="utf-8")
    for args in (["train", "--condition", d / "reviews.tsv", "-o", d / "cond.npz", *TINY, "--max-steps", "100", "--epochs", "100",
                  "--eval-every", "20"],
                 ["train", d / "plain.txt", "-o", d / "plain.npz", "--mode", "lines", *TINY[:4], *TINY[6:],
                  "--max-steps", "3"]):
        r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return d


def test_the_file_is_a_conditional_language_model(cond):
    arrays, meta = load_checkpoint(cond / "cond.npz")
    assert meta["task"] == "lm" and meta["labels"] == ["neg", "pos"] and sum(meta["label_counts"]) >= 14
    assert meta["model"]["num_labels"] == 2 and meta["model"]["label_embedding"] == 4
    assert meta["model"]["condition_input"] == "every" and meta["vocab"]["tokenizer"]["mode"] == "lines"
    assert "param/label.embed.W" in arrays and "param/label.init.0.W" in arrays
    options = meta["train"]["options"]
    assert options["condition"] is True and options["tokenizer"]["mode"] == "lines"
    lm = charlm.load(cond / "cond.npz")
    assert type(lm) is charlm.LM and lm.labels.names == ["neg", "pos"]
    assert charlm.load(cond / "plain.npz").labels is None


def test_info_shows_the_labels(cond, stdout_of):
    info = json.loads(stdout_of("info", cond / "cond.npz", "--json"))
    _, meta = load_checkpoint(cond / "cond.npz")
    assert info["labels"] == dict(zip(meta["labels"], meta["label_counts"]))
    n = meta["label_counts"]
    assert (f"labels:      neg ({n[0]:,} texts, P {n[0] / sum(n):.3f}), pos ({n[1]:,} texts, P {n[1] / sum(n):.3f}); "
            "label embedding") in stdout_of("info", cond / "cond.npz")
    assert "trained on whole texts" in stdout_of("info", cond / "cond.npz")
    assert "labels" not in json.loads(stdout_of("info", cond / "plain.npz", "--json"))


def test_sample_given_a_label(cond, stdout_of):
    out = stdout_of("sample", "-m", cond / "cond.npz", "--label", "pos", "--num", "4", "--seed", "3",
                    "--temperature", "0.5")
    assert len(out.splitlines()) == 4
    api = charlm.load(cond / "cond.npz").sample(4, label="pos", seed=3, temperature=0.5)
    assert [s.text for s in api] == out.splitlines()                 # the API samples what the command prints
    both = stdout_of("sample", "-m", cond / "cond.npz", "--label", "pos", "--label", "neg", "--num", "4",
                     "--seed", "3", "--temperature", "0.5").splitlines()
    assert [line.split("\t")[0] for line in both] == ["pos"] * 4 + ["neg"] * 4
    assert [line.split("\t", 1)[1] for line in both[:4]] == out.splitlines()   # per label, the same seed
    for args in (["--top-k", "3", "--top-p", "0.9", "--seed", "1"], ["--prime", "a "], ["--stop-at", "film"],
                 ["--temperature", "0"], ["--beam", "3"]):
        assert stdout_of("sample", "-m", cond / "cond.npz", "--label", "neg", *args).strip()
    beam = [json.loads(x) for x in stdout_of("sample", "-m", cond / "cond.npz", "--label", "neg", "--beam", "3",
                                             "--nbest", "2", "--json").splitlines()]
    assert [b["label"] for b in beam] == ["neg", "neg"] and beam[0]["logprob"] >= beam[1]["logprob"]
    primed = stdout_of("sample", "-m", cond / "cond.npz", "--label", "pos", "--prime", "a ", "--num", "2")
    assert all(line.startswith("a ") for line in primed.splitlines())


def test_score_given_labels_and_classify_is_bayes_rule(cond, stdout_of):
    """`classify`'s posterior = softmax over c of log P(text | c) (`score --all-labels`) + log P(c)
    (the training frequencies in the file), and `score --label c` prints the same log P(text | c)."""
    texts = ["a good film", "a dull film", "bad fun!", "a fine cast"]
    m = cond / "cond.npz"
    table = [json.loads(x) for x in stdout_of("score", "-m", m, "--all-labels", "--json", *texts).splitlines()]
    _, meta = load_checkpoint(m)
    prior = dict(zip(meta["labels"], np.log(np.array(meta["label_counts"]) / sum(meta["label_counts"]))))
    got = [json.loads(x) for x in stdout_of("classify", "-m", m, "--json", "--top-k", "2", *texts).splitlines()]
    for row, c in zip(table, got):
        joint = {k: lp + prior[k] for k, lp in row["logprob"].items()}
        top = max(joint.values())
        norm = top + math.log(sum(math.exp(v - top) for v in joint.values()))
        assert c["text"] == row["text"] and c["label"] == max(joint, key=joint.get)
        assert c["probs"] == pytest.approx({k: math.exp(v - norm) for k, v in joint.items()}, abs=2e-6)
    for label in ("neg", "pos"):
        scored = [json.loads(x) for x in stdout_of("score", "-m", m, "--label", label, "--json", *texts).splitlines()]
        assert [s["logprob"] for s in scored] == pytest.approx([row["logprob"][label] for row in table], abs=1e-9)
        api = charlm.load(m).score(texts, label=label)
        assert [s.logprob for s in api] == pytest.approx([s["logprob"] for s in scored], abs=1e-9)
    assert [c.label for c in charlm.load(m).classify(texts)] == [c["label"] for c in got]
    assert got[0]["label"] == "pos" and got[1]["label"] == "neg"          # it learned the polarity words
    lines = stdout_of("score", "-m", m, "--all-labels", *texts).splitlines()
    assert lines[0].split() == ["neg", "pos", "sentence"] and len(lines) == 5 and lines[1].count("*") == 1


def test_eval_reports_the_classifier_and_the_conditioned_figures(cond, stdout_of, tmp_path):
    test = tmp_path / "test.tsv"
    test.write_text("pos\ta good cast\nneg\ta dull fun\n", encoding="utf-8")
    r = json.loads(stdout_of("eval", "-m", cond / "cond.npz", test, "--json"))
    assert r["task"] == "lm" and r["conditional"] and r["examples"] == 2 and r["labels"] == ["neg", "pos"]
    lm = charlm.load(cond / "cond.npz")
    want = [lm.score("a good cast", label="pos")[0], lm.score("a dull fun", label="neg")[0]]
    assert r["tokens"] == sum(s.n_tokens for s in want)
    assert r["nats_per_token"] == pytest.approx(-sum(s.logprob for s in want) / r["tokens"], rel=1e-9)
    assert r["accuracy"] == np.mean([c.label == g for c, g in zip(lm.classify(["a good cast", "a dull fun"]),
                                                                  ["pos", "neg"])])
    text = stdout_of("eval", "-m", cond / "cond.npz", test)
    assert "accuracy" in text and "given the true label" in text


def test_resume_through_the_command_line_is_exact(cond, run, tmp_path):
    """Stopped at step 5 (inside the second epoch) and resumed to 9 = trained straight to 9."""
    corpus = cond / "reviews.tsv"
    base = ["train", "--condition", corpus, *TINY, "--dropout", "0.2", "--eval-every", "4"]
    assert run(*base, "-o", tmp_path / "a.npz", "--max-steps", "9").exit_code == 0
    assert run(*base, "-o", tmp_path / "b.npz", "--max-steps", "5").exit_code == 0
    r = run("train", corpus, "-o", tmp_path / "b.npz", "--resume", "--max-steps", "9", "-q")
    assert r.exit_code == 0, r.output
    (a, meta_a), (b, meta_b) = load_checkpoint(tmp_path / "a.last.npz"), load_checkpoint(tmp_path / "b.last.npz")
    assert a.keys() == b.keys() and "param/label.embed.W" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert meta_a["train"]["step"] == meta_b["train"]["step"] == 9 and meta_b["labels"] == meta_a["labels"]
    every = [[m["val_loss"] for m in meta["train"]["metrics"] if m["step"] % 4 == 0] for meta in (meta_a, meta_b)]
    assert every[0] == every[1] and len(every[0]) == 2       # (the stopped run also evaluated at its step 5)


def test_the_api_trains_a_conditional_model(cond, tmp_path):
    lm = charlm.train(cond / "reviews.tsv", condition=True, condition_input="first", hidden=8, embedding=4,
                      label_embedding=3, layers=1, batch_size=6, max_steps=2, output=tmp_path / "api.npz")
    assert lm.network.config.condition_input == "first" and lm.network.config.label_embedding == 3
    assert len(lm.sample(2, label="neg", seed=0)) == 2 and lm.next_tokens("a", 3, label="pos")
    with pytest.raises(UsageError, match="give a label .*the labels are: neg, pos"):
        lm.sample()
    with pytest.raises(UsageError, match="unknown label 'meh'"):
        lm.score("a film", label="meh")


def test_unconditional_models_take_no_label(cond, run):
    plain = charlm.load(cond / "plain.npz")
    with pytest.raises(UsageError, match="not a conditional language model"):
        plain.sample(label="pos")
    with pytest.raises(UsageError, match="without labels"):
        plain.classify("a good film")
    assert plain.score("a good film")[0].logprob < 0 and plain.sample(1, seed=0)

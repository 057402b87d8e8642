"""`charlm score` and `charlm sample` through click's CliRunner: every option and every error."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from charlm import checkpoint
from charlm.cli import cli
from charlm.cli import sample as sample_cli
from charlm.cli.score import format_prob

from tinymodel import TEXT, build, save  # noqa: E402


def save_model(path, level, mode, steps=40):
    """Train a tiny LSTM for a few Adam steps on TEXT and save it as a "best" checkpoint."""
    model, vocab, _ = build(level, mode, steps=steps, hidden=16, embedding=8)
    return save(path, model, vocab)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "word": save_model(d / "word.npz", "word", "lines"),
        "char": save_model(d / "char.npz", "char", "stream"),
        "charlines": save_model(d / "charlines.npz", "char", "lines"),
    }


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- score -------------------------------------------------------------------------------------

def test_score_one_sentence(run, models):
    r = run("score", "-m", models["word"], "the cat sat on the mat")
    assert r.exit_code == 0, r.output
    out = r.stdout
    for field in ("sentence:", "tokens:", "logprob:", "probability:", "perplexity:", "oov:"):
        assert field in out
    assert "the cat sat on the mat <EOS>" in out  # lines mode scores the final <EOS>


def test_score_several_sentences_table_marks_the_likelier(run, models):
    good, bad = "the cat sat on the mat", "the mat sat on the cat"
    r = run("score", "-m", models["word"], bad, good)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "logprob" in lines[0] and "perplexity" in lines[0] and "sentence" in lines[0]
    assert lines[2].endswith("*" + good) and lines[1].endswith(" " + bad)


def test_score_json_and_per_token(run, models):
    r = run("score", "-m", models["word"], "--json", "--per-token", "the zebra sat", "a dog")
    assert r.exit_code == 0, r.output
    recs = jsonl(r.stdout)
    assert [d["text"] for d in recs] == ["the zebra sat", "a dog"]
    d = recs[0]
    assert set(d) == {"text", "tokens", "logprob", "log10prob", "perplexity", "oov", "per_token"}
    assert d["tokens"] == ["the", "<UNK>", "sat", "<EOS>"] and d["oov"] == 1
    assert d["logprob"] == pytest.approx(sum(d["per_token"]))
    assert d["log10prob"] == pytest.approx(d["logprob"] / math.log(10))
    assert d["perplexity"] == pytest.approx(math.exp(-d["logprob"] / 4))
    r = run("score", "-m", models["word"], "--json", "a dog")
    assert "per_token" not in jsonl(r.stdout)[0]


def test_score_per_token_plain(run, models):
    r = run("score", "-m", models["char"], "--per-token", "cat")
    assert r.exit_code == 0, r.output
    assert "per token:" in r.stdout
    for tok in ("c", "a", "t"):
        assert any(line.split()[:1] == [tok] for line in r.stdout.splitlines())
    r = run("score", "-m", models["char"], "--per-token", "cat", "dog")
    assert r.exit_code == 0 and r.stdout.count("logprob") >= 3


def test_score_batch_size_gives_the_same_numbers(run, models):
    sents = ["the cat sat", "a dog", "the log sat on the mat and a cat"]
    a = jsonl(run("score", "-m", models["word"], "--json", *sents).stdout)
    b = jsonl(run("score", "-m", models["word"], "--json", "--batch-size", "1", *sents).stdout)
    for x, y in zip(a, b):
        assert x["logprob"] == pytest.approx(y["logprob"], abs=1e-5)


def test_score_file_with_summary(run, models, tmp_path):
    f = tmp_path / "test.txt"
    f.write_text("the cat sat on the mat\n\nthe zebra\na dog\n", encoding="utf-8")
    r = run("score", "-m", models["word"], "--file", str(f))
    assert r.exit_code == 0, r.output
    assert "the zebra" in r.stdout
    assert "corpus: 13 tokens scored, 1 out of vocabulary" in r.stdout
    assert "nats/token" in r.stdout and "bits/token" in r.stdout and "perplexity" in r.stdout
    assert "bits/char" not in r.stdout  # word level
    r = run("score", "-m", models["word"], "--file", str(f), "--json", "--per-token")
    recs = jsonl(r.stdout)
    assert len(recs) == 4 and "per_token" in recs[0]
    s = recs[-1]
    assert s["summary"] is True and s["tokens"] == 13 and s["oov"] == 1
    nats = -sum(d["logprob"] for d in recs[:-1])
    assert s["nats_per_token"] == pytest.approx(nats / 13)
    assert s["bits_per_token"] == pytest.approx(nats / 13 / math.log(2))
    assert s["perplexity"] == pytest.approx(math.exp(nats / 13))
    assert "bits_per_char" not in s


def test_score_file_from_stdin_char_level(run, models):
    r = run("score", "-m", models["charlines"], "--file", "-", "--json", input="the cat\na dog\n")
    assert r.exit_code == 0, r.output
    recs = jsonl(r.stdout)
    s = recs[-1]
    assert s["tokens"] == 8 + 6  # characters + <EOS> per line
    assert s["bits_per_char"] == pytest.approx(s["nats_per_char"] / math.log(2))
    assert s["bits_per_char"] == pytest.approx(s["bits_per_token"])


def test_score_file_stream(run, models, tmp_path):
    f = tmp_path / "run.txt"
    text = "the cat sat\non the mat\n"
    f.write_text(text, encoding="utf-8")
    r = run("score", "-m", models["char"], "--file", str(f), "--stream", "--json")
    assert r.exit_code == 0, r.output
    recs = jsonl(r.stdout)
    assert len(recs) == 1  # the summary only
    s = recs[0]
    assert s["summary"] is True and s["tokens"] == len(text)
    assert set(s) >= {"nats_per_token", "bits_per_token", "perplexity", "nats_per_char",
                      "bits_per_char", "oov"}
    # one running text == the whole text scored as one stream-mode "sentence"
    whole = jsonl(run("score", "-m", models["char"], "--json", text).stdout)[0]
    assert s["nats_per_token"] == pytest.approx(-whole["logprob"] / len(text), abs=1e-5)
    r = run("score", "-m", models["char"], "--file", "-", "--stream", input=text)
    assert r.exit_code == 0 and "bits/char" in r.stdout and "perplexity" in r.stdout


def test_score_model_from_env_and_default_path(run, models, tmp_path, monkeypatch):
    r = run("score", "a dog", "--json", env={"CHARLM_MODEL": models["word"]})
    assert r.exit_code == 0, r.output
    assert jsonl(r.stdout)[0]["tokens"] == ["a", "dog", "<EOS>"]
    monkeypatch.chdir(tmp_path)
    shutil.copy(models["char"], tmp_path / "charlm.npz")
    r = run("score", "a dog", "--json")
    assert r.exit_code == 0 and jsonl(r.stdout)[0]["tokens"] == list("a dog")
    # -m wins over the environment
    r = run("score", "-m", models["word"], "a dog", "--json", env={"CHARLM_MODEL": "nope.npz"})
    assert r.exit_code == 0 and jsonl(r.stdout)[0]["tokens"][-1] == "<EOS>"


def test_score_no_model(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("score", "a dog")
    assert r.exit_code == 1
    assert one_error_line(r) == ("charlm: error: no model at charlm.npz: train one with "
                                 "`charlm train CORPUS` or pass -m PATH")
    r = run("score", "a dog", env={"CHARLM_MODEL": "elsewhere.npz"})
    assert r.exit_code == 1 and "no model at elsewhere.npz" in one_error_line(r)
    r = run("sample", "-m", str(tmp_path / "m.npz"))
    assert r.exit_code == 1 and "no model at" in one_error_line(r)


def test_score_bad_model_file(run, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a model")
    for cmd in (["score", "x"], ["sample"]):
        r = run(*cmd, "-m", str(bad))
        assert r.exit_code == 1
        assert one_error_line(r).startswith("charlm: error:") and "bad.npz" in r.stderr
    r = run("score", "-m", str(tmp_path), "x")
    assert r.exit_code == 1 and "directory" in one_error_line(r)


def test_score_errors(run, models, tmp_path):
    m = models["word"]
    r = run("score", "-m", m, "the cat", "")
    assert r.exit_code == 2 and one_error_line(r) == (
        "charlm: error: sentence 2 is empty: nothing to score")
    for args in ([], ["--stream", "x"], ["--file", "f.txt", "x"], ["--batch-size", "0", "x"],
                 ["--file", "-", "--stream", "--per-token"]):
        r = run("score", "-m", m, *args, input="")
        assert r.exit_code == 2, args
        assert one_error_line(r).startswith("charlm: error:")
    r = run("score", "-m", m, "--file", str(tmp_path / "missing.txt"))
    assert r.exit_code == 1 and "missing.txt" in one_error_line(r)
    (tmp_path / "bin.txt").write_bytes(b"abc\xff\xfe\n")
    r = run("score", "-m", m, "--file", str(tmp_path / "bin.txt"))
    assert r.exit_code == 1 and "UTF-8" in one_error_line(r)
    r = run("score", "-m", m, "--file", str(tmp_path / "bin.txt"), "--stream")
    assert r.exit_code == 1 and "UTF-8" in one_error_line(r)
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    r = run("score", "-m", m, "--file", str(tmp_path / "empty.txt"))
    assert r.exit_code == 1 and "nothing to score" in one_error_line(r)


def test_format_prob_from_the_logarithm():
    assert format_prob(-2.0) == "1.00e-2"
    assert format_prob(math.log10(0.5)) == "5.00e-1"
    assert format_prob(-300.0) == "1.00e-300"
    assert format_prob(-5000 + math.log10(3.25)) == "3.25e-5000"
    assert format_prob(0.0) == "1.00e+0"
    assert format_prob(-1e-6) == "1.00e+0"  # 0.999998 rounds up: carried into the exponent
    assert format_prob(-math.inf) == "0"


def test_tiny_probability_prints_correctly(run, models):
    long = " ".join(["zebra"] * 400)  # 400 unknown words: far below 1e-300
    r = run("score", "-m", models["word"], long)
    assert r.exit_code == 0, r.output
    d = jsonl(run("score", "-m", models["word"], "--json", long).stdout)[0]
    assert d["log10prob"] < -300
    e = math.floor(d["log10prob"])
    assert f"e{e}" in r.stdout and "0.00e" not in r.stdout and "inf" not in r.stdout


def test_score_help_has_examples(run):
    r = run("score", "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout and "CHARLM_MODEL" in r.stdout
    assert "--per-token" in r.stdout and "--stream" in r.stdout and "--batch-size" in r.stdout


# -- sample ------------------------------------------------------------------------------------

def test_sample_same_seed_same_output(run, models):
    for m in models.values():
        a = run("sample", "-m", m, "--seed", "3", "--num", "3", "--length", "30")
        b = run("sample", "-m", m, "--seed", "3", "--num", "3", "--length", "30")
        assert a.exit_code == 0, a.output
        assert a.stdout == b.stdout and a.stdout.strip()


def test_sample_json(run, models):
    r = run("sample", "-m", models["word"], "--json", "--num", "4", "--seed", "1", "--length", "6")
    assert r.exit_code == 0, r.output
    recs = jsonl(r.stdout)
    assert [d["sample"] for d in recs] == [0, 1, 2, 3]
    for d in recs:
        assert set(d) == {"sample", "prime", "text", "tokens", "stop"}
        assert len(d["tokens"]) <= 6 and "<UNK>" not in d["tokens"]
        assert d["stop"] == ("length" if len(d["tokens"]) == 6 else "eos")
        assert d["text"] == " ".join(d["tokens"])


def test_sample_length_default_and_option(run, models):
    r = run("sample", "-m", models["char"], "--json", "--seed", "0")
    assert len(jsonl(r.stdout)[0]["tokens"]) == 200  # char level, stream mode: runs to --length
    r = run("sample", "-m", models["char"], "--json", "--seed", "0", "--length", "7", "--num", "2")
    assert [len(d["tokens"]) for d in jsonl(r.stdout)] == [7, 7]
    r = run("sample", "-m", models["word"], "--json", "--seed", "0", "--temperature", "9")
    assert all(len(d["tokens"]) <= 50 for d in jsonl(r.stdout))  # word level default


def test_sample_greedy_top_k_top_p(run, models):
    m = models["charlines"]
    greedy = run("sample", "-m", m, "--temperature", "0", "--num", "2")
    assert greedy.exit_code == 0, greedy.output
    lines = greedy.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
    top1 = run("sample", "-m", m, "--top-k", "1", "--num", "2", "--seed", "5")
    assert top1.stdout == greedy.stdout
    r = run("sample", "-m", m, "--top-k", "3", "--top-p", "0.9", "-t", "0.8", "--seed", "5")
    assert r.exit_code == 0 and r.stdout.strip()


def test_sample_prime(run, models):
    r = run("sample", "-m", models["char"], "--prime", "the c", "--length", "10", "--seed", "0",
            "--json")
    assert r.exit_code == 0, r.output
    d = jsonl(r.stdout)[0]
    assert d["prime"] == "the c" and d["text"] == "the c" + "".join(d["tokens"])
    assert r.stderr == ""
    r = run("sample", "-m", models["char"], "--prime", "the cQ", "--length", "5", "--seed", "0")
    assert r.exit_code == 0
    assert r.stderr.startswith("charlm: warning:") and "'Q'" in r.stderr
    assert r.stdout.startswith("the cQ")
    r = run("sample", "-m", models["word"], "--prime", "the cat", "--seed", "0", "--json")
    d = jsonl(r.stdout)[0]
    assert d["text"].startswith("the cat")


def test_sample_streams_to_a_terminal(run, models, monkeypatch):
    args = ("sample", "-m", models["word"], "--seed", "4", "--prime", "the")
    plain = run(*args).stdout
    monkeypatch.setattr(sample_cli, "_stdout_is_tty", lambda: True)
    streamed = run(*args).stdout
    assert streamed == plain
    plain = run("sample", "-m", models["char"], "--seed", "4", "--length", "40").stdout
    streamed = run("sample", "-m", models["char"], "--seed", "4", "--length", "40").stdout
    assert streamed == plain


def test_sample_model_from_env(run, models, tmp_path, monkeypatch):
    r = run("sample", "--seed", "0", "--json", env={"CHARLM_MODEL": models["word"]})
    assert r.exit_code == 0 and jsonl(r.stdout)[0]["tokens"][0] in ("the", "a", "dog", "cat")
    monkeypatch.chdir(tmp_path)
    shutil.copy(models["char"], tmp_path / "charlm.npz")
    r = run("sample", "--seed", "0", "--length", "5", "--json")
    assert r.exit_code == 0 and len(jsonl(r.stdout)[0]["tokens"]) == 5


@pytest.mark.parametrize("args", [["--temperature", "-1"], ["--top-k", "0"], ["--top-p", "0"],
                                  ["--top-p", "1.5"], ["--length", "0"], ["--num", "0"],
                                  ["--seed", "-1"], ["--top-k", "x"]])
def test_sample_bad_options(run, models, args):
    r = run("sample", "-m", models["word"], *args)
    assert r.exit_code == 2
    assert args[0] in one_error_line(r)


def test_sample_help_has_examples(run):
    r = run("sample", "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout
    for opt in ("--temperature", "--top-k", "--top-p", "--prime", "--length", "--num", "--seed",
                "--json", "CHARLM_MODEL"):
        assert opt in r.stdout


def test_score_file_stream_uses_the_token_cache(run, models, tmp_path, monkeypatch):
    from charlm.text import tokencache

    monkeypatch.setattr(tokencache, "MIN_BYTES", 0)
    f = tmp_path / "run.txt"
    f.write_text("the cat sat\non the mat\n" * 20, encoding="utf-8")
    args = ("score", "-m", models["char"], "--file", str(f), "--stream", "--cache-dir", str(tmp_path / "c"))
    first, second = run(*args), run(*args)
    assert first.exit_code == second.exit_code == 0
    assert "charlm: tokenized" in first.stderr and "charlm: token cache used" in second.stderr
    assert first.stdout == second.stdout == run(*args[:-2], "--no-cache").stdout
    assert len(list((tmp_path / "c").glob("run.txt-*.tokens.npy"))) == 1

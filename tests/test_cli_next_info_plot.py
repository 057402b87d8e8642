"""`charlm next`, `charlm info`, `charlm plot` and the new `charlm sample` options, through CliRunner
(the `run` fixture of conftest.py)."""

from __future__ import annotations

import json
import math
import struct
import sys

import pytest
from click.testing import CliRunner

from charlm import checkpoint, curves
from charlm.cli import cli
from charlm.lm import generate
from charlm.lm.generate import Prime

from tinymodel import TEXT, build, save  # noqa: E402

TINY = ["--hidden", "12", "--embedding", "6", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "-q"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    out = {"dir": d}
    for name, level, mode in (("word", "word", "lines"), ("char", "char", "stream"),
                              ("charlines", "char", "lines")):
        model, vocab, _ = build(level, mode, steps=40, hidden=16, embedding=8)
        out[name] = save(d / f"{name}.npz", model, vocab)
    corpus = d / "corpus.txt"
    corpus.write_text(TEXT * 3, encoding="utf-8")
    out["corpus"] = corpus
    r = CliRunner().invoke(cli, ["train", str(corpus), "-o", str(d / "run.npz"), *TINY, "--max-steps", "9",
                                 "--eval-every", "3", "--metrics", str(d / "run.jsonl")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- next ----------------------------------------------------------------------------------------

def test_next_table_and_json(run, models):
    out = ok(run("next", "-m", models["word"], "the cat", "-k", "4"))
    lines = out.splitlines()
    assert lines[0].split() == ["probability", "logprob", "token"] and len(lines) == 5
    rec = json.loads(ok(run("next", "-m", models["word"], "the cat", "-k", "4", "--json")))
    assert rec["prefix"] == "the cat" and len(rec["next"]) == 4
    for row, line in zip(rec["next"], lines[1:]):
        assert row["prob"] == pytest.approx(math.exp(row["logprob"]))
        p, lp, tok = line.split(maxsplit=2)
        assert float(p) == pytest.approx(row["prob"], abs=1e-6) and float(lp) == pytest.approx(row["logprob"], abs=1e-4)
        assert tok in (row["token"], json.dumps(row["token"]))
    probs = [r["prob"] for r in rec["next"]]
    assert probs == sorted(probs, reverse=True)


def test_next_shows_eos_and_unk(run, models):
    rec = json.loads(ok(run("next", "-m", models["word"], "the cat sat on the mat", "-k", "99", "--json")))
    tokens = [r["token"] for r in rec["next"]]
    assert "<EOS>" in tokens and "<UNK>" in tokens
    assert sum(r["prob"] for r in rec["next"]) == pytest.approx(1.0, abs=1e-6)
    assert tokens[0] == "<EOS>"  # this model ends the sentence here
    out = ok(run("next", "-m", models["word"], "the cat sat on the mat", "-k", "99"))
    assert any(line.endswith(" <EOS>") for line in out.splitlines())


def test_next_character_model_and_empty_prefix(run, models):
    rec = json.loads(ok(run("next", "-m", models["char"], "the ca", "-k", "3", "--json")))
    assert rec["next"][0]["token"] == "t"
    out = ok(run("next", "-m", models["char"], "the"))
    assert '" "' in out  # a space is shown quoted
    first = json.loads(ok(run("next", "-m", models["charlines"], "--json")))
    assert first["prefix"] == "" and first["next"][0]["token"] == "t"


def test_next_help_has_examples(run):
    assert "Examples:" in ok(run("next", "--help"))


# -- info ----------------------------------------------------------------------------------------

def test_info_of_a_best_model(run, models):
    out = ok(run("info", models["dir"] / "run.npz"))
    for field in ("file:", "task:        lm", "model:       gru", "parameters:", "vocabulary:",
                  "tokenizer:   level=char", "training:    step 9", "best val:", "bits/char",
                  "options:", "seq_len=8"):
        assert field in out, field
    assert "continue:" not in out
    info = json.loads(ok(run("info", models["dir"] / "run.npz", "--json")))
    assert info["kind"] == "best" and info["format_version"] == checkpoint.FORMAT_VERSION
    assert info["model"]["hidden"] == 12 and info["model"]["parameters"] > 0
    assert info["vocabulary"]["size"] == len(info["vocabulary"]["top"]) or len(info["vocabulary"]["top"]) == 10
    counts = [c for _, c in info["vocabulary"]["top"]]
    assert counts == sorted(counts, reverse=True)
    t = info["training"]
    assert t["step"] == 9 and t["tokens_seen"] == 9 * 2 * 8
    assert t["bits_per_char"] == pytest.approx(t["val_loss"] / math.log(2))


def test_info_of_a_training_state_says_where_the_run_stands(run, models):
    out = ok(run("info", models["dir"] / "run.last.npz"))
    assert "run:         step 9" in out and "evaluations: 3" in out and "patience 5" in out
    assert f"continue:    charlm train {models['corpus']} -o {models['dir'] / 'run.npz'} --resume" in out
    info = json.loads(ok(run("info", models["dir"] / "run.last.npz", "--json")))
    r = info["run"]
    assert r["step"] == 9 and r["evaluations"] == 3 and r["lr"] == pytest.approx(3e-3)
    assert r["last_evaluation"]["step"] == 9 and 0 < r["epochs_done"]


def test_info_of_a_word_model_without_training_record(run, models):
    out = ok(run("info", models["word"]))
    assert "level=word" in out and "no record" in out
    info = json.loads(ok(run("info", models["word"], "--json")))
    assert "training" not in info and "<EOS>" in [t for t, _ in info["vocabulary"]["top"]]


def test_word_level_validation_is_a_perplexity():
    from charlm.info import loss_figures

    assert loss_figures(2.0, "word") == {"val_loss": 2.0, "perplexity": pytest.approx(math.exp(2.0))}
    assert loss_figures(None, "char") == {}


# -- plot ----------------------------------------------------------------------------------------

def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("source", ["run.last.npz", "run.jsonl"])
def test_plot_writes_a_png_of_the_size_asked(run, models, tmp_path, source):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    out = tmp_path / "curves.png"
    r = run("plot", models["dir"] / source, "-o", out, "--size", "640x480")
    ok(r)
    assert "wrote" in r.stderr
    assert png_size(out) == (640, 480)
    pixels = imread(out)  # decodes: a valid PNG
    assert pixels.shape[:2] == (480, 640) and pixels.std() > 0  # not a blank image


def test_plot_svg_and_default_name(run, models, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    ok(run("plot", models["dir"] / "run.jsonl", "-o", tmp_path / "c.svg"))
    assert (tmp_path / "c.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    monkeypatch.chdir(tmp_path)
    ok(run("plot", models["dir"] / "run.last.npz"))
    assert png_size(tmp_path / "curves.png") == (1200, 800)


def _write_metrics(path, records, extra_lines=()):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


RESUMED = [  # a run with two learning-rate decays, resumed once (elapsed restarts)
    {"step": 100, "train_loss": 3.0, "val_loss": 2.9, "lr": 0.01, "elapsed": 10.0},
    {"step": 200, "train_loss": 2.5, "val_loss": 2.6, "lr": 0.01, "elapsed": 20.0},
    {"step": 300, "train_loss": 2.4, "val_loss": 2.7, "lr": 0.01, "elapsed": 30.0},
    {"step": 400, "train_loss": None, "val_loss": 2.5, "lr": 0.005, "elapsed": 4.0},
    {"step": 500, "train_loss": 2.2, "val_loss": 2.55, "lr": 0.005, "elapsed": 14.0},
    {"step": 600, "train_loss": 2.1, "val_loss": None, "lr": 0.0025, "elapsed": 24.0},
]


def test_curves_add_up_resumed_time_and_find_the_decays(tmp_path):
    assert curves.wall_clock(RESUMED) == [10.0, 20.0, 30.0, 34.0, 44.0, 54.0]
    assert curves.lr_decays(RESUMED) == [2, 4]
    run = curves.read_run(_write_metrics(tmp_path / "m.jsonl", RESUMED))
    assert run.records == RESUMED and run.skipped == 0 and run.runs == 1 and run.level is None


def test_plot_units_follow_the_level(run, models, tmp_path):
    pytest.importorskip("matplotlib")
    m = _write_metrics(tmp_path / "m.jsonl", RESUMED)
    for args, unit in (([], "bits per token"), (["--level", "char"], "bits per character"),
                       (["--level", "word"], "perplexity")):
        ok(run("plot", m, "-o", tmp_path / "u.svg", *args))
        assert unit in (tmp_path / "u.svg").read_text(encoding="utf-8")
    ok(run("plot", models["dir"] / "run.last.npz", "-o", tmp_path / "c.svg"))  # the file says: char
    assert "bits per character" in (tmp_path / "c.svg").read_text(encoding="utf-8")


def test_plot_of_a_resumed_run_with_decays_and_broken_lines(run, tmp_path):
    pytest.importorskip("matplotlib")
    m = _write_metrics(tmp_path / "m.jsonl", RESUMED, ["{not json", "", "[1, 2]", '{"no_step": 1}'])
    r = run("plot", m, "-o", tmp_path / "p.png", "--size", "900x600")
    ok(r)
    assert "skipped 3 broken lines" in r.stderr
    assert png_size(tmp_path / "p.png") == (900, 600)


def test_a_metrics_file_with_two_runs_plots_the_last(run, tmp_path):
    pytest.importorskip("matplotlib")
    m = _write_metrics(tmp_path / "m.jsonl", RESUMED[:3] + RESUMED[:2])
    assert curves.read_run(m).records == RESUMED[:2]
    r = run("plot", m, "-o", tmp_path / "p.png")
    ok(r)
    assert "holds 2 runs" in r.stderr


def test_plot_without_matplotlib_says_what_to_install(run, models, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = run("plot", models["dir"] / "run.jsonl", "-o", tmp_path / "c.png")
    assert r.exit_code == 1
    assert r.stderr.strip() == "charlm: error: charlm plot needs matplotlib: pip install 'charlm[plot]'"
    assert not (tmp_path / "c.png").exists()


# -- sample: --prime-file, --stop-at, --beam ------------------------------------------------------

def test_prime_file_is_the_same_as_prime(run, models, tmp_path):
    p = tmp_path / "prime.txt"
    p.write_text("the c", encoding="utf-8")
    a = ok(run("sample", "-m", models["char"], "--prime", "the c", "--seed", "3", "-l", "20"))
    b = ok(run("sample", "-m", models["char"], "--prime-file", p, "--seed", "3", "-l", "20"))
    assert a == b and a.startswith("the c")
    c = ok(run("sample", "-m", models["char"], "--prime-file", "-", "--seed", "3", "-l", "20", input="the c"))
    assert c == a


def test_prime_file_with_newlines(run, models, tmp_path):
    p = tmp_path / "prime.txt"
    p.write_text("the cat sat on the mat\n\nthe dog\n", encoding="utf-8")
    # stream mode: the text as it is, newlines included, then the continuation
    rec = jsonl(ok(run("sample", "-m", models["char"], "--prime-file", p, "--json", "-l", "5", "--seed", "0")))[0]
    assert rec["prime"] == p.read_text() and rec["text"].startswith(rec["prime"])
    # lines mode: complete lines are earlier sentences; the sample is a new line after them
    rec = jsonl(ok(run("sample", "-m", models["word"], "--prime-file", p, "--json", "--seed", "0")))[0]
    assert rec["prime"] == "the cat sat on the mat\nthe dog\n"
    assert rec["text"] == rec["prime"] + " ".join(rec["tokens"])


def test_prime_reads_lines_as_sentences():
    _, vocab, tok = build("word", "lines", steps=1)
    p = Prime.from_text(tok, "the cat\n\n  \nthe dog sat\na c")
    assert p.tokens == ["the", "cat", "<EOS>", "the", "dog", "sat", "<EOS>", "a", "c"]
    assert p.text == "the cat\nthe dog sat\na c" and p.head == "the cat\nthe dog sat\n"
    assert p.continued(tok, ["dog"]) == "the cat\nthe dog sat\na c dog"
    assert p.context_ids(vocab)[:4] == [vocab.eos_id, vocab.index["the"], vocab.index["cat"], vocab.eos_id]
    assert p.unknown(vocab) == ["c"]
    one = Prime.from_text(tok, "the cat")
    assert one.tokens == ["the", "cat"] and one.text == "the cat" and one.continued(tok, ["sat"]) == "the cat sat"


def test_stop_at(run, models):
    recs = jsonl(ok(run("sample", "-m", models["char"], "--stop-at", " ", "--json", "-n", "8", "--seed", "2",
                        "-l", "60", "--prime", "the")))
    for rec in recs:
        gen = "".join(rec["tokens"])
        assert rec["stop"] == "stop-at" and gen.endswith(" ") and gen.count(" ") == 1
        assert rec["text"] == "the" + gen  # the prime holds no space: only generated text counts
    several = jsonl(ok(run("sample", "-m", models["char"], "--stop-at", "at", "--stop-at", "\n", "--json",
                           "-n", "8", "--seed", "2", "-l", "80")))
    for rec in several:
        gen = "".join(rec["tokens"])
        assert (rec["stop"] == "stop-at") == (gen.endswith("at") or gen.endswith("\n"))
        assert "at" not in gen[:-1] and "\n" not in gen[:-1]


def test_stop_at_ends_each_sample_of_a_batch_on_its_own():
    model, vocab, tok = build("char", "stream", steps=30)
    out = generate.sample(model, vocab, num=6, length=50, rng=__import__("numpy").random.default_rng(1),
                          stop_at=["t "])
    full = generate.sample(model, vocab, num=6, length=50, rng=__import__("numpy").random.default_rng(1))
    for short, long_ in zip(out, full):
        text = "".join(long_)
        cut = text.find("t ")
        assert "".join(short) == (text if cut < 0 else text[:cut + 2])


def test_beam_cli(run, models):
    out = ok(run("sample", "-m", models["word"], "--beam", "1"))
    assert out == ok(run("sample", "-m", models["word"], "--temperature", "0"))
    recs = jsonl(ok(run("sample", "-m", models["word"], "--beam", "5", "--nbest", "3", "--json")))
    assert [r["candidate"] for r in recs] == [0, 1, 2]
    assert set(recs[0]) == {"candidate", "prime", "text", "tokens", "logprob", "score", "stop"}
    assert all(r["stop"] == "eos" for r in recs)
    assert [r["logprob"] for r in recs] == sorted((r["logprob"] for r in recs), reverse=True)
    plain = ok(run("sample", "-m", models["word"], "--beam", "5", "--nbest", "3"))
    assert plain.splitlines() == [r["text"] for r in recs]
    again = jsonl(ok(run("sample", "-m", models["word"], "--beam", "5", "--nbest", "3", "--json")))
    assert again == recs  # deterministic
    penal = jsonl(ok(run("sample", "-m", models["word"], "--beam", "5", "--length-penalty", "1", "--json")))[0]
    assert penal["score"] == pytest.approx(penal["logprob"] / (len(penal["tokens"]) + 1))


@pytest.mark.parametrize("args", [["--temperature", "0.5"], ["--top-k", "3"], ["--top-p", "0.9"],
                                  ["--num", "2"], ["--seed", "1"]])
def test_beam_refuses_sampling_options(run, models, args):
    r = run("sample", "-m", models["word"], "--beam", "3", *args)
    assert r.exit_code == 2 and args[0] in r.stderr and "--beam" in r.stderr


def test_sample_help_mentions_the_new_options(run):
    out = ok(run("sample", "--help"))
    for opt in ("--prime-file", "--stop-at", "--beam", "--nbest", "--length-penalty"):
        assert opt in out

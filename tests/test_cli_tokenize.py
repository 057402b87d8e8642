"""`charlm tokenize` through click's CliRunner, plus one run of the installed script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import EOS, UNK, Vocab


def run(*args, input=None):
    return CliRunner().invoke(cli, ["tokenize", *map(str, args)], input=input)


def ok(*args, input=None) -> str:
    result = run(*args, input=input)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


def json_lines(out: str) -> list:
    return [json.loads(line) for line in out.splitlines()]


# --- printing tokens --------------------------------------------------------------------------


def test_char_stream_default(write_corpus):
    path = write_corpus("ab c\nd\n")
    assert ok(path) == "a b   c\nd\n"
    assert json_lines(ok(path, "--json")) == [["a", "b", " ", "c", "\n"], ["d", "\n"]]


def test_stream_json_closes_last_line_without_newline(write_corpus):
    path = write_corpus("ab\n\ncd")
    assert json_lines(ok(path, "--json")) == [["a", "b", "\n"], ["\n"], ["c", "d"]]
    assert ok(path) == "a b\n\nc d\n"


def test_char_lines_mode_on_names(data_dir):
    out = ok(data_dir / "dinos.txt", "--mode", "lines", "--lowercase")
    lines = out.splitlines()
    assert len(lines) == 1536 and lines[0] == "a a c h e n o s a u r u s"
    first = json.loads(ok(data_dir / "dinos.txt", "--mode", "lines", "--json").splitlines()[0])
    assert first == list("Aachenosaurus")  # no <EOS>, no "\n"


def test_seed_example_from_stdin():
    out = ok("--level", "word", input="Cats average 15 hours of sleep a day.\n")
    assert out == "Cats average 15 hours of sleep a day .\n"
    assert ok("--level", "word", "-", input="Cats sleep.") == "Cats sleep .\n"


def test_word_lines_mode_skips_blank_lines_and_has_no_eos(write_corpus):
    path = write_corpus("Hello, world!\n\n   \nBye.\n")
    assert ok(path, "--level", "word") == "Hello , world !\nBye .\n"
    assert json_lines(ok(path, "--level", "word", "--json")) == [
        ["Hello", ",", "world", "!"], ["Bye", "."]]


def test_word_stream_mode(write_corpus):
    path = write_corpus("To be,\n\nor not.\n")
    args = (path, "--level", "word", "--mode", "stream")
    assert ok(*args) == "To be ,\n\nor not .\n"
    assert json_lines(ok(*args, "--json")) == [
        ["To", "be", ",", "\n"], ["\n"], ["or", "not", ".", "\n"]]


def test_split_whitespace_ptb(write_corpus):
    path = write_corpus(" the <unk> co. 's N \n a-b \n")
    out = ok(path, "--level", "word", "--split", "whitespace")
    assert out == "the <unk> co. 's N\na-b\n"


def test_lowercase_and_graphemes(write_corpus):
    path = write_corpus("Cafe\u0301 \U0001F44D\U0001F3FD\n")
    got = json_lines(ok(path, "--graphemes", "--lowercase", "--json"))
    assert got == [["c", "a", "f", "e\u0301", " ", "\U0001F44D\U0001F3FD", "\n"]]
    assert len(json_lines(ok(path, "--json"))[0]) == 9  # code points
    assert ok(path, "--level", "word", "--lowercase") == "cafe\u0301 \U0001F44D\U0001F3FD\n"


@pytest.mark.parametrize(
    "args, config",
    [
        ([], TokenizerConfig()),
        (["--graphemes", "--mode", "lines"], TokenizerConfig(graphemes=True, mode="lines")),
        (["--level", "word"], TokenizerConfig(level="word")),
        (["--level", "word", "--mode", "stream", "--lowercase"],
         TokenizerConfig(level="word", mode="stream", lowercase=True)),
    ],
)
def test_output_does_not_depend_on_chunk_size(write_corpus, monkeypatch, args, config):
    line = "Caf\u00e9 na\u0308ive, 1,000.5 \U0001F44D\U0001F3FD!\n\n \u0915\u094d\u0937 don't\nZ"
    text = line * 20
    path = write_corpus(text)
    tok = Tokenizer(config)
    if config.mode == "stream":
        expected = [tok.tokenize(line + "\n") for line in text.split("\n")[:-1]]
        expected.append(tok.tokenize(text.split("\n")[-1]))
    else:
        sentences = map(tok.tokenize, text.split("\n"))
        expected = [t for t in sentences if t and not all(x.isspace() for x in t)]
    for chunk in (3, 7, 1 << 20):
        monkeypatch.setattr("charlm.text.reader.CHUNK_SIZE", chunk)
        assert json_lines(ok(path, "--json", *args)) == expected


# --- vocabulary and statistics ------------------------------------------------------------------


def test_vocab_out_prints_tokens_and_writes_json(write_corpus, tmp_path):
    path = write_corpus("b a b\nc b a\n")
    vpath = tmp_path / "v.json"
    out = ok(path, "--level", "word", "--vocab-out", vpath)
    assert out == "b a b\nc b a\n"
    vocab = Vocab.load(vpath)
    assert vocab.tokens == [UNK, EOS, "b", "a", "c"]
    assert vocab.counts == [0, 2, 3, 2, 1]  # <EOS>: one per sentence
    assert vocab.tokenizer == TokenizerConfig(level="word", mode="lines")


def test_vocab_out_quiet_min_count_max_vocab(write_corpus, tmp_path):
    path = write_corpus("b a b\nc b a d\n")
    vpath = tmp_path / "v.json"
    assert ok(path, "--level", "word", "--min-count", 2, "--vocab-out", vpath, "-q") == ""
    assert Vocab.load(vpath).tokens == [UNK, EOS, "b", "a"]
    assert ok(path, "--level", "word", "--max-vocab", 3, "--vocab-out", vpath, "--quiet") == ""
    vocab = Vocab.load(vpath)
    assert vocab.tokens == [UNK, EOS, "b"] and vocab.max_vocab == 3
    assert vocab.counts[0] == 4  # a, a, c, d


def test_stats_replace_the_tokens(write_corpus):
    path = write_corpus("ab a\nb\n")
    out = ok(path, "--stats")
    assert "tokens:      7\n" in out
    assert "types:       4" in out  # a, b, " ", "\n"
    assert "singletons:  1" in out
    assert "OOV rate:    0.00%" in out
    assert "'\\n'" in out and "' '" in out  # special characters shown visibly
    assert "a b" not in out


def test_stats_with_min_count_top_and_vocab_out(write_corpus, tmp_path):
    path = write_corpus("the cat the dog the end\n")
    vpath = tmp_path / "v.json"
    out = ok(path, "--level", "word", "--stats", "--min-count", 2, "--top", 1, "--vocab-out", vpath)
    assert "tokens:      6 in 1 sentences" in out
    assert "kept:        1 of 4 types (25.00%), covering 50.00% of tokens" in out
    assert "OOV rate:    50.00% (3 tokens -> <UNK>)" in out
    assert "top 1 tokens:" in out and "'the'" in out and "'cat'" not in out
    assert Vocab.load(vpath).tokens == [UNK, EOS, "the"]


def test_stats_on_tinyshakespeare_words(data_dir):
    out = ok(data_dir / "tinyshakespeare.txt", "--level", "word", "--stats", "--max-vocab", 1000)
    assert "32,777 sentences" in out
    assert "vocabulary:  1,000 ids" in out


# --- bad input --------------------------------------------------------------------------------


def assert_fails(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("charlm: error: "), err
    for fragment in fragments:
        assert fragment in err, err


def test_missing_file(tmp_path):
    assert_fails(run(tmp_path / "nope.txt"), 1, "no such file", "nope.txt")


def test_directory(tmp_path):
    assert_fails(run(tmp_path), 1, "is a directory")


def test_not_utf8(write_corpus):
    path = write_corpus("line one\n".encode() + b"caf\xe9\n")
    assert_fails(run(path), 1, "not UTF-8", "line 2", "byte offset 12")


def test_nul_bytes(write_corpus):
    assert_fails(run(write_corpus(b"abc\x00def\n")), 1, "NUL byte", "binary")


@pytest.mark.parametrize("content", ["", " \n\t\n\n"])
@pytest.mark.parametrize("level", ["char", "word"])
def test_empty_or_whitespace_only(write_corpus, content, level):
    result = run(write_corpus(content), "--level", level)
    assert_fails(result, 1, "empty or whitespace only")
    assert result.stdout == ""


def test_empty_stdin():
    assert_fails(run("-", input=""), 1, "empty")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--min-count", "0"], "--min-count"),
        (["--min-count", "-3"], "--min-count"),
        (["--max-vocab", "1"], "--max-vocab"),
        (["--max-vocab", "-1"], "--max-vocab"),
        (["--level", "word", "--graphemes"], "--graphemes works only with --level char"),
        (["--split", "whitespace"], "--split whitespace works only with --level word"),
        (["--top", "-1", "--stats"], "--top"),
    ],
)
def test_bad_option_values_exit_2(write_corpus, args, fragment):
    assert_fails(run(write_corpus("abc\n"), *args), 2, fragment)


@pytest.mark.parametrize("args", [["--level", "byte"], ["--mode", "x"], ["--min-count", "two"]])
def test_click_rejects_bad_choices(write_corpus, args):
    result = run(write_corpus("abc\n"), *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value" in result.stderr


def test_help_has_examples():
    out = ok("--help")
    assert "Examples:" in out and "--vocab-out" in out and "--graphemes" in out


# --- the installed console script -------------------------------------------------------------


def _charlm_command() -> list[str]:
    venv_script = Path(sys.executable).with_name("charlm")
    if venv_script.exists():
        return [str(venv_script)]
    found = shutil.which("charlm")
    return [found] if found else [sys.executable, "-m", "charlm"]


def test_console_script(data_dir, tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(
        [*_charlm_command(), "tokenize", "--mode", "lines", str(data_dir / "dinos.txt")],
        capture_output=True, text=True, encoding="utf-8", env=env, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == ["A a c h e n o s a u r u s", "A a r d o n y x"]
    proc = subprocess.run(
        [*_charlm_command(), "tokenize", "missing.txt"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "charlm: error: no such file: missing.txt"

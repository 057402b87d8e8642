"""Shared pytest fixtures for charlm's tests (keep this file small)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from tinymodel import build

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"  # corpora shipped with the repo: dinos.txt, tinyshakespeare.txt


@pytest.fixture
def data_dir() -> Path:
    """The repo's data/ folder."""
    return DATA


@pytest.fixture
def write_corpus(tmp_path):
    """write_corpus(content, name="corpus.txt") -> Path of a file in tmp_path holding
    `content` (str, written as UTF-8, or bytes, written as is)."""

    def write(content, name: str = "corpus.txt") -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return write


@pytest.fixture
def run(monkeypatch):
    """run(*args, input=None, env=None) -> click Result of `charlm ARGS` in-process (CHARLM_MODEL
    unset; an uncaught exception fails the test instead of becoming the result)."""
    monkeypatch.delenv("CHARLM_MODEL", raising=False)
    runner = CliRunner()

    def invoke(*args, input=None, env=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False,
                             prog_name="charlm")

    return invoke


@pytest.fixture
def stdout_of(run):
    """stdout_of(*args): what `charlm ARGS` prints (run by `run`), which must succeed."""

    def invoke(*args):
        r = run(*args)
        assert r.exit_code == 0, r.output
        return r.stdout

    return invoke


# Tiny trained language models (model, vocab, tokenizer), one per test module that asks.

@pytest.fixture(scope="module")
def word_lines():
    return build("word", "lines")


@pytest.fixture(scope="module")
def char_stream():
    return build("char", "stream")


@pytest.fixture(scope="module")
def char_lines():
    return build("char", "lines")


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory):
    """{name: path} of the models the `charlm serve` tests serve: lm, ner, pos, cls (tests/servemodels.py)."""
    from servemodels import train_models

    return train_models(tmp_path_factory.mktemp("serve_models"))

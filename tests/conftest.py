"""Shared pytest fixtures for charlm's tests (keep this file small)."""

from __future__ import annotations

from pathlib import Path

import pytest

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

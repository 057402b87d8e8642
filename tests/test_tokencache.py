"""The token cache: built once, reused, and never trusted blindly (charlm/text/tokencache.py)."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest

from charlm.text import tokencache, tokenids
from charlm.text.tokencache import cache_files, token_ids
from charlm.text.tokenizer import TokenizerConfig

TEXT = "The quick brown fox\njumps over the lazy dog.\n\n" * 40
CHAR = TokenizerConfig(level="char")


class Notes:
    """A report that keeps what it is told."""

    def __init__(self):
        self.notes, self.messages, self.progress = [], [], []

    def note(self, text):
        self.notes.append(text)

    def message(self, text):
        self.messages.append(text)

    def reading(self, done, total):
        self.progress.append((done, total))


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """(corpus path, cache folder): a small corpus that is cached (MIN_BYTES lowered)."""
    monkeypatch.setattr(tokencache, "MIN_BYTES", 0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return corpus, tmp_path / "cache"


def build(corpus, folder, config=CHAR, **kw):
    notes = Notes()
    tids = token_ids(str(corpus), config, str(folder), report=notes, **kw)
    return tids, notes


def no_tokenizing(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("tokenized although the cache was valid")
    monkeypatch.setattr(tokencache, "tokenize_ids", refuse)


def test_built_once_then_mapped(cached, monkeypatch):
    corpus, folder = cached
    first, notes = build(corpus, folder)
    files = cache_files(corpus, CHAR, folder)
    assert files.record.exists() and files.ids.exists() and "tokenized" in notes.notes[0]
    assert notes.progress[-1] == (len(TEXT), len(TEXT))
    record = json.loads(files.record.read_text())
    assert record["corpus"]["path"] == str(corpus) and record["corpus"]["hash"].startswith("sha256:")
    assert record["tokenizer"] == CHAR.to_dict() and record["dtype"] == "uint8"
    assert record["types"] == first.types and sum(record["counts"]) == len(first.ids) == len(TEXT)
    np.testing.assert_array_equal(np.load(files.ids), first.ids)

    no_tokenizing(monkeypatch)
    again, notes = build(corpus, folder)
    assert notes.notes == [f"token cache used: {len(TEXT):,} tokens of {corpus} from {files.ids}"]
    assert isinstance(again.ids, np.memmap) and again.types == first.types
    np.testing.assert_array_equal(again.ids, first.ids)
    np.testing.assert_array_equal(again.counts, first.counts)


def test_other_tokenizer_settings_get_their_own_cache(cached):
    corpus, folder = cached
    build(corpus, folder)
    words, notes = build(corpus, folder, TokenizerConfig(level="word"))
    assert "tokenized" in notes.notes[0] and words.mode == "lines"
    assert len(list(folder.glob("*.tokens.npy"))) == 2


def test_same_size_same_time_different_bytes_is_rebuilt(cached):
    corpus, folder = cached
    first, _ = build(corpus, folder)
    st = os.stat(corpus)
    corpus.write_text(TEXT.replace("fox", "cat"), encoding="utf-8")  # same size
    os.utime(corpus, ns=(st.st_atime_ns, st.st_mtime_ns))            # same modification time
    second, notes = build(corpus, folder)
    assert notes.messages == [f"token cache {cache_files(corpus, CHAR, folder).record} not used: the corpus "
                              "changed (same size and time, different content); tokenizing again"]
    assert "".join(second.types[i] for i in second.ids) == TEXT.replace("fox", "cat")
    # verify=False (a data-parallel process after rank 0 checked) trusts size and time
    _, notes = build(corpus, folder, verify=False)
    assert notes.notes[0].startswith("token cache used")


def test_changed_size_is_rebuilt(cached):
    corpus, folder = cached
    build(corpus, folder)
    corpus.write_text(TEXT + "more\n", encoding="utf-8")
    tids, notes = build(corpus, folder)
    assert "the corpus changed (size or modification time)" in notes.messages[0]
    assert len(tids.ids) == len(TEXT) + 5


@pytest.mark.parametrize("damage,why", [
    (lambda f: f.ids.write_bytes(f.ids.read_bytes()[:-7]), "its id file is truncated"),
    (lambda f: f.ids.unlink(), "its id file is missing"),
    (lambda f: f.ids.write_bytes(tokenids.npy_header("uint16", 5) + f.ids.read_bytes()[128:]),
     "its id file is damaged (header)"),
    (lambda f: f.record.write_text(json.dumps(dict(json.loads(f.record.read_text()), counts=[1]))),
     "its record is damaged"),
    (lambda f: f.record.write_text(json.dumps(dict(json.loads(f.record.read_text()), version=99))),
     "written by another charlm"),
    (lambda f: f.record.write_text(json.dumps(dict(json.loads(f.record.read_text()), corpus={"path": "/x"}))),
     "another corpus"),
    (lambda f: f.record.write_text(json.dumps(dict(json.loads(f.record.read_text()), tokens="many"))),
     "its record is damaged"),
])
def test_a_damaged_or_foreign_cache_is_rebuilt_not_trusted(cached, damage, why):
    corpus, folder = cached
    first = np.array(build(corpus, folder)[0].ids)  # a copy: the damage below edits the file in place
    damage(cache_files(corpus, CHAR, folder))
    tids, notes = build(corpus, folder)
    assert len(notes.messages) == 1 and why in notes.messages[0] and "tokenizing again" in notes.messages[0]
    np.testing.assert_array_equal(tids.ids, first)
    _, notes = build(corpus, folder)  # and the rebuilt cache is good
    assert notes.notes[0].startswith("token cache used") and not notes.messages


def test_a_file_that_is_not_a_cache_is_never_written_over(cached):
    corpus, folder = cached
    files = cache_files(corpus, CHAR, folder)
    folder.mkdir()
    files.record.write_text("my notes, not JSON\n")
    tids, notes = build(corpus, folder)
    assert "is not a charlm token cache: left alone" in notes.messages[0]
    assert files.record.read_text() == "my notes, not JSON\n" and not files.ids.exists()
    assert "".join(tids.types[i] for i in tids.ids) == TEXT


def test_small_corpora_stdin_and_no_folder_are_not_cached(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    for folder in (tmp_path / "cache", None):
        tids, notes = build(corpus, folder)  # below MIN_BYTES
        assert not notes.notes and not notes.messages and not isinstance(tids.ids, np.memmap)
    assert not (tmp_path / "cache").exists()


def _race(corpus, folder, queue):
    tids, notes = build(corpus, folder)
    queue.put((notes.notes, tids.ids.tolist()))


def test_processes_asking_at_once_build_the_cache_once(cached):
    """Four processes (as in a data-parallel run on one node) ask for the same cache at once:
    exactly one tokenizes, the others map its files; all see the same ids."""
    corpus, folder = cached
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(corpus, folder, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    built = [n for notes, _ in results for n in notes if n.startswith("tokenized")]
    used = [n for notes, _ in results for n in notes if n.startswith("token cache used")]
    assert len(built) == 1 and len(used) == 3
    assert all(ids == results[0][1] for _, ids in results)
    assert not list(folder.glob("*.tmp*"))  # no temporary file left behind

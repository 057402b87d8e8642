"""Pair files (SOURCE<TAB>TARGET): reading, several references, every error as one line naming the
file and the line; the two vocabularies; the date generator; the CMUdict G2P rule of
benchmarks/g2p_data.py and the shipped subset."""

import sys
from pathlib import Path

import numpy as np
import pytest

from charlm.seq2seq.dates import FORMS, date_pairs, write_date_pairs
from charlm.errors import DataError
from charlm.seq2seq.pairs import PairVocab, read_pairs
from charlm.text.tokenizer import TokenizerConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import g2p_data  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"


def test_pairs_and_references(write_corpus):
    path = write_corpus("read\tR IY D\n\n  live \t L IH V\nread\tR EH D\nlive\tL AY V\nread\tR IY D\n")
    f = read_pairs(path)
    assert [e.source for e in f.examples] == ["read", "live"]
    assert f.examples[0].references == ["R IY D", "R EH D"] and f.examples[0].lines == [1, 4]
    assert f.examples[1].references == ["L IH V", "L AY V"]
    assert f.pairs == 4 and f.name == str(path)


@pytest.mark.parametrize("content,message", [
    ("a\tb\nabc\n", "line 2: no TAB (expected SOURCE<TAB>TARGET)"),
    ("a\tb\nx\ty\tz\n", "line 2: 2 TABs (expected one: SOURCE<TAB>TARGET)"),
    ("\tb\n", "line 1: an empty source"),
    ("a\tb\nc\t  \n", "line 2: the source 'c' has an empty target"),
    ("", "is empty: no pairs"),
    ("\n  \n", "is empty: no pairs"),
    (b"a\tb\nc\xff\td\n", "is not UTF-8 at line 2"),
])
def test_bad_pair_files_name_the_file_and_line(write_corpus, content, message):
    path = write_corpus(content, "pairs.txt")
    with pytest.raises(DataError) as err:
        read_pairs(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_vocabularies_each_side_its_tokenizer(write_corpus):
    f = read_pairs(write_corpus("Read\tR IY D\nlive\tL IH V\nread\tR EH D\n"))
    v = PairVocab.build(f, TokenizerConfig(level="char", lowercase=True),
                        TokenizerConfig(level="word", split="whitespace"))
    assert v.source.tokens[:2] == ["<UNK>", "<EOS>"] and "R" not in v.source and "r" in v.source
    assert set(v.target.tokens[2:]) == {"R", "IY", "D", "L", "IH", "V", "EH"}
    np.testing.assert_array_equal(v.target_ids("R IY D"), v.target.encode(["R", "IY", "D"]))
    assert v.target_text(v.target_ids("L IH V")) == "L IH V"
    assert v.unknown_source_tokens("Rex!") == ["x", "!"]
    assert v.source_ids("zz").tolist() == [0, 0]
    sources, targets = v.training_pairs(f)
    assert len(sources) == 3 and sources[0].tolist() == sources[2].tolist()      # two references of "read"
    again = PairVocab.from_meta(v.to_meta())
    assert again.source.tokens == v.source.tokens and again.target.tokenizer == v.target.tokenizer
    chars = PairVocab.build(f)                                                      # default: char -> char
    assert chars.target_text(chars.target_ids("R IY D")) == "R IY D" and " " in chars.target


def test_dates_are_deterministic_and_correct(tmp_path):
    import datetime as dt

    a, b = date_pairs(300, seed=5), date_pairs(300, seed=5)
    assert a == b and a != date_pairs(300, seed=6)
    assert len({s for s, _ in a}) > 290
    for written, iso in a:
        day = dt.date.fromisoformat(iso)
        assert str(day.year) in written and dt.date(1900, 1, 1) <= day <= dt.date(2099, 12, 31)
    pairs = date_pairs(3000, seed=1)
    assert FORMS[0](29, 8, 1958, "august", "aug", "friday", "fri") == "the 29th of august 1958"
    kinds = {written.lower()[:3] for written, _ in pairs}
    assert len(kinds) > 20                                     # many written forms
    assert any(s.isupper() for s, _ in pairs) and any(s.islower() for s, _ in pairs)
    assert {"the 1st of", "the 2nd of", "the 3rd of", "the 11th of", "the 22nd of"} <= \
        {" ".join(s.lower().split()[:3]) for s, _ in pairs}
    write_date_pairs(tmp_path / "dates.txt", 50, seed=2)
    f = read_pairs(tmp_path / "dates.txt")
    assert f.pairs == 50 and f.examples[0].references[0] == date_pairs(1, seed=2)[0][1]


def test_weekdays_are_right():
    import datetime as dt

    for written, iso in date_pairs(2000, seed=3):
        named = [w for w in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
                 if w in written.lower() or w[:3] + "," in written.lower()]
        if named:
            assert named == [["monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                              "sunday"][dt.date.fromisoformat(iso).weekday()]]


def test_g2p_rule():
    lines = ["abbott AE1 B AH0 T", "read R IY1 D", "read(2) R EH1 D", "read(3) R IY2 D",
             "aalborg AO1 L B AO0 R G # place, danish", "# a comment line", "", "'bout B AW1 T"]
    entries = g2p_data.parse_cmudict(lines)
    assert entries == {"abbott": ["AE B AH T"], "read": ["R IY D", "R EH D"], "aalborg": ["AO L B AO R G"],
                       "'bout": ["B AW T"]}
    words = [f"w{i}" for i in range(1000)]
    parts = g2p_data.split_words(words, seed=0)
    assert [len(parts[p]) for p in ("train", "dev", "test")] == [900, 50, 50]
    assert sorted(sum(parts.values(), [])) == sorted(words)
    assert parts == g2p_data.split_words(list(reversed(words)), seed=0)       # by word, not position
    assert parts != g2p_data.split_words(words, seed=1)
    order = {w: i for i, w in enumerate(entries)}
    assert g2p_data.pair_lines(["read", "abbott"], entries, order) == "abbott\tAE B AH T\nread\tR IY D\nread\tR EH D\n"


def test_shipped_g2p_subset():
    parts = {p: read_pairs(DATA / f"cmudict-g2p.{p}.txt") for p in ("train", "dev", "test")}
    assert [len(parts[p].examples) for p in ("train", "dev", "test")] == [3000, 300, 300]
    words = [{e.source for e in parts[p].examples} for p in parts]
    assert not (words[0] & words[1] or words[0] & words[2] or words[1] & words[2])     # split by headword
    assert sum(len(e.references) > 1 for e in parts["train"].examples) > 100
    phones = {t for e in parts["train"].examples for r in e.references for t in r.split()}
    assert len(phones) == 39 and not any(c.isdigit() for p in phones for c in p)
    assert (DATA / "cmudict.LICENSE").read_text().startswith("Copyright (C) 1993-2015 Carnegie Mellon University")

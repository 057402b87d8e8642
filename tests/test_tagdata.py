"""Tagging and classification file formats (charlm/sentence/formats.py, split.py) and the shipped wikigold split."""

from __future__ import annotations

import hashlib

import pytest

from charlm.errors import DataError, UsageError
from charlm.sentence.formats import (
    detect_label_format,
    looks_like_columns,
    read_labelled,
    read_tagged,
    read_text_sentences,
    write_columns,
)
from charlm.sentence.split import split_documents

CONLLU = """# sent_id = 1
# text = I can't go.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t3\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tHello\thello\tINTJ\tUH\t_\t0\troot\t_\t_
"""

COLUMNS = """-DOCSTART- O

Teddy I-PER
Roosevelt I-PER
was O

# O
bears O

-DOCSTART- O

Paris I-LOC
"""


def words(text):
    return text.split()


def test_conllu_skips_comments_ranges_and_empty_nodes(write_corpus):
    f = read_tagged(write_corpus(CONLLU))
    assert f.format == "conllu"
    assert [s.tokens for s in f.sentences] == [["I", "ca", "n't", "go", "."], ["Hello"]]
    assert [s.tags for s in f.sentences] == [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert [s.line for s in f.sentences] == [3, 12]
    xpos = read_tagged(write_corpus(CONLLU), tag_column="xpos")
    assert xpos.sentences[0].tags == ["PRP", "MD", "RB", "VB", "."]
    assert read_tagged(write_corpus(CONLLU), tag_column="8").sentences[1].tags == ["root"]


def test_columns_documents_and_a_hash_token(write_corpus):
    f = read_tagged(write_corpus(COLUMNS))
    assert f.format == "columns"
    assert [s.tokens for s in f.sentences] == [["Teddy", "Roosevelt", "was"], ["#", "bears"], ["Paris"]]
    assert [s.tags for s in f.sentences] == [["I-PER", "I-PER", "O"], ["O", "O"], ["I-LOC"]]
    assert [s.doc for s in f.sentences] == [1, 1, 2]
    # a column file whose very first line starts with "#" is still read as columns
    g = read_tagged(write_corpus("# O\nfoo B-X\n\nbar O\n"))
    assert g.format == "columns" and g.sentences[0].tokens == ["#", "foo"]


def test_tag_column_number_in_a_conll2003_file(write_corpus):
    text = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
    f = read_tagged(write_corpus(text), tag_column=2)
    assert f.sentences[0].tags == ["NNP", "VBZ"]
    assert read_tagged(write_corpus(text)).sentences[0].tags == ["B-ORG", "O"]


def test_forced_format_and_tokens_only(write_corpus):
    f = read_tagged(write_corpus(CONLLU), format="conllu", need_tags=False)
    assert f.sentences[0].tags is None and f.sentences[0].tokens[0] == "I"
    with pytest.raises(DataError, match=r"not in --format conllu: line 1 \(.*\) is not a CoNLL-U line"):
        read_tagged(write_corpus("a B\nb C\n"), format="conllu")


@pytest.mark.parametrize("text,kw,needles", [
    ("a O\nb O\nc\n", {}, ["line 3", "1 column", "line 1 has 2"]),
    ("a\nb\n", {}, ["line 1", "without a tag"]),
    ("a O\n\n" + CONLLU.split("\n", 2)[2], {}, ["line 3", "mixes formats"]),
    (CONLLU + "word TAG\n", {}, ["line 13", "mixes formats"]),
    (CONLLU.replace("\tPUNCT\t", "\tPUNCT\textra\t"), {}, ["line 9", "11 TAB-separated"]),
    (CONLLU.replace("1\tHello", "x\tHello"), {}, ["line 12", "bad CoNLL-U word id"]),
    (CONLLU.replace("AUX", "_"), {}, ["line 5", "no tag"]),
    (CONLLU.replace("PRON\tPRP", "PRON\t_"), {"tag_column": "xpos"}, ["no xpos tags"]),
])
def test_bad_tagging_files_name_the_line(write_corpus, text, kw, needles):
    with pytest.raises(DataError) as err:
        read_tagged(write_corpus(text), **kw)
    for n in needles:
        assert n in str(err.value), str(err.value)


@pytest.mark.parametrize("text,col,needle", [
    ("a O\n", "upos", "applies to CoNLL-U"),
    ("a O\n", 3, "does not exist"),
    (CONLLU, 11, "does not exist"),
    ("a O\n", "zz", "--tag-column must be"),
])
def test_tag_column_that_does_not_exist(write_corpus, text, col, needle):
    with pytest.raises(UsageError, match=needle):
        read_tagged(write_corpus(text), tag_column=col)


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- O\n\n", "# only a comment\n"])
def test_empty_tagging_file(write_corpus, text):
    with pytest.raises(DataError, match="empty"):
        read_tagged(write_corpus(text))


def test_text_sentences_and_column_sniffing(write_corpus):
    p = write_corpus("He said , Teddy Roosevelt\n\nTeddy bears\n")
    f = read_text_sentences(p, words)
    assert [s.tokens for s in f.sentences] == [["He", "said", ",", "Teddy", "Roosevelt"], ["Teddy", "bears"]]
    assert [s.line for s in f.sentences] == [1, 3]
    assert not looks_like_columns(p, {"O", "I-PER"})
    assert looks_like_columns(write_corpus(COLUMNS), {"O", "I-PER", "I-LOC"})
    assert not looks_like_columns(write_corpus("Teddy bears O\nare fun\n"), {"O"})


def test_write_columns_reads_back(write_corpus):
    text = write_columns(["Teddy", "Roosevelt"], ["B-PER", "I-PER"]) + write_columns(["x"], ["O"])
    f = read_tagged(write_corpus(text))
    assert [s.tags for s in f.sentences] == [["B-PER", "I-PER"], ["O"]]


# ---------------------------------------------------------------------------- classification

def test_labelled_formats(write_corpus):
    tab = read_labelled(write_corpus("pos\tgreat fun !\n\nneg\t  dull  \n"), words)
    assert tab.format == "tab"
    assert [(e.label, e.tokens, e.line) for e in tab.examples] == [
        ("pos", ["great", "fun", "!"], 1), ("neg", ["dull"], 3)]
    ft = read_labelled(write_corpus("__label__pos great fun\n__label__neg dull\n"), words)
    assert ft.format == "fasttext" and [e.label for e in ft.examples] == ["pos", "neg"]
    assert ft.examples[0].text == "great fun"
    plain = read_labelled(write_corpus("great fun\ndull\n"), words, need_labels=False)
    assert plain.format == "text" and plain.examples[1].label is None
    stripped = read_labelled(write_corpus("pos\tgreat\n"), words, need_labels=False)
    assert stripped.format == "tab" and stripped.examples[0].tokens == ["great"]


@pytest.mark.parametrize("text,needles", [
    ("pos\tgood\nbad movie\n", ["line 2", "no label"]),
    ("just text\n", ["line 1", "no label"]),
    ("pos\tgood\n\t fine\n", ["line 2", "empty label"]),
    ("pos\tgood\nneg\t   \n", ["line 2", "no text"]),
    ("__label__pos good\n__label__neg\n", ["line 2", "no text"]),
    ("__label__pos good\n__label__ x\n", ["line 2", "empty label"]),
    ("__label__pos good\nneg\tbad\n", ["line 2", "mixes formats"]),
    ("pos\tgood\n__label__neg bad\n", ["line 2", "mixes formats"]),
    ("__label__a __label__b text\n", ["line 1", "more than one label"]),
    ("pos\t . \n", ["line 1", "no text"]),
])
def test_bad_classification_lines(write_corpus, text, needles):
    def drop_dots(s):
        return [w for w in s.split() if w != "."]

    with pytest.raises(DataError) as err:
        read_labelled(write_corpus(text), drop_dots)
    for n in needles:
        assert n in str(err.value), str(err.value)


def test_detect_label_format():
    assert detect_label_format("__label__x y") == "fasttext"
    assert detect_label_format("x\ty") == "tab"
    assert detect_label_format("x y") is None


def test_not_utf8_is_a_data_error(write_corpus):
    with pytest.raises(DataError, match="not UTF-8 at line 2"):
        read_tagged(write_corpus(b"a O\nb\xff O\n"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_labelled(write_corpus(b"pos\tcaf\xe9\n"), words)


# ---------------------------------------------------------------------------- wikigold split

def test_split_by_document_is_seeded_and_complete():
    text = "".join(f"-DOCSTART- O\n\nw{i} O\n\n" for i in range(20))
    a, b = split_documents(text, seed=0), split_documents(text, seed=1)
    assert a.documents == {"train": 16, "dev": 2, "test": 2}
    assert a.parts == split_documents(text, seed=0).parts and a.parts != b.parts
    tokens = sorted(l for part in a.parts.values() for l in part.splitlines() if l.startswith("w"))
    assert tokens == sorted(f"w{i} O" for i in range(20))


def test_shipped_wikigold_split_is_the_documented_rule(data_dir):
    """data/wikigold.{train,dev,test}.txt are exactly split_documents(data/wikigold.conll.txt, seed=0)."""
    original = (data_dir / "wikigold.conll.txt").read_bytes()
    assert hashlib.sha256(original).hexdigest() == \
        "c797a64d0cf73ed058363f77671486bcfd413e70fda1726ad4a6ba624455225f"
    split = split_documents(original.decode("utf-8"), seed=0)
    for part, text in split.parts.items():
        assert (data_dir / f"wikigold.{part}.txt").read_text(encoding="utf-8") == text, part
    counts = {p: sum(len(s.tokens) for s in read_tagged(data_dir / f"wikigold.{p}.txt").sentences)
              for p in split.parts}
    assert sum(counts.values()) == sum(len(s.tokens) for s in read_tagged(data_dir / "wikigold.conll.txt").sentences)

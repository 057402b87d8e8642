"""The tokenizer (charlm.text.tokenizer): settings, character and word level, and reading a
corpus in chunks that are cut only at safe points."""

from __future__ import annotations

import io
import itertools
import json

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.errors import CharlmError, UsageError
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import EOS, UNK, Vocab

CHAR = TokenizerConfig()
GRAPH = TokenizerConfig(graphemes=True)
WORD = TokenizerConfig(level="word")
WS = TokenizerConfig(level="word", split="whitespace")

# Text for property tests: any Unicode, with extra weight on the tricky parts
# (combining marks, ZWJ, skin tones, flags, spaces, newlines, separators in numbers).
TRICKY = (
    "e\u0301\u0300 \n\t\u200d\U0001F44D\U0001F3FD\U0001F1EB\U0001F1F7"
    "\u0915\u094d'-.,1aZ\u03a3\u0130<unk>"
)
texts = st.text(
    st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(list(TRICKY))),
    max_size=60,
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALL_CONFIGS = [
    TokenizerConfig(level=lv, mode=m, split=sp, lowercase=lc, graphemes=g)
    for lv, m, sp, lc, g in itertools.product(
        ["char", "word"], ["lines", "stream"], ["regex", "whitespace"], [False, True], [False, True]
    )
    if not (lv == "char" and sp == "whitespace") and not (lv == "word" and g)
]


def toks(config, text):
    return Tokenizer(config).tokenize(text)


def read_all(config, data: bytes, chunk_size: int):
    return list(Tokenizer(config).iter_sentences(io.BytesIO(data), chunk_size=chunk_size))


def normalize(text: str) -> str:
    """What the reader makes of a text: universal newlines, no byte-order mark."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text[1:] if text.startswith("\ufeff") else text


# --- configuration -----------------------------------------------------------------------


def test_config_defaults_resolve_mode():
    assert TokenizerConfig().mode == "stream"
    assert TokenizerConfig(level="word").mode == "lines"
    assert TokenizerConfig(level="char", mode="lines").mode == "lines"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"level": "byte"},
        {"mode": "paragraphs"},
        {"level": "word", "split": "commas"},
        {"level": "word", "graphemes": True},
        {"level": "char", "split": "whitespace"},
    ],
)
def test_config_rejects_bad_settings(kwargs):
    with pytest.raises(UsageError):
        TokenizerConfig(**kwargs)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: c.describe())
def test_config_dict_round_trip(config):
    d = json.loads(json.dumps(config.to_dict()))
    assert TokenizerConfig.from_dict(d) == config


@pytest.mark.parametrize(
    "d",
    [
        [],
        {"level": "word", "graphemes": True},
        {"level": 3},
        {"lowercase": "yes"},
        {"mode": 1},
        {"colour": "blue"},
    ],
)
def test_config_from_dict_rejects_nonsense(d):
    with pytest.raises(CharlmError):
        TokenizerConfig.from_dict(d)


# --- character level ------------------------------------------------------------------------


def test_char_code_points_and_newlines():
    assert toks(CHAR, "ab\nc") == ["a", "b", "\n", "c"]
    assert toks(TokenizerConfig(mode="lines"), "ab\nc") == ["a", "b", "c"]
    # a combining accent is its own code point ...
    assert toks(CHAR, "e\u0301") == ["e", "\u0301"]


def test_graphemes_keep_clusters_whole():
    thumbs = "\U0001F44D\U0001F3FD"  # thumbs up + skin tone
    flag = "\U0001F1EB\U0001F1F7"
    assert toks(GRAPH, f"e\u0301{thumbs}{flag}x") == ["e\u0301", thumbs, flag, "x"]


def test_lowercase_char_level():
    assert toks(TokenizerConfig(lowercase=True), "AbC\n") == ["a", "b", "c", "\n"]
    # token by token: a capital sigma is always "σ", never the word-final "ς"
    assert toks(TokenizerConfig(lowercase=True), "ΟΣ") == ["ο", "σ"]


@FAST
@given(texts)
def test_char_decode_encode_round_trip(s):
    tok = Tokenizer(CHAR)
    tokens = tok.tokenize(s)
    vocab = Vocab.from_counts({t: 1 for t in tokens}, tokenizer=CHAR)
    assert tok.detokenize(vocab.decode(vocab.encode(tokens))) == s


@FAST
@given(texts)
def test_graphemes_never_split_a_cluster(s):
    assert toks(GRAPH, s) == regex.findall(r"\X", s)


# --- word level -----------------------------------------------------------------------------


def test_seed_example():
    tokens = toks(WORD, "Cats average 15 hours of sleep a day.")
    assert tokens == ["Cats", "average", "15", "hours", "of", "sleep", "a", "day", "."]
    assert len(tokens) == 9


@pytest.mark.parametrize(
    "text, expected",
    [
        ("don't well-known rock'n'roll", ["don't", "well-known", "rock'n'roll"]),
        ("it\u2019s", ["it\u2019s"]),
        ("'quoted' -dash- end-", ["'", "quoted", "'", "-", "dash", "-", "end", "-"]),
        ("1,000,000 and 3.14, 15.", ["1,000,000", "and", "3.14", ",", "15", "."]),
        ("Caf\u00e9 cafe\u0301 na\u00efve", ["Caf\u00e9", "cafe\u0301", "na\u00efve"]),
        ("Ελληνικά русский 日本語", ["Ελληνικά", "русский", "日本語"]),
        ("$5 (x)!?", ["$", "5", "(", "x", ")", "!", "?"]),
        ("hi \U0001F44D\U0001F3FD\U0001F44D!", ["hi", "\U0001F44D\U0001F3FD", "\U0001F44D", "!"]),
        ("a <unk> b", ["a", "<unk>", "b"]),
        ("  \t ", []),
    ],
)
def test_word_regex(text, expected):
    assert toks(WORD, text) == expected


def test_word_stream_mode_keeps_newlines():
    cfg = TokenizerConfig(level="word", mode="stream")
    assert toks(cfg, "To be,\n\nor not.\n") == ["To", "be", ",", "\n", "\n", "or", "not", ".", "\n"]
    assert toks(WORD, "To be,\nor not.") == ["To", "be", ",", "or", "not", "."]


def test_word_lowercase():
    assert toks(TokenizerConfig(level="word", lowercase=True), "The CAT's") == ["the", "cat's"]
    assert toks(TokenizerConfig(level="word", lowercase=True), "ΟΔΟΣ") == ["οδος"]


def test_whitespace_split_ptb_style():
    line = " the <unk> company 's N shares fell \n"
    assert toks(WS, line) == ["the", "<unk>", "company", "'s", "N", "shares", "fell"]
    counts = {}
    for t in toks(WS, line * 3 + " <UNK> the\n"):
        counts[t] = counts.get(t, 0) + 1
    vocab = Vocab.from_counts(counts, tokenizer=WS)
    assert "<unk>" not in vocab and vocab.tokens[:2] == [UNK, EOS]
    assert vocab.counts[0] == 4  # three <unk> and one <UNK>
    assert vocab.encode(["<unk>", "<UNK>", "the"]).tolist() == [0, 0, vocab.index["the"]]


def test_detokenize():
    word = Tokenizer(TokenizerConfig(level="word", mode="stream"))
    assert word.detokenize(["a", "b", "\n", "c", "\n"]) == "a b\nc\n"
    assert Tokenizer(CHAR).detokenize(["a", " ", "b"]) == "a b"


# --- reading a corpus in chunks -------------------------------------------------------------------


@FAST
@given(texts, st.integers(1, 9), st.sampled_from(ALL_CONFIGS))
def test_chunked_reading_equals_whole_text(s, chunk, config):
    s = normalize(s.replace("\0", ""))
    tok = Tokenizer(config)
    pieces = read_all(config, s.encode("utf-8"), chunk)
    if config.mode == "stream":
        assert list(itertools.chain.from_iterable(pieces)) == tok.tokenize(s)
    else:
        expected = [tok.tokenize(line) for line in s.split("\n")]
        assert pieces == [t for t in expected if t and not all(x.isspace() for x in t)]


@FAST
@given(texts, st.integers(1, 5))
def test_text_file_objects_read_the_same(s, chunk):
    s = normalize(s.replace("\0", ""))
    tok = Tokenizer(TokenizerConfig(level="word", mode="stream"))
    got = list(itertools.chain.from_iterable(tok.iter_sentences(io.StringIO(s), chunk_size=chunk)))
    assert got == tok.tokenize(s)


def test_long_single_line_comes_in_bounded_pieces():
    text = ("word " * 5000).encode()  # 25 kB, no newline
    pieces = read_all(TokenizerConfig(level="word", mode="stream"), text, chunk_size=1024)
    assert max(len(p) for p in pieces) < 300  # never the whole line at once
    assert sum(len(p) for p in pieces) == 5000
    # lines mode still gives the whole line as one sentence ...
    assert [len(p) for p in read_all(WORD, text, 1024)] == [5000]
    # ... but iter_pieces passes it on in bounded pieces, the last one marked
    pieces = list(Tokenizer(WORD).iter_pieces(io.BytesIO(text), chunk_size=1024))
    assert max(len(p) for p, _ in pieces) < 300 and sum(len(p) for p, _ in pieces) == 5000
    assert [end for _, end in pieces] == [False] * (len(pieces) - 1) + [True]


@FAST
@given(texts, st.integers(1, 6), st.sampled_from(ALL_CONFIGS))
def test_pieces_add_up_to_sentences(s, chunk, config):
    data = normalize(s.replace("\0", "")).encode()
    tok = Tokenizer(config)
    sentences, current = [], []
    for piece, end in tok.iter_pieces(io.BytesIO(data), chunk_size=chunk):
        current += piece
        if end:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    if config.mode == "lines":
        assert sentences == read_all(config, data, 1 << 20)
    else:
        assert [t for x in sentences for t in x] == tok.tokenize(normalize(s.replace("\0", "")))
        assert all(x[-1] == "\n" for x in sentences[:-1] if x)


def test_stream_mode_gives_one_list_per_line(data_dir):
    pieces = list(Tokenizer(CHAR).iter_sentences(data_dir / "dinos.txt"))
    assert pieces[0] == list("Aachenosaurus\n")
    assert pieces[-1] == list("Zuul")  # the file has no final newline
    assert len(pieces) == 1536


def test_lines_mode_on_names(data_dir):
    tok = Tokenizer(TokenizerConfig(mode="lines", lowercase=True))
    names = list(tok.iter_sentences(data_dir / "dinos.txt"))
    assert len(names) == 1536 and names[1] == list("aardonyx")


def test_lines_mode_skips_blank_lines():
    data = b"a b\n\n   \n\t\nc\n"
    assert read_all(WORD, data, 4) == [["a", "b"], ["c"]]
    assert read_all(TokenizerConfig(mode="lines"), data, 4) == [["a", " ", "b"], ["c"]]

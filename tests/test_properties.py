"""Property tests (hypothesis): tokenizer and vocabulary on arbitrary Unicode, `score` on arbitrary
strings, `sample` with arbitrary valid options.

About -inf: a sentence's log-probability is a sum of log-softmax outputs, computed stably
(z - max z - log sum exp), and a softmax gives every token a positive probability; a token the
vocabulary does not know is scored as <UNK>. So `score` never returns -inf or NaN; the only way
to a zero probability would be float underflow of a whole sentence, and the log is summed per
token, so even that stays finite.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from charlm.cli import cli
from charlm.errors import DataError
from charlm.lm import generate, scoring
from charlm.tasks import load as load_model
from charlm.text.reader import read_text
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import EOS, UNK, Vocab

TINY = ["--hidden", "8", "--embedding", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "-q"]
TEXT = "The cat sat on the mat.\nThe dog sat on the log!\nA caf\u00e9, na\u00efve r\u00e9sum\u00e9: 42 3.14\n" * 4

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONFIGS = [
    TokenizerConfig(level="char"),
    TokenizerConfig(level="char", mode="lines"),
    TokenizerConfig(level="char", graphemes=True),
    TokenizerConfig(level="char", lowercase=True),
    TokenizerConfig(level="word"),
    TokenizerConfig(level="word", mode="stream"),
    TokenizerConfig(level="word", lowercase=True),
    TokenizerConfig(level="word", split="whitespace"),
]

# arbitrary Unicode, with more of the interesting parts: newlines, spaces, combining marks,
# emoji with modifiers and joiners, right-to-left text, apostrophes and hyphens
interesting = st.sampled_from(list("\n\r \t\u00a0\u0301\u200d\U0001F44D\U0001F3FD\u05d0\u0627'-\u2019.,<>UNKunk"))
unicode_text = st.lists(st.one_of(st.characters(), interesting), max_size=60).map("".join)


def _universal_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ------------------------------------------------------------------------------- tokenizer

@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe().replace(" ", ","))
@FAST
@given(text=unicode_text, chunk=st.integers(1, 7))
@example(text="\ufeff\ufeff", chunk=1)  # found by hypothesis: only the first U+FEFF is a byte-order mark
def test_tokenizer_on_arbitrary_unicode(config, text, chunk):
    tok = Tokenizer(config)
    tokens = tok.tokenize(text)
    assert all(isinstance(t, str) and t for t in tokens)
    if config.level == "char" and config.mode == "stream" and not config.lowercase:
        assert "".join(tokens) == text  # characters: an exact round trip
    if config.mode == "lines":
        assert "\n" not in tokens
    if "\0" in text:  # a corpus with NUL is refused as binary (tested in test_bad_inputs)
        return
    # streaming the same text in tiny chunks gives the same tokens as tokenizing it whole
    norm = _universal_newlines(text)
    norm = norm[1:] if norm.startswith("\ufeff") else norm  # one byte-order mark; a second is text
    streamed = [t for piece in tok.iter_tokens(io.StringIO(text), chunk_size=chunk) for t in piece]
    assert streamed == Tokenizer(TokenizerConfig(**{**config.to_dict(), "mode": "stream"})).tokenize(norm)
    if config.mode == "lines":
        sentences = list(tok.iter_sentences(io.StringIO(text), chunk_size=chunk))
        assert all(s and not all(t.isspace() for t in s) for s in sentences)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe().replace(" ", ","))
@FAST
@given(text=unicode_text, unseen=unicode_text)
def test_vocab_round_trip_where_the_tokens_are_known(config, text, unseen, tmp_path_factory):
    tok = Tokenizer(config)
    tokens = tok.tokenize(text)
    counts = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    vocab = Vocab.from_counts(counts, tokenizer=config)
    assert vocab.tokens[:2] == [UNK, EOS] and len(set(vocab.tokens)) == len(vocab)
    known = [t for t in tokens if t not in (UNK, EOS, "<unk>")]
    if config.split == "whitespace":
        known = [t for t in known if t not in ("<UNK>", "<unk>")]
    assert vocab.decode(vocab.encode(known)) == known
    ids = vocab.encode(tok.tokenize(unseen))  # unknown tokens become <UNK>, never an error
    assert ids.dtype == np.int32 and ((ids >= 0) & (ids < len(vocab))).all()
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict(), ensure_ascii=False)))
    assert again.tokens == vocab.tokens and again.counts == vocab.counts
    if config.level == "char" and config.mode == "stream":
        assert tok.detokenize(vocab.decode(vocab.encode(tokens))) == (text if not config.lowercase else
                                                                      tok.detokenize(tokens))


@FAST
@given(data=st.binary(max_size=80), chunk=st.integers(1, 9))
def test_read_text_on_arbitrary_bytes_decodes_or_raises_data_error(data, chunk):
    try:
        text = "".join(read_text(io.BytesIO(data), chunk_size=chunk))
    except DataError as err:
        assert "\n" not in str(err)
        assert b"\0" in data or "not UTF-8" in str(err)
        return
    assert b"\0" not in data
    assert text == _universal_newlines(data.decode("utf-8")).removeprefix("\ufeff")


# ------------------------------------------------------------------------ score and sample

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("prop-models")
    corpus = d / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = {}
    for name, extra in (("char", []), ("charlines", ["--mode", "lines"]), ("word", ["--level", "word"])):
        path = d / f"{name}.npz"
        r = CliRunner().invoke(cli, ["train", str(corpus), "-o", str(path), *TINY, "--max-steps", "4", *extra],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        loaded = load_model(path)
        model, vocab = loaded.network, loaded.vocab
        out[name] = (path, model, vocab, Tokenizer(vocab.tokenizer))
    return out


@pytest.mark.parametrize("which", ["char", "charlines", "word"])
@FAST
@given(texts=st.lists(unicode_text, min_size=1, max_size=4))
def test_score_arbitrary_strings_is_finite(models, which, texts):
    _, model, vocab, tok = models[which]
    texts = [t for t in texts if tok.tokenize(t)]  # a text with no tokens is a usage error (tested elsewhere)
    if not texts:
        return
    for s in scoring.score_sentences(model, vocab, tok, texts, batch_size=3):
        assert math.isfinite(s.logprob) and s.logprob <= 0.0
        assert all(math.isfinite(lp) and lp <= 0.0 for lp in s.per_token)
        assert math.isclose(s.logprob, sum(s.per_token), rel_tol=1e-6, abs_tol=1e-6)
        assert 0 <= s.oov <= s.n_tokens


@SLOW
@given(text=unicode_text.filter(lambda t: t.strip() and "\x00" not in t))
@example(text="cat \ud800 mat")  # found by hypothesis: a lone surrogate must not break --json
def test_score_cli_on_arbitrary_strings(models, text):
    path = models["word"][0]
    r = CliRunner().invoke(cli, ["score", "-m", str(path), "--json", "--", text], catch_exceptions=False)
    if r.exit_code == 2:  # only when the text has no word tokens at all
        assert not models["word"][3].tokenize(text)
        assert r.stderr.startswith("charlm: error:") and "nothing to score" in r.stderr
        return
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert math.isfinite(rec["logprob"]) and rec["logprob"] <= 0


options = st.fixed_dictionaries({
    "temperature": st.one_of(st.just(0.0), st.floats(1e-3, 50.0)),
    "top_k": st.one_of(st.none(), st.integers(1, 100)),
    "top_p": st.one_of(st.none(), st.floats(1e-6, 1.0)),
    "length": st.integers(1, 40),
    "num": st.integers(1, 4),
    "seed": st.integers(0, 2**32),
})


@pytest.mark.parametrize("which", ["char", "charlines", "word"])
@FAST
@given(opts=options, prime=unicode_text)
def test_sample_never_emits_unk_and_respects_length(models, which, opts, prime):
    _, model, vocab, tok = models[which]
    seed = opts.pop("seed")
    samples = generate.sample(model, vocab, prime=tok.tokenize(prime), rng=np.random.default_rng(seed), **opts)
    assert len(samples) == opts["num"]
    for tokens in samples:
        assert UNK not in tokens and EOS not in tokens
        assert len(tokens) <= opts["length"]
        if which == "char":  # running text: always exactly --length tokens
            assert len(tokens) == opts["length"]


@SLOW
@given(opts=options)
def test_sample_cli_with_arbitrary_valid_options(models, opts):
    path = models["charlines"][0]
    args = ["sample", "-m", str(path), "--json", "--temperature", repr(opts["temperature"]),
            "--length", str(opts["length"]), "--num", str(opts["num"]), "--seed", str(opts["seed"])]
    if opts["top_k"] is not None:
        args += ["--top-k", str(opts["top_k"])]
    if opts["top_p"] is not None:
        args += ["--top-p", repr(opts["top_p"])]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == opts["num"]
    for rec in recs:
        assert UNK not in rec["tokens"] and len(rec["tokens"]) <= opts["length"]

"""Texts in, outputs out: what `charlm translate`, `charlm eval`, validation and the Python API share.

    translate(network, vocab, texts, beam=4, nbest=1, ...) -> [Translated]   nbest per text, in order

Each source text is cut by the source tokenizer into x<1..Tx> (tokens the model never saw read as
<UNK>; `Translated.unknown` lists them), decoded by beam search (`search.beam_search`; beam 1 is
the greedy path, exactly) in batches of `batch_size` sources sorted by length, and the output ids
are joined by the target tokenizer. A source of more than MAX_SOURCE tokens is refused (UsageError
naming the limit): the encoder's memory and the attention grow with Tx.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from charlm.errors import UsageError
from charlm.seq2seq.search import beam_search, check_options

__all__ = ["Translated", "translate", "MAX_SOURCE", "source_ids"]

MAX_SOURCE = 1000   # tokens of a source the model reads at most


@dataclass
class Translated:
    """One output for one source: source (the text), output (the text of the output tokens),
    tokens (the output tokens, without <EOS>), logprob (nats: log P(tokens, <EOS> | source)),
    score (logprob / steps^length_penalty), stop ("eos", or "length" when cut at max_length), rank
    (1 = best), source_tokens (what the encoder read), unknown (source tokens read as <UNK>),
    attention ((steps, Tx) α<t,t'> per output step, <EOS>'s last, or None without attention)."""

    source: str
    output: str
    tokens: list
    logprob: float
    score: float
    stop: str
    rank: int = 1
    source_tokens: list = field(default_factory=list)
    unknown: list = field(default_factory=list)
    attention: np.ndarray | None = None

    def to_dict(self, attention: bool = False) -> dict:
        """A line of `charlm translate --json` (with `attention`: the matrix as nested lists, and
        the source tokens it is over)."""
        d = {"source": self.source, "output": self.output, "tokens": list(self.tokens),
             "logprob": round(self.logprob, 6), "rank": self.rank, "stop": self.stop}
        if self.unknown:
            d["unknown"] = list(self.unknown)
        if attention:
            d["source_tokens"] = list(self.source_tokens)
            d["attention"] = None if self.attention is None else np.round(self.attention.astype(np.float64), 6).tolist()
        return d


def source_ids(vocab, text: str, where: str = "") -> tuple[list, np.ndarray]:
    """(tokens, ids) of a source text; UsageError for an empty one or one longer than MAX_SOURCE."""
    if not isinstance(text, str):
        raise UsageError(f"a source must be text (str), got {type(text).__name__}")
    tokens = vocab.source_tokens(text)
    if not tokens:
        raise UsageError(f"{where}an empty source: nothing to translate")
    if len(tokens) > MAX_SOURCE:
        raise UsageError(f"{where}a source of {len(tokens)} tokens: this model reads at most {MAX_SOURCE}")
    return tokens, vocab.source.encode(tokens).astype(np.int64)


def translate(network, vocab, texts, beam: int = 4, nbest: int = 1, length_penalty: float = 0.0,
              max_length: int | None = None, batch_size: int = 64) -> list[Translated]:
    """The `nbest` best outputs of each text (best first), texts in order (see the module docstring)."""
    check_options(beam, nbest, max_length, length_penalty)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer (got {batch_size!r})")
    read = [source_ids(vocab, t, f"source {i + 1}: " if len(texts) > 1 else "") for i, t in enumerate(texts)]
    order = sorted(range(len(texts)), key=lambda i: len(read[i][1]))
    found: dict = {}
    for k in range(0, len(order), batch_size):
        chunk = order[k:k + batch_size]
        for i, outs in zip(chunk, beam_search(network, [read[i][1] for i in chunk], beam, nbest, length_penalty,
                                              max_length)):
            found[i] = outs
    out = []
    for i, text in enumerate(texts):
        tokens, ids = read[i]
        unknown = [t for t, x in zip(tokens, ids) if x == 0 and t not in vocab.source]
        for rank, tr in enumerate(found[i], 1):
            words = vocab.target.decode(tr.ids)
            out.append(Translated(text, vocab.target_text(tr.ids), words, tr.logprob, tr.score, tr.stop, rank,
                                  tokens, unknown, tr.attention))
    return out

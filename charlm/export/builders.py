"""The graph of each task's model, and the table that says which task exports how (`EXPORTERS`).

Inputs and outputs (T steps, B sequences; ids int64; float32 otherwise):
    language model   tokens (T,B), a0 (layers,B,H) [, c0 (layers,B,H): LSTM]
                     -> logits (T,B,V), aT (layers,B,H) [, cT]: the state after the last step
    tagger           words (T,B) (padding 0), lengths (B,) [, chars (Lc,W), char_lengths (W,),
                     word_index (T,B): the character encoder's inputs, as a `sentence.batch.SentenceBatch`]
                     -> logits (T,B,K) (rows past a sentence's length are meaningless)
                     [, transitions (K,K), start (K,), end (K,): a CRF's scores, see `tagger`]
    classifier       the same inputs -> logits (B,K)

EXPORTERS is keyed by the registry's task objects (`charlm.tasks`); a task without an entry is
refused by name, and so is a parameter no entry reads (a layer this module does not know). A new task adds its entry (a sequence-to-sequence model would add a builder that
returns its encoder and one decoder step; `onnxfile.export_model` writes one graph per task today).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from charlm.export import check
from charlm.export.graph import Graph
from charlm.export.recurrent import pool, recurrent
from charlm.nn import crf
from charlm.sentence.encoder import MAX_WORD_CHARS
from charlm.tasks import classify, lm, tag


@dataclass(frozen=True)
class Exporter:
    """How one task's models are exported."""

    build: Callable     # (g, model) -> (graph inputs, graph outputs): the model's graph, added to g
    reads: tuple        # the prefixes of the parameter names `build` reads; any other is refused
    metadata: Callable  # model -> the task's own keys of the file's metadata (see onnxfile.metadata)
    sample: Callable    # (session, model, rng) -> (differences, tokens): the check (check.py)


def language_model(g: Graph, model):
    """tokens (T,B), a0 [, c0] (L,B,H) -> logits (T,B,V), aT [, cT]."""
    net = model.network
    c, p = net.config, net.params
    L, H, V = c.layers, c.hidden, c.vocab_size
    states = ["a0", "c0"][:net.cell.n_states]
    x = g.op("Gather", g.const(p["embed.W"], "embed.W"), "tokens")            # e<t> = E[x<t>]
    per_layer = [g.op("Split", s, outputs=[g.fresh(f"{s}_layer") for _ in range(L)], axis=0) for s in states]
    per_layer = [[s] if L == 1 else s for s in per_layer]            # (1,B,H) each
    finals = []
    for l, lp in enumerate(net._layer_params()):
        state0 = tuple(s[l] for s in per_layer)
        x, fin = recurrent(g, net.cell, [lp], x, c.embedding if l == 0 else H, state0=state0)
        finals.append(fin)
    W_y = g.op("Transpose", "embed.W") if c.tie_weights else p["out.W"]       # tied: W_y = Eᵀ
    g.op("Identity", g.matmul_add(x, W_y, p["out.b"]), outputs=["logits"])
    for name, fin in zip(states, zip(*finals)):
        g.op("Concat", *fin, axis=0, outputs=[name[0] + "T"])
    inputs = [g.value("tokens", "INT64", ["T", "B"])] + [g.value(s, "FLOAT", [L, "B", H]) for s in states]
    outputs = [g.value("logits", "FLOAT", ["T", "B", V])] + [g.value(s[0] + "T", "FLOAT", [L, "B", H])
                                                             for s in states]
    return inputs, outputs


def _encoded(g: Graph, net):
    """A sentence network's inputs and its top layer: -> (graph inputs, [→a<t>, ←a<t>] (T,B,2H))."""
    c, p = net.config, net.params
    inputs = [g.value("words", "INT64", ["T", "B"]), g.value("lengths", "INT64", ["B"])]
    x = g.op("Gather", g.const(p["embed.W"], "embed.W"), "words")             # E[w<t>]  (T,B,Emb)
    if net.chars is not None:                                                  # [→c, ←c](w<t>)
        inputs += [g.value("chars", "INT64", ["Lc", "W"]), g.value("char_lengths", "INT64", ["W"]),
                   g.value("word_index", "INT64", ["T", "B"])]
        e = g.op("Gather", g.const(p["char.embed.W"], "char.embed.W"), "chars")      # (Lc, W, Ec)
        pair = list(net._group("char", ("fwd", "bwd")))
        y, _ = recurrent(g, net.cell, pair, e, c.char_embedding, "char_lengths")
        codes = pool(g, y, "char_lengths", "last", c.char_hidden, 2 * c.char_hidden)  # (W, 2Hc)
        x = g.op("Concat", x, g.op("Gather", codes, "word_index"), axis=2)
    for l, lp in enumerate(net._layer_params()):
        ps = list(lp) if c.bidirectional else [lp]
        D = net._input_width() if l == 0 else net._width()
        x, _ = recurrent(g, net.cell, ps, x, D, "lengths" if c.bidirectional else None)
    return inputs, x


def _read_out(g: Graph, net, a: str, shape: list):
    """logits = a @ W_y + b_y, the graph's output of `shape`."""
    g.op("Identity", g.matmul_add(a, net.params["out.W"], net.params["out.b"]), outputs=["logits"])
    return [g.value("logits", "FLOAT", shape)]


def tagger(g: Graph, model):
    """words, lengths [, chars, char_lengths, word_index] -> logits (T,B,K): ŷ<t> at every step.

    With a CRF the logits are its scores e<t>, and three more outputs hold what Viterbi needs, with
    −∞ where the tag scheme forbids: transitions A (K,K) (A[i, j]: tag j after tag i), start s (K,),
    end f (K,). The caller decodes (nn.crf.viterbi is the recurrence)."""
    net = model.network
    inputs, a = _encoded(g, net)
    K = net.config.num_labels
    outputs = _read_out(g, net, a, ["T", "B", K])
    if net.config.crf:
        A, s, f = crf.scores(*net._crf_params())
        for name, v, shape in (("transitions", A, [K, K]), ("start", s, [K]), ("end", f, [K])):
            g.op("Identity", g.const(v), outputs=[name])
            outputs.append(g.value(name, "FLOAT", shape))
    return inputs, outputs


def classifier(g: Graph, model):
    """words, lengths [, chars, char_lengths, word_index] -> logits (B,K): ŷ of the pooled sentence."""
    net = model.network
    c = net.config
    inputs, a = _encoded(g, net)
    return inputs, _read_out(g, net, pool(g, a, "lengths", c.pool, c.hidden, net._width()), ["B", c.num_labels])


def sentence_metadata(model) -> dict:
    """What a caller needs to encode sentences as charlm does (`sentence.encoder.Encoder`)."""
    encoder = model.predictor.encoder
    return {"labels": list(encoder.labels), "tag_scheme": encoder.scheme,
            "char_vocab": list(encoder.chars.tokens) if model.meta.get("char_vocab") is not None else None,
            "max_word_chars": MAX_WORD_CHARS}


SENTENCE_READS = ("embed.", "char.", "rnn.", "out.")
EXPORTERS = {
    lm.TASK: Exporter(language_model, ("embed.", "rnn.", "out."), lambda model: {}, check.language_model),
    tag.TASK: Exporter(tagger, SENTENCE_READS + ("crf.",), sentence_metadata, check.sentence_model),
    classify.TASK: Exporter(classifier, SENTENCE_READS, sentence_metadata, check.sentence_model),
}

"""The PyTorch peer of charlm's sequence-to-sequence model (charlm.seq2seq, LSTM cells), for the speed
and quality comparison of the seq2seq task (needs the `bench` extra, torch==2.13.0).

    python benchmarks/torch_seq2seq.py TRAIN --test-file TEST [--steps N | --time-limit S] [options]

The same model as charlm's with the same sizes (`Seq2SeqPeer`):
  * encoder: source embedding, dropout, an L-layer LSTM (bidirectional by default; packed sequences,
    so each direction's final state is the one at the source's own length, as charlm's LengthCell);
  * bridge: s[l]<0> = tanh(W_b [→h[l], ←h[l]] + b_b) for h and, with its own weights, for c, both from
    the final h (none for a one-directional encoder as wide as the decoder: its final states themselves);
  * decoder: target embedding of y<t-1> (<EOS> first), dropout, an L-layer LSTM from s<0>;
  * attention after the decoder RNN (none | additive vᵀ tanh(W_1 s + W_2 a) | dot sᵀ W_a a), masked
    softmax over the source, c<t> = Σ α a, ã<t> = tanh(W_c [s<t>, c<t>] + b_c), dropout, W_y, softmax;
  * loss: the mean over target tokens (each <EOS> included) of −log ŷ<t>[y<t>].
`load_charlm` copies a charlm model's weights into it (one bias per LSTM gate, as charlm: nn.LSTM's
bias_hh is held at 0 and not trained), `charlm_gradients` reads the gradients back in charlm's names
and layouts; with the same weights and no dropout the loss and every gradient agree to float64
rounding (tests/test_torch_seq2seq.py). Training (`main`): charlm's pair reader and vocabularies,
Adam with global-norm clipping, batches of pairs of similar source length; then greedy decoding of
the test file and its sequence accuracy. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from charlm.seq2seq.pairs import PairVocab, read_pairs  # noqa: E402
from charlm.seq2seq.network import EOS, START, UNK, Seq2Seq, Seq2SeqConfig, pad_pairs  # noqa: E402
from charlm.text.tokenizer import TokenizerConfig  # noqa: E402
from torch_tagger import grad, load_lstms, lstm_gradients, put  # noqa: E402


class Seq2SeqPeer(nn.Module):
    """See the module docstring. Sizes and options as charlm's Seq2SeqConfig (cell "lstm")."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        H, Hd, L, dirs = c.hidden, c.decoder_hidden, c.layers, 2 if c.bidirectional else 1
        F = H * dirs
        self.config, self.F = c, F
        self.src_embed = nn.Embedding(c.source_vocab_size, c.embedding)
        self.tgt_embed = nn.Embedding(c.target_vocab_size, c.target_embedding)
        between = c.dropout if L > 1 else 0.0
        self.encoder = nn.LSTM(c.embedding, H, num_layers=L, bidirectional=c.bidirectional, dropout=between)
        self.bridged = c.bidirectional or H != Hd
        if self.bridged:
            self.bridge_a = nn.ModuleList(nn.Linear(F, Hd) for _ in range(L))
            self.bridge_c = nn.ModuleList(nn.Linear(F, Hd) for _ in range(L))
        self.decoder = nn.LSTM(c.target_embedding, Hd, num_layers=L, dropout=between)
        if c.attention == "additive":
            self.W1 = nn.Linear(Hd, c.attention_hidden, bias=False)
            self.W2 = nn.Linear(F, c.attention_hidden, bias=False)
            self.v = nn.Parameter(torch.zeros(c.attention_hidden))
        elif c.attention == "dot":
            self.Wa = nn.Linear(F, Hd, bias=False)
        if c.attention != "none":
            self.Wc = nn.Linear(Hd + F, Hd)
        self.out = nn.Linear(Hd, c.target_vocab_size)
        self.drop = nn.Dropout(c.dropout)

    def encode(self, source, lengths):
        """source (Tx,B) int64 tensor, lengths (B,) -> (a (Tx,B,F), mask (Tx,B) bool, (h0, c0) of the decoder)."""
        c, Tx = self.config, source.shape[0]
        x = self.drop(self.src_embed(source))
        a, (h, cs) = self.encoder(pack_padded_sequence(x, lengths, enforce_sorted=False))
        a, _ = pad_packed_sequence(a, total_length=Tx)
        mask = torch.arange(Tx)[:, None] < lengths[None, :]
        if not self.bridged:
            return a, mask, (h, cs)
        layers = h.view(c.layers, 2 if c.bidirectional else 1, *h.shape[1:])
        final = [torch.cat(list(layers[l]), dim=-1) for l in range(c.layers)]      # [→h[l], ←h[l]]
        return a, mask, tuple(torch.stack([torch.tanh(bridge[l](final[l])) for l in range(c.layers)])
                              for bridge in (self.bridge_a, self.bridge_c))

    def head(self, s, a, mask):
        """s (Ty,B,Hd) -> (logits (Ty,B,Vy), α (Tx,Ty,B) or None)."""
        attention = self.config.attention
        if attention == "none":
            return self.out(self.drop(s)), None
        if attention == "additive":
            e = torch.tanh(self.W1(s)[None] + self.W2(a)[:, None]) @ self.v      # vᵀ tanh(W_1 s + W_2 a)
        else:
            e = torch.einsum("tbh,sbh->stb", s, self.Wa(a))                       # sᵀ W_a a
        alpha = torch.softmax(e.masked_fill(~mask[:, None, :], float("-inf")), dim=0)
        ctx = torch.einsum("stb,sbf->tbf", alpha, a)
        h = torch.tanh(self.Wc(torch.cat([s, ctx], dim=-1)))
        return self.out(self.drop(h)), alpha

    def forward(self, b):
        """b: a charlm PairBatch with targets -> logits (Ty,B,Vy) of teacher-forced decoding."""
        a, mask, state = self.encode(torch.from_numpy(b.source), torch.from_numpy(b.source_lengths))
        s, _ = self.decoder(self.drop(self.tgt_embed(torch.from_numpy(b.target_in))), state)
        return self.head(s, a, mask)[0]

    def lstms(self):
        """(charlm name prefix, nn.LSTM, torch suffix, H) of every direction of every layer."""
        c = self.config
        for l in range(c.layers):
            for d, sfx in ((("fwd", f"l{l}"), ("bwd", f"l{l}_reverse")) if c.bidirectional else (("", f"l{l}"),)):
                yield f"enc.{l}.{d}".rstrip("."), self.encoder, sfx, c.hidden
            yield f"dec.{l}", self.decoder, f"l{l}", c.decoder_hidden

    def linears(self):
        """(charlm weight name, charlm bias name or None, torch module) of every dense layer."""
        c = self.config
        if self.bridged:
            for l in range(c.layers):
                yield f"bridge.{l}.a.W", f"bridge.{l}.a.b", self.bridge_a[l]
                yield f"bridge.{l}.c.W", f"bridge.{l}.c.b", self.bridge_c[l]
        if c.attention == "additive":
            yield "att.W1", None, self.W1
            yield "att.W2", None, self.W2
        elif c.attention == "dot":
            yield "att.W", None, self.Wa
        if c.attention != "none":
            yield "att.Wc", "att.bc", self.Wc
        yield "out.W", "out.b", self.out


def load_charlm(model: Seq2SeqPeer, params: dict) -> None:
    """Copy a charlm Seq2Seq's parameters (checkpoint names) into a peer of the same settings. charlm's
    LSTM W (H+D, 4H) holds [W_hh; W_ih] transposed; its one bias per gate goes to bias_ih, bias_hh is 0
    and frozen. A charlm dense W (in, out) is a Linear's weight transposed."""
    put(model.src_embed.weight, params["src.embed.W"])
    put(model.tgt_embed.weight, params["tgt.embed.W"])
    load_lstms(model, params)
    for w, b, lin in model.linears():
        put(lin.weight, params[w].T)
        if b is not None:
            put(lin.bias, params[b])
    if model.config.attention == "additive":
        put(model.v, params["att.v"])


def charlm_gradients(model: Seq2SeqPeer) -> dict:
    """The gradients of a peer set up by `load_charlm`, in charlm's names and layouts."""
    g = {"src.embed.W": grad(model.src_embed.weight), "tgt.embed.W": grad(model.tgt_embed.weight),
         **lstm_gradients(model)}
    for w, b, lin in model.linears():
        g[w] = grad(lin.weight).T
        if b is not None:
            g[b] = grad(lin.bias)
    if model.config.attention == "additive":
        g["att.v"] = grad(model.v)
    return g


def mean_loss(model: Seq2SeqPeer, b) -> torch.Tensor:
    """The mean −log ŷ<t>[y<t>] over the target tokens of a PairBatch (as charlm's Seq2Seq.loss)."""
    logp = torch.log_softmax(model(b), dim=-1)
    picked = logp.gather(2, torch.from_numpy(b.target).unsqueeze(2)).squeeze(2)
    mask = torch.from_numpy(b.target_mask).to(picked.dtype)
    return -(picked * mask).sum() / mask.sum()


@torch.no_grad()
def greedy(model: Seq2SeqPeer, sources, max_length: int | None = None) -> list[list[int]]:
    """Greedy outputs (ids without <EOS>; <UNK> never) of a list of source id arrays, as one batch;
    at most 2·Tx + 10 tokens (charlm.seq2seq.search's default)."""
    b = pad_pairs(sources)
    a, mask, state = model.encode(torch.from_numpy(b.source), torch.from_numpy(b.source_lengths))
    limits = 2 * b.source_lengths + 10 if max_length is None else np.full(b.size, max_length)
    ids = torch.full((b.size,), START, dtype=torch.int64)
    out, live = [[] for _ in range(b.size)], np.ones(b.size, dtype=bool)
    for t in range(int(limits.max())):
        s, state = model.decoder(model.tgt_embed(ids)[None], state)
        logits, _ = model.head(s, a, mask)
        logits[0, :, UNK] = float("-inf")
        ids = logits[0].argmax(dim=-1)
        for i in np.flatnonzero(live):
            v = int(ids[i])
            if v == EOS:
                live[i] = False
            else:
                out[i].append(v)
                live[i] = len(out[i]) < limits[i]
        if not live.any():
            break
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("train")
    p.add_argument("--test-file", required=True)
    p.add_argument("--target-level", default="char", choices=("char", "word"))
    p.add_argument("--target-split", default="regex", choices=("regex", "whitespace"))
    p.add_argument("--attention", default="additive", choices=("none", "additive", "dot"))
    p.add_argument("--no-bidirectional", action="store_true")
    for name, default in (("embedding", 64), ("target-embedding", 64), ("hidden", 256), ("decoder-hidden", 0),
                          ("attention-hidden", 0), ("layers", 2), ("dropout", 0.0), ("lr", 2e-3), ("clip", 5.0),
                          ("batch-size", 64), ("steps", 0), ("time-limit", 0.0), ("seed", 0), ("threads", 2)):
        p.add_argument(f"--{name}", type=type(default), default=default)
    a = p.parse_args()
    print("$ python " + " ".join(sys.argv), file=sys.stderr)
    if not a.steps and not a.time_limit:
        p.error("give --steps or --time-limit")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train, test = read_pairs(a.train), read_pairs(a.test_file)
    vocab = PairVocab.build(train, TokenizerConfig(), TokenizerConfig(level=a.target_level, split=a.target_split))
    sources, targets = vocab.training_pairs(train)
    config = Seq2SeqConfig(source_vocab_size=len(vocab.source), target_vocab_size=len(vocab.target), cell="lstm", layers=a.layers, hidden=a.hidden,
                           decoder_hidden=a.decoder_hidden, embedding=a.embedding,
                           target_embedding=a.target_embedding, attention=a.attention,
                           attention_hidden=a.attention_hidden, bidirectional=not a.no_bidirectional,
                           dropout=a.dropout)
    model = Seq2SeqPeer(config)
    load_charlm(model, Seq2Seq(config, seed=a.seed).params)
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=a.lr)
    rng = np.random.default_rng(a.seed)
    order = np.argsort([len(s) for s in sources], kind="stable")
    groups = [order[i:i + a.batch_size] for i in range(0, len(order), a.batch_size)]
    step, tokens, start = 0, 0, time.perf_counter()
    while (not a.steps or step < a.steps) and (not a.time_limit or time.perf_counter() - start < a.time_limit):
        for k in rng.permutation(len(groups)):
            b = pad_pairs([sources[i] for i in groups[k]], [targets[i] for i in groups[k]])
            opt.zero_grad()
            loss = mean_loss(model, b)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            step, tokens = step + 1, tokens + b.tokens
            if (a.steps and step >= a.steps) or (a.time_limit and time.perf_counter() - start >= a.time_limit):
                break
    seconds = time.perf_counter() - start
    model.eval()
    outputs = greedy(model, [vocab.source_ids(e.source) for e in test.examples])
    right = sum(vocab.target_text(o) in e.references for o, e in zip(outputs, test.examples))
    print(json.dumps({"steps": step, "seconds": round(seconds, 1), "target_tokens_per_s": round(tokens / seconds),
                      "last_loss": round(loss.item(), 4), "test_examples": len(test.examples),
                      "sequence_accuracy": right / len(test.examples), "wer": 1 - right / len(test.examples)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The PyTorch peer of charlm's sequence-to-sequence model (charlm.seq2seq, LSTM cells), for the speed
and quality comparison of the seq2seq task (needs the `bench` extra, torch==2.13.0).

    python benchmarks/torch_seq2seq.py --task seq2seq TRAIN [charlm train options] [--test-file TEST]

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
rounding (tests/test_torch_seq2seq.py).

Training (`train_peer`, `main`): the run `charlm train` makes with the same command line (parsed by
charlm's own, `torch_peer.train_options`; optimizer adam), trained in PyTorch:
  * charlm's run set-up (`charlm.tasks.training.start`): its pair reader, vocabularies, batches
    (`PairBatches`: the same pairs in the same order), validation set and initial weights;
  * the peer's forward and backward, `clip_grad_norm_` at --clip, torch.optim.Adam (β 0.9/0.999,
    ε 1e-8) at --lr; the peer's own dropout draws (torch.manual_seed(--seed + 1));
  * charlm's own `Trainer` for every evaluation (`PeerValidation`: the peer's loss and greedy outputs,
    counted by charlm's `Counts`): the records in --metrics, the best model (lowest validation token
    error rate) saved at -o as a charlm model file, the learning rate halved when an evaluation does
    not improve (floor --lr/1000), --patience of them stop the run; --time-limit counts from the same
    point as charlm's and includes the evaluations; --max-steps, --epochs.
With --test-file, the peer's own greedy decoding of that file (best weights) is counted by charlm's
metric code as `charlm eval` counts (`decode_counts`). Prints one JSON object. PyTorch runs with
OMP_NUM_THREADS threads (default 2), float32.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import charlm  # noqa: E402
from charlm.engine.batches import Evaluation  # noqa: E402
from charlm.engine.loop import Trainer  # noqa: E402
from charlm.engine.parallel import SingleProcess  # noqa: E402
from charlm.engine.progress import Reporter  # noqa: E402
from charlm.seq2seq.metrics import Counts  # noqa: E402
from charlm.seq2seq.pairs import PairVocab, read_pairs  # noqa: E402
from charlm.seq2seq.network import EOS, START, UNK, Seq2SeqConfig, pad_pairs  # noqa: E402
from charlm.tasks.training import start  # noqa: E402
from torch_peer import train_options  # noqa: E402
from torch_tagger import grad, load_lstms, lstm_gradients, put, value  # noqa: E402


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


def charlm_gradients(model: Seq2SeqPeer, read=grad) -> dict:
    """The gradients of a peer set up by `load_charlm` (with read=value: its weights), in charlm's
    names and layouts."""
    g = {"src.embed.W": read(model.src_embed.weight), "tgt.embed.W": read(model.tgt_embed.weight),
         **lstm_gradients(model, read)}
    for w, b, lin in model.linears():
        g[w] = read(lin.weight).T
        if b is not None:
            g[b] = read(lin.bias)
    if model.config.attention == "additive":
        g["att.v"] = read(model.v)
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


class PeerAdam:
    """torch.optim.Adam (β 0.9/0.999, ε 1e-8: charlm's) behind the two things charlm's engine asks of an
    optimizer when it evaluates (engine.loop.Trainer.evaluate): `lr` (the plateau halves it) and
    `evaluated`/`plateau` (Adam's: the weights as they are, the learning rate decays); `state_dict`
    for the NAME.last.npz it writes (no arrays: the peer's run is not resumable)."""

    name = "torch-adam"

    def __init__(self, params, lr: float):
        self.params = [q for q in params if q.requires_grad]
        self.torch = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8)

    @property
    def lr(self) -> float:
        return self.torch.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.torch.param_groups:
            group["lr"] = value

    def evaluated(self, params):
        return contextlib.nullcontext()

    def plateau(self, params) -> bool:
        return False

    def state_dict(self):
        return {"name": self.name, "lr": self.lr, "t": 0}, {}


class PeerValidation:
    """charlm's validation set (seq2seq.source.PairValidation) evaluated on the peer, as charlm
    evaluates its model: the mean −log ŷ<t>[y<t>] over every (source, reference) pair, the peer's
    greedy output of each source counted against its references by charlm's `Counts`; objective the
    token error rate. First the peer's weights are copied into charlm's `model` (charlm's layout),
    so that what the engine saves as the best model is the peer's."""

    def __init__(self, peer: Seq2SeqPeer, validation):
        self.peer, self.validation = peer, validation

    @torch.no_grad()
    def evaluate(self, model, comm):
        for name, w in charlm_gradients(self.peer, read=value).items():
            model.params[name][...] = w
        v, nll, n, counts = self.validation, 0.0, 0, Counts()
        self.peer.eval()
        for k in range(0, len(v.sources), v.batch_size):
            chunk = range(k, min(k + v.batch_size, len(v.sources)))
            pairs = [(v.sources[i], r) for i in chunk for r in v.references[i]]
            b = pad_pairs([s for s, _ in pairs], [r for _, r in pairs])
            nll += mean_loss(self.peer, b).item() * b.tokens
            n += b.tokens
            for i, out in zip(chunk, greedy(self.peer, [v.sources[i] for i in chunk])):
                counts.add(out, [list(r) for r in v.references[i]])
        self.peer.train()
        return Evaluation(nll / max(n, 1), counts.token_error_rate,
                          {"val_accuracy": counts.sequence_accuracy, "val_ter": counts.token_error_rate})


class _Stop(Exception):
    """Ends the peer's training, with the reason as its message."""


def train_peer(opts) -> tuple[Seq2SeqPeer, dict]:
    """Train the peer of the run `charlm train` makes with `opts` (TrainOptions of --task seq2seq,
    optimizer adam): charlm's own run set-up (its data, batches in the same order, validation set and
    initial weights: charlm.tasks.training.start), the peer's forward, backward, clipping and Adam
    step, and charlm's own Trainer for every evaluation (records in --metrics, the best model at -o
    as a charlm model file, the learning rate halved on a plateau, --patience); the time limit counts
    from the same point as charlm's and includes the evaluations. Returns the peer with the best
    weights and charlm's summary of the run."""
    if opts.optimizer != "adam" or opts.accumulate != 1:
        raise SystemExit("torch_seq2seq: the peer trains with Adam, one batch per step")
    run = start(opts)
    torch.manual_seed(opts.seed + 1)                       # the peer's dropout draws
    peer = Seq2SeqPeer(run.model.config)
    load_charlm(peer, run.model.params)                    # charlm's initial weights
    peer.train()
    opt = PeerAdam(peer.parameters(), opts.lr)
    run = replace(run, validation=PeerValidation(peer, run.validation) if run.validation else None, optimizer=opt)
    trainer, st, reason = Trainer(run, Reporter(), SingleProcess()), run.state, "finished"
    try:
        while st.epoch < opts.epochs:
            for batch in run.source.batches(st.position):
                if opts.max_steps is not None and st.step >= opts.max_steps:
                    raise _Stop("reached --max-steps")
                loss = mean_loss(peer, batch.inputs[0])
                opt.torch.zero_grad(set_to_none=True)
                loss.backward()
                if opts.clip > 0:
                    nn.utils.clip_grad_norm_(opt.params, opts.clip)
                opt.torch.step()
                st.step, st.position, st.tokens_seen = st.step + 1, batch.end, st.tokens_seen + batch.tokens
                trainer.tick_tokens += batch.tokens
                trainer.window_loss, trainer.window_count = trainer.window_loss + loss.item(), trainer.window_count + 1
                if st.step % opts.eval_every == 0 and trainer.evaluate():
                    raise _Stop(f"early stop: no improvement in {opts.patience} evaluations")
                if opts.time_limit is not None and time.perf_counter() - trainer.started >= opts.time_limit:
                    raise _Stop("reached --time-limit")
            trainer.end_epoch()
    except _Stop as stop:
        reason = str(stop)
    trainer.finish()
    summary = trainer.summary(reason, None)
    load_charlm(peer, charlm.load(opts.output).network.params)     # the best weights, as saved
    peer.eval()
    return peer, summary


def decode_counts(peer: Seq2SeqPeer, pairs: PairVocab, path, batch_size: int = 64):
    """charlm's `Counts` of the peer's greedy outputs on a SOURCE<TAB>TARGET file, counted in tokens
    against each example's references as `charlm eval` counts them (sources decoded in batches of
    similar length)."""
    examples = read_pairs(path).examples
    ids = [pairs.source_ids(e.source) for e in examples]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    outputs = {}
    for k in range(0, len(order), batch_size):
        chunk = order[k:k + batch_size]
        outputs.update(zip(chunk, greedy(peer, [ids[i] for i in chunk])))
    counts = Counts()
    for i, e in enumerate(examples):
        counts.add(pairs.target.decode(outputs[i]), [pairs.target_tokens(r) for r in e.references])
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--test-file", help="decode this pair file greedily with the trained peer")
    a, train_argv = p.parse_known_args(argv)
    print("$ python " + " ".join(sys.argv), file=sys.stderr)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))
    opts = train_options(train_argv)
    peer, summary = train_peer(opts)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), **{
        k: summary[k] for k in ("reason", "step", "epoch", "best_step", "elapsed", "output")}}
    result["best_record"] = summary["best_record"]
    if a.test_file:
        counts = decode_counts(peer, charlm.load(opts.output).pairs, a.test_file)
        result["test"] = {"examples": counts.examples, "wer": counts.wer,
                          "token_error_rate": counts.token_error_rate}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

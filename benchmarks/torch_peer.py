"""The PyTorch peer of a quality run (`bench_quality.py SETUP --peer torch`): the run `charlm train`
would make with the same options, trained in PyTorch for the same wall-clock seconds.

What is the same, and how it is made the same:
  * options: parsed by charlm's own `train` command line (defaults included), so both sides read
    one TrainOptions;
  * data: charlm's own run set-up (charlm.tasks.training.start): tokenizer, vocabulary, the split (the last
    --val-fraction of the corpus is validation), training batches of B contiguous streams x windows
    of T tokens (charlm.lm.batches.StreamBatches), the state carried from window to window, detached,
    and reset at each epoch start;
  * model: embedding -> L-layer nn.LSTM (or nn.GRU) -> dense layer (the embedding's transpose with
    --tie-weights), started from charlm's initial weights (copied from the charlm model the same
    options and --seed build);
  * dropout (inverted, a fresh mask per window) on the embeddings, between layers (nn.LSTM's
    `dropout`) and on the top layer's output;
  * loss: mean cross-entropy of the window; Adam (β 0.9/0.999, ε 1e-8) at --lr; the global gradient
    norm clipped to --clip;
  * evaluation every --eval-every steps and at the end, by charlm's own scoring code
    (charlm.lm.batches.StreamValidation, charlm.lm.scoring.score_stream) through `TorchScorer`, which has
    the two methods that code calls (init_state, target_log_probs); an evaluation without
    improvement multiplies the learning rate by --lr-decay (floor: --lr/1000), --patience of them
    in a row stop the run; the time limit counts from the first step and includes evaluations.
  * `check_same_scores` scores validation windows with both models on identical weights first.
PyTorch runs with torch.set_num_threads(2) (or OMP_NUM_THREADS when set, as charlm's BLAS does), float32.

One difference is the cell's, not the recipe's: PyTorch's GRU applies its reset gate after the
recurrent product, r * (W_hn h + b_hn); the notes' GRU (charlm) before it, W_c[Γr * c<t-1>, x<t>].
Its initial weights are copied all the same (W_hn from W_c's c<t-1> rows; z = 1 - Γu), but the
scores on identical weights agree for the LSTM only.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np

import common

LSTM_ORDER = (0, 1, 3, 2)      # charlm's LSTM blocks [Γu | Γf | Γo | c~] as PyTorch's [i | f | g | o]


class _Stop(Exception):
    """Ends the peer's training early, with the reason as its message."""


class _Captured(BaseException):
    """Carries the options out of the command line (a BaseException: passes its error handler)."""

    def __init__(self, opts):
        super().__init__("captured")
        self.opts = opts


def train_options(argv: list[str]):
    """The TrainOptions `charlm train ARGV` would train with, parsed by charlm's own command line
    (its `train` function is swapped for one that only records the options)."""
    import charlm.cli.train as cli_train
    from charlm.cli import cli

    def record(opts, **_):
        raise _Captured(opts)

    real, cli_train.train = cli_train.train, record
    try:
        cli.main(args=["train", *argv], standalone_mode=False)
    except _Captured as got:
        return got.opts
    finally:
        cli_train.train = real
    raise SystemExit("bench_quality: `charlm train` stopped before training (see its message above)")


def peer_model(torch, config):
    """nn.Module: embedding -> nn.LSTM/nn.GRU -> dense, with charlm's dropout placement."""
    nn = torch.nn
    if config.cell not in ("lstm", "gru") or config.peephole or config.dtype != "float32":
        raise SystemExit("bench_quality --peer torch: only float32 LSTM (no peepholes) and GRU models")
    if config.dropout_kind != "standard" or config.embedding_dropout or config.weight_drop:
        raise SystemExit("bench_quality --peer torch: the peer has standard dropout only (no --dropout-kind "
                         "locked, --embedding-dropout or --weight-drop)")
    V, E, H, L, p = config.vocab_size, config.embedding, config.hidden, config.layers, config.dropout

    class PeerLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, E)
            rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
            self.rnn = rnn(E, H, num_layers=L, dropout=p if L > 1 else 0.0)   # between layers
            self.drop = nn.Dropout(p)
            self.out_W = None if config.tie_weights else nn.Parameter(torch.empty(H, V))
            self.out_b = nn.Parameter(torch.zeros(V))

        def forward(self, x, h):
            """x (T,B) int64, h state -> logits (T,B,V), new state."""
            y, h = self.rnn(self.drop(self.embed(x)), h)            # dropout on the embeddings
            W = self.embed.weight.T if self.out_W is None else self.out_W
            return self.drop(y) @ W + self.out_b, h                 # dropout before the output

        def init_state(self, B: int):
            z = torch.zeros(L, B, H)
            return (z, z.clone()) if config.cell == "lstm" else z

    return PeerLM()


def load_charlm_weights(torch, net, model) -> None:
    """Copy a charlm LanguageModel's parameters into `peer_model`'s (PyTorch's gate order)."""
    c, p = model.config, model.params
    H = c.hidden
    with torch.no_grad():
        net.embed.weight.copy_(torch.from_numpy(p["embed.W"]))
        for l in range(c.layers):
            Wt = p[f"rnn.{l}.W"].T.reshape(-1, H, p[f"rnn.{l}.W"].shape[0])   # (G, H, H+D) blocks
            b = p[f"rnn.{l}.b"].reshape(-1, H)
            if c.cell == "lstm":
                Wt, b = Wt[list(LSTM_ORDER)], b[list(LSTM_ORDER)]
            else:                                            # z = 1 - Γu = σ(-(W_u[c, x] + b_u))
                Wt, b = Wt * np.array([1, -1, 1])[:, None, None], b * np.array([1, -1, 1])[:, None]
            Wt = np.ascontiguousarray(Wt.reshape(-1, Wt.shape[2]))
            getattr(net.rnn, f"weight_hh_l{l}").copy_(torch.from_numpy(Wt[:, :H]))
            getattr(net.rnn, f"weight_ih_l{l}").copy_(torch.from_numpy(Wt[:, H:]))
            getattr(net.rnn, f"bias_ih_l{l}").copy_(torch.from_numpy(b.reshape(-1)))
            getattr(net.rnn, f"bias_hh_l{l}").zero_()
        if net.out_W is not None:
            net.out_W.copy_(torch.from_numpy(p["out.W"]))
        net.out_b.copy_(torch.from_numpy(p["out.b"]))


def _detach(h):
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()


class TorchScorer:
    """What charlm's scoring code asks of a model, for a PeerLM in evaluation mode:
    init_state(B) and target_log_probs(x (T,B), y (T,B), state) -> (log p(y) (T,B) float64, state)."""

    def __init__(self, torch, net):
        self.torch, self.net = torch, net

    def init_state(self, B: int):
        return self.net.init_state(B)

    def target_log_probs(self, x, y, state):
        torch = self.torch
        self.net.eval()
        with torch.no_grad():
            logits, state = self.net(torch.from_numpy(np.asarray(x, dtype=np.int64)), state)
            lp = torch.log_softmax(logits, dim=-1).gather(
                -1, torch.from_numpy(np.asarray(y, dtype=np.int64))[..., None])[..., 0]
        return lp.numpy().astype(np.float64), state


def check_same_scores(torch, net, model, data: np.ndarray, seq_len: int, windows: int = 3):
    """(charlm, PyTorch) nats per token of the first `windows` windows of `data` (N, B), state
    carried, on the weights both hold now: the scoring protocol and the weight copy agree if these do."""
    from charlm.lm.scoring import stream_loss_sums
    part = data[:windows * seq_len + 1]
    ours = stream_loss_sums(model, part, seq_len)
    theirs = stream_loss_sums(TorchScorer(torch, net), part, seq_len)
    return float(ours[0] / ours[1]), float(theirs[0] / theirs[1])


def train_peer(argv: list[str], out: Path, log) -> dict:
    """Train the PyTorch peer of `charlm train ARGV` (which must hold --time-limit); write
    out/metrics.jsonl in charlm's format and return {"model": TorchScorer of the best weights,
    "vocab": the run's vocabulary, "check": (charlm, PyTorch) nats of check_same_scores}."""
    from charlm.engine.parallel import SingleProcess
    from charlm.engine.loop import MIN_LR_FRACTION
    from charlm.tasks.training import start as _start

    torch = common.torch_or_none(threads=int(os.environ.get("OMP_NUM_THREADS") or 2))
    if torch is None:
        raise SystemExit("bench_quality --peer torch needs PyTorch: pip install -e '.[bench]'")
    opts = train_options(argv)
    if opts.optimizer != "adam":
        raise SystemExit("bench_quality --peer torch: the peer trains with Adam only")
    run = _start(opts)                                       # charlm's data, vocabulary and model
    torch.manual_seed(opts.seed + 1)
    net = peer_model(torch, run.model.config)
    load_charlm_weights(torch, net, run.model)
    val = run.validation
    check = check_same_scores(torch, net, run.model, val.data, val.seq_len) if val is not None else None
    log(f"check on identical weights, {3} validation windows: charlm {check[0]:.6f}, "
        f"PyTorch {check[1]:.6f} nats/token" if check else "no validation data: no check")
    scorer, comm = TorchScorer(torch, net), SingleProcess()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=opts.lr, betas=(0.9, 0.999), eps=1e-8)
    V, B = run.model.config.vocab_size, run.source.batch_size
    F = torch.nn.functional
    best_val, best_any, bad, best_state, step, tokens, reason = None, None, 0, None, 0, 0, "finished"
    window_loss, window_n = 0.0, 0
    started = time.perf_counter()
    metrics = open(out / "metrics.jsonl", "w", encoding="utf-8")

    def evaluate(epoch_pos: float, scheduled: bool) -> bool:
        """As charlm's Trainer.evaluate: record, keep the best weights, decay / stop on plateaus."""
        nonlocal best_val, best_any, bad, best_state, window_loss, window_n, evaluated_at
        loss = val.evaluate(scorer, comm).loss if val is not None else None
        elapsed = time.perf_counter() - started
        lr = opt.param_groups[0]["lr"]
        rec = {"step": step, "epoch": epoch_pos, "train_loss": window_loss / window_n if window_n else None,
               "val_loss": loss, "lr": lr, "tokens_per_s": tokens / elapsed, "elapsed": elapsed}
        metrics.write(json.dumps(rec) + "\n")
        metrics.flush()
        window_loss, window_n, evaluated_at = 0.0, 0, step
        if loss is not None and (best_any is None or loss < best_any):
            best_any, best_state = loss, copy.deepcopy(net.state_dict())
        if not scheduled or loss is None:
            return False
        if best_val is None or loss < best_val:
            best_val, bad = loss, 0
            return False
        bad += 1
        for group in opt.param_groups:
            group["lr"] = max(group["lr"] * opts.lr_decay, opts.lr * MIN_LR_FRACTION)
        return bad >= opts.patience

    evaluated_at = None
    try:
        for epoch in range(opts.epochs):
            h = net.init_state(B)                            # reset at each epoch start
            for batch in run.source.batches(0):
                net.train()
                x, y = (torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in batch.inputs)
                logits, h = net(x, h)
                loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if opts.clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, opts.clip)
                opt.step()
                h = _detach(h)
                step, tokens, loss = step + 1, tokens + batch.tokens, loss.item()
                window_loss, window_n = window_loss + loss, window_n + 1
                if not math.isfinite(loss):
                    raise SystemExit(f"bench_quality --peer torch: non-finite loss at step {step}")
                if step % opts.eval_every == 0 and evaluate(epoch + run.source.epoch_fraction(batch.end), True):
                    raise _Stop(f"early stop: no improvement in {opts.patience} evaluations")
                if opts.time_limit is not None and time.perf_counter() - started >= opts.time_limit:
                    raise _Stop("reached --time-limit")
    except _Stop as stop:
        reason = str(stop)
    if evaluated_at != step:                                 # as charlm's Trainer.finish
        evaluate(epoch + run.source.epoch_fraction(batch.end), False)
    metrics.close()
    log(f"PyTorch peer: {reason} after {step} steps in {time.perf_counter() - started:.0f} s")
    if best_state is not None:
        net.load_state_dict(best_state)
    return {"model": scorer, "vocab": run.vocab, "check": check, "options": opts, "torch": torch.__version__}

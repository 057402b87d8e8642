"""Sequence-to-sequence training throughput: charlm vs PyTorch on a G2P-sized model.

The model: characters -> embedding 64 -> 2 bidirectional LSTM layers, 256 per direction -> bridge ->
2 LSTM layers of 256 reading the phone embedding (64) -> additive attention (256) -> ã<t> (256) ->
softmax over the phones; dropout 0 (the model's default). One training step per batch of 64 pairs:
forward, mean cross-entropy over the target tokens (each <EOS> included), backward, global
gradient-norm clipping at 5, Adam.

    charlm:  loss, _, cache = model.loss(batch, None, train=True, rng=rng)
             grads = model.backward(cache); clip_grad_norm(grads, 5.0); opt.step(params, grads)
    PyTorch: benchmarks/torch_seq2seq.Seq2SeqPeer (the same model, started from charlm's weights:
             nn.LSTM on packed sources, nn.LSTM decoder, the same attention), mean_loss, backward,
             clip_grad_norm_(…, 5.0), torch.optim.Adam; torch.set_num_threads(2), float32.

Data: the shipped CMUdict subset (data/cmudict-g2p.train.txt: 3195 word -> phones pairs), sorted by
source length and cut into batches of 64 (as training batches them); 4 batches at evenly spaced
length quantiles make one timed call. Throughput = target tokens of the 4 batches / median time
of a call (after warm-up), both sides interleaved.

Usage:  python benchmarks/bench_seq2seq.py [--quick] [--steps N] [--no-torch] [--attention none|additive|dot]
"""

from __future__ import annotations

import sys

import numpy as np

import common
from bench_tagger import training_call
from charlm.seq2seq.pairs import PairVocab, read_pairs
from charlm.seq2seq.network import Seq2Seq, Seq2SeqConfig, pad_pairs
from charlm.text.tokenizer import TokenizerConfig

BATCH, PER_CALL = 64, 4
PAIRS = common.ROOT / "data" / "cmudict-g2p.train.txt"


def g2p_batches():
    """PER_CALL batches of BATCH pairs at evenly spaced source-length quantiles, and the vocabulary."""
    pairs = read_pairs(PAIRS)
    vocab = PairVocab.build(pairs, TokenizerConfig(), TokenizerConfig(level="word", split="whitespace"))
    sources, targets = vocab.training_pairs(pairs)
    order = np.argsort([len(s) for s in sources], kind="stable")
    groups = [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
    picks = np.linspace(0, len(groups) - 1, PER_CALL).round().astype(int)
    return [pad_pairs([sources[i] for i in groups[k]], [targets[i] for i in groups[k]]) for k in picks], vocab


def config(vocab, attention: str) -> Seq2SeqConfig:
    return Seq2SeqConfig(source_vocab_size=len(vocab.source), target_vocab_size=len(vocab.target), cell="lstm", layers=2, hidden=256,
                         decoder_hidden=256, embedding=64, target_embedding=64, attention=attention)


def torch_fn(torch, model, batches):
    import torch_seq2seq

    peer = torch_seq2seq.Seq2SeqPeer(model.config)
    torch_seq2seq.load_charlm(peer, model.params)
    peer.train()
    params = [p for p in peer.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)

    def call():
        for b in batches:
            opt.zero_grad(set_to_none=True)
            torch_seq2seq.mean_loss(peer, b).backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()

    return call


def run(args, log=print) -> tuple[list[dict], list[str]]:
    warm, steps = common.budget(args)
    torch = common.torch_or_none(args.no_torch, args.torch_threads)
    batches, vocab = g2p_batches()
    tokens = sum(b.tokens for b in batches)
    peak = common.gemm_peak(quick=args.quick)
    log(f"float32 GEMM peak: {peak['gflops']:.1f} GFLOP/s "
        + ", ".join(f"n={n}: {g:.1f}" for n, g in peak["by_size"].items()))
    rows, notes = [], [f"float32 GEMM peak of numpy's BLAS: {peak['gflops']:.1f} GFLOP/s"]
    sizes = []
    for attention in args.attention.split(","):
        model = Seq2Seq(config(vocab, attention), seed=0)
        sizes.append(f"{attention} {model.num_params():,}")
        fns = {"charlm": training_call(model, batches)}
        if torch is not None:
            fns["torch"] = torch_fn(torch, Seq2Seq(config(vocab, attention), seed=0), batches)
        times = common.interleaved_times(fns, warm, steps, block=1, budget_s=common.case_budget(args))
        med = {k: common.median(v) for k, v in times.items()}
        tps = {k: tokens / v for k, v in med.items()}
        rt = common.ratio(tps["charlm"], tps.get("torch"))
        log(f"[seq2seq] {attention}: {tokens} target tokens in {PER_CALL} batches of {BATCH}: charlm "
            f"{med['charlm']:.3f} s" + (f", PyTorch {med['torch']:.3f} s" if "torch" in med else ""))
        rows.append(dict(benchmark="seq2seq train", case=f"G2P {attention} B={BATCH} bilstm 2×256 → 2×256"
                         + common.cut_short(times, steps), charlm=tps["charlm"], torch=tps.get("torch"),
                         ratio=rt, target="≥ 1.0× PyTorch", met=None if rt is None else rt >= 1.0))
    lengths = [(b.source.shape[0], b.target.shape[0]) for b in batches]
    notes.append(f"parameters (charlm): {', '.join(sizes)}; batches (Tx, Ty) = {lengths}; {warm} warm-up + "
                 f"{steps} timed calls of {PER_CALL} training steps per side, interleaved; median call time")
    return rows, notes


def main(argv=None) -> int:
    common.prepare()
    parser = common.add_common_args(__import__("argparse").ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--attention", default="additive", help="comma-separated: none, additive, dot")
    args = parser.parse_args(argv)
    print("$ python " + " ".join(sys.orig_argv[1:]))
    torch = common.torch_or_none(args.no_torch, args.torch_threads)
    for line in common.machine_lines(torch):
        print(line)
    rows, notes = run(args, log=lambda s: print(s, file=sys.stderr, flush=True))
    print()
    print(common.markdown_table(rows))
    for n in notes:
        print(f"- {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

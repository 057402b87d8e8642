"""What the CRF output layer (`charlm train --task tag --crf`) costs: the tagger's training step and
its prediction, with and without the CRF, timed side by side.

The tagger and the batches of benchmarks/bench_tagger.py (word embedding 100 + a character BiLSTM
25 + 25 -> 2 bidirectional LSTM layers of 128 per direction -> 17 tags; batches of 32 sentences
with UD EWT's sentence and word lengths, bucketed by length, 8 batches per timed call).

    train     loss + backward + clipping + Adam, softmax cross-entropy vs the CRF's sentence
              likelihood (forward algorithm; forward-backward for the gradient)
    predict   log ŷ and the argmax of every token vs the CRF's marginals and its Viterbi paths
              (`Predictor.tagged`'s work on a batch)

Both sides run interleaved (common.interleaved_times), so the machine's load hurts them alike;
the figures are medians. Usage:  python benchmarks/bench_crf.py [--quick] [--steps N]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import common
from bench_tagger import BATCH, C, K, PER_CALL, V, charlm_fn, make_batches, random_corpus
from charlm.sentence.decode import decode_batch
from charlm.sentence.network import TaggerConfig, TaggerNetwork


def tagger(crf: bool) -> TaggerNetwork:
    return TaggerNetwork(TaggerConfig(task="tag", vocab_size=V, char_vocab_size=C, num_labels=K, word_dropout=0.0,
                               crf=crf), seed=0)


def train_fn(batches, crf: bool):
    return charlm_fn(batches, crf)[0]


def predict_fn(batches, crf: bool):
    model = tagger(crf)

    def call():
        for b in batches:
            if crf:
                model.crf_decode(b)
            else:
                decode_batch(model.log_probs(b), b.lengths)

    return call


def run(args, log=print) -> tuple[list[dict], list[str]]:
    warm, steps = common.budget(args)
    sentences, spelling, note = random_corpus()
    batches = make_batches(sentences, spelling, np.argsort([len(s) for s in sentences], kind="stable"), seed=2)
    tokens = sum(b.tokens for b in batches)
    rows = []
    for case, make in (("train", train_fn), ("predict", predict_fn)):
        fns = {"plain": make(batches, False), "crf": make(batches, True)}
        times = common.interleaved_times(fns, warm, steps, block=1, budget_s=common.case_budget(args))
        med = {k: common.median(v) for k, v in times.items()}
        log(f"[crf] {case}: {tokens} tokens in {PER_CALL} batches: plain {med['plain']:.3f} s, crf {med['crf']:.3f} s")
        rows.append(dict(benchmark=f"tagger {case}", case=f"B={BATCH} K={K}{common.cut_short(times, steps)}",
                         plain_tokens_per_s=round(tokens / med["plain"]), crf_tokens_per_s=round(tokens / med["crf"]),
                         crf_time_over_plain=round(med["crf"] / med["plain"], 3)))
    notes = [note, f"{warm} warm-up + {steps} timed calls of {PER_CALL} batches per side, interleaved; median call time"]
    return rows, notes


def main(argv=None) -> int:
    common.prepare()
    args = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0])).parse_args(argv)
    for line in [*common.machine_lines(), f"float32 GEMM (n = 1024): {common.gemm_peak(quick=True)['gflops']:.1f} GFLOP/s"]:
        print(line)
    rows, notes = run(args, log=lambda s: print(s, file=sys.stderr, flush=True))
    print("\n| case | plain tokens/s | --crf tokens/s | --crf time / plain time |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['benchmark']} {r['case']} | {r['plain_tokens_per_s']:,} | {r['crf_tokens_per_s']:,} | "
              f"{r['crf_time_over_plain']:.3f} |")
    for n in notes:
        print(f"- {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Python API's speed: a loaded model reused call after call, and beam search as one batch.

Models: random weights, wrapped as the `charlm.LM` that `charlm.load` returns, LSTM and GRU:
    b: V 65, E 64, H 256, 2 layers, a character vocabulary (stream mode), sentences of 20–40
       characters;
    d: V 10,000, E 200, H 200, 2 layers, a word vocabulary (lines mode), sentences of 5–15 words.

score, one call at a time: 1,000 short sentences scored with
    one call:        lm.score(sentences)                  (batches of 64, sorted by length)
    one at a time:   for s in sentences: lm.score(s)      (the same model object every time)
    slowdown = time(one at a time) / time(one call). Target (the issue): < 3×. tok/s = scored
    tokens / time of the one-at-a-time loop. The case text also gives the one-call figure and
    the API's own share: the same loop calling the network directly on pre-encoded ids
    (`model.target_log_probs` on (T, 1)) is the floor, "API overhead" how much more the API loop
    takes (tokenizing, encoding, building the SentenceScore records).
next_tokens: lm.next_tokens(prefix, k=10) for 200 prefixes (as the sentences), one call each;
    tok/s = prefix tokens read / time (information).
beam (configuration b): lm.complete(prime, beam=5, length=200) against one-stream sampling
    lm.sample(1, length=200); both run 200 steps (stream mode: no <EOS> stop). Beam search
    pushes its K = 5 hypotheses through `model.step` as one (5,) batch. tok/s = hypothesis
    tokens (K·200) per second; the sampling figure and the cost of a beam step in sampling
    steps are in the case text (information).

Usage:  python benchmarks/bench_api.py [--quick] [--cells lstm,gru] [--configs b,d]
"""

from __future__ import annotations

import string
import sys

import common  # first: it prepares the environment before NumPy loads its BLAS
from common import CONFIGS

import numpy as np

API_CONFIGS = ("b", "d")
N_SENTENCES = 1000
N_PREFIXES = 200
BEAM, BEAM_STEPS, BEAM_CONFIG = 5, 200, "b"
SLOWDOWN_TARGET = 3.0


def api_model(name: str, cell: str):
    """(charlm.LM with random weights, the vocabulary's tokens) for configuration `name`."""
    import charlm
    from charlm.lm.model import LanguageModel, ModelConfig
    from charlm.text.tokenizer import TokenizerConfig
    from charlm.text.vocab import Vocab

    cfg = CONFIGS[name]
    n = cfg["V"] - 2                                      # <UNK> and <EOS> take two ids
    if cfg["V"] <= 100:
        toks = list(("\n" + string.ascii_letters + string.digits + " .,;:!?'-()\"&")[:n])
        tok_cfg = TokenizerConfig(level="char")
    else:
        toks = [f"w{i}" for i in range(n)]
        tok_cfg = TokenizerConfig(level="word", split="whitespace")
    vocab = Vocab.from_counts({t: 10 * n - i for i, t in enumerate(toks)}, tokenizer=tok_cfg)
    net = LanguageModel(ModelConfig(vocab_size=len(vocab), cell=cell, layers=cfg["L"], hidden=cfg["H"],
                                    embedding=cfg["E"], dropout=0.0), seed=0)
    return charlm.LM(net, vocab, meta={}, path=f"config {name} ({cell})"), toks


def short_texts(toks: list[str], char_level: bool, n: int, seed: int) -> list[str]:
    """n texts of 20–40 characters (character level) or 5–15 words."""
    rng = np.random.default_rng(seed)
    words = [t for t in toks if t != "\n"]
    lo, hi, sep = (20, 41, "") if char_level else (5, 16, " ")
    return [sep.join(words[i] for i in rng.integers(0, len(words), size=int(rng.integers(lo, hi))))
            for _ in range(n)]


def score_rows(name: str, cell: str, args, warm: int, steps: int, log) -> list[dict]:
    lm, toks = api_model(name, cell)
    char_level = lm.vocab.tokenizer.level == "char"
    sentences = short_texts(toks, char_level, N_SENTENCES, seed=1)
    prefixes = short_texts(toks, char_level, N_PREFIXES, seed=2)
    n_tokens = sum(len(s.per_token) for s in lm.score(sentences))
    n_prefix = sum(len(lm.tokenizer.tokenize(p)) for p in prefixes)
    net, vocab = lm.network, lm.vocab

    def pair(s: str):  # the inputs and targets `score` feeds the network
        from charlm.lm.scoring import _inputs_targets, start_id, tokenizer_mode
        mode = tokenizer_mode(vocab)
        ids = np.asarray(vocab.encode(lm.tokenizer.tokenize(s)), dtype=np.int64)
        x, y = _inputs_targets(ids, mode, vocab.eos_id, start_id(vocab, mode))
        return x[:, None], y[:, None]

    encoded = [pair(s) for s in sentences]

    def one_at_a_time():
        for s in sentences:
            lm.score(s)

    def network_alone():
        for x, y in encoded:
            net.target_log_probs(x, y, net.init_state(1))

    times = common.interleaved_times(
        {"one call": lambda: lm.score(sentences), "one at a time": one_at_a_time,
         "network alone": network_alone,
         "next_tokens": lambda: [lm.next_tokens(p, k=10) for p in prefixes]},
        warm, steps, block=1, budget_s=common.case_budget(args))
    med = {k: common.median(v) for k, v in times.items()}
    slowdown = med["one at a time"] / med["one call"]
    overhead = med["one at a time"] / med["network alone"] - 1
    what = "20–40 chars" if char_level else "5–15 words"
    log(f"[api] {name} {cell} score: one call {med['one call']:.2f} s, one at a time "
        f"{med['one at a time']:.2f} s (slowdown {slowdown:.2f}x), network alone "
        f"{med['network alone']:.2f} s (API overhead {overhead:.0%}); next_tokens "
        f"{med['next_tokens'] / N_PREFIXES * 1e3:.2f} ms/call")
    return [
        dict(benchmark="api score",
             case=f"{name} {cell}, {N_SENTENCES:,} sentences of {what} one call each (one call: "
                  f"{n_tokens / med['one call']:,.0f} tok/s); slowdown {slowdown:.2f}×; API overhead "
                  f"over the bare network {overhead:.0%}" + common.cut_short(times, steps),
             charlm=n_tokens / med["one at a time"], target=f"slowdown < {SLOWDOWN_TARGET:g}×",
             met=slowdown < SLOWDOWN_TARGET),
        dict(benchmark="api next_tokens",
             case=f"{name} {cell}, {N_PREFIXES} prefixes of {what}, k=10: "
                  f"{med['next_tokens'] / N_PREFIXES * 1e3:.2f} ms a call",
             charlm=n_prefix / med["next_tokens"], target="(information)", met=None),
    ]


def beam_row(cell: str, args, warm: int, steps: int, log) -> dict:
    lm, _ = api_model(BEAM_CONFIG, cell)
    times = common.interleaved_times(
        {"sample": lambda: lm.sample(1, length=BEAM_STEPS, seed=0),
         "beam": lambda: lm.complete("The ", beam=BEAM, length=BEAM_STEPS)},
        warm, steps, budget_s=common.case_budget(args))
    med = {k: common.median(v) for k, v in times.items()}
    sample_tps, beam_tps = BEAM_STEPS / med["sample"], BEAM * BEAM_STEPS / med["beam"]
    log(f"[api] {BEAM_CONFIG} {cell} beam K={BEAM}: {beam_tps:,.0f} hypothesis tok/s "
        f"({BEAM_STEPS / med['beam']:,.0f} steps/s); one-stream sampling {sample_tps:,.0f} tok/s")
    return dict(benchmark="api beam",
                case=f"{BEAM_CONFIG} {cell}, K={BEAM}, {BEAM_STEPS} steps (one-stream sampling: "
                     f"{sample_tps:,.0f} tok/s; a beam step costs {med['beam'] / med['sample']:.2f} "
                     f"sampling steps)" + common.cut_short(times, steps),
                charlm=beam_tps, target="(information: K hypotheses per step)", met=None)


def run(args, log=print) -> tuple[list[dict], list[str]]:
    cells = common.parse_list(args.cells, common.CELLS, "cell")
    configs = [c for c in common.parse_list(args.configs, list(CONFIGS), "configuration") if c in API_CONFIGS]
    warm, steps = common.budget(args)
    warm, steps = min(warm, 1), min(steps, 3)  # each call below takes a second or more
    rows = []
    for name in configs:
        for cell in cells:
            rows += score_rows(name, cell, args, warm, steps, log)
    if BEAM_CONFIG in configs:
        rows += [beam_row(cell, args, warm, steps, log) for cell in cells]
    notes = [f"api: {warm} warm-up + {steps} timed calls per case, interleaved; median. These rows "
             "measure charlm alone (no PyTorch column)."]
    return rows, notes


def main(argv=None) -> int:
    return common.bench_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

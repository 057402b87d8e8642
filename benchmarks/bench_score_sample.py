"""Scoring and generation throughput: charlm vs PyTorch (evaluation mode, float32, 2 threads).

Scoring (forward only), configurations b and d, batch 64, (T, B) windows of random tokens with the
state carried between windows (T = the configuration's sequence length):
    charlm:  lp, state = model.target_log_probs(x, y, state)                      lp (T, B)
    PyTorch: with torch.no_grad(): logits, h = net(x, h);
             lp = log_softmax(logits).gather(-1, y)
    tokens/s = T·64 / median time per window. Target: charlm ≥ PyTorch (the issue's author measured
    PyTorch LSTM at 58.7k tokens/s on b and 12.5k on d).
  + end to end: charlm.lm.scoring.score_sentences on 256 synthetic sentences (tokenize, encode, sort
    by length, pad, mask, one target_log_probs per 64 sentences, per-sentence records), tokens/s =
    scored tokens / median time. Reported separately, its ratio against the same PyTorch
    window-forward figure (informational; PyTorch does none of the surrounding work there).

Generation, configuration b (V 65, E 64, H 256, 2 layers), random weights, temperature 1:
    charlm:  charlm.lm.generate.sample(model, vocab, num=B, length=N, rng=rng)  (stream-mode char
             vocabulary, "\\n" start token fed first; all N tokens are generated, no <EOS> stop)
             — falls back to a model.step loop with an inverse-CDF draw if generate is missing.
    PyTorch: with torch.no_grad(): N times  logits, h = net(x_t, h); p = softmax(logits);
             x_t = torch.multinomial(p, 1)
    tokens/s = B·N / median time. Targets: batch 1: charlm ≥ 2× PyTorch (same cell);
    batch 16: charlm ≥ PyTorch's GRU at batch 16.
PyTorch's LSTM/GRU run with whatever 2.13 does by default on this CPU (oneDNN/mkldnn enabled
if available; the header line says which).

Usage:  python benchmarks/bench_score_sample.py [--quick] [--cells lstm,gru] [--configs b,d]
"""

from __future__ import annotations

import string
import sys

import numpy as np

import common  # first: it puts this checkout on sys.path
from common import CONFIGS

from charlm.lm.model import LanguageModel, ModelConfig

SCORE_CONFIGS = ("b", "d")
SCORE_BATCH = 64
ISSUE_TORCH_LSTM = {"b": 58_700, "d": 12_500}   # the issue author's PyTorch LSTM scoring numbers
N_SENTENCES = 256
GEN_CONFIG = "b"
GEN_BATCHES = (1, 16)
GEN_LENGTH = 200                                 # tokens generated per timed call


# --------------------------------------------------------------------------------------------
# models and vocabularies

def charlm_model(cfg: dict, cell: str):
    return LanguageModel(ModelConfig(vocab_size=cfg["V"], cell=cell, layers=cfg["L"],
                                     hidden=cfg["H"], embedding=cfg["E"], dropout=0.0), seed=0)


def synthetic_vocab(V: int):
    """(Vocab, Tokenizer, token strings) of exactly V entries.

    V ≤ 100: character level (stream mode), printable characters and "\\n";
    otherwise word level (lines mode, whitespace split), words "w0", "w1", ...
    Counts are Zipf-like so the order is deterministic. None when charlm.text.vocab or
    charlm.text.tokenizer is missing.
    """
    try:
        from charlm.text.tokenizer import Tokenizer, TokenizerConfig
        from charlm.text.vocab import Vocab
    except ImportError:
        return None
    n = V - 2                                            # <UNK> and <EOS> take two ids
    if V <= 100:
        pool = "\n" + string.ascii_letters + string.digits + " .,;:!?'-()\"&"
        toks = list(pool[:n])
        cfg = TokenizerConfig(level="char")
    else:
        toks = [f"w{i}" for i in range(n)]
        cfg = TokenizerConfig(level="word", split="whitespace")
    vocab = Vocab.from_counts({t: 10 * n - i for i, t in enumerate(toks)}, tokenizer=cfg)
    if len(vocab) != V:
        return None
    return vocab, Tokenizer(vocab.tokenizer), toks


def synthetic_sentences(toks: list[str], char_level: bool, n: int, seed: int = 2) -> list[str]:
    """n random sentences: 20–200 characters (char level, no newlines) or 5–40 words."""
    rng = np.random.default_rng(seed)
    words = [t for t in toks if t != "\n"]
    out = []
    for _ in range(n):
        if char_level:
            k = int(rng.integers(20, 201))
            out.append("".join(words[i] for i in rng.integers(0, len(words), size=k)))
        else:
            k = int(rng.integers(5, 41))
            out.append(" ".join(words[i] for i in rng.integers(0, len(words), size=k)))
    return out


# --------------------------------------------------------------------------------------------
# scoring

def score_fns(torch, cfg: dict, cell: str):
    """{side: one-window scoring callable}, tokens per call."""
    V, T, B = cfg["V"], cfg["T"], SCORE_BATCH
    rng = np.random.default_rng(3)
    windows = [(rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))) for _ in range(4)]
    model = charlm_model(cfg, cell)
    box = {"state": model.init_state(B), "i": 0}

    def charlm_window():
        x, y = windows[box["i"] % len(windows)]
        box["i"] += 1
        lp, box["state"] = model.target_log_probs(x, y, box["state"])
        return lp

    fns = {"charlm": charlm_window}
    if torch is not None:
        net = common.torch_lm(torch, V, cfg["E"], cfg["H"], cfg["L"], cell).eval()
        tw = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in windows]
        tbox = {"h": net.init_state(B), "i": 0}

        def torch_window():
            x, y = tw[tbox["i"] % len(tw)]
            tbox["i"] += 1
            with torch.no_grad():
                logits, tbox["h"] = net(x, tbox["h"])
                lp = torch.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
            return lp

        fns["torch"] = torch_window
    return fns, T * B, model


def score_sentences_fn(model, V: int):
    """(callable scoring N_SENTENCES synthetic sentences end to end, scored tokens) or None."""
    try:
        from charlm.lm.scoring import score_sentences
    except ImportError:
        return None
    made = synthetic_vocab(V)
    if made is None:
        return None
    vocab, tokenizer, toks = made
    sentences = synthetic_sentences(toks, vocab.tokenizer.level == "char", N_SENTENCES)
    scores = score_sentences(model, vocab, tokenizer, sentences, batch_size=SCORE_BATCH)
    n_tokens = sum(len(s.per_token) for s in scores)
    return (lambda: score_sentences(model, vocab, tokenizer, sentences, batch_size=SCORE_BATCH)), n_tokens


# --------------------------------------------------------------------------------------------
# generation

def charlm_generate_fn(cfg: dict, cell: str, B: int, N: int):
    """(callable generating B·N tokens, how) — charlm.lm.generate.sample, else a model.step loop."""
    model = charlm_model(cfg, cell)
    rng = np.random.default_rng(4)
    made = synthetic_vocab(cfg["V"])
    try:
        from charlm.lm.generate import sample
    except ImportError:
        sample = None
    if sample is not None and made is not None:
        vocab = made[0]
        return (lambda: sample(model, vocab, num=B, length=N, rng=rng)), "charlm.lm.generate.sample"

    def loop():                                          # fallback: step + inverse-CDF draw
        state = model.init_state(B)
        ids = np.zeros(B, dtype=np.int64)
        for _ in range(N):
            logits, state = model.step(ids, state)
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            cdf = np.cumsum(p, axis=1)
            u = rng.random(B) * cdf[:, -1]
            ids = np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)
        return ids

    return loop, "model.step loop (charlm.lm.generate missing)"


def torch_generate_fn(torch, cfg: dict, cell: str, B: int, N: int):
    net = common.torch_lm(torch, cfg["V"], cfg["E"], cfg["H"], cfg["L"], cell).eval()
    gen = torch.Generator().manual_seed(4)

    def loop():
        with torch.no_grad():
            h = net.init_state(B)
            x = torch.zeros(1, B, dtype=torch.long)
            out = []
            for _ in range(N):
                logits, h = net(x, h)                               # (1, B, V)
                p = torch.softmax(logits[0], dim=-1)                # (B, V)
                x = torch.multinomial(p, 1, generator=gen).T        # (1, B)
                out.append(x)
            return torch.cat(out)

    return loop


# --------------------------------------------------------------------------------------------

def run(args, log=print) -> tuple[list[dict], list[str]]:
    cells = common.parse_list(args.cells, common.CELLS, "cell")
    configs = [c for c in common.parse_list(args.configs, list(CONFIGS), "configuration")]
    warm, steps = common.budget(args)
    torch = common.torch_or_none(args.no_torch, args.torch_threads)
    rows, notes = [], []

    # -- scoring ---------------------------------------------------------------------------
    for name in [c for c in configs if c in SCORE_CONFIGS]:
        cfg = CONFIGS[name]
        label = f"{common.config_label(name).split()[0]} {cfg['V']}/{cfg['E']}/{cfg['H']}/{cfg['L']}"
        for cell in cells:
            fns, tokens, model = score_fns(torch, cfg, cell)
            ss = score_sentences_fn(model, cfg["V"])
            if ss is not None:
                fns["sentences"] = ss[0]
            times = common.interleaved_times(fns, warm, steps, budget_s=common.case_budget(args))
            med = {k: common.median(v) for k, v in times.items()}
            c_tps = tokens / med["charlm"]
            t_tps = tokens / med["torch"] if "torch" in med else None
            rt = common.ratio(c_tps, t_tps)
            issue = f" (issue: PyTorch {ISSUE_TORCH_LSTM[name] / 1e3:.1f}k)" if cell == "lstm" else ""
            rows.append(dict(benchmark="score", case=f"{label} {cell} B=64 T={cfg['T']}"
                             + common.cut_short(times, steps),
                             charlm=c_tps, torch=t_tps, ratio=rt, target="≥ 1.0× PyTorch" + issue,
                             met=None if rt is None else rt >= 1.0))
            log(f"[score] {name} {cell}: charlm {c_tps:,.0f} tok/s"
                + (f", PyTorch {t_tps:,.0f} tok/s" if t_tps else ""))
            if ss is not None:
                s_tps = ss[1] / med["sentences"]
                rows.append(dict(benchmark="score_sentences", case=f"{label} {cell} "
                                 f"{N_SENTENCES} sentences, batch 64",
                                 charlm=s_tps, torch=t_tps, ratio=common.ratio(s_tps, t_tps),
                                 target="(info: vs PyTorch window forward)", met=None))
                log(f"[score] {name} {cell} score_sentences: {s_tps:,.0f} tok/s ({ss[1]} tokens/call)")
    notes.append(f"score: {warm} warm-up + {steps} timed windows per side, interleaved; median")

    # -- generation ------------------------------------------------------------------------
    if GEN_CONFIG in configs:
        cfg = CONFIGS[GEN_CONFIG]
        N = GEN_LENGTH // 2 if args.quick else GEN_LENGTH
        gen_cells = sorted(cells, key=lambda c: c != "gru")      # GRU first: its b16 is a target
        measured, shorts = {}, {}
        how = ""
        for B in GEN_BATCHES:
            for cell in gen_cells:
                fn, how = charlm_generate_fn(cfg, cell, B, N)
                fns = {"charlm": fn}
                if torch is not None:
                    fns["torch"] = torch_generate_fn(torch, cfg, cell, B, N)
                times = common.interleaved_times(fns, warm, steps, budget_s=common.case_budget(args))
                med = {k: common.median(v) for k, v in times.items()}
                measured[(cell, B)] = {k: B * N / v for k, v in med.items()}
                shorts[(cell, B)] = common.cut_short(times, steps)
                log(f"[sample] {cell} B={B}: charlm {measured[(cell, B)]['charlm']:,.0f} tok/s"
                    + (f", PyTorch {measured[(cell, B)]['torch']:,.0f} tok/s" if "torch" in med else ""))
        for (cell, B), m in measured.items():
            c_tps, t_tps = m["charlm"], m.get("torch")
            rt = common.ratio(c_tps, t_tps)
            if B == 1:
                target, met = "≥ 2.0× PyTorch", (None if rt is None else rt >= 2.0)
            else:
                ref = measured.get(("gru", B), {}).get("torch")
                if ref is not None:
                    target, met = f"≥ PyTorch GRU B={B} ({ref:,.0f})", c_tps >= ref
                else:
                    target, met = "≥ 1.0× PyTorch (GRU not measured)", (None if rt is None else rt >= 1.0)
            rows.append(dict(benchmark="sample", case=f"{GEN_CONFIG} {cell} B={B}, {N} tokens/stream"
                             + shorts[(cell, B)],
                             charlm=c_tps, torch=t_tps, ratio=rt, target=target, met=met))
        notes.append(f"sample: charlm side = {how}; {warm} warm-up + {steps} timed calls per side, "
                     f"interleaved; median")
    return rows, notes


def main(argv=None) -> int:
    return common.bench_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

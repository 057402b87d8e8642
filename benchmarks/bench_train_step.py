"""Training-step throughput: charlm vs PyTorch, and charlm's share of the NumPy GEMM peak.

One step = forward, mean cross-entropy loss, backward (BPTT), global gradient-norm clipping at 5,
Adam update (lr 2e-3), with the recurrent state carried from step to step as training does.
Throughput = B·T tokens per step / median step time (after warm-up). Random token data.

    charlm:  loss, state, cache = model.loss(x, y, state, train=True, rng=rng)
             grads = model.backward(cache); clip_grad_norm(grads, 5.0); opt.step(model.params, grads)
    PyTorch: nn.Embedding -> nn.LSTM/nn.GRU (2 layers) -> nn.Linear, F.cross_entropy, backward,
             clip_grad_norm_(…, 5.0), torch.optim.Adam(lr=2e-3); torch.set_num_threads(2), float32.

FLOPs of one step, counted analytically (N = B·T rows, G = 3 for GRU / 4 for LSTM,
D_0 = E, D_l = H for l > 0; the embedding lookup is free):

    forward  F = Σ_l 2·N·(D_l + H)·G·H      input projection + recurrence of layer l
               + 2·N·H·V                    output layer
    backward   = 2·F  (one GEMM for the input gradient, one for the weight gradient per forward GEMM)
    step       = 3·F

GFLOP/s = 3·F / median step time, and "% GEMM peak" compares it with the best float32 GEMM rate
NumPy's BLAS reaches on this machine in the same run (square n×n products at the start, before
each case and at the end; the best median counts, see common.gemm_peak).

Targets (from the issue): charlm ≥ 1.0× PyTorch on every configuration for both cells, and
≥ 60 % of the NumPy GEMM peak on configuration c.

Usage:  python benchmarks/bench_train_step.py [--quick] [--cells lstm,gru] [--configs a,b,c,d]
"""

from __future__ import annotations

import sys

import numpy as np

import common
from common import CONFIGS, GATES

PEAK_TARGET = {"c": 60.0}     # % of GEMM peak required per configuration
N_BATCHES = 4                 # random batches cycled through (data generation stays out of the timing)


def step_flops(V: int, E: int, H: int, L: int, B: int, T: int, cell: str) -> float:
    """3·F, F = Σ_l 2·N·(D_l + H)·G·H + 2·N·H·V (see the module docstring)."""
    N, G = B * T, GATES[cell]
    fwd = 2.0 * N * H * V
    for layer in range(L):
        D = E if layer == 0 else H
        fwd += 2.0 * N * (D + H) * G * H
    return 3.0 * fwd


def random_batches(V: int, B: int, T: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B)))
            for _ in range(N_BATCHES)]


def charlm_step_fn(cfg: dict, cell: str, batches, optimizer=None, **settings):
    """One charlm training step as a zero-argument function (its model is `step.model`); `settings`
    are more ModelConfig fields (dropout, ...; no dropout unless given, as the peer), `optimizer`
    replaces Adam at 2e-3."""
    from charlm.engine.optim import clip_grad_norm, make_optimizer
    from charlm.lm.model import LanguageModel, ModelConfig

    settings = {"dropout": 0.0, **settings}
    model = LanguageModel(ModelConfig(vocab_size=cfg["V"], cell=cell, layers=cfg["L"],
                                      hidden=cfg["H"], embedding=cfg["E"], **settings), seed=0)
    opt = optimizer or make_optimizer("adam", 2e-3)
    rng = np.random.default_rng(0)
    box = {"state": model.init_state(cfg["B"]), "i": 0}

    def step():
        x, y = batches[box["i"] % len(batches)]
        box["i"] += 1
        loss, box["state"], cache = model.loss(x, y, box["state"], train=True, rng=rng)
        grads = model.backward(cache)
        clip_grad_norm(grads, 5.0)
        opt.step(model.params, grads)
        return loss

    step.model = model
    return step


def torch_step_fn(torch, cfg: dict, cell: str, batches):
    V = cfg["V"]
    model = common.torch_lm(torch, V, cfg["E"], cfg["H"], cfg["L"], cell)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    params = list(model.parameters())
    tb = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in batches]
    box = {"h": model.init_state(cfg["B"]), "i": 0}
    F = torch.nn.functional

    def step():
        x, y = tb[box["i"] % len(tb)]
        box["i"] += 1
        opt.zero_grad(set_to_none=True)
        logits, h = model(x, common.torch_detach(box["h"]))
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        box["h"] = common.torch_detach(h)
        return loss.item()

    return step


def run(args, log=print) -> tuple[list[dict], list[str]]:
    """Measure every selected case; returns (table rows, notes)."""
    cells = common.parse_list(args.cells, common.CELLS, "cell")
    configs = common.parse_list(args.configs, list(CONFIGS), "configuration")
    warm, steps = common.budget(args)
    torch = common.torch_or_none(args.no_torch, args.torch_threads)

    peak0 = common.gemm_peak(quick=args.quick)
    log(f"[train] NumPy float32 GEMM peak: {peak0['gflops']:.1f} GFLOP/s "
        f"({', '.join(f'n={n}: {g:.1f}' for n, g in peak0['by_size'].items())})")

    results, peaks = [], []
    for name in configs:
        cfg = CONFIGS[name]
        batches = random_batches(cfg["V"], cfg["B"], cfg["T"])
        for cell in cells:
            peaks.append(common.gemm_peak(quick=True)["gflops"])    # a peak sample per case too
            fns = {"charlm": charlm_step_fn(cfg, cell, batches)}
            if torch is not None:
                fns["torch"] = torch_step_fn(torch, cfg, cell, batches)
            times = common.interleaved_times(fns, warm, steps, budget_s=common.case_budget(args))
            tokens = cfg["B"] * cfg["T"]
            med = {k: common.median(v) for k, v in times.items()}
            res = dict(config=name, cell=cell, tokens=tokens, flops=step_flops(cell=cell, **cfg),
                       charlm_s=med["charlm"], torch_s=med.get("torch"),
                       short=common.cut_short(times, steps))
            results.append(res)
            log(f"[train] {common.config_label(name)} {cell}: charlm {med['charlm'] * 1e3:.1f} ms/step"
                + (f", PyTorch {med['torch'] * 1e3:.1f} ms/step" if "torch" in med else ""))

    # the peak again at the end: the machine is noisy, take the best of all measurements
    peak1 = common.gemm_peak(quick=args.quick)
    peak = max([peak0["gflops"], peak1["gflops"], *peaks])
    log(f"[train] NumPy float32 GEMM peak (end of run): {peak1['gflops']:.1f} GFLOP/s; using {peak:.1f}")

    rows = []
    for r in results:
        charlm_tps = r["tokens"] / r["charlm_s"]
        torch_tps = r["tokens"] / r["torch_s"] if r["torch_s"] else None
        gflops = r["flops"] / r["charlm_s"] / 1e9
        pct = 100.0 * gflops / peak
        rt = common.ratio(charlm_tps, torch_tps)
        target = "≥ 1.0× PyTorch"
        met = None if rt is None else rt >= 1.0
        if r["config"] in PEAK_TARGET:
            need = PEAK_TARGET[r["config"]]
            target += f"; ≥ {need:.0f} % peak"
            met = (pct >= need) if met is None else (met and pct >= need)
        rows.append(dict(benchmark="train step", case=f"{common.config_label(r['config'])} {r['cell']}{r['short']}",
                         charlm=charlm_tps, torch=torch_tps, ratio=rt, target=target, met=met,
                         gflops=gflops, peak_pct=pct))
    notes = [f"NumPy float32 GEMM peak: {peak:.1f} GFLOP/s = best median of square n×n products "
             f"measured at the start ({peak0['gflops']:.1f}), before each case "
             f"({', '.join(f'{p:.0f}' for p in peaks)}) and at the end ({peak1['gflops']:.1f})",
             f"train: {warm} warm-up + {steps} timed steps per side, interleaved; median step time; "
             f"(n=k): the {common.case_budget(args):.0f} s per-case budget stopped timing after k steps"]
    return rows, notes


def main(argv=None) -> int:
    return common.bench_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

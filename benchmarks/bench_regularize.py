"""The step-time cost of each regulariser of the language model (issue 23), side by side in one run.

The step of bench_train_step.py (forward, loss, backward, clipping at 5, update, state carried;
random token data), timed interleaved for these variants of the same model:

    none        no dropout, Adam 2e-3                      (the reference of the rows below)
    dropout     --dropout 0.3 (a fresh mask per step)
    locked      --dropout 0.3 --dropout-kind locked (one mask per stream, for all steps)
    embedding   --embedding-dropout 0.1 (a mask over the vocabulary per batch)
    weight-drop --weight-drop 0.5 (a mask over each layer's recurrent weights per batch)
    all         locked 0.3 + embedding 0.1 + weight drop 0.5
    sgd         no dropout, SGD lr 1                       (the reference of the row below)
    asgd        no dropout, ASGD lr 1, averaging (a running mean of the weights after each step)

ratio = tokens/s of the variant / tokens/s of its reference (none, or sgd for asgd) in the same case:
below 1.0 is the cost. Configurations b (character level) and d (word level, V = 10,000) by default.
On a loaded machine whole steps vary more than these costs, so each case also times the
regularisers' own work alone (best of 30 calls, printed with the fastest step): the three dropout
masks drawn and applied, standard or locked; the embedding mask; weight drop's masked copies of
W[:H] and the gradient product; the ASGD update against the SGD update.

Usage:  python benchmarks/bench_regularize.py [--quick] [--cells lstm,gru] [--configs b,d]
"""

from __future__ import annotations

import sys
import time

import numpy as np

import common
from bench_train_step import charlm_step_fn, random_batches

CONFIGS = ("b", "d")
VARIANTS = {  # name: (ModelConfig settings, optimizer, reference)
    "none": ({}, "adam", None),
    "dropout": ({"dropout": 0.3}, "adam", "none"),
    "locked": ({"dropout": 0.3, "dropout_kind": "locked"}, "adam", "none"),
    "embedding": ({"embedding_dropout": 0.1}, "adam", "none"),
    "weight-drop": ({"weight_drop": 0.5}, "adam", "none"),
    "all": ({"dropout": 0.3, "dropout_kind": "locked", "embedding_dropout": 0.1, "weight_drop": 0.5}, "adam", "none"),
    "sgd": ({}, "sgd", None),
    "asgd": ({}, "asgd", "sgd"),
}
LR = {"adam": 2e-3, "sgd": 1.0, "asgd": 1.0}


def step_fn(cfg: dict, cell: str, batches, variant: str):
    from charlm.engine.optim import make_optimizer

    settings, name, _ = VARIANTS[variant]
    opt = make_optimizer(name, LR[name])
    step = charlm_step_fn(cfg, cell, batches, optimizer=opt, **settings)
    opt.plateau(step.model.params)  # ASGD: averaging from the first step (others: nothing)
    return step


def best_ms(fn, n: int = 30) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def own_work(cfg: dict, model) -> dict:
    """{what: best ms} of the regularisers' own work on `model` (see the module docstring)."""
    from charlm.engine.optim import make_optimizer
    from charlm.nn.layers import dropout_mask
    from charlm.nn.regularize import embedding_dropout_mask, weight_drop, weight_drop_backward

    T, B, E, H, V = cfg["T"], cfg["B"], cfg["E"], cfg["H"], cfg["V"]
    rng = np.random.default_rng(0)
    ids, act = rng.integers(0, V, (T, B)), np.ones((T, B, max(E, H)), np.float32)
    layers = model._layer_params()
    grads = [{k: v.copy() for k, v in p.items()} for p in layers]
    zero = {k: np.zeros_like(v) for k, v in model.params.items()}
    sgd, asgd = make_optimizer("sgd", 1e-9), make_optimizer("asgd", 1e-9)
    asgd.plateau({k: v.copy() for k, v in model.params.items()})
    params = {k: v.copy() for k, v in model.params.items()}

    def masks(locked):
        for D in (E, H, H):  # the embedding, between the layers, the output
            act[..., :D] * dropout_mask((T, B, D), 0.3, rng, "float32", locked=locked)

    return {"dropout masks": best_ms(lambda: masks(False)), "locked masks": best_ms(lambda: masks(True)),
            "embedding mask": best_ms(lambda: act[..., :E] * embedding_dropout_mask(ids, V, 0.1, rng, "float32")),
            "weight drop": best_ms(lambda: weight_drop_backward(grads, weight_drop(layers, H, 0.5, rng)[1], H)),
            "SGD update": best_ms(lambda: sgd.step(params, zero)), "ASGD update": best_ms(lambda: asgd.step(params, zero))}


def run(args, log=print) -> tuple[list[dict], list[str]]:
    cells = common.parse_list(args.cells, common.CELLS, "cell")
    configs = [c for c in common.parse_list(args.configs, list(common.CONFIGS), "configuration") if c in CONFIGS]
    warm, steps = common.budget(args)
    peak = common.gemm_peak(quick=args.quick)
    log(f"[regularize] NumPy float32 GEMM peak: {peak['gflops']:.1f} GFLOP/s "
        f"({', '.join(f'n={n}: {g:.1f}' for n, g in peak['by_size'].items())})")
    rows, own = [], []
    for name in configs:
        cfg = common.CONFIGS[name]
        batches = random_batches(cfg["V"], cfg["B"], cfg["T"])
        for cell in cells:
            fns = {v: step_fn(cfg, cell, batches, v) for v in VARIANTS}
            times = common.interleaved_times(fns, warm, steps, budget_s=common.case_budget(args))
            med = {v: common.median(t) for v, t in times.items()}
            short = common.cut_short(times, steps)
            log(f"[regularize] {common.config_label(name)} {cell}: "
                + ", ".join(f"{v} {m * 1e3:.1f}" for v, m in med.items()) + " ms/step")
            work = own_work(cfg, fns["none"].model)
            fastest = 1e3 * min(times["none"])
            own.append(f"{common.config_label(name)} {cell}: fastest step (none) {fastest:.1f} ms; "
                       + ", ".join(f"{k} {v:.2f} ms" for k, v in work.items()))
            log(f"[regularize] own work, best of 30: {own[-1]}")
            tokens = cfg["B"] * cfg["T"]
            for v, (_, _, ref) in VARIANTS.items():
                rows.append(dict(benchmark="regulariser step", case=f"{common.config_label(name)} {cell} {v}{short}",
                                 charlm=tokens / med[v], ratio=None if ref is None else med[ref] / med[v],
                                 target="—" if ref is None else f"cost vs {ref}"))
    notes = [f"regulariser step: {warm} warm-up + {steps} timed steps per variant, all variants of a case "
             "interleaved; ratio = the variant's tokens/s / its reference's (none: no dropout, Adam; sgd for "
             "asgd) in the same case, so below 1.0 is the regulariser's cost (no PyTorch side); NumPy float32 "
             f"GEMM peak at the start of these cases: {peak['gflops']:.1f} GFLOP/s",
             "regulariser step, the regularisers' own work alone (best of 30 calls; see bench_regularize.py): "
             + "; ".join(own)]
    return rows, notes


def main(argv=None) -> int:
    return common.bench_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

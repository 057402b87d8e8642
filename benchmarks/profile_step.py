"""Where does a charlm training step spend its time?  (diagnostic companion of bench_train_step)

For one configuration and cell it reports, per step (medians over a few steps after warm-up):
  * the phases, from cProfile cumulative times: recurrent forward / backward (cells), output layer
    + softmax cross-entropy, embedding gradient, clipping, Adam, and the rest;
  * the GEMMs alone: the same matrix products (same shapes, float32) replayed without anything
    around them, split into the bulk products outside the time loop (input projections, weight
    gradients, output layer) and the small per-time-step recurrent products inside it;
  * per-call overhead: the cells' forward + backward on the same T with tiny sizes (B=1, H=D=8),
    which is ~all Python and NumPy dispatch cost of the time loop;
  * elementwise ≈ cells' time − loop GEMMs − bulk GEMMs of the cells − overhead.

    python benchmarks/profile_step.py --configs a,c --cells lstm,gru [--torch]
    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_step.py --configs a   # compare BLAS threads
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import numpy as np

import common
from bench_train_step import CONFIGS, GATES, charlm_step_fn, random_batches, step_flops, torch_step_fn


def _median_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return common.median(ts)


def gemm_replay(cfg: dict, cell: str, reps: int = 3) -> dict:
    """Seconds per step spent in the step's GEMMs alone, in the cells' column layout
    (see nn/cells.py): {"loop": ..., "bulk_cells": ..., "bulk_out": ...}."""
    V, E, H, L, B, T = (cfg[k] for k in "VEHLBT")
    N, G = B * T, GATES[cell]
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    layer_mats = []
    for l in range(L):
        D = E if l == 0 else H
        K = H + D + 1
        layer_mats.append(dict(Ws=f32(G * H, K), u=f32(K, T + 1, B), z=np.empty((G * H, B), np.float32),
                               Wa=f32(H, G * H), dz=f32(G * H, T, B), dh=np.empty((H, B), np.float32),
                               Wx=f32(D, G * H)))

    def loop():                       # per layer: T forward z<t> = Wsᵀ u<t>, T backward W[:H] dz<t>
        for m in layer_mats:
            for t in range(T):
                np.matmul(m["Ws"], m["u"][:, t], out=m["z"])
            for t in range(T):
                np.matmul(m["Wa"], m["dz"][:, t], out=m["dh"])

    def bulk_cells():                 # [dW; db] = Σ u<t> dz<t>ᵀ and dx = W[H:] dz, all T·B columns
        for m in layer_mats:
            K = m["u"].shape[0]
            m["u"][:, :T].reshape(K, N) @ m["dz"].reshape(G * H, N).T
            m["Wx"] @ m["dz"].reshape(G * H, N)

    a2, Wy, dlog, WyT = f32(N, H), f32(H, V), f32(N, V), f32(V, H)

    def bulk_out():                   # logits; dW_y; da
        a2 @ Wy
        a2.T @ dlog
        dlog @ WyT

    out = {}
    for name, fn in (("loop", loop), ("bulk_cells", bulk_cells), ("bulk_out", bulk_out)):
        fn()
        out[name] = _median_time(fn, reps)
    return out


def overhead(cell: str, T: int, L: int, reps: int = 5) -> float:
    """Seconds for L cells' forward + backward over T steps at B=1, H=D=8 (≈ per-call overhead)."""
    from charlm.nn.cells import make_cell
    c = make_cell(cell)
    rng = np.random.default_rng(0)
    p = c.init_params(8, 8, rng)
    x = rng.standard_normal((T, 1, 8), dtype=np.float32)

    def fb():
        for _ in range(L):
            a, _, cache = c.forward(p, x, c.init_state(1, 8))
            c.backward(p, np.ones_like(a), cache)

    fb()
    return _median_time(fb, reps)


PHASES = [  # (label, predicate on (file, function name))
    ("cells forward", lambda f, n: f.endswith("cells.py") and n == "forward"),
    ("cells backward", lambda f, n: f.endswith("cells.py") and n == "backward"),
    ("output dense fwd", lambda f, n: f.endswith("layers.py") and n == "dense_forward"),
    ("softmax CE fwd+bwd", lambda f, n: f.endswith("layers.py") and n.startswith("softmax_cross_entropy")),
    ("embedding backward", lambda f, n: f.endswith("layers.py") and n == "embedding_backward"),
    ("clip_grad_norm", lambda f, n: f.endswith("optim.py") and n == "clip_grad_norm"),
    ("optimizer step", lambda f, n: f.endswith("optim.py") and n == "step"),
]


def profile(name: str, cell: str, steps: int, torch=None) -> list[str]:
    cfg = CONFIGS[name]
    batches = random_batches(cfg["V"], cfg["B"], cfg["T"])
    step = charlm_step_fn(cfg, cell, batches)
    for _ in range(3):
        step()
    total = _median_time(step, steps)
    peer = ""
    if torch is not None:
        tstep = torch_step_fn(torch, cfg, cell, batches)
        for _ in range(3):
            tstep()
        peer = f"; PyTorch's whole step {1e3 * _median_time(tstep, steps):.1f} ms"
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        step()
    pr.disable()
    stats = pstats.Stats(pr).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    prof_total = sum(v[2] for v in stats.values()) / steps
    phase = {}
    for label, pred in PHASES:
        phase[label] = sum(v[3] for (f, _, n), v in stats.items() if pred(f, n)) / steps
    gem = gemm_replay(cfg, cell)
    ovh = overhead(cell, cfg["T"], cfg["L"])
    cells_t = phase["cells forward"] + phase["cells backward"]
    elementwise = cells_t - gem["loop"] - gem["bulk_cells"] - ovh
    flops = step_flops(cell=cell, **cfg)

    def pct(x):
        return f"{1e3 * x:8.1f} ms  {100 * x / prof_total:5.1f} %"

    lines = [f"## {common.config_label(name)} {cell}: step {1e3 * total:.1f} ms "
             f"({cfg['B'] * cfg['T'] / total:,.0f} tok/s, {flops / total / 1e9:.1f} GFLOP/s); "
             f"under cProfile {1e3 * prof_total:.1f} ms{peer}", "```"]
    for label, _ in PHASES:
        lines.append(f"{label:<28}{pct(phase[label])}")
    lines.append(f"{'other (model glue)':<28}{pct(prof_total - sum(phase.values()))}")
    lines.append("-- inside the cells (forward + backward) --")
    lines.append(f"{'GEMM, per-step':<28}{pct(gem['loop'])}   ({2 * cfg['L'] * cfg['T']} products: "
                 f"({GATES[cell] * cfg['H']},H+D+1)x(H+D+1,{cfg['B']}) forward, "
                 f"({cfg['H']},{GATES[cell] * cfg['H']})x(..,{cfg['B']}) back)")
    lines.append(f"{'GEMM, bulk (dW/dx)':<28}{pct(gem['bulk_cells'])}")
    lines.append(f"{'per-call overhead (B=1,H=8)':<28}{pct(ovh)}")
    lines.append(f"{'elementwise (remainder)':<28}{pct(elementwise)}")
    lines.append(f"{'GEMM, output layer (replay)':<28}{pct(gem['bulk_out'])}")
    lines.append("```")
    return lines


def main(argv=None) -> int:
    common.prepare()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", default="lstm,gru")
    p.add_argument("--configs", default="a,c")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--torch", action="store_true", help="also time PyTorch's whole step (bench extra)")
    args = p.parse_args(argv)
    torch = common.torch_or_none(not args.torch)
    for line in common.machine_lines(None)[:4]:
        print(f"- {line}")
    for name in common.parse_list(args.configs, list(CONFIGS), "configuration"):
        for cell in common.parse_list(args.cells, common.CELLS, "cell"):
            print("\n".join(profile(name, cell, args.steps, torch)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

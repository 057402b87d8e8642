"""Data-parallel training on this machine, and the inputs of the scaling model in docs/scaling.md.

    python benchmarks/bench_mpi.py [--quick] [--configs b,c,d] [--cells lstm] [--steps N] [--output PATH]

Needs the `mpi` extra (mpi4py and an mpiexec; `pip install -e '.[mpi]'`). Every measurement runs
in fresh processes, because a BLAS reads its thread count once, when it loads; they run with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (see README.md here) and the thread count set.

1. Side by side, in alternating rounds (one, two, two, one): a training step of one process with
   2 BLAS threads on the configuration's batch B, against `mpiexec -n 2` with 1 thread each on
   B/2 streams: forward, backward, the all-reduce of the packed gradients (charlm.engine.parallel.
   MPIComm.reduce_gradients), global-norm clipping at 5 and an Adam update, dropout 0.1 (the
   global batch's masks, as `charlm train` draws them). tokens/s = B·T / median step time of
   rank 0 (the all-reduce makes every step end together). Target: two ≥ 0.9 × one.
2. All-reduce: median time of one MPI_Allreduce (sum, in place) of each configuration's packed
   gradient (float32, parameters + 2) between the two processes, and of sizes from 4 B to 16 MB
   (the latency and bandwidth of this machine's shared memory, for comparison).
3. Compute, for the model: one process with 2 BLAS threads (one "machine" of the model is this
   2-core machine), median times of forward + backward at local batches b = B, B/2, ..., 1, of
   packing and scaling the gradient (MPIComm.reduce_gradients without the network) and of
   clipping + the Adam update (which do not shrink with b).

Then the model of docs/scaling.md, from these figures: for N machines on a ring all-reduce,

    t(N) = t_fb(b) + t_update + t_pack + 2(N−1)/N · bytes / bandwidth + 2(N−1) · latency

with b = ⌈B/N⌉ (strong scaling: the global batch stays B) or b = B (weak scaling: each machine
keeps the configuration's batch, the global batch grows to N·B); efficiency = t(1) / (N·t(N))
resp. t(1) / t(N), t(1) = t_fb(B) + t_update. Random token data, as in bench_train_step.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from bench_train_step import random_batches
from common import CONFIGS

HERE = Path(__file__).resolve().parent
CLIP, LR, DROPOUT = 5.0, 2e-3, 0.1
BANDWIDTHS_GBIT = (10, 25, 100)
NS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_US = 20.0  # per message on an Ethernet link with TCP (assumed, not measured here)
THREAD_VARS = ("threads", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SWEEP_BYTES = (4, 1 << 10, 1 << 14, 1 << 18, 1 << 20, 1 << 22, 1 << 24)


# ------------------------------------------------------------------------------ the workers

def _model_and_optimizer(cfg: dict, cell: str):
    from charlm.lm.model import LanguageModel, ModelConfig
    from charlm.engine.optim import make_optimizer

    model = LanguageModel(ModelConfig(vocab_size=cfg["V"], cell=cell, layers=cfg["L"], hidden=cfg["H"],
                                      embedding=cfg["E"], dropout=DROPOUT), seed=0)
    return model, make_optimizer("adam", LR)


class _NoNetwork:
    """An mpi4py communicator of one process whose all-reduce sends nothing: MPIComm's packing alone."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Dup(self):
        return self

    def Allreduce(self, *args, **kwargs):
        pass


def train_steps(cfg: dict, cell: str, batch: int, warm: int, steps: int, pack: bool) -> dict:
    """Time training steps on this process's share of `batch` streams (the whole batch when
    alone). Returns medians (s) of fb (forward + backward), reduce (the gradient hook), update
    (clip + Adam) and step, and the BLAS the process runs."""
    from charlm.engine import parallel
    from charlm.engine.optim import clip_grad_norm

    comm = parallel.world()
    if comm.size == 1 and pack:
        comm = parallel.MPIComm(_NoNetwork())
    cols = parallel.columns(batch, comm.rank, comm.size)
    model, opt = _model_and_optimizer(cfg, cell)
    rng = np.random.default_rng(0)
    rng = parallel.GlobalBatchRng(rng, batch, cols) if comm.size > 1 else rng
    batches = [(x[:, cols], y[:, cols]) for x, y in random_batches(cfg["V"], batch, cfg["T"])]
    state = model.init_state(cols.stop - cols.start)
    times = {"fb": [], "reduce": [], "update": [], "step": []}
    if comm.size > 1:
        comm.comm.Barrier()
    for i in range(warm + steps):
        x, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        loss, state, cache = model.loss(x, y, state, train=True, rng=rng)
        grads = model.backward(cache)
        t1 = time.perf_counter()
        grads, loss, _ = comm.reduce_gradients(grads, loss, x.size)
        t2 = time.perf_counter()
        clip_grad_norm(grads, CLIP)
        opt.step(model.params, grads)
        t3 = time.perf_counter()
        if i >= warm:
            for k, v in (("fb", t1 - t0), ("reduce", t2 - t1), ("update", t3 - t2), ("step", t3 - t0)):
                times[k].append(v)
    out = {k: common.median(v) for k, v in times.items()}
    out["params"] = model.num_params()
    out["blas"] = common.blas_info()
    return out


def allreduce_times(sizes: list[int], reps: int) -> dict:
    """Median seconds of one in-place float32 MPI_Allreduce of each size (elements)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for n in sizes:
        buf = np.ones(n, dtype=np.float32)
        comm.Barrier()
        ts = []
        for _ in range(reps + 2):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            ts.append(time.perf_counter() - t0)
        out[str(n)] = common.median(ts[2:])
    return out


def worker(argv: list[str]) -> None:
    """--worker KIND SPEC.json OUT.json: one process of a measurement; rank 0 writes OUT."""
    kind, spec = argv[0], json.loads(Path(argv[1]).read_text())
    if kind == "train":
        result = train_steps(CONFIGS[spec["config"]], spec["cell"], spec["batch"], spec["warm"], spec["steps"],
                             spec.get("pack", False))
    else:
        result = allreduce_times(spec["sizes"], spec["reps"])
    from charlm.engine import launch
    if launch.rank() == 0:
        Path(argv[2]).write_text(json.dumps(result))


# ------------------------------------------------------------------------- the orchestra

def _env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        raise SystemExit("bench_mpi.py needs mpiexec and mpi4py: pip install -e '.[mpi]'")
    return found


def run_worker(kind: str, spec: dict, processes: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec_file, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(spec_file), str(out)]
        if processes > 1:
            cmd = [_mpiexec(), "-n", str(processes), *cmd]
        subprocess.run(cmd, env=_env(threads), check=True, timeout=900)
        return json.loads(out.read_text())


def side_by_side(name: str, cell: str, warm: int, steps: int, log) -> dict:
    """Rounds one, two, two, one; per side the median of its rounds' medians (each round is
    `steps` timed steps after `warm`)."""
    cfg = CONFIGS[name]
    spec = dict(config=name, cell=cell, batch=cfg["B"], warm=warm, steps=steps)
    rounds = {"one": [], "two": []}
    for side in ("one", "two", "two", "one"):
        r = run_worker("train", spec, processes=1 if side == "one" else 2, threads=2 if side == "one" else 1)
        rounds[side].append(r)
        log(f"[mpi] {common.config_label(name)} {cell} {side}: {r['step'] * 1e3:.1f} ms/step "
            f"(fb {r['fb'] * 1e3:.1f}, reduce {r['reduce'] * 1e3:.1f}, update {r['update'] * 1e3:.1f}; "
            f"BLAS threads {r['blas'].get('threads')})")
    med = {side: {k: common.median([r[k] for r in rs]) for k in ("fb", "reduce", "update", "step")}
           for side, rs in rounds.items()}
    return dict(config=name, cell=cell, tokens=cfg["B"] * cfg["T"], params=rounds["one"][0]["params"],
                one=med["one"], two=med["two"], threads={s: rs[0]["blas"].get("threads") for s, rs in rounds.items()},
                blas=rounds["one"][0]["blas"])


def local_batches(B: int) -> list[int]:
    out, b = [], B
    while b >= 1:
        out.append(b)
        b //= 2
    return sorted(set(out + [1]), reverse=True)


def compute_sweep(name: str, cell: str, warm: int, steps: int, log) -> dict:
    """t_fb(b) for b = B, B/2, ..., 1 and the per-step constants, one process, 2 threads."""
    cfg = CONFIGS[name]
    fb, update, pack = {}, [], []
    for b in local_batches(cfg["B"]):
        r = run_worker("train", dict(config=name, cell=cell, batch=b, warm=warm, steps=steps, pack=True),
                       processes=1, threads=2)
        fb[b] = r["fb"]
        update.append(r["update"])
        pack.append(r["reduce"])
        log(f"[mpi] compute {common.config_label(name)} {cell} b={b}: fb {r['fb'] * 1e3:.1f} ms, "
            f"pack {r['reduce'] * 1e3:.2f} ms, update {r['update'] * 1e3:.1f} ms")
    return dict(fb=fb, update=common.median(update), pack=common.median(pack))


# ----------------------------------------------------------------------------- the model

def t_fb(sweep: dict, b: float) -> float:
    """Forward + backward at local batch b: piecewise linear between the measured batches."""
    pts = sorted((int(k), v) for k, v in sweep["fb"].items())
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return float(np.interp(b, xs, ys)) if b <= xs[-1] else ys[-1] * b / xs[-1]


def t_ring(N: int, nbytes: float, gbit: float, latency_s: float) -> float:
    """Ring all-reduce: 2(N−1)/N · bytes / bandwidth + 2(N−1) · latency."""
    if N == 1:
        return 0.0
    return 2 * (N - 1) / N * nbytes / (gbit * 1e9 / 8) + 2 * (N - 1) * latency_s


def efficiency(sweep: dict, B: int, nbytes: float, N: int, gbit: float, weak: bool, latency_s: float,
               accumulate: int = 1) -> float:
    """Predicted efficiency (see the module docstring). With `accumulate` k (charlm train
    --accumulate) an update takes k forward/backward passes, one all-reduce and one Adam step, on
    N machines as on one (the baseline takes the same k)."""
    if N == 1:
        return 1.0
    one = accumulate * t_fb(sweep, B) + sweep["update"]
    b = B if weak else math.ceil(B / N)
    t = accumulate * t_fb(sweep, b) + sweep["update"] + sweep["pack"] + t_ring(N, nbytes, gbit, latency_s)
    return one / t if weak else one / (N * t)


def model_tables(sides: list[dict], sweeps: dict, latency_s: float) -> list[str]:
    lines = []
    for s in sides:
        name, B = s["config"], CONFIGS[s["config"]]["B"]
        sweep = sweeps[(name, s["cell"])]
        nbytes = 4 * (s["params"] + 2)
        lines += ["", f"**{common.config_label(name)} {s['cell']}**: gradient {nbytes / 1e6:.1f} MB; "
                      f"t_fb(B={B}) = {t_fb(sweep, B) * 1e3:.1f} ms, update {sweep['update'] * 1e3:.1f} ms, "
                      f"pack {sweep['pack'] * 1e3:.1f} ms", ""]
        header = "| scaling | Gb/s | " + " | ".join(f"N={n}" for n in NS[1:]) + " |"
        lines += [header, "|---|---:|" + "---:|" * (len(NS) - 1)]
        for weak, label in ((False, f"strong (global batch {B})"), (True, f"weak ({B} per machine)")):
            for gbit in BANDWIDTHS_GBIT:
                cells = []
                for n in NS[1:]:
                    cells.append("—" if (not weak and n > B) else
                                 f"{100 * efficiency(sweep, B, nbytes, n, gbit, weak, latency_s):.0f} %")
                lines.append(f"| {label} | {gbit} | " + " | ".join(cells) + " |")
        for k in (2, 4, 8):
            cells = [f"{100 * efficiency(sweep, B, nbytes, n, 10, True, latency_s, k):.0f} %" for n in NS[1:]]
            lines.append(f"| weak, accumulate {k} | 10 | " + " | ".join(cells) + " |")
    return lines


# ------------------------------------------------------------------------------ the report

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 warm-up + 2 timed steps per round (a smoke test)")
    p.add_argument("--configs", default="b,c,d")
    p.add_argument("--cells", default="lstm")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default 6)")
    p.add_argument("--latency-us", type=float, default=LATENCY_US, help="network latency per message (model)")
    p.add_argument("--output", default=str(HERE / "results_mpi.md"), help="markdown report ('-': none)")
    args = p.parse_args(argv)
    configs = common.parse_list(args.configs, list(CONFIGS), "configuration")
    cells = common.parse_list(args.cells, common.CELLS, "cell")
    warm, steps = (1, 2) if args.quick else (2, args.steps or 6)

    def log(s):
        print(s, file=sys.stderr, flush=True)

    load = [s for s in common.machine_lines() if s.startswith("load average")]
    t0 = time.perf_counter()
    sides = [side_by_side(n, c, warm, steps, log) for n in configs for c in cells]
    sizes = sorted({s["params"] + 2 for s in sides} | {b // 4 for b in SWEEP_BYTES})
    reduce = run_worker("allreduce", dict(sizes=sizes, reps=5 if args.quick else 20), processes=2, threads=1)
    sweeps = {(n, c): compute_sweep(n, c, warm, steps, log) for n in configs for c in cells}
    elapsed = time.perf_counter() - t0
    blas = ", ".join(f"{k}={v}" for k, v in sides[0]["blas"].items() if k not in THREAD_VARS)
    header = [common.machine_lines()[0], f"BLAS of the measuring processes: {blas} (OPENBLAS_CORETYPE and "
              "OPENBLAS_L2_SIZE unset, the thread variables set)", *load,
              *["at the end: " + s for s in common.machine_lines() if s.startswith("load average")]]

    rows = ["| case | one process, 2 threads: tok/s | mpiexec -n 2, 1 thread each: tok/s | ratio | target | met "
            "| all-reduce of the gradient | its share of the -n 2 step |", "|---|---:|---:|---:|---|---|---:|---:|"]
    for s in sides:
        one, two = s["tokens"] / s["one"]["step"], s["tokens"] / s["two"]["step"]
        ar = reduce[str(s["params"] + 2)]
        rows.append(f"| {common.config_label(s['config'])} {s['cell']} | {one:,.0f} | {two:,.0f} | {two / one:.2f}× "
                    f"| ≥ 0.90× | {'yes' if two / one >= 0.9 else '**no**'} | {ar * 1e3:.2f} ms "
                    f"({4 * (s['params'] + 2) / 1e6:.1f} MB) | {100 * ar / s['two']['step']:.1f} % |")
    detail = ["| case | side | fb ms | reduce ms | update ms | step ms | BLAS threads |", "|---|---|---:|---:|---:|---:|---:|"]
    for s in sides:
        for side in ("one", "two"):
            m = s[side]
            detail.append(f"| {common.config_label(s['config'])} {s['cell']} | {side} | {m['fb'] * 1e3:.1f} | "
                          f"{m['reduce'] * 1e3:.2f} | {m['update'] * 1e3:.1f} | {m['step'] * 1e3:.1f} | "
                          f"{s['threads'][side]} |")
    sweep_rows = ["| bytes | all-reduce, 2 processes |", "|---:|---:|"]
    for n in sizes:
        sweep_rows.append(f"| {4 * n:,} | {reduce[str(n)] * 1e6:,.1f} µs |")
    cmd = "python benchmarks/bench_mpi.py" + "".join(f" {shlex.quote(a)}" for a in argv)
    report = ["# charlm data-parallel benchmark", "",
              f"Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} with `{cmd}` ({elapsed:.0f} s).", "",
              *[f"- {s}" for s in header], "", "## One process with 2 threads vs two processes with 1 thread", "",
              *rows, "", *detail, "",
              f"Rounds one, two, two, one of {warm} warm-up + {steps} timed steps; medians. fb = forward + backward "
              "(on B/2 streams for two), reduce = the gradient hook (packing, the all-reduce, waiting for the other "
              "process), update = clipping + Adam.", "",
              "## All-reduce on this machine (shared memory, 2 processes, float32, in place)", "", *sweep_rows, "",
              "## Compute of one 2-thread process, and the scaling model (docs/scaling.md)", "",
              f"Latency {args.latency_us:g} µs per message (assumed); bandwidth the line rate.",
              *model_tables(sides, sweeps, args.latency_us * 1e-6), "",
              "t_fb(b), one process, 2 threads: " + "; ".join(
                  f"{n} {c}: " + ", ".join(f"b={b} {t * 1e3:.1f} ms" for b, t in sw["fb"].items())
                  for (n, c), sw in sweeps.items())]
    text = "\n".join(report) + "\n"
    print(text)
    if args.output != "-":
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

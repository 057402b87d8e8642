"""Shared helpers for the charlm speed benchmarks: timing, GEMM peak, BLAS info, PyTorch models.

Timing protocol (the machine is shared and noisy, ±20 %):
  * every side of a comparison is warmed up first (caches, allocator, BLAS threads, oneDNN);
  * charlm and PyTorch are then timed *interleaved* in alternating blocks (charlm block, PyTorch
    block, PyTorch block, charlm block, ...) so that a slow minute hurts both sides alike;
  * a case's figure is the *median* of its per-step times.

Nothing here needs PyTorch: `torch_or_none()` returns None when it is not installed, and the
benchmarks then report charlm alone.

Every benchmark calls `prepare()` first. It measures the machine a user would have:
  * OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (set in some workplaces for old OpenBLAS builds; on an
    AVX-512 machine they pin NumPy's OpenBLAS to its AVX2 kernels) are removed for this benchmark
    process and its children only, by re-executing the script without them: OpenBLAS reads them
    once, when NumPy is imported, so removing them later would change nothing;
  * freed memory is kept for reuse (charlm.nn.alloc.keep_freed_memory, as the charlm commands do);
  * the report header names the CPU and the BLAS kernel that is then in use.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

# one line, not an ImportError's traceback, when run outside charlm's environment
_MISSING = [m for m in ("numpy", "click", "tqdm", "regex") if importlib.util.find_spec(m) is None]
if _MISSING:
    sys.exit(f"{Path(sys.argv[0]).name}: {', '.join(_MISSING)} not installed: run the benchmarks in charlm's "
             "environment (make venv, then . .venv/bin/activate)")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:           # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

SHARED_DATA = ROOT.parent / "shared" / "data"   # optional; never required

BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_REMOVED = "CHARLM_BENCH_REMOVED"                # what the re-executed process was started without


def prepare() -> None:
    """Start-up of every benchmark script (see the module docstring): re-execute without the
    OpenBLAS overrides if they are set, then keep freed memory for reuse."""
    found = {v: os.environ[v] for v in BLAS_OVERRIDES if v in os.environ}
    if found:
        env = {k: v for k, v in os.environ.items() if k not in found}
        env[_REMOVED] = " ".join(f"{k}={v}" for k, v in found.items())
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    from charlm.nn.alloc import keep_freed_memory
    keep_freed_memory()

# configurations of the issue: vocabulary / embedding / hidden / layers / batch / sequence length
CONFIGS = {
    "a": dict(V=65, E=32, H=128, L=2, B=32, T=64),
    "b": dict(V=65, E=64, H=256, L=2, B=32, T=100),
    "c": dict(V=65, E=128, H=512, L=2, B=64, T=100),
    "d": dict(V=10000, E=200, H=200, L=2, B=20, T=35),
}
CELLS = ("lstm", "gru")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}   # G: gate blocks in the fused recurrent matrix


def config_label(name: str) -> str:
    c = CONFIGS[name]
    return f"{name} {c['V']}/{c['E']}/{c['H']}/{c['L']}/{c['B']}/{c['T']}"


# --------------------------------------------------------------------------------------------
# command line

def add_common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--quick", action="store_true",
                   help="1 warm-up + 3 timed steps per side (smoke test, numbers are rough)")
    p.add_argument("--cells", default="lstm,gru", help="comma-separated cells (default lstm,gru)")
    p.add_argument("--configs", default=None, help="comma-separated configurations, e.g. a,c")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per side (default 3)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per side (default 10)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--torch-threads", type=int, default=2,
                   help="torch.set_num_threads for PyTorch (default 2, as the issue asks)")
    return p


def parse_list(value: str | None, allowed, what: str) -> list[str]:
    if value is None:
        return list(allowed)
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


CASE_BUDGET_S = 45.0          # timed seconds per case before stopping early (≥ 3 steps per side)


def case_budget(args) -> float:
    return CASE_BUDGET_S / 4 if args.quick else CASE_BUDGET_S


def budget(args) -> tuple[int, int]:
    """(warm-up steps, timed steps) per side."""
    warm = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    steps = args.steps if args.steps is not None else (3 if args.quick else 10)
    return max(0, warm), max(1, steps)


# --------------------------------------------------------------------------------------------
# timing

def interleaved_times(fns: dict[str, Callable[[], object]], warmup: int, steps: int,
                      block: int = 2, budget_s: float | None = None,
                      min_steps: int = 3) -> dict[str, list[float]]:
    """Per-call wall times (s) of each fn, measured in alternating blocks after warm-up.

    fns: {side: zero-argument callable doing one step}. Each side gets `warmup` untimed calls,
    then `steps` timed calls spread over blocks of `block` calls; the order of the sides is
    reversed every round (ABBA...) so neither always runs right after the other.
    budget_s: stop early once the timed part has taken this long and every side has at least
    `min_steps` times (keeps a run on a badly overloaded machine to a few minutes).
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    rnd = 0
    start = time.perf_counter()
    while any(len(times[n]) < steps for n in names):
        if (budget_s is not None and time.perf_counter() - start > budget_s
                and all(len(times[n]) >= min(min_steps, steps) for n in names)):
            break
        order = names if rnd % 2 == 0 else names[::-1]
        for name in order:
            k = min(block, steps - len(times[name]))
            for _ in range(k):
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
        rnd += 1
    return times


def cut_short(times: dict[str, list[float]], steps: int) -> str:
    """" (n=k)" when the time budget stopped a case before `steps` timed steps, else ""."""
    k = min(len(v) for v in times.values())
    return f" (n={k})" if k < steps else ""


def median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# --------------------------------------------------------------------------------------------
# machine: GEMM peak and BLAS threads

def gemm_peak(sizes=(1024, 2048), reps: int = 5, quick: bool = False) -> dict:
    """float32 GEMM throughput of NumPy's BLAS (GFLOP/s, 2·n³ per n×n product).

    For each size: ~0.3 s of warm-up products, then the median of `reps` timed products; the peak is the
    best of those medians. Returns {"gflops": peak, "by_size": {n: gflops}}.
    """
    if quick:
        sizes, reps = (1024,), 3
    rng = np.random.default_rng(0)
    by_size = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        t_end = time.perf_counter() + 0.3          # warm up: wake the BLAS threads, fill caches
        while True:
            np.matmul(a, b, out=c)
            if time.perf_counter() > t_end:
                break
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            ts.append(time.perf_counter() - t0)
        by_size[n] = 2.0 * n ** 3 / median(ts) / 1e9
    return {"gflops": max(by_size.values()), "by_size": by_size}


def _openblas_lib():
    """ctypes handle of the OpenBLAS that numpy loaded (Linux only), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()
                            and line.split()[-1].startswith("/")})
        return ctypes.CDLL(paths[0]) if paths else None
    except (OSError, IndexError):
        return None


def blas_info() -> dict:
    """What BLAS numpy uses and with how many threads (threadpoolctl if present, else ctypes)."""
    info: dict = {}
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                info.update(library=pool.get("internal_api"), version=pool.get("version"),
                            threads=pool.get("num_threads"), core=pool.get("architecture"))
                break
    except ImportError:
        pass
    if "threads" not in info:
        lib = _openblas_lib()
        if lib is not None:
            for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""),
                                   ("openblas_", "64_"), ("openblas_", "")):
                try:
                    nthreads = getattr(lib, f"{prefix}get_num_threads{suffix}")
                    corename = getattr(lib, f"{prefix}get_corename{suffix}")
                except AttributeError:
                    continue
                corename.restype = ctypes.c_char_p
                info.update(library="openblas", threads=int(nthreads()),
                            core=corename().decode(errors="replace"))
                break
    try:                                     # the build numpy reports (numpy.show_config)
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.setdefault("library", cfg.get("name"))
        info.setdefault("version", cfg.get("version"))
    except Exception:  # noqa: BLE001 - informational only
        pass
    for var in (*BLAS_OVERRIDES, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def cpu_name() -> str:
    """The CPU's model name and its widest x86 vector extension (from /proc/cpuinfo), or the platform."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")),
                platform.machine())
    flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
    widest = next((f for f in ("avx512f", "avx2", "avx") if f in flags), None)
    return f"{name}" + (f" ({widest})" if widest else "")


def machine_lines(torch=None) -> list[str]:
    """A few lines describing the run's environment (for the report header)."""
    b = blas_info()
    blas = ", ".join(f"{k}={v}" for k, v in b.items())
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    removed = os.environ.get(_REMOVED)
    lines = [
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; python {platform.python_version()}, "
        f"numpy {np.__version__}",
        f"numpy BLAS: {blas or 'unknown'}  (core = the OpenBLAS kernel in use)",
        "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: "
        + (f"removed for this run (the environment had {removed})" if removed
           else "not set" if not any(v in os.environ for v in BLAS_OVERRIDES)
           else "SET: " + ", ".join(f"{v}={os.environ[v]}" for v in BLAS_OVERRIDES if v in os.environ)),
    ]
    if load is not None:
        lines.append("load average (1/5/15 min): " + " / ".join(f"{x:.2f}" for x in load)
                     + "  (other processes compete for the same cores when this exceeds ~0)")
    if torch is not None:
        mkldnn = torch.backends.mkldnn
        lines.append(f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
                     f"mkldnn available={mkldnn.is_available()} enabled={mkldnn.enabled}")
    else:
        lines.append("torch: not installed (pip install -e '.[bench]') or --no-torch")
    return lines


# --------------------------------------------------------------------------------------------
# PyTorch (optional)

def torch_or_none(disabled: bool = False, threads: int = 2):
    """The torch module set to `threads` threads and float32, or None when unavailable/disabled."""
    if disabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    return torch


def torch_lm(torch, V: int, E: int, H: int, L: int, cell: str):
    """nn.Embedding -> nn.LSTM/nn.GRU (L layers, time-major) -> nn.Linear, float32."""
    nn = torch.nn

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, E)
            rnn = nn.LSTM if cell == "lstm" else nn.GRU
            self.rnn = rnn(E, H, num_layers=L)
            self.out = nn.Linear(H, V)

        def forward(self, x, h):
            """x (T,B) int64, h state -> logits (T,B,V), new state."""
            y, h = self.rnn(self.embed(x), h)
            return self.out(y), h

        def init_state(self, B: int):
            z = torch.zeros(L, B, H)
            return (z, z.clone()) if cell == "lstm" else z

    torch.manual_seed(0)
    return TorchLM()


def torch_detach(h):
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()


# --------------------------------------------------------------------------------------------
# report

COLUMNS = ["benchmark", "case", "charlm tok/s", "PyTorch tok/s", "ratio", "target", "met",
           "GFLOP/s", "% GEMM peak"]


def fmt_num(x, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return f"{x:,.{digits}f}"


def row_cells(r: dict) -> list[str]:
    ratio = r.get("ratio")
    return [
        r["benchmark"], r["case"], fmt_num(r.get("charlm")), fmt_num(r.get("torch")),
        f"{ratio:.2f}×" if ratio is not None else "—",
        r.get("target", "—"),
        {True: "yes", False: "**no**", None: "—"}[r.get("met")],
        fmt_num(r.get("gflops"), 1), fmt_num(r.get("peak_pct"), 1),
    ]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if i < 2 or c in ("target", "met") else "---:"
                            for i, c in enumerate(COLUMNS)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(row_cells(r)) + " |")
    return "\n".join(lines)


def ratio(a, b):
    return a / b if (a is not None and b) else None


def bench_main(run, argv=None) -> int:
    """Command-line entry of one benchmark script: parse the common options, print the machine,
    call `run(args, log) -> (rows, notes)`, print the table and the notes."""
    prepare()
    p = add_common_args(argparse.ArgumentParser(description=(sys.modules[run.__module__].__doc__ or "").split("\n")[0]))
    args = p.parse_args(argv)
    torch = torch_or_none(args.no_torch, args.torch_threads)
    for line in machine_lines(torch):
        print(line)
    rows, notes = run(args, log=lambda s: print(s, file=sys.stderr, flush=True))
    print()
    print(markdown_table(rows))
    for n in notes:
        print(f"- {n}")
    return 0

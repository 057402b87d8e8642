"""Big corpora: memory, preparation speed, the token cache, evaluation share and resume.

    python benchmarks/bench_scale.py [--sizes 100,300,1000] [--only memory,word,eval,resume]
                                     [--dir /work/scratch/bench_scale] [--keep]

Builds its own corpora (data/tinyshakespeare.txt repeated to SIZE megabytes) under --dir, runs
`charlm train` on them as child processes, prints every command, and measures for each:
  * peak anonymous memory (RssAnon of /proc/PID/status, sampled every 10 ms): before the first
    training step and in all; the model and optimizer (parameters, gradients and Adam's two
    slots, float32) for comparison. Memory-mapped pages of the id file are not anonymous;
  * the time to the first training step (the "N parameters" line): with no cache (the corpus is
    tokenized; the pipeline reports its own MB/s), and a second time with the cache ready;
  * memory: the above, character level; word: the same at word level (regex split);
  * eval: with default options, the share of the wall time spent evaluating (the metrics log's
    eval_seconds over the run's wall time, 400 steps = two evaluations at --eval-every 200);
  * resume: 20 steps straight vs 10 steps + --resume to 20: the time to the first step of the
    resumed run and whether the parameters are bit-identical.
Targets (the issue): peak anonymous memory <= 300 MB + model and optimizer, flat in the corpus
size; preparing a char corpus >= 20 MB/s, word level >= 8 MB/s; with the cache, training starts
in < 5 s; evaluation < 10 % of the wall time; --resume starts in < 5 s and is bit-exact.
The corpora and runs are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "tinyshakespeare.txt"
START = re.compile(rb"charlm: ([\d,]+) parameters")
RATE = re.compile(rb"tokenized .* in ([\d.]+) s \(([\d.]+) MB/s\)")


def make_corpus(path: Path, mb: int) -> Path:
    """data/tinyshakespeare.txt repeated to `mb` megabytes (10^6 bytes), cut at a line end."""
    if path.exists() and path.stat().st_size >= mb * 10**6 - 2 * 10**6:
        return path
    text = SOURCE.read_bytes()
    with open(path, "wb") as f:
        for _ in range(mb * 10**6 // len(text)):
            f.write(text)
    return path


def anon_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def launch(cmd: list[str], cwd: Path):
    """Start CMD (printed first, run without the OpenBLAS overrides) with its stderr read by a
    thread -> (proc, t0, stderr bytes so far, {"t": seconds to the first step, once seen}, thread)."""
    print("$ " + shlex.join(cmd), flush=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err, started = bytearray(), {}

    def read():
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            err.extend(chunk)
            if "t" not in started and START.search(err):
                started["t"] = time.perf_counter() - t0

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, t0, err, started, reader


def run(args: list[str], cwd: Path) -> dict:
    """Run `python -m charlm ARGS`; return wall time, time to the first step, peak RssAnon (MB)
    before the first step and in all, parameters, the pipeline's MB/s, stderr."""
    cmd = [sys.executable, "-m", "charlm", *args]
    proc, t0, err, started, reader = launch(cmd, cwd)
    peak = peak_before = 0
    while proc.poll() is None:
        kb = anon_kb(proc.pid) or 0
        peak = max(peak, kb)
        if "t" not in started:
            peak_before = max(peak_before, kb)
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    reader.join()
    text = bytes(err)
    if proc.returncode != 0:
        sys.exit(f"bench_scale: the command failed ({proc.returncode}):\n{text.decode(errors='replace')[-2000:]}")
    params = START.search(text)
    rate = RATE.search(text)
    return {"wall": wall, "to_first_step": started.get("t"), "peak_mb": peak / 1024, "peak_before_mb": peak_before / 1024,
            "params": int(params.group(1).replace(b",", b"")) if params else None,
            "prep_s": float(rate.group(1)) if rate else None, "prep_mb_s": float(rate.group(2)) if rate else None,
            "cache_used": b"token cache used" in text, "stderr": text.decode(errors="replace")}


def model_mb(params: int | None) -> float:
    """Parameters, gradients and Adam's two slots, float32."""
    return 4 * 4 * (params or 0) / 2**20


def show(label: str, r: dict) -> None:
    prep = f", tokenized at {r['prep_mb_s']:.1f} MB/s ({r['prep_s']:.1f} s)" if r["prep_mb_s"] else ""
    print(f"  {label}: first step after {r['to_first_step']:.2f} s{prep}; peak RssAnon {r['peak_before_mb']:.0f} MB "
          f"before training, {r['peak_mb']:.0f} MB in all (model+optimizer {model_mb(r['params']):.0f} MB); "
          f"cache used: {r['cache_used']}; wall {r['wall']:.1f} s", flush=True)


def last_params(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith("param/")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100,300,1000", help="corpus sizes in MB (default 100,300,1000)")
    p.add_argument("--only", default="memory,word,eval,resume", help="which measurements")
    p.add_argument("--dir", type=Path, default=Path("/work/scratch/bench_scale"), help="working folder")
    p.add_argument("--keep", action="store_true", help="keep the corpora and runs")
    a = p.parse_args()
    only = set(a.only.split(","))
    a.dir.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs; "
          f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"free disk in {a.dir}: {shutil.disk_usage(a.dir).free / 1e9:.0f} GB")
    results = {}
    try:
        for mb in [int(s) for s in a.sizes.split(",")]:
            corpus = make_corpus(a.dir / f"corpus-{mb}MB.txt", mb)
            size = corpus.stat().st_size
            print(f"\n== {mb} MB corpus ({size:,} bytes): {corpus}", flush=True)
            d = a.dir / f"run-{mb}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            cache = ["--cache-dir", str(d / "cache")]
            res = results[mb] = {}
            if "memory" in only:
                args = ["train", str(corpus), "-o", str(d / "m.npz"), "--max-steps", "30", "--eval-every", "10", *cache]
                res["char_fresh"] = run(args, d)
                show("char, no cache", res["char_fresh"])
                res["char_cached"] = run(args, d)
                show("char, cache ready", res["char_cached"])
            if "word" in only:
                args = ["train", str(corpus), "-o", str(d / "w.npz"), "--level", "word", "--max-steps", "5", *cache]
                res["word_fresh"] = run(args, d)
                show("word, no cache", res["word_fresh"])
            if "eval" in only:
                metrics = d / "eval.jsonl"
                args = ["train", str(corpus), "-o", str(d / "e.npz"), "--max-steps", "400", "--metrics", str(metrics), *cache]
                r = res["eval"] = run(args, d)
                records = [json.loads(line) for line in metrics.read_text().splitlines()]
                r["eval_s"] = sum(x["eval_seconds"] for x in records)
                show("defaults, 400 steps", r)
                print(f"  evaluation: {len(records)} evaluations, {r['eval_s']:.1f} s of {r['wall']:.1f} s wall "
                      f"= {100 * r['eval_s'] / r['wall']:.1f} %", flush=True)
            if "resume" in only:
                (d / "a").mkdir(), (d / "b").mkdir()
                base = ["train", str(corpus), "--eval-every", "10", *cache]
                run([*base, "-o", str(d / "a" / "m.npz"), "--max-steps", "20"], d)
                run([*base, "-o", str(d / "b" / "m.npz"), "--max-steps", "10"], d)
                r = res["resume"] = run([*base, "-o", str(d / "b" / "m.npz"), "--max-steps", "20", "--resume"], d)
                a_, b_ = last_params(d / "a" / "m.last.npz"), last_params(d / "b" / "m.last.npz")
                r["bit_exact"] = a_.keys() == b_.keys() and all(np.array_equal(a_[k], b_[k]) for k in a_)
                show("--resume", r)
                print(f"  resumed to step 20 == straight 20 steps, bit for bit: {r['bit_exact']}", flush=True)
            shutil.rmtree(d, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(a.dir, ignore_errors=True)
    print("\n| corpus | peak RssAnon before / during training | model+optimizer | char prep | "
          "start with cache | word prep | eval share | resume start, bit-exact |")
    print("|---|---|---|---|---|---|---|---|")
    for mb, res in results.items():
        f, c, w, e, r = (res.get(k) for k in ("char_fresh", "char_cached", "word_fresh", "eval", "resume"))
        cells = [f"{mb} MB",
                 f"{f['peak_before_mb']:.0f} / {max(f['peak_mb'], c['peak_mb']):.0f} MB" if f else "—",
                 f"{model_mb(f['params']):.0f} MB" if f else "—",
                 f"{f['prep_mb_s']:.1f} MB/s" if f and f["prep_mb_s"] else "—",
                 f"{c['to_first_step']:.2f} s" if c else "—",
                 f"{w['prep_mb_s']:.1f} MB/s" if w and w["prep_mb_s"] else "—",
                 f"{100 * e['eval_s'] / e['wall']:.1f} %" if e else "—",
                 f"{r['to_first_step']:.2f} s, {'yes' if r['bit_exact'] else 'NO'}" if r else "—"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

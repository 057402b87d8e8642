"""Data-parallel training on a big corpus: the memory of each process and the shared token cache.

    python benchmarks/bench_mpi_cache.py [--sizes 50,200] [-n 2] [--dir /work/scratch/bench_mpi_cache] [--keep]

For each size, builds a corpus (data/tinyshakespeare.txt repeated, as bench_scale.py does) and
runs `mpiexec -n N charlm train CORPUS --cache-dir DIR --max-steps 30` twice: first with no cache
(rank 0 builds it, the others map it), then with the cache ready (rank 0 checks it, the others
map it). It prints every command, samples the RssAnon of every rank (in /proc/PID/status, every
10 ms) and reports, per rank, the peak before the first training step and in all, the time to the
first step, and what each run said about the cache. Peak anonymous memory should not grow with
the corpus: the ids are file pages of the one cache, shared by the processes.
Needs the `mpi` extra. The corpora and runs are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from bench_mpi import _mpiexec
from bench_scale import anon_kb, launch, make_corpus


def ranks(root: int) -> dict[int, int]:
    """{rank: pid} of the processes under `root` that an MPI launcher started (PMI_RANK set)."""
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        todo.extend(int(c) for c in children)
        rank = next((int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"PMI_RANK=")), None)
        if rank is not None and pid != root:
            found[rank] = pid
    return found


def run(n: int, args: list[str], cwd: Path) -> dict:
    """`mpiexec -n N python -m charlm ARGS`: per rank peak RssAnon (MB) before the first step and
    in all, the time to the first step (rank 0's "N parameters" line), stderr."""
    cmd = [_mpiexec(), "-n", str(n), sys.executable, "-m", "charlm", *args]
    proc, t0, err, started, reader = launch(cmd, cwd)
    pids, peak, before = {}, {}, {}
    while proc.poll() is None:
        if len(pids) < n:
            pids = ranks(proc.pid)
        for rank, pid in pids.items():
            kb = anon_kb(pid) or 0
            peak[rank] = max(peak.get(rank, 0), kb)
            if "t" not in started:
                before[rank] = max(before.get(rank, 0), kb)
        time.sleep(0.01)
    reader.join()
    text = bytes(err).decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"bench_mpi_cache: the command failed ({proc.returncode}):\n{text[-2000:]}")
    return {"wall": time.perf_counter() - t0, "to_first_step": started.get("t"), "stderr": text,
            "peak_mb": [peak.get(r, 0) / 1024 for r in range(n)],
            "before_mb": [before.get(r, 0) / 1024 for r in range(n)]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="50,200", help="corpus sizes in MB (default 50,200)")
    p.add_argument("-n", type=int, default=2, help="processes (default 2)")
    p.add_argument("--dir", type=Path, default=Path("/work/scratch/bench_mpi_cache"), help="working folder")
    p.add_argument("--keep", action="store_true", help="keep the corpora and runs")
    a = p.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    try:
        for mb in [int(s) for s in a.sizes.split(",")]:
            corpus = make_corpus(a.dir / f"corpus-{mb}MB.txt", mb)
            print(f"\n== {mb} MB corpus ({corpus.stat().st_size:,} bytes): {corpus}", flush=True)
            d = a.dir / f"run-{mb}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            args = ["train", str(corpus), "-o", str(d / "m.npz"), "--max-steps", "30", "--eval-every", "10",
                    "--cache-dir", str(d / "cache")]
            for label in ("no cache yet", "cache ready"):
                r = run(a.n, args, d)
                said = [line for line in r["stderr"].splitlines() if "token cache" in line or "tokenized" in line]
                print(f"  {label}: first step after {r['to_first_step']:.2f} s; peak RssAnon per rank "
                      f"{' / '.join(f'{x:.0f}' for x in r['before_mb'])} MB before training, "
                      f"{' / '.join(f'{x:.0f}' for x in r['peak_mb'])} MB in all; wall {r['wall']:.1f} s", flush=True)
                for line in said:
                    print(f"    {line.strip()[:160]}")
                rows.append((mb, label, r))
            shutil.rmtree(d, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(a.dir, ignore_errors=True)
    print("\n| corpus | run | first step | peak RssAnon per rank, before training | in all |")
    print("|---|---|---:|---|---|")
    for mb, label, r in rows:
        print(f"| {mb} MB | {label} | {r['to_first_step']:.2f} s | "
              f"{' / '.join(f'{x:.0f}' for x in r['before_mb'])} MB | {' / '.join(f'{x:.0f}' for x in r['peak_mb'])} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

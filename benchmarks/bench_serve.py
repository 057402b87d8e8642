"""`charlm serve` under a bounded load on loopback, beside the same work called in-process.

Model: the demo's architecture (GRU, 2 layers, hidden 256, embedding 64, character level) trained
for --train-steps steps on data/tinyshakespeare.txt by `charlm train` (speed does not depend on how
well it is trained), or --model FILE (e.g. the model `make demo` writes, demo/charlm.npz). Server: `charlm serve -m bench=MODEL --port 0 --threads T` (a child process),
with score batching (the default 2 ms window) and, for comparison, with --no-batching.

Load: C client threads, each with its own keep-alive HTTP connection, send requests back to back for
a fixed time, then stop. A score request carries --texts lines of tiny Shakespeare (20-60 characters);
a next request asks the 10 likeliest tokens after a 30-character prefix. In-process: C threads call
`charlm.LM.score(the same texts)` / `LM.next_tokens(prefix, k=10)` on a model loaded in this process,
for the same time: the same batching per call and the same BLAS threads per product as the server's
(cores // T, `charlm.engine.blas.share_cores`), no HTTP. The sides run interleaved in rounds (one
block each per round, order reversed every round) so that a slow minute on the shared machine hurts
both; a figure is the median over the rounds. Reported per case: requests/s, p50/p99 latency over
all rounds, errors (a status other than 200, or a failed connection), and where the CPU went: CPU
milliseconds per request used by this process (the clients; in-process: the model work itself) and by
the server process. Target (the issue): 0 errors, served score throughput >= 80 % of in-process.

Usage:  python benchmarks/bench_serve.py [--clients 4] [--seconds 5] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import common  # first: it prepares the environment before NumPy loads its BLAS
from common import ROOT, median

import numpy as np


def run_command(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + shlex.join(args), flush=True)
    return subprocess.run(args, check=True, **kwargs)


def charlm_command() -> list[str]:
    return [sys.executable, "-m", "charlm"]


def start_server(model: str, options: list[str]) -> tuple[subprocess.Popen, str, int]:
    """(process, host, port) of `charlm serve` once it listens; its log lines are dropped after start-up
    except errors (the request lines would cost the same on every side, but fill the terminal)."""
    args = [*charlm_command(), "serve", "-m", f"bench={model}", "--port", "0", *options]
    print("$ " + shlex.join(args), flush=True)
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stderr:
        m = re.search(r"serving on http://([^:/]+):(\d+)/", line)
        if m:
            proc.statuses = {}
            threading.Thread(target=_count_log, args=(proc,), daemon=True).start()
            return proc, m.group(1), int(m.group(2))
    raise SystemExit("charlm serve did not start")


def _count_log(proc) -> None:
    """Count the statuses of the server's request lines (a check that it answered what we counted)."""
    for line in proc.stderr:
        m = re.search(r" (GET|POST) \S+ (\d{3}) ", line)
        if m:
            proc.statuses[m.group(2)] = proc.statuses.get(m.group(2), 0) + 1
        elif "Traceback" in line or "error" in line.lower():
            print("server: " + line.rstrip(), file=sys.stderr)


def stop_server(proc) -> None:
    proc.send_signal(2)
    proc.wait(30)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_served(host: str, port: int, path: str, body: bytes, clients: int, seconds: float,
                server_pid: int | None = None) -> dict:
    """C clients posting `body` to `path` back to back for `seconds`: requests, latencies, errors."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    headers = {"Content-Type": "application/json"}

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        start.wait()
        end = time.perf_counter() + seconds
        while (t0 := time.perf_counter()) < end:
            try:
                conn.request("POST", path, body, headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors[i] += 1
                    continue
            except OSError:
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
                continue
            latencies[i].append(time.perf_counter() - t0)
        conn.close()

    return _run_clients(client, clients, start, latencies, errors, seconds, server_pid)


def load_in_process(call, clients: int, seconds: float) -> dict:
    """C threads calling call() back to back for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        start.wait()
        end = time.perf_counter() + seconds
        while (t0 := time.perf_counter()) < end:
            call()
            latencies[i].append(time.perf_counter() - t0)

    return _run_clients(client, clients, start, latencies, errors, seconds)


def _run_clients(client, clients, start, latencies, errors, seconds, server_pid=None) -> dict:
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    server0 = process_cpu(server_pid) if server_pid else 0.0
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server = process_cpu(server_pid) - server0 if server_pid else 0.0
    lat = [x for per in latencies for x in per]
    return {"requests": len(lat), "rps": len(lat) / wall, "latencies": lat, "errors": sum(errors),
            "cpu": cpu, "server_cpu": server}


def summary(rounds: list[dict]) -> dict:
    lat = np.array([x for r in rounds for x in r["latencies"]]) * 1000
    return {"rps": median([r["rps"] for r in rounds]), "rps_rounds": [r["rps"] for r in rounds],
            "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            "requests": sum(r["requests"] for r in rounds), "errors": sum(r["errors"] for r in rounds),
            "cpu_ms": 1000 * sum(r["cpu"] for r in rounds) / max(1, sum(r["requests"] for r in rounds)),
            "server_cpu_ms": 1000 * sum(r["server_cpu"] for r in rounds) / max(1, sum(r["requests"] for r in rounds))}


def main() -> int:
    common.prepare()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per block (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of blocks (default 3)")
    p.add_argument("--threads", type=int, default=2, help="the server's --threads (default 2)")
    p.add_argument("--texts", type=int, default=8, help="sentences per score request (default 8)")
    p.add_argument("--train-steps", type=int, default=20, help="training steps of the benchmark model")
    p.add_argument("--model", default=None, help="serve this model file instead of training one")
    args = p.parse_args()

    for line in common.machine_lines():
        print(line)
    print(f"float32 GEMM: {common.gemm_peak()['gflops']:.1f} GFLOP/s (NumPy's BLAS)")
    print("$ uptime\n" + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)

    import charlm

    folder = tempfile.mkdtemp(prefix="bench_serve_")
    model = args.model
    if model is None:
        model = os.path.join(folder, "bench.npz")
        print("(training on one BLAS thread: its speed is not measured)")
        run_command([*charlm_command(), "train", str(ROOT / "data" / "tinyshakespeare.txt"), "-o", model,
                     "--max-steps", str(args.train_steps), "--eval-every", "1000"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    from charlm.engine.blas import share_cores

    blas = share_cores(args.threads)  # as `charlm serve --threads T` does in the server
    print(f"BLAS threads per product, in this process as in the servers: {blas or 'unchanged'} "
          f"(cores // --threads, charlm.engine.blas.share_cores)")
    lm = charlm.load(model)
    info = lm.info()["model"]
    print(f"model: {info.get('cell')}, {info.get('layers')} layers, hidden {info.get('hidden')}, "
          f"embedding {info.get('embedding')}, {info['parameters']:,} parameters, {len(lm.vocab)} tokens")

    lines = [ln for ln in (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8").splitlines()
             if 20 <= len(ln) <= 60]
    texts = lines[100:100 + args.texts]
    prefix = "ROMEO:\nBut soft, what light through "[:30]
    score_body = json.dumps({"texts": texts}).encode()
    next_body = json.dumps({"prefix": prefix, "k": 10}).encode()
    print(f"load: {args.clients} clients, {args.rounds} rounds of {args.seconds:g} s per side; score requests of "
          f"{len(texts)} sentences ({sum(map(len, texts))} characters), next: a {len(prefix)}-character prefix")

    in_process = {"score": lambda: lm.score(texts), "next": lambda: lm.next_tokens(prefix, k=10)}
    servers = {"batching": ["--threads", str(args.threads)],
               "no batching": ["--threads", str(args.threads), "--no-batching"]}
    results: dict[str, list[dict]] = {}
    procs = {}
    try:
        for name, options in servers.items():
            procs[name] = start_server(model, options)
        warm = min(2.0, args.seconds)
        for (proc, host, port) in procs.values():  # warm-up: allocator, BLAS threads, connections
            load_served(host, port, "/v1/bench/score", score_body, args.clients, warm, proc.pid)
        load_in_process(in_process["score"], args.clients, warm)
        sides = [("in-process score", lambda: load_in_process(in_process["score"], args.clients, args.seconds))]
        for name, (proc, host, port) in procs.items():
            sides.append((f"served score ({name})",
                          lambda h=host, pt=port, pid=proc.pid: load_served(h, pt, "/v1/bench/score", score_body,
                                                                            args.clients, args.seconds, pid)))
        sides.append(("in-process next", lambda: load_in_process(in_process["next"], args.clients, args.seconds)))
        proc, host, port = procs["batching"]
        sides.append(("served next", lambda h=host, pt=port, pid=proc.pid: load_served(
            h, pt, "/v1/bench/next", next_body, args.clients, args.seconds, pid)))
        for rnd in range(args.rounds):
            order = sides if rnd % 2 == 0 else sides[::-1]
            for name, fn in order:
                results.setdefault(name, []).append(fn())
            print(f"round {rnd + 1}: " + ", ".join(f"{n} {results[n][-1]['rps']:.1f}/s" for n, _ in sides),
                  flush=True)
    finally:
        for proc, _, _ in procs.values():
            stop_server(proc)
    print("$ uptime\n" + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())

    print("\n| case | requests/s (median of rounds) | p50 ms | p99 ms | requests | errors "
          "| CPU ms per request: this process (clients) | server |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    table = {name: summary(rounds) for name, rounds in results.items()}
    for name, s in table.items():
        server = f"{s['server_cpu_ms']:.2f}" if name.startswith("served") else "-"
        print(f"| {name} | {s['rps']:.1f} | {s['p50']:.1f} | {s['p99']:.1f} | {s['requests']:,} | {s['errors']} "
              f"| {s['cpu_ms']:.2f} | {server} |")
    base = table["in-process score"]["rps"]
    print()
    for name in ("served score (batching)", "served score (no batching)"):
        share = table[name]["rps"] / base
        print(f"- {name}: {100 * share:.0f} % of in-process (target >= 80 %: {'met' if share >= 0.8 else 'NOT met'})")
    share = table["served next"]["rps"] / table["in-process next"]["rps"]
    print(f"- served next: {100 * share:.0f} % of in-process (no target)")
    errors = sum(s["errors"] for n, s in table.items() if n.startswith("served"))
    print(f"- errors over all served requests: {errors} (target 0: {'met' if errors == 0 else 'NOT met'})")
    for name, (proc, _, _) in procs.items():
        print(f"- server ({name}) logged statuses: {proc.statuses}")
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CMUdict grapheme-to-phoneme quality of `charlm train --task seq2seq`: the seeded 90/5/5 split by
headword (benchmarks/g2p_data.py), a time budget per model, the test word error rate (a word is
right when its phones equal one of the dictionary's pronunciations) and phone error rate, with the
`--attention none` and `--no-bidirectional` ablations, and the PyTorch peer.

    python benchmarks/bench_seq2seq_quality.py [--budget SECONDS] [--variants main,none,onedir]
                                               [--peer torch] [--threads 1] [--parallel] [--out DIR]
                                               [--pairs PREFIX] [charlm train options ...]

--peer torch adds the PyTorch peer of the main variant (benchmarks/torch_seq2seq.py, the `bench`
extra): the same command line (so the same data, batches in the same order, validation set,
initial weights, sizes, Adam, clipping, evaluation schedule, learning-rate halving, patience and
time budget), its forward, backward and update in PyTorch. Its best model is saved as a charlm
model file and evaluated by the same `charlm eval` as charlm's; the peer's own greedy decoding of
the test set, counted by charlm's metric code, is reported beside it (the two decode the same
weights, so they agree up to float32 rounding). --pairs PREFIX reads PREFIX.train.txt,
PREFIX.dev.txt and PREFIX.test.txt (e.g. data/cmudict-g2p, the shipped subset) instead of writing
the full split. Options it does not know go to `charlm train` (and so to the peer), after its own.

Prints every command it runs (and writes them with their output to OUT/log.txt), the CPU, the
float32 GEMM rate and the load; unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for its processes.
Validation (each --eval-every steps, for the best model and early stopping) reads the first 1000
dev words (OUT/g2p.dev1000.txt) so that an evaluation stays short; the figures are on the whole
test set, decoded greedily (`charlm eval`). Needs ../shared/data/cmudict (or --cmudict).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
ENV = {k: v for k, v in os.environ.items() if k not in common.BLAS_OVERRIDES}
CHARLM = [sys.executable, "-m", "charlm"]
# a bidirectional LSTM encoder and an LSTM decoder with additive attention (the model)
MODEL = ["--cell", "lstm", "--layers", "2", "--hidden", "128", "--embedding", "64", "--dropout", "0.1",
         "--batch-size", "32", "--lr", "3e-3", "--epochs", "1000", "--eval-every", "1000", "--patience", "6"]
# ../shared/data next to the checkout (or next to the folder of worktrees that holds it)
CMUDICT = next((p / "cmudict" / "cmudict.dict" for p in (HERE.parent.parent / "shared" / "data",
                                                          HERE.parent.parent.parent / "shared" / "data")
                if (p / "cmudict" / "cmudict.dict").exists()), None)
VARIANTS = {"main": [], "none": ["--attention", "none"], "onedir": ["--no-bidirectional"]}
PEER = "torch"      # the PyTorch peer of the main variant


def show(cmd: list, log) -> str:
    line = " ".join(shlex.quote(str(c)) for c in cmd)
    print(f"$ {line}", flush=True)
    log.write(f"$ {line}\n")
    log.flush()
    return line


def run(cmd: list, log, env=None) -> str:
    show(cmd, log)
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env or ENV)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        print(proc.stdout)
        raise SystemExit(proc.returncode)
    return proc.stdout


def train_cmd(name: str, out: Path, data: dict, budget: float, extra: list) -> list:
    """The training command of a variant, or of the PyTorch peer (the main variant's command line)."""
    args = ["--task", "seq2seq", data["train"], "--val-file", data["dev"], "--target-level", "word",
            "--target-split", "whitespace", "-o", out / f"{name}.npz", "--metrics", out / f"{name}.metrics.jsonl",
            "--time-limit", budget, "-q", *MODEL, *VARIANTS.get(name, []), *extra]
    if name == PEER:
        return [sys.executable, HERE / "torch_seq2seq.py", *args, "--test-file", data["test"]]
    return [*CHARLM, "train", *args]


def g2p_files(a, log) -> dict:
    """{"train", "dev" (its first 1000 words), "test"}: the pair files of the run."""
    if a.pairs:
        prefix = str(a.pairs)
        files = {part: Path(f"{prefix}.{part}.txt") for part in ("train", "dev", "test")}
    else:
        run([sys.executable, HERE / "g2p_data.py", "--out", a.out, *(["--cmudict", a.cmudict] if a.cmudict else [])],
            log)
        files = {part: a.out / f"g2p.{part}.txt" for part in ("train", "dev", "test")}
    dev = files["dev"].read_text(encoding="utf-8").splitlines()
    words, keep = set(), []
    for row in dev:                          # the first 1000 words, all their references
        word = row.split("\t")[0]
        if word in words or len(words) < 1000:
            words.add(word)
            keep.append(row)
    files["dev"] = a.out / "g2p.dev1000.txt"
    files["dev"].write_text("\n".join(keep) + "\n", encoding="utf-8")
    return files


def main(argv=None) -> int:
    common.prepare()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)  # options pass on whole
    p.add_argument("--budget", type=float, default=3600.0, help="training seconds per model (default 3600)")
    p.add_argument("--variants", default="main,none,onedir", help="main, none (--attention none), onedir")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads per training process")
    p.add_argument("--parallel", action="store_true", help="train the variants side by side")
    p.add_argument("--out", type=Path, default=HERE / "runs" / f"g2p-{time.strftime('%Y%m%d-%H%M%S')}")
    p.add_argument("--cmudict", type=Path, default=CMUDICT, help=f"cmudict.dict (default {CMUDICT})")
    p.add_argument("--peer", choices=(PEER,), help="also train the PyTorch peer of the main variant")
    p.add_argument("--pairs", type=Path, help="read PAIRS.train.txt, PAIRS.dev.txt, PAIRS.test.txt")
    a, extra = p.parse_known_args(argv)
    names = common.parse_list(a.variants, VARIANTS, "variant") + ([PEER] if a.peer else [])
    a.out.mkdir(parents=True, exist_ok=True)
    log = open(a.out / "log.txt", "a", encoding="utf-8")
    for line in common.machine_lines(common.torch_or_none(not a.peer, a.threads)):   # the peer's torch too
        print(line)
        log.write(line + "\n")
    line = f"float32 GEMM: {common.gemm_peak()['gflops']:.1f} GFLOP/s; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    print(line)
    log.write(line + "\n")
    data = g2p_files(a, log)
    env = dict(ENV, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    started, procs, outputs = {}, {}, {}
    for name in names:
        cmd = train_cmd(name, a.out, data, a.budget, extra)
        started[name] = time.perf_counter()
        if a.parallel:
            show(cmd, log)
            procs[name] = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True, env=env)
        else:
            outputs[name] = run(cmd, log, env)
            started[name] = time.perf_counter() - started[name]
    for name, proc in procs.items():
        outputs[name], _ = proc.communicate()
        log.write(outputs[name])
        if proc.returncode != 0:
            print(outputs[name])
            return proc.returncode
        started[name] = time.perf_counter() - started[name]
    results = {}
    for name in names:
        report = json.loads(run([*CHARLM, "eval", "-m", a.out / f"{name}.npz", data["test"], "--json"],
                                log).strip().splitlines()[-1])
        records = [json.loads(x) for x in open(a.out / f"{name}.metrics.jsonl", encoding="utf-8")]
        results[name] = {"options": VARIANTS.get(name, ["(PyTorch peer of main)"]), "wall_s": round(started[name], 1),
                         "steps": records[-1]["step"], "epochs": round(records[-1]["epoch"], 2),
                         "best_dev_ter": min(r["val_ter"] for r in records), "test_wer": report["wer"],
                         "test_per": report["token_error_rate"], "test_examples": report["examples"]}
        if name == PEER:                     # its own greedy decoding, counted by charlm's Counts
            own = json.loads(outputs[name].strip().splitlines()[-1])
            results[name].update(torch=own["torch"], peer_decoded_wer=own["test"]["wer"],
                                 peer_decoded_per=own["test"]["token_error_rate"])
    load = os.getloadavg()
    summary = {"budget_s": a.budget, "threads": a.threads, "parallel": a.parallel, "model": MODEL + extra,
               "load_after": [round(x, 2) for x in load], "results": results}
    (a.out / "result.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"\nbudget {a.budget:g} s per model, --threads {a.threads}, "
          f"{'side by side' if a.parallel else 'one after another'}; load after: {load[0]:.2f}")
    print("| variant | options | steps | epochs | best dev PER | test WER | test PER |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {' '.join(r['options']) or '(attention additive, bidirectional)'} | {r['steps']} | "
              f"{r['epochs']} | {100 * r['best_dev_ter']:.2f} % | {100 * r['test_wer']:.2f} % | "
              f"{100 * r['test_per']:.2f} % |")
    if PEER in results:
        r = results[PEER]
        print(f"PyTorch peer decoding its own test outputs: WER {100 * r['peer_decoded_wer']:.2f} %, "
              f"PER {100 * r['peer_decoded_per']:.2f} %")
        if "main" in results:
            gap = 100 * (results["main"]["test_wer"] - r["test_wer"])
            print(f"charlm WER - PyTorch WER: {gap:+.2f} points (target: at most +1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

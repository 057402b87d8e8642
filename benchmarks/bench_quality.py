"""Quality benchmarks: train with `charlm train` under a wall-clock budget, then score held-out text.

    python benchmarks/bench_quality.py shakespeare [--time-limit 600]
    python benchmarks/bench_quality.py ptb [--time-limit 3600]

shakespeare: tiny Shakespeare, character level; the last 10 % of characters are the validation
    text (charlm's default split). Target: validation loss <= 1.50 nats/char within 600 s.
ptb: Penn Treebank (Mikolov's 10k-word version), word level, whitespace-split, trained on
    ptb.train.txt, validated on ptb.valid.txt, then `charlm score --stream` on valid and test.
    Target: test perplexity <= 115 within 60 minutes of training.

The corpora are read from ../shared/data/ (or --data DIR); they are not shipped with charlm.
Every command run is printed first, so a result can be reproduced by hand. The run's
directory (models, metrics.jsonl, log) is benchmarks/runs/NAME-DATE/ unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"

SETUPS = {
    "shakespeare": {
        "corpus": "tinyshakespeare/input.txt",
        "time_limit": 600,
        "train": ["--level", "char", "--cell", "lstm", "--layers", "2", "--hidden", "256",
                  "--embedding", "64", "--dropout", "0.1", "--seq-len", "100", "--batch-size", "32",
                  "--lr", "3e-3", "--eval-every", "200", "--epochs", "1000"],
        "score": [],
    },
    "ptb": {
        "corpus": "ptb/ptb.train.txt",
        "time_limit": 3600,
        "train": ["--level", "word", "--split", "whitespace", "--val-file", "{data}/ptb/ptb.valid.txt",
                  "--cell", "lstm", "--layers", "2", "--hidden", "200", "--embedding", "200",
                  "--tie-weights", "--dropout", "0.2", "--seq-len", "35", "--batch-size", "20",
                  "--optimizer", "sgd", "--lr", "20", "--clip", "0.25", "--eval-every", "664",
                  "--patience", "6", "--epochs", "1000"],
        "score": ["ptb/ptb.valid.txt", "ptb/ptb.test.txt"],
    },
}


def run(cmd: list[str], log) -> subprocess.CompletedProcess:
    line = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    log.write(f"$ {line}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(proc.stdout)
    log.flush()
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setup", choices=sorted(SETUPS))
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of training (default: the target's)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the corpora")
    parser.add_argument("--out", type=Path, default=None, help="run directory")
    args, extra = parser.parse_known_args()  # anything else is passed on to `charlm train`
    setup = SETUPS[args.setup]
    corpus = args.data / setup["corpus"]
    if not corpus.exists():
        print(f"bench_quality: {corpus} not found (pass --data DIR)", file=sys.stderr)
        return 2
    limit = args.time_limit or setup["time_limit"]
    out = args.out or HERE / "runs" / f"{args.setup}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model.npz"
    charlm = [sys.executable, "-m", "charlm"]
    extra = [a for a in extra if a != "--"]
    train_args = [a.format(data=args.data) for a in setup["train"]]
    with open(out / "log.txt", "a", encoding="utf-8") as log:
        started = time.perf_counter()
        proc = run(charlm + ["train", str(corpus), "-o", str(model), "--time-limit", str(limit),
                             "--metrics", str(out / "metrics.jsonl"), "-q", *train_args, *extra], log)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(proc.stdout)
            return proc.returncode
        records = [json.loads(l) for l in open(out / "metrics.jsonl", encoding="utf-8")]
        best = min((r for r in records if r["val_loss"] is not None), key=lambda r: r["val_loss"])
        result = {
            "setup": args.setup, "time_limit_s": limit, "wall_s": round(wall, 1),
            "steps": records[-1]["step"], "epochs": round(records[-1]["epoch"], 2),
            "tokens_per_s": round(records[-1]["tokens_per_s"] or 0),
            "best_val_loss": round(best["val_loss"], 4), "best_val_step": best["step"],
            "best_val_at_s": round(best["elapsed"], 1),
        }
        if args.setup == "shakespeare":
            result["best_val_bits_per_char"] = round(best["val_loss"] / 0.6931471805599453, 4)
        for name in setup["score"]:
            proc = run(charlm + ["score", "-m", str(model), "--file", str(args.data / name), "--stream", "--json"], log)
            if proc.returncode != 0:
                print(proc.stdout)
                return proc.returncode
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            result[f"{Path(name).stem}_perplexity"] = round(summary["perplexity"], 2)
            result[f"{Path(name).stem}_nats_per_token"] = round(summary["nats_per_token"], 4)
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

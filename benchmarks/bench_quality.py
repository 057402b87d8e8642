"""Quality benchmarks: train under a wall-clock budget, then score held-out text.

    python benchmarks/bench_quality.py shakespeare [--time-limit 600] [--peer torch] [--recipe locked]
                                               [charlm train options]
    python benchmarks/bench_quality.py ptb [--time-limit 3600] [--recipe plain|asgd|awd] [--threads N]

shakespeare: tiny Shakespeare, character level; the last 10 % of characters are the validation
    text (charlm's default split), also written to RUN/val.txt and scored as one stream
    (`charlm score --stream`). Target (issue 12): validation <= 1.45 nats/char within 600 s.
ptb: Penn Treebank (Mikolov's 10k-word version), word level, whitespace-split, trained on
    ptb.train.txt, validated on ptb.valid.txt, then `charlm score --stream` on valid and test.
    Target: test perplexity <= 85 within 60 minutes of training.

--recipe NAME adds a named set of options (RECIPES) after the setup's own; options given on the command
line come after both, so they win (`charlm train` takes an option's last value):
    ptb plain   dropout 0.3, one evaluation per epoch, patience 4 (test perplexity 86.23 in 60 min, README)
    ptb asgd    plain, with NT-ASGD (SGD lr 20, averaging from the first epoch without improvement)
    ptb awd     the AWD-LSTM regularisers (Merity et al. 2017) on the same tied 2x200 LSTM: locked
                dropout 0.3, embedding dropout 0.1, weight drop 0.2 on the recurrent weights, and
                NT-ASGD (SGD lr 20, averaging from the first epoch without improvement)
    shakespeare locked   --dropout-kind locked on the defaults
--threads N sets the BLAS/OpenMP thread variables (charlm.engine.launch.THREAD_VARS) to N for the
processes it starts (printed before each command); without it they inherit this environment.

--peer torch trains the same recipe in PyTorch instead of charlm, for the same seconds (see
benchmarks/torch_peer.py: options, data, initial weights and scoring code are charlm's own) and
scores it with charlm's scoring code; it needs the `bench` extra (torch 2.13.0).
Any option bench_quality does not know is passed on to `charlm train` (and so to the peer too).

The process removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for itself and what it runs (see
common.prepare) and prints the machine and BLAS kernel first. The corpora are read from
../shared/data/ (or --data DIR); they are not shipped with charlm. Every command run is printed
first, so a result can be reproduced by hand. The run's directory (model, metrics.jsonl, log.txt,
result.json) is benchmarks/runs/NAME[-torch]-DATE/ unless --out says otherwise.
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

import numpy as np

import common
from charlm.engine.launch import THREAD_VARS

HERE = Path(__file__).resolve().parent
# ../shared/data next to the checkout (or next to the folder of a git worktree in NAME/wt/BRANCH)
DEFAULT_DATA = next((d for d in (HERE.parent.parent / "shared" / "data", HERE.parents[2] / "shared" / "data")
                     if d.is_dir()), HERE.parent.parent / "shared" / "data")

SETUPS = {
    "shakespeare": {
        "corpus": "tinyshakespeare/input.txt",
        "time_limit": 600,
        "train": ["--level", "char", "--cell", "gru", "--layers", "2", "--hidden", "256",
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


# named recipes: options added after a setup's own "train" options (see the module docstring)
PTB_EPOCH = ["--eval-every", "1327", "--patience", "4"]  # 1327 steps of 20 x 35 words: one epoch
RECIPES = {
    "ptb": {
        "plain": ["--dropout", "0.3", *PTB_EPOCH],
        "asgd": ["--dropout", "0.3", "--optimizer", "asgd", "--lr", "20", *PTB_EPOCH],
        "awd": ["--dropout", "0.3", "--dropout-kind", "locked", "--embedding-dropout", "0.1", "--weight-drop", "0.2",
                "--optimizer", "asgd", "--lr", "20", *PTB_EPOCH],
    },
    "shakespeare": {"locked": ["--dropout-kind", "locked"]},
}
ENV: dict = {}  # variables set for the processes this script starts (--threads)


def run(cmd: list[str], log) -> subprocess.CompletedProcess:
    line = "".join(f"{k}={v} " for k, v in ENV.items()) + " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    log.write(f"$ {line}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **ENV})
    log.write(proc.stdout)
    log.flush()
    return proc


def validation_text(opts, path: Path) -> Path:
    """Write the validation part of a char-level run's corpus (the last --val-fraction of its
    tokens, as charlm train splits it) to `path`, to be scored as one stream."""
    from charlm.lm.corpus import split_point
    from charlm.text.tokenizer import Tokenizer, TokenizerConfig

    tokens = [t for piece in Tokenizer(TokenizerConfig.from_dict(opts.tokenizer)).iter_sentences(opts.corpus)
              for t in piece]
    path.write_text("".join(tokens[split_point(len(tokens), opts.val_fraction):]), encoding="utf-8")
    return path


def score_files(files: list[Path], charlm_cmd, model_path: Path, peer, log) -> dict:
    """{stem_perplexity, stem_nats_per_token} of each file scored as one stream: with
    `charlm score --stream`, or for the peer with the same code (charlm.lm.scoring.score_stream)."""
    out = {}
    for f in files:
        if peer is None:
            proc = run(charlm_cmd + ["score", "-m", str(model_path), "--file", str(f), "--stream", "--json"], log)
            if proc.returncode != 0:
                print(proc.stdout)
                raise SystemExit(proc.returncode)
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            nats, ppl = summary["nats_per_token"], summary["perplexity"]
        else:
            from charlm.lm.scoring import score_stream
            from charlm.text.tokenizer import Tokenizer
            s = score_stream(peer["model"], peer["vocab"], Tokenizer(peer["vocab"].tokenizer).iter_sentences(str(f)))
            nats, ppl = s.nats_per_token, float(np.exp(s.nats_per_token))
        out[f"{f.stem}_perplexity"] = round(ppl, 2)
        out[f"{f.stem}_nats_per_token"] = round(nats, 4)
    return out


def main() -> int:
    common.prepare()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # the options passed on stay whole
    parser.add_argument("setup", choices=sorted(SETUPS))
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of training (default: the target's)")
    parser.add_argument("--peer", choices=("torch",), default=None,
                        help="train the same recipe in PyTorch instead (needs the bench extra)")
    parser.add_argument("--recipe", choices=sorted({r for rs in RECIPES.values() for r in rs}), default=None,
                        help="a named set of options for the setup (see above)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/OpenMP threads of the charlm processes (default: inherited)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the corpora")
    parser.add_argument("--out", type=Path, default=None, help="run directory")
    args, extra = parser.parse_known_args()  # anything else is passed on to `charlm train`
    setup = SETUPS[args.setup]
    recipe = []
    if args.recipe is not None:
        if args.recipe not in RECIPES.get(args.setup, {}):
            print(f"bench_quality: no recipe {args.recipe!r} for {args.setup} (there are: "
                  f"{', '.join(RECIPES.get(args.setup, {})) or 'none'})", file=sys.stderr)
            return 2
        recipe = RECIPES[args.setup][args.recipe]
    if args.threads is not None and args.peer:
        print("bench_quality: --threads applies to the charlm processes; for --peer torch set "
              "OMP_NUM_THREADS and OPENBLAS_NUM_THREADS before starting", file=sys.stderr)
        return 2
    if args.threads is not None:
        ENV.update({v: str(args.threads) for v in THREAD_VARS})
    corpus = args.data / setup["corpus"]
    if not corpus.exists():
        print(f"bench_quality: {corpus} not found (pass --data DIR)", file=sys.stderr)
        return 2
    limit = args.time_limit or setup["time_limit"]
    name = args.setup + (f"-{args.recipe}" if args.recipe else "") + ("-" + args.peer if args.peer else "")
    out = args.out or HERE / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model.npz"
    charlm = [sys.executable, "-m", "charlm"]
    extra = [a for a in extra if a != "--"]
    train_argv = [str(corpus), "-o", str(model), "--time-limit", str(limit), "--metrics", str(out / "metrics.jsonl"),
                  "-q", *[a.format(data=args.data) for a in setup["train"]], *recipe, *extra]
    with open(out / "log.txt", "a", encoding="utf-8") as log:
        gemm = common.gemm_peak(quick=True)["gflops"]
        for line in [*common.machine_lines(common.torch_or_none(args.peer != "torch")),
                     f"float32 GEMM (n = 1024, all threads, before the run): {gemm:.1f} GFLOP/s"]:
            print(line)
            log.write(line + "\n")
        started = time.perf_counter()
        peer = None
        if args.peer == "torch":
            import torch_peer

            def note(text: str) -> None:
                print(text, flush=True)
                log.write(text + "\n")

            note("$ (PyTorch peer of) charlm train " + " ".join(shlex.quote(a) for a in train_argv))
            peer = torch_peer.train_peer(train_argv, out, note)
            opts = peer["options"]
        else:
            from torch_peer import train_options
            opts = train_options(train_argv)
            proc = run(charlm + ["train", *train_argv], log)
            if proc.returncode != 0:
                print(proc.stdout)
                return proc.returncode
        wall = time.perf_counter() - started
        records = [json.loads(l) for l in open(out / "metrics.jsonl", encoding="utf-8")]
        best = min((r for r in records if r["val_loss"] is not None), key=lambda r: r["val_loss"])
        result = {
            "setup": args.setup, "recipe": args.recipe, "threads": args.threads,
            "trained_by": "charlm" if peer is None else f"PyTorch peer ({peer['torch']})",
            "time_limit_s": limit, "wall_s": round(wall, 1),
            "steps": records[-1]["step"], "epochs": round(records[-1]["epoch"], 2),
            "tokens_per_s": round(records[-1]["tokens_per_s"] or 0),
            "best_val_loss": round(best["val_loss"], 4), "best_val_step": best["step"],
            "best_val_at_s": round(best["elapsed"], 1),
        }
        if peer is not None and peer["check"] is not None:
            result["check_identical_weights_nats"] = {"charlm": round(peer["check"][0], 6),
                                                      "torch": round(peer["check"][1], 6)}
        files = [args.data / f for f in setup["score"]]
        if args.setup == "shakespeare":
            result["best_val_bits_per_char"] = round(best["val_loss"] / 0.6931471805599453, 4)
        if opts.val_file is None and opts.tokenizer.get("level", "char") == "char":
            files.insert(0, validation_text(opts, out / "val.txt"))
        result.update(score_files(files, charlm, model, peer, log))
        if "val_nats_per_token" in result:
            result["val_stream_bits_per_char"] = round(result["val_nats_per_token"] / 0.6931471805599453, 4)
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality benchmarks of the tagging and classification tasks: train with `charlm train --task ...`
under a wall-clock budget, then `charlm eval` on held-out data.

    python benchmarks/bench_tasks.py pos [--time-limit 1200] [--ablations] [--crf] [--lm-features FWD.npz,BWD.npz]
    python benchmarks/bench_tasks.py ner [--time-limit 300] [--seeds 10] [--first-seed 0] [--peer-init charlm,torch] [--no-torch] [--crf]
                                         [--lm-features FWD.npz,BWD.npz]
    python benchmarks/bench_tasks.py mr  [--time-limit 180] [--folds 10] [--run-folds K] [--first-fold F]
                                         [--lm-features FWD.npz,BWD.npz] [--lm-finetune LM.npz [--finetune-steps N]]

pos: Universal Dependencies English EWT, UPOS tags: trained on en_ewt-ud-train.conllu, the best
    model by token accuracy on en_ewt-ud-dev.conllu, then the accuracy on en_ewt-ud-test.conllu.
    Target: test accuracy >= 95.0 % within 20 minutes of training. --ablations adds the same run
    with --no-bidirectional and with --char-hidden 0 (no character encoder).
ner: wikigold (shipped in data/, with its fixed document split): trained on wikigold.train.txt,
    the best model by entity F1 on wikigold.dev.txt, then conlleval's entity F1 on
    wikigold.test.txt; side by side with benchmarks/torch_tagger.py, a PyTorch BiLSTM tagger of the
    same sizes and features on the same batches with the same time budget (the `bench` extra).
    Both sides train with seeds K..K+N-1 (--first-seed, --seeds; a seed fixes the initial weights,
    dropout and batch order; wikigold's test part has 421 entities, so one run's F1 varies by
    2-3 points from seed to seed: 10 seeds by default) and the mean test F1 is compared, with two
    peers: one starting from charlm's own initial weights (the same function, so only dropout
    draws and rounding differ) and one with PyTorch's initialisation (--peer-init). Target:
    charlm >= PyTorch - 1 point.
--crf: taggers with a CRF output layer (`charlm train --crf`). ner: a side of its own
    ("charlm-crf") beside the plain tagger on the same seeds, with the CRF's gain over the plain
    tagger (paired by seed) and over each peer. pos: the tagger (and its ablations) with --crf
    instead of without (the plain tagger's figure is in the README).
--lm-features FWD.npz,BWD.npz: ner: a side of its own ("charlm-lmfeat"), the tagger with those
    character language models' features (benchmarks/bench_lmfeat.py trains them and sums up), and
    with --crf one more ("charlm-crf-lmfeat": both levers). pos: the tagger (and its ablations)
    with the features instead of without. mr: the classifier with the features instead of without.
Figures over seeds are means with their standard errors (sem = std / sqrt(n)); a difference of two
sides carries the standard error sqrt(sem1² + sem2²), and one paired by seed the standard error of
the per-seed differences. A run that stopped at --time-limit rather than by early stopping is
marked "hit_time_limit" (then the figure depends on the machine's load: raise --time-limit).
mr: movie-review polarity (rt-polarity.pos/.neg), 10-fold cross-validation: the 10662 lines
    shuffled with a generator seeded with 0, fold i holds every 10th line from the i-th; each fold
    is tested on after training on the other nine (10 % of them, a seeded share, held out to pick
    the best model by accuracy). The figure is the mean test accuracy over the folds.
    --run-folds K runs K of them from --first-fold F (two halves side by side: their
    result.json files' per_fold lists together are the 10 folds). Target: >= 77 %.
    --lm-finetune LM.npz: ULMFiT's recipe. Each fold first fine-tunes that word language model
    (`charlm train --init-from LM.npz`, its own sizes and tokenizer) for --finetune-steps steps
    on the texts of the fold's training file (labels dropped; never the test fold's), and the
    classifier starts from the result (`--init-from`, with the model's --lowercase).

The EWT and MR files are read from ../shared/data/ (or --data DIR); they are not shipped with
charlm. Every command run is printed first (processes run without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE), so a result can be reproduced by hand. Any option this script does not know
is passed on to `charlm train` (not to the PyTorch peer). The run's directory (models, metrics, log.txt, result.json) is
benchmarks/runs/NAME-DATE/ unless --out says otherwise.
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

import common  # first: it puts this checkout on sys.path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# ../shared/data next to the checkout (or next to the folder of worktrees that holds it)
DEFAULT_DATA = next((p for p in (REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data")
                     if p.exists()), REPO.parent / "shared" / "data")
ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}

# The tagger of the figures: 2-layer bidirectional LSTM, 128 per direction, word embedding
# 100, character encoder 25 + 25 per direction, dropout 0.25 (the default), Adam 3e-3, 32 sentences per batch.
SIZES = ["--layers", "2", "--hidden", "128", "--embedding", "100", "--char-embedding", "25", "--char-hidden", "25",
         "--dropout", "0.25", "--batch-size", "32", "--lr", "3e-3"]  # torch_tagger.py takes these too
MODEL = ["--cell", "lstm", *SIZES, "--epochs", "1000"]
SETUPS = {
    "pos": {"time_limit": 1200, "train": ["--eval-every", "400", "--patience", "6"]},
    "ner": {"time_limit": 300, "train": ["--eval-every", "42", "--patience", "8"]},
    "mr": {"time_limit": 180, "train": ["--split", "whitespace", "--eval-every", "135", "--patience", "6",
                                        "--val-fraction", "0.1"]},
}


def run(cmd: list, log) -> subprocess.CompletedProcess:
    cmd = [str(c) for c in cmd]
    line = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    log.write(f"$ {line}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        print(proc.stdout)
        raise SystemExit(proc.returncode)
    return proc


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


CHARLM = [sys.executable, "-m", "charlm"]


def train_and_eval(name: str, train: Path, test: Path, out: Path, limit: float, args: list, log, val=None) -> dict:
    """Train one model (best one to out/NAME.npz), evaluate it on `test`; the figures."""
    model = out / f"{name}.npz"
    metrics = out / f"{name}.metrics.jsonl"
    started = time.perf_counter()
    run(CHARLM + ["train", train, *(["--val-file", val] if val else []), "-o", model, "--time-limit", limit,
                  "--metrics", metrics, "-q", *args], log)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in open(metrics, encoding="utf-8")]
    report = last_json(run(CHARLM + ["eval", "-m", model, test, "--json"], log))
    best = max(records, key=lambda r: r.get("val_f1", r["val_accuracy"]))
    return {"wall_s": round(wall, 1), "hit_time_limit": records[-1]["elapsed"] >= limit,
            "steps": records[-1]["step"], "epochs": round(records[-1]["epoch"], 2),
            "tokens_per_s": round(records[-1]["tokens_per_s"] or 0), "best_step": best["step"],
            "best_elapsed_s": round(best["elapsed"], 1),
            "dev_accuracy": round(best["val_accuracy"], 4),
            **({"dev_f1": round(best["val_f1"], 4)} if "val_f1" in best else {}), "test": report}


def pos(args, extra, out, log) -> dict:
    d = args.data / "ud-ewt"
    runs = {"charlm": []}
    if args.ablations:
        runs.update({"one-directional": ["--no-bidirectional"], "no-char-encoder": ["--char-hidden", "0"]})
    if args.crf:
        runs = {f"{name}-crf": [*change, "--crf"] for name, change in runs.items()}
    if args.lm_features:
        runs = {f"{name}-lmfeat": [*change, "--lm-features", args.lm_features] for name, change in runs.items()}
    result = {}
    for name, change in runs.items():
        r = train_and_eval(name, d / "en_ewt-ud-train.conllu", d / "en_ewt-ud-test.conllu", out, args.limit,
                           ["--task", "tag", *MODEL, *SETUPS["pos"]["train"], *change, *extra], log,
                           val=d / "en_ewt-ud-dev.conllu")
        r["test_accuracy"] = round(r.pop("test")["accuracy"], 4)
        result[name] = r
    return result


def ner(args, extra, out, log) -> dict:
    d = REPO / "data"
    train, dev, test = d / "wikigold.train.txt", d / "wikigold.dev.txt", d / "wikigold.test.txt"
    inits = [] if args.no_torch else args.peer_init.split(",")
    features = ["--lm-features", args.lm_features] if args.lm_features else []
    ours = {"charlm": [], **({"charlm-crf": ["--crf"]} if args.crf else {}),
            **({"charlm-lmfeat": features} if features else {}),
            **({"charlm-crf-lmfeat": ["--crf", *features]} if args.crf and features else {})}
    sides: dict = {name: [] for name in ours} | {f"pytorch-{init}-init": [] for init in inits}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, change in ours.items():
            r = train_and_eval(f"{name}-seed{seed}", train, test, out, args.limit,
                               ["--task", "tag", *MODEL, *SETUPS["ner"]["train"], "--seed", seed, *change, *extra],
                               log, val=dev)
            report = r.pop("test")
            r.update(seed=seed, test_entity_f1=round(report["entity_f1"], 4),
                     test_accuracy=round(report["accuracy"], 4),
                     test_per_type={k: round(v["f1"], 4) for k, v in report["per_type"].items()})
            sides[name].append(r)
        for init in inits:
            torch_cmd = [sys.executable, HERE / "torch_tagger.py", train, "--val-file", dev, "--test-file", test,
                         "--time-limit", args.limit, *SIZES, *SETUPS["ner"]["train"], "--seed", seed,
                         "--init", init, *(["--threads", args.threads] if args.threads else [])]
            sides[f"pytorch-{init}-init"].append(dict(last_json(run(torch_cmd, log)), seed=seed))
    result = {}
    for name, runs in sides.items():
        f1 = [r["test_entity_f1"] for r in runs]
        result[name] = {"mean_test_entity_f1": round(float(np.mean(f1)), 4),
                        "std": round(float(np.std(f1, ddof=1)), 4) if len(f1) > 1 else None,
                        "sem": _sem(f1), "runs": runs}
    for name in sides:
        for mine in [m for m in ours if m != name]:
            result[name][f"{mine}_minus_this_points"] = _difference(result[mine], result[name],
                                                                   paired=name in ours)
    return result


def _sem(values) -> float | None:
    """The standard error of the mean (None for fewer than two values)."""
    return round(float(np.std(values, ddof=1) / np.sqrt(len(values))), 4) if len(values) > 1 else None


def _difference(a: dict, b: dict, paired: bool) -> dict:
    """Mean test entity F1 of side a minus side b, in points, with its standard error: of the
    per-seed differences when the sides share their seeds' batches and initial weights (paired),
    else sqrt(sem_a² + sem_b²)."""
    fa = np.array([r["test_entity_f1"] for r in a["runs"]])
    fb = np.array([r["test_entity_f1"] for r in b["runs"]])
    if paired:
        se = _sem(fa - fb)
    else:
        se = None if a["sem"] is None or b["sem"] is None else float(np.hypot(a["sem"], b["sem"]))
    return {"points": round(100 * float(fa.mean() - fb.mean()), 2), "se": None if se is None else round(100 * se, 2)}


def mr_folds(data: Path, folds: int, out: Path) -> list[tuple[Path, Path]]:
    """Write fold files (LABEL<TAB>TEXT); [(train, test)] per fold (see the module docstring)."""
    lines = []
    for label in ("pos", "neg"):
        with open(data / "mr" / f"rt-polarity.{label}", encoding="utf-8") as f:
            lines += [f"{label}\t{line.strip()}\n" for line in f if line.strip()]
    order = np.random.default_rng(0).permutation(len(lines))
    pairs = []
    for i in range(folds):
        test_idx = set(order[i::folds].tolist())
        train_p, test_p = out / f"fold{i}.train.tsv", out / f"fold{i}.test.tsv"
        train_p.write_text("".join(l for k, l in enumerate(lines) if k not in test_idx), encoding="utf-8")
        test_p.write_text("".join(lines[k] for k in sorted(test_idx)), encoding="utf-8")
        pairs.append((train_p, test_p))
    return pairs


# --lm-finetune: each fold's fine-tuning of the word language model on its training texts (ULMFiT's
# second step): truncated BPTT over 35 words, 32 streams, a third of the usual Adam rate
FINETUNE = ["--seq-len", "35", "--batch-size", "32", "--dropout", "0.25", "--lr", "1e-3", "--max-vocab", "20000",
            "--eval-every", "100"]


def lm_settings(path: str) -> tuple[list, list]:
    """(the `charlm train` options that rebuild the language model at `path` as it is, the tokenizer
    options a classifier started from it needs): --init-from takes only a model of the same settings."""
    import charlm
    lm = charlm.load(path)
    c, tok = lm.network.config, lm.vocab.tokenizer
    if tok.level != "word":
        raise SystemExit(f"bench_tasks: --lm-finetune {path} is a {tok.level}-level language model; the "
                         f"classifier reads words")
    reading = ["--split", tok.split, *(["--lowercase"] if tok.lowercase else [])]
    model = ["--level", "word", "--cell", c.cell, "--layers", c.layers, "--hidden", c.hidden, "--embedding",
             c.embedding, *(["--tie-weights"] if c.tie_weights else [])]
    return [*model, *reading], reading


def finetune(i: int, train: Path, out: Path, lm: str, lm_args: list, steps: int, log) -> tuple[Path, float]:
    """Fine-tune `lm` for `steps` steps on the texts of fold i's training file; (the model, seconds)."""
    text = out / f"fold{i}.text.txt"
    with open(train, encoding="utf-8") as f:
        text.write_text("".join(line.split("\t", 1)[1] for line in f), encoding="utf-8")
    model = out / f"fold{i}.lm.npz"
    started = time.perf_counter()
    run(CHARLM + ["train", text, "--init-from", lm, "-o", model, "--max-steps", steps, "--metrics",
                  out / f"fold{i}.lm.metrics.jsonl", "-q", *lm_args, *FINETUNE], log)
    return model, round(time.perf_counter() - started, 1)


def mr(args, extra, out, log) -> dict:
    first = args.first_fold
    if not 0 <= first < args.folds:
        raise SystemExit(f"bench_tasks: --first-fold {first} is not one of folds 0..{args.folds - 1}")
    folds = mr_folds(args.data, args.folds, out)
    features = ["--lm-features", args.lm_features] if args.lm_features else []
    lm_args, reading = lm_settings(args.lm_finetune) if args.lm_finetune else ([], [])
    per_fold = []
    for i in range(first, min(args.folds, first + (args.run_folds or args.folds))):
        train, test = folds[i]
        transfer, tuned = [], {}
        if args.lm_finetune:
            lm, seconds = finetune(i, train, out, args.lm_finetune, lm_args, args.finetune_steps, log)
            transfer, tuned = ["--init-from", lm, *reading], {"finetune_s": seconds}
        r = train_and_eval(f"fold{i}", train, test, out, args.limit, ["--task", "classify", *MODEL,
                                                                      *SETUPS["mr"]["train"], *features, *transfer,
                                                                      *extra], log)
        r["test_accuracy"] = round(r.pop("test")["accuracy"], 4)
        r.update(tuned)
        per_fold.append({"fold": i, **r})
        print(json.dumps(per_fold[-1]), flush=True)
    accs = [r["test_accuracy"] for r in per_fold]
    return {"folds": len(per_fold), "of": args.folds, "first_fold": first,
            "mean_test_accuracy": round(float(np.mean(accs)), 4), "std": round(float(np.std(accs)), 4),
            "per_fold": per_fold}


def main() -> int:
    common.prepare()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # an abbreviation would swallow `charlm train --seed` as --seeds
    parser.add_argument("setup", choices=sorted(SETUPS))
    parser.add_argument("--time-limit", dest="limit", type=float, default=None,
                        help="seconds of training per model (default: the target's)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with ud-ewt/ and mr/")
    parser.add_argument("--out", type=Path, default=None, help="run directory")
    parser.add_argument("--ablations", action="store_true", help="pos: also --no-bidirectional and --char-hidden 0")
    parser.add_argument("--no-torch", action="store_true", help="ner: charlm alone")
    parser.add_argument("--seeds", type=int, default=10, help="ner: runs per side, seeds K..K+N-1 (the means are compared)")
    parser.add_argument("--first-seed", type=int, default=0, help="ner: the first seed K (default 0)")
    parser.add_argument("--peer-init", default="charlm,torch",
                        help="ner: the PyTorch peers, by initialisation: charlm (charlm's initial weights), torch "
                             "(PyTorch's own), or both (the default)")
    parser.add_argument("--crf", action="store_true",
                        help="ner: also train each charlm tagger with a CRF output layer (side charlm-crf); "
                             "pos: train the taggers with it")
    parser.add_argument("--lm-features", default=None, metavar="FWD.npz,BWD.npz",
                        help="ner: also train each charlm tagger with these language models' features (side "
                             "charlm-lmfeat); pos, mr: train with them")
    parser.add_argument("--lm-finetune", default=None, metavar="LM.npz",
                        help="mr: per fold, fine-tune this word language model on the fold's training texts, then "
                             "start the classifier from it (--init-from)")
    parser.add_argument("--finetune-steps", type=int, default=1000, help="mr: steps of each fold's fine-tuning")
    parser.add_argument("--folds", type=int, default=10, help="mr: folds of the cross-validation")
    parser.add_argument("--run-folds", type=int, default=None, help="mr: run only K folds (a short check)")
    parser.add_argument("--first-fold", type=int, default=0, help="mr: ... from this one (0-based; default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/PyTorch threads per training process (default: the libraries' own choice)")
    args, extra = parser.parse_known_args()
    args.limit = args.limit or SETUPS[args.setup]["time_limit"]
    if args.crf and args.setup == "mr":
        print("bench_tasks: --crf is for the taggers (pos, ner), not for mr", file=sys.stderr)
        return 2
    if args.lm_finetune and args.setup != "mr":
        print("bench_tasks: --lm-finetune is for mr (the classifier)", file=sys.stderr)
        return 2
    if args.threads:
        ENV.update(OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    needs = {"pos": args.data / "ud-ewt", "mr": args.data / "mr", "ner": REPO / "data"}[args.setup]
    if not needs.exists():
        print(f"bench_tasks: {needs} not found (pass --data DIR)", file=sys.stderr)
        return 2
    out = args.out or HERE / "runs" / f"{args.setup}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    extra = [a for a in extra if a != "--"]
    with open(out / "log.txt", "a", encoding="utf-8") as log:
        gemm = common.gemm_peak(quick=True)["gflops"]
        torch = common.torch_or_none(args.no_torch or args.setup != "ner", threads=args.threads or 2)
        for line in [*common.machine_lines(torch), f"float32 GEMM (n = 1024): {gemm:.1f} GFLOP/s", f"run directory: {out}"]:
            print(line, flush=True)
            log.write(line + "\n")
        result = {"setup": args.setup, "time_limit_s": args.limit, "threads": args.threads,
                  **{"pos": pos, "ner": ner, "mr": mr}[args.setup](args, extra, out, log)}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

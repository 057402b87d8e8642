"""Character-LM features for NER (`charlm train --task tag --lm-features FWD.npz,BWD.npz`, issue 22):
the unlabelled text, the two language models, and the wikigold figures with and without features.

    python benchmarks/bench_lmfeat.py corpus --out DIR               # DIR/lm-text.txt
    python benchmarks/bench_lmfeat.py lm fwd|bwd --out DIR --max-steps N [--threads 1] [charlm train options]
    python benchmarks/bench_tasks.py ner --no-torch --lm-features DIR/fwd.npz,DIR/bwd.npz --threads 1 \\
        --time-limit 1800 --first-seed K --seeds N --out DIR/ner-K   # (several side by side, other K)
    python benchmarks/bench_lmfeat.py summary DIR/ner-*              # the seeds of every run, paired
    python benchmarks/bench_tasks.py mr --lm-features DIR/fwd.npz,DIR/bwd.npz --threads 1 --out DIR/mr-feat
    python benchmarks/bench_lmfeat.py summary DIR/mr-plain DIR/mr-feat DIR/mr-init   # paired by fold

corpus: the unlabelled text the language models read, one running text (stream mode): WikiText-2's
    valid and test files (tokenized, "<unk>" as written), then the words of wikigold's training part
    (data/wikigold.train.txt; never its dev or test part) and of UD EWT's training file, a sentence
    per line, words joined by single spaces (as the tagger's features read a sentence). Read from
    ../shared/data/ (or --data DIR).
lm: `charlm train` of the forward model (fwd) or the backward one (bwd: --reverse, the same text read
    right to left) on that text: a one-layer LSTM of 256 units, --max-steps N (step-bound: the
    figures do not depend on the machine's load), the last 131072 characters held out.
summary: bench_tasks.py's result.json files of `ner` runs (each a range of seeds): the mean test
    entity F1 of each side over all the seeds, with its standard error, and each lever's gain
    (features, CRF with features, CRF) over the plain tagger paired by seed (the two share each seed's initial weights of the common
    parameters, batches and dropout draws: `bench_tasks._difference`). Given `mr` runs instead (one
    lever each, e.g. plain, --lm-features, --init-from), the first directory is the baseline: each
    run's mean test accuracy over its folds and its gain over the baseline paired by fold (the folds
    are the same seeded split in every run); DIR1+DIR2 joins the folds of one lever run in parts
    (`bench_tasks.py mr --first-fold F --run-folds K`).

Every command run is printed first (bench_tasks.run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import common  # noqa: F401  (first: it puts this checkout on sys.path)
from bench_tasks import CHARLM, DEFAULT_DATA, ENV, REPO, _difference, _sem, run
from charlm.sentence.formats import read_tagged

LM = ["--cell", "lstm", "--layers", "1", "--hidden", "256", "--embedding", "32", "--seq-len", "100",
      "--batch-size", "32", "--eval-every", "500"]


def corpus(args) -> None:
    out = args.out / "lm-text.txt"
    with open(out, "w", encoding="utf-8") as f:
        for name in ("valid", "test"):
            f.write((args.data / "wikitext-2" / f"{name}.txt").read_text(encoding="utf-8"))
        for path in (REPO / "data" / "wikigold.train.txt", args.data / "ud-ewt" / "en_ewt-ud-train.conllu"):
            for s in read_tagged(str(path)).sentences:
                f.write(" ".join(s.tokens) + "\n")
    print(f"{out}: {out.stat().st_size:,} bytes")


def lm(args, extra) -> None:
    with open(args.out / f"{args.direction}.log.txt", "a", encoding="utf-8") as log:
        run(CHARLM + ["train", args.out / "lm-text.txt", "-o", args.out / f"{args.direction}.npz", *LM,
                      "--max-steps", args.max_steps, "--metrics", args.out / f"{args.direction}.metrics.jsonl",
                      *(["--reverse"] if args.direction == "bwd" else []), "-q", *extra], log)


def mr_summary(groups: list[list[Path]], results: dict) -> None:
    """MR runs, one lever each (a lever's folds may be split over several runs, DIR1+DIR2): the first
    is the baseline; each lever's gain over it paired by fold. results: each run's result.json."""
    runs = {"+".join(d.name for d in dirs): {r["fold"]: r for d in dirs for r in results[d]["per_fold"]}
            for dirs in groups}
    base_name, base = next(iter(runs.items()))
    for name, folds in runs.items():
        acc = [folds[f]["test_accuracy"] for f in sorted(folds)]
        line = (f"{name}: folds {sorted(folds)}: mean test accuracy {100 * np.mean(acc):.2f} % "
                f"(± {100 * np.std(acc):.2f} across folds); median wall "
                f"{np.median([r['wall_s'] for r in folds.values()]):.0f} s; "
                f"{sum(r['hit_time_limit'] for r in folds.values())} stopped by the time limit")
        both = sorted(set(folds) & set(base))
        if name != base_name and both:
            gain = np.array([folds[f]["test_accuracy"] - base[f]["test_accuracy"] for f in both])
            line += (f"; minus {base_name}, paired by fold: {100 * gain.mean():+.2f} ± "
                     f"{100 * (_sem(gain) or 0):.2f} points, better on {int((gain > 0).sum())} of {len(both)} folds")
        print(line)


def summary(args) -> None:
    groups = [[Path(part) for part in str(arg).split("+")] for arg in args.runs]
    unfinished = [str(d) for dirs in groups for d in dirs if not (d / "result.json").is_file()]
    if unfinished:
        raise SystemExit(f"bench_lmfeat summary: no result.json (not a finished run) in {', '.join(unfinished)}")
    results = {d: json.loads((d / "result.json").read_text()) for dirs in groups for d in dirs}
    setups = {result.get("setup") for result in results.values()}
    if len(setups) > 1:
        raise SystemExit(f"bench_lmfeat summary: the runs are of different setups ({', '.join(map(str, setups))})")
    if setups == {"mr"}:
        return mr_summary(groups, results)
    sides: dict = {}
    for result in results.values():
        for name, side in result.items():
            if isinstance(side, dict) and "runs" in side:
                sides.setdefault(name, {}).update({r["seed"]: r for r in side["runs"]})
    table = {}
    for name, by_seed in sides.items():
        f1 = [by_seed[s]["test_entity_f1"] for s in sorted(by_seed)]
        table[name] = {"seeds": sorted(by_seed), "mean_test_entity_f1": round(float(np.mean(f1)), 4), "sem": _sem(f1),
                       "runs": [by_seed[s] for s in sorted(by_seed)],
                       "hit_time_limit": sum(r["hit_time_limit"] for r in by_seed.values()),
                       "median_wall_s": float(np.median([r["wall_s"] for r in by_seed.values()]))}
    pairs = [(a, b) for a, b in (("charlm-lmfeat", "charlm"), ("charlm-crf-lmfeat", "charlm"),
                                 ("charlm-crf-lmfeat", "charlm-lmfeat"), ("charlm-crf", "charlm"))
             if a in table and b in table]
    for a, b in pairs:              # a side's gain over another, paired by the seeds both ran
        common_seeds = sorted(set(table[a]["seeds"]) & set(table[b]["seeds"]))
        pick = {n: {"runs": [r for r in table[n]["runs"] if r["seed"] in common_seeds]} for n in (a, b)}
        key = f"{a.removeprefix('charlm-')}_minus_{b.removeprefix('charlm-') if b != 'charlm' else 'plain'}_points"
        table[key] = _difference(pick[a], pick[b], paired=True)
        better = sum(x["test_entity_f1"] > y["test_entity_f1"] for x, y in zip(pick[a]["runs"], pick[b]["runs"]))
        table[key].update(seeds=common_seeds, better_on=f"{better} of {len(common_seeds)} seeds")
    for name, side in table.items():
        if "runs" in side:
            print(f"{name}: {len(side['seeds'])} seeds {side['seeds']}: test entity F1 "
                  f"{100 * side['mean_test_entity_f1']:.2f} ± {100 * (side['sem'] or 0):.2f} (sem); "
                  f"median wall {side['median_wall_s']:.0f} s; {side['hit_time_limit']} stopped by the time limit")
    print(json.dumps({k: v for k, v in table.items() if "runs" not in v}, indent=2))


def main() -> int:
    common.prepare()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # the options passed on stay whole
    sub = parser.add_subparsers(dest="stage", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with wikitext-2/ and ud-ewt/")
    m = sub.add_parser("lm")
    m.add_argument("direction", choices=("fwd", "bwd"))
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--max-steps", type=int, required=True)
    m.add_argument("--threads", type=int, default=None, help="BLAS threads of the training process")
    s = sub.add_parser("summary")
    s.add_argument("runs", type=Path, nargs="+", help="bench_tasks.py ner (or mr) run directories")
    args, extra = parser.parse_known_args()
    lines = common.machine_lines()
    if args.stage == "lm":
        lines.append(f"float32 GEMM (n = 1024): {common.gemm_peak(quick=True)['gflops']:.1f} GFLOP/s")
    for line in lines:
        print(line, flush=True)
    if args.stage == "summary":
        summary(args)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "corpus":
        corpus(args)
    else:
        if args.threads:
            ENV.update(OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
        lm(args, [a for a in extra if a != "--"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every charlm speed benchmark and write one markdown report to stdout and benchmarks/results.md.

    python benchmarks/run_all.py [--quick] [--cells lstm,gru] [--configs a,b,c,d] [--no-torch]
                                 [--only train|regularize|score|api|tagger] [--output PATH]

Progress lines go to stderr; the report (machine header, table, notes) to stdout and the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import common
import bench_api
import bench_regularize
import bench_score_sample
import bench_tagger
import bench_train_step

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    common.prepare()
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--only", choices=("train", "regularize", "score", "api", "tagger"), default=None,
                   help="run only the training-step, the regulariser-cost, the score/sample, the Python API or "
                        "the tagger benchmark")
    p.add_argument("--output", default=str(HERE / "results.md"),
                   help="markdown file to write (default benchmarks/results.md; '-' for none)")
    args = p.parse_args(argv)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    torch = common.torch_or_none(args.no_torch, args.torch_threads)
    header = common.machine_lines(torch)
    for line in header:
        log(line)
    t0 = time.perf_counter()
    rows, notes = [], []
    if args.only in (None, "train"):
        r, n = bench_train_step.run(args, log=log)
        rows += r
        notes += n
    if args.only in (None, "regularize"):
        r, n = bench_regularize.run(args, log=log)
        rows += r
        notes += n
    if args.only in (None, "score"):
        r, n = bench_score_sample.run(args, log=log)
        rows += r
        notes += n
    if args.only in (None, "api"):
        r, n = bench_api.run(args, log=log)
        rows += r
        notes += n
    if args.only in (None, "tagger"):
        r, n = bench_tagger.run(args, log=log)
        rows += r
        notes += n
    elapsed = time.perf_counter() - t0
    load_end = common.machine_lines(torch)
    load_end = [s for s in load_end if s.startswith("load average")]

    cmd = "python benchmarks/run_all.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    lines = [
        "# charlm speed benchmarks",
        "",
        f"Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} with `{cmd}` ({elapsed:.0f} s).",
        "",
        *[f"- {s}" for s in header],
        *[f"- at the end: {s}" for s in load_end],
        "",
        common.markdown_table(rows),
        "",
        "tok/s = tokens per second (median over timed steps); ratio = charlm / PyTorch; "
        "GFLOP/s and % GEMM peak: charlm's training step (FLOPs counted analytically, see "
        "bench_train_step.py).",
        "",
        *[f"- {s}" for s in notes],
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.output != "-":
        Path(args.output).write_text(report, encoding="utf-8")
        log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

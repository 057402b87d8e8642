"""The exported language model in ONNX Runtime against charlm's own forward pass (float32, CPU).

Same model (random weights, seed 0), same machine, one run, the two sides interleaved
(common.interleaved_times); figures are medians after warm-up, tokens/s.

    score   a batch of B=32 windows of T tokens (T = the configuration's), the state carried from
            window to window; both sides give the log-probabilities (T, B, V):
              charlm:        lp, state = model.log_probs(x, state)
              ONNX Runtime:  logits, *state = session.run(None, {"tokens": x, "a0": ..., "c0": ...});
                             log-softmax in NumPy
    sample  one stream, 200 tokens one at a time, the state carried, the next token = argmax:
              charlm:        logits, state = model.step(ids, state)
              ONNX Runtime:  session.run with tokens (1, 1)

Threads: --threads N (default 1) for both sides: OPENBLAS_NUM_THREADS for NumPy (set before NumPy
loads) and intra_op_num_threads for ONNX Runtime.

Usage:  python benchmarks/bench_export.py [--threads 1] [--cells lstm,gru] [--configs b,d] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads(argv) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_known_args(argv)[0].threads


THREADS = _threads(sys.argv[1:])
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(THREADS)   # before NumPy loads

import numpy as np  # noqa: E402

import common  # noqa: E402  (puts this checkout on sys.path)
from common import CONFIGS  # noqa: E402

from charlm.export import check as checking  # noqa: E402
from charlm.export import onnxfile  # noqa: E402
from charlm.lm.model import LanguageModel, ModelConfig  # noqa: E402
from charlm.nn.layers import log_softmax  # noqa: E402
from charlm.tasks.lm import LM  # noqa: E402
from charlm.text.vocab import Vocab  # noqa: E402

SCORE_BATCH = 32
GEN_LENGTH = 200


def exported(cfg: dict, cell: str):
    """(charlm model, ONNX Runtime session) of one model: random weights, V ids."""
    model = LanguageModel(ModelConfig(vocab_size=cfg["V"], cell=cell, layers=cfg["L"], hidden=cfg["H"],
                                      embedding=cfg["E"], dropout=0.0), seed=0)
    vocab = Vocab(["<UNK>", "<EOS>"] + [f"t{i}" for i in range(cfg["V"] - 2)], [1] * cfg["V"])
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.log_severity_level = 3
    proto = onnxfile.export_model(LM(model, vocab, {}))
    return model, ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def score_fns(model, sess, T: int, B: int):
    rng = np.random.default_rng(1)
    x = rng.integers(0, model.config.vocab_size, size=(T, B))
    names = [i.name for i in sess.get_inputs()][1:]
    L, H = model.config.layers, model.config.hidden
    box = {"charlm": model.init_state(B), "onnx": {n: np.zeros((L, B, H), np.float32) for n in names}}

    def charlm():
        _, box["charlm"] = model.log_probs(x, box["charlm"])

    def onnx():
        logits, *state = sess.run(None, {"tokens": x, **box["onnx"]})
        log_softmax(logits)
        box["onnx"] = dict(zip(names, state))

    return {"charlm": charlm, "onnx": onnx}


def sample_fns(model, sess, N: int):
    names = [i.name for i in sess.get_inputs()][1:]
    L, H = model.config.layers, model.config.hidden

    def charlm():
        state, ids = model.init_state(1), np.array([1])
        for _ in range(N):
            logits, state = model.step(ids, state)
            ids = logits.argmax(axis=1)

    def onnx():
        state, ids = {n: np.zeros((L, 1, H), np.float32) for n in names}, np.array([[1]])
        for _ in range(N):
            logits, *s = sess.run(None, {"tokens": ids, **state})
            state, ids = dict(zip(names, s)), logits[0].argmax(axis=1)[None]

    return {"charlm": charlm, "onnx": onnx}


def main(argv=None) -> int:
    common.prepare()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="threads per side (default 1)")
    p.add_argument("--cells", default="lstm,gru")
    p.add_argument("--configs", default="b,d", help="configurations of benchmarks/common.py (default b,d)")
    p.add_argument("--quick", action="store_true", help="1 warm-up + 3 timed calls (rough)")
    args = p.parse_args(argv)
    try:
        import onnxruntime
    except ImportError:
        print(checking.INSTALL_HINT)
        return 1
    print("command: " + " ".join([os.path.basename(sys.executable), *sys.orig_argv[1:]]))
    for line in common.machine_lines(None)[:-1]:
        print(line)
    print(f"float32 GEMM peak: {common.gemm_peak(quick=args.quick)['gflops']:.1f} GFLOP/s; onnxruntime "
          f"{onnxruntime.__version__}, threads per side: {THREADS}")
    warm, steps = (1, 3) if args.quick else (3, 10)
    rows = []
    for name in common.parse_list(args.configs, list(CONFIGS), "configuration"):
        cfg = CONFIGS[name]
        for cell in common.parse_list(args.cells, ("lstm", "gru", "rnn"), "cell"):
            model, sess = exported(cfg, cell)
            label = f"{common.config_label(name)} {cell}"
            for what, fns, tokens in (("score", score_fns(model, sess, cfg["T"], SCORE_BATCH), cfg["T"] * SCORE_BATCH),
                                      ("sample", sample_fns(model, sess, GEN_LENGTH), GEN_LENGTH)):
                times = common.interleaved_times(fns, warm, steps, budget_s=common.CASE_BUDGET_S)
                tps = {k: tokens / common.median(v) for k, v in times.items()}
                case = f"{label}, " + (f"B={SCORE_BATCH} T={cfg['T']}" if what == "score" else
                                      f"B=1, {GEN_LENGTH} tokens") + common.cut_short(times, steps)
                rows.append((what, case, tps["charlm"], tps["onnx"]))
                print(f"[{what}] {case}: charlm {tps['charlm']:,.0f} tok/s, ONNX Runtime {tps['onnx']:,.0f} tok/s",
                      file=sys.stderr, flush=True)
    print("\n| benchmark | case (V/E/H/layers/B/T) | charlm tok/s | ONNX Runtime tok/s | ONNX Runtime / charlm |")
    print("|---|---|---:|---:|---:|")
    for what, case, c, o in rows:
        print(f"| {what} | {case} | {c:,.0f} | {o:,.0f} | {o / c:.2f}× |")
    print(f"- {warm} warm-up + {steps} timed calls per side, interleaved; medians")
    return 0


if __name__ == "__main__":
    sys.exit(main())

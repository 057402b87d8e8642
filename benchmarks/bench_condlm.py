"""The conditional language model (issue 21): per-label perplexity against the unconditional model,
the generative (Bayes) classifier, samples given a label, and the two ways of feeding the label.

    python benchmarks/bench_condlm.py mr     [--steps 2700] [--threads 1]     # (a) MR given polarity
    python benchmarks/bench_condlm.py mr-cv  [--run-folds K] [--first-fold F] # (b) Bayes classifier on MR
    python benchmarks/bench_condlm.py dinos  [--steps 1500] [--seeds 3]       # (c) + (d) dinosaur names
    python benchmarks/bench_condlm.py speakers [--steps 600]                   # (e) tiny Shakespeare given the speaker
    python benchmarks/bench_condlm.py train FILE --out DIR [...]              # one model (what the others run)

mr: the movie-review snippets (rt-polarity.pos/.neg, ../shared/data/mr or --data DIR), labelled pos
    and neg, split as fold 0 of benchmarks/bench_tasks.py mr (the same 10 % test lines): a
    character-level conditional GRU (--condition-input every, and first) and an unconditional GRU
    of the same sizes are trained on the same texts with the same batches and steps (the best of the evaluations on a seeded 10 % of
    the training texts); the figure is the perplexity per character (<EOS> included) of the test
    texts, per label, each text scored from its label's state (conditional) or from a<0> = 0;
    then samples of both models.
mr-cv: the generative classifier argmax_c log P(text | c) + log P(c) on the folds of
    bench_tasks.py mr (10-fold cross-validation; --run-folds K runs K of them from --first-fold F;
    fold 0's model is mr's "every" model), next to the
    discriminative classifier's 76.13 % (README, the same folds).
dinos: data/dinos.txt labelled by what a reader sees, "saurus" (the name ends in -saurus) or
    "other": a tiny model, both --condition-input every and first, --seeds seeds each, the
    unconditional model, and a control with the training labels shuffled among the names (the
    conditional model's parameters, no information in the label); figures: held-out nats per character, the Bayes classifier's accuracy
    and how often samples of each label keep to it (a "saurus" sample ends in -saurus, an "other"
    one does not).
speakers: tiny Shakespeare (../shared/data/tinyshakespeare/input.txt) as one line per speech,
    SPEAKER<TAB>speech (benchmarks/shakespeare_speakers.py: the 20 speakers with the most speeches,
    the rest OTHER), a seeded 10 % of the speeches held out. The conditional model is trained in
    the stream form (`charlm train --condition --mode stream`: each speaker's speeches as one
    running text in --seq-len windows, the state carried), the unconditional one of the same
    sizes with `charlm train --mode stream` on the same speeches without their labels, grouped by
    speaker in the same order (so both read the same running texts); both --max-steps steps,
    the best of the evaluations. Figures: nats per character of the held-out speeches, each
    speaker's read as one running text (`charlm eval` given the true speaker; `charlm score
    --stream` for the unconditional model, the state carried across), and the generative
    classifier's accuracy over the 21 labels.

The `train` subcommand drives the training engine from Python (charlm.engine's Run and Trainer over
the conditional model's batch source, tasks/conditional.py), as `charlm train --condition` does, so
that the unconditional baseline reads the very same padded batches of whole texts (every text from
a<0> = 0), which `charlm train --mode lines` (streams of windows) would not. Comparisons are step-bound (--steps, evaluations
every --eval-every steps pick the best), so they do not depend on the machine's load; wall times
are reported apart. Every command is printed first; processes run without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE, with --threads BLAS threads. The run's folder is benchmarks/runs/condlm-NAME-DATE/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from bench_tasks import CHARLM, DEFAULT_DATA, ENV, REPO, last_json, mr_folds, run  # noqa: E402

DISCRIMINATIVE_MR = 0.7613   # README: bench_tasks.py mr, 10-fold mean test accuracy
SIZES = {"mr": dict(cell="gru", layers=1, hidden=256, embedding=64, label_embedding=32),
         "dinos": dict(cell="gru", layers=1, hidden=64, embedding=16, label_embedding=8),
         "speakers": dict(cell="gru", layers=1, hidden=128, embedding=32, label_embedding=16)}


# ------------------------------------------------------------------------------------- one model

def train_main(argv) -> int:
    """Train one model on a labelled file, then print its figures as one JSON line."""
    p = argparse.ArgumentParser(prog="bench_condlm.py train")
    p.add_argument("file")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--test", help="held-out labelled texts: per-label perplexity, Bayes accuracy")
    p.add_argument("--unconditional", action="store_true", help="the LanguageModel on the same texts")
    p.add_argument("--condition-input", default="every", choices=("every", "first"))
    for name, default in (("cell", "gru"), ("layers", 2), ("hidden", 256), ("embedding", 64),
                          ("label-embedding", 32), ("batch-size", 32), ("steps", 3000), ("eval-every", 200),
                          ("patience", 5), ("seed", 0), ("samples", 8), ("length", 200)):
        p.add_argument(f"--{name}", type=type(default), default=default)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-decay", type=float, default=0.5, help="on a plateau (the engine's); 0.9999: a fixed rate")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=0.8)
    a = p.parse_args(argv)
    common.prepare()
    print(json.dumps(train_one(a)))
    return 0


def train_one(a) -> dict:
    from charlm.checkpoint import load_checkpoint
    from charlm.engine.batches import Evaluation
    from charlm.engine.loop import Trainer
    from charlm.engine.optim import make_optimizer
    from charlm.engine.parallel import SingleProcess
    from charlm.engine.progress import Reporter
    from charlm.engine.run import Run
    from charlm.engine.state import TrainState
    from charlm.lm import generate
    from charlm.lm.bayes import bayes_classify
    from charlm.lm.conditional import CondConfig, ConditionalLM
    from charlm.lm.labelled import LinesValidation
    from charlm.lm.model import LanguageModel, ModelConfig
    from charlm.lm.scoring import score_token_lists
    from charlm.tasks.conditional import batch_source, read_conditional
    from charlm.tasks.conditional import prepare as prepare_condlm_data
    from charlm.tasks.training import TrainOptions
    from charlm.text.tokenizer import Tokenizer, TokenizerConfig

    class LinesLM(LanguageModel):
        """The unconditional baseline on the same padded batches: every text from a<0> = 0."""

        def loss(self, batch, state=None, train=False, rng=None):
            return LanguageModel.loss(self, batch.x, batch.y, self.init_state(batch.x.shape[1]), batch.mask,
                                      train, rng)

    class UnconditionalValidation:
        def __init__(self, vocab, token_lists):
            self.vocab, self.token_lists = vocab, token_lists

        def evaluate(self, model, comm):
            scores = score_token_lists(model, self.vocab, self.token_lists)
            loss = -sum(s.logprob for s in scores) / sum(s.n_tokens for s in scores)
            return Evaluation(loss, loss)

    a.out.mkdir(parents=True, exist_ok=True)
    name = "unconditional" if a.unconditional else f"conditional-{a.condition_input}"
    opts = TrainOptions(corpus=a.file, output=str(a.out / f"{name}-seed{a.seed}.npz"), batch_size=a.batch_size,
                        lr=a.lr, lr_decay=a.lr_decay, eval_every=a.eval_every, patience=a.patience, seed=a.seed, epochs=10 ** 6,
                        max_steps=a.steps, metrics=str(a.out / f"{name}-seed{a.seed}.metrics.jsonl"), force=True)
    if os.path.exists(opts.metrics):
        os.remove(opts.metrics)
    state = TrainState(rng=np.random.default_rng(a.seed + 1))
    data = prepare_condlm_data(a.file, TokenizerConfig(level="char"), val_fraction=a.val_fraction, seed=a.seed)
    sizes = dict(vocab_size=len(data.vocab), cell=a.cell, layers=a.layers, hidden=a.hidden, embedding=a.embedding,
                 dropout=a.dropout)
    if a.unconditional:
        model = LinesLM(ModelConfig(**sizes), seed=a.seed)
        validation = UnconditionalValidation(data.vocab, data.val_tokens)
    else:
        model = ConditionalLM(CondConfig(**sizes, num_labels=len(data.labels), label_embedding=a.label_embedding,
                                         condition_input=a.condition_input), seed=a.seed)
        validation = LinesValidation(data.vocab, data.val_tokens, data.val_labels)
    source = batch_source(data, a.batch_size, a.seed, state)
    run_ = Run(opts, model, data.vocab, source, validation, make_optimizer("adam", a.lr), state, {})
    trainer = Trainer(run_, Reporter(), SingleProcess())
    started, reason = time.perf_counter(), None
    while reason is None and state.step < a.steps:            # engine.loop.train's loop
        for batch in source.batches(state.position):
            trainer.step(batch)
            if state.step % a.eval_every == 0 and trainer.evaluate():
                reason = "early stop"
                break
            if state.step >= a.steps:
                break
        else:
            trainer.end_epoch()
    trainer.finish()
    wall, reason = time.perf_counter() - started, reason or "max steps"
    best = {k[len("param/"):]: v for k, v in load_checkpoint(opts.output)[0].items() if k.startswith("param/")}
    model = type(model)(model.config, params=best)
    result = {"model": name, "params": model.num_params(), "seed": a.seed, "steps": state.step, "stop": reason,
              "best_step": state.best_step, "val_nats_per_char": round(state.saved_val_loss, 4),
              "epochs": round(state.step / source.steps_per_epoch(), 2), "wall_s": round(wall, 1),
              "chars_per_s": round(state.tokens_seen / wall), "labels": data.labels.names,
              "train_texts": len(data.train), "val_texts": len(data.val_tokens)}
    if a.test:
        tokens, names, _ = read_conditional(a.test, data.vocab.tokenizer)
        labels = np.array([data.labels.id(n) for n in names])
        if a.unconditional:                                    # -log P(text), -log P(text | its label)
            per_text = -np.array([s.logprob for s in score_token_lists(model, data.vocab, tokens)])
        else:
            bayes = bayes_classify(model, data.vocab, tokens, data.labels.log_prior())
            per_text = -bayes.loglik[np.arange(len(tokens)), labels]
            result["test_bayes_accuracy"] = round(float(np.mean(bayes.labels == labels)), 4)
        np.save(a.out / f"{name}-seed{a.seed}.test_nats.npy", per_text)
        nats = np.array([per_text[labels == k].sum() for k in range(len(data.labels))])
        count = np.array([sum(len(t) + 1 for t, c in zip(tokens, labels) if c == k) for k in range(len(data.labels))])
        result["test_texts"] = len(tokens)
        result["test_nats_per_char"] = round(float(nats.sum() / count.sum()), 4)
        result["test_perplexity_by_label"] = {n: round(math.exp(nats[k] / count[k]), 4)
                                              for k, n in enumerate(data.labels.names)}
    tok = Tokenizer(data.vocab.tokenizer)
    prime = generate.Prime.from_text(tok, "")
    rng = np.random.default_rng(a.seed)
    given = {"(none)": model} if a.unconditional else {n: model.given(k) for k, n in enumerate(data.labels.names)}
    result["samples"] = {n: [s.text for s in generate.samples(m, data.vocab, tok, prime, num=a.samples, length=a.length,
                                                              temperature=a.temperature, rng=rng)]
                         for n, m in given.items()}
    return result


# ----------------------------------------------------------------------------------- the setups

def train_cmd(file, out, *args) -> list:
    return [sys.executable, HERE / "bench_condlm.py", "train", file, "--out", out, *args]


def run_all(cmds: list, log, jobs: int) -> list[dict]:
    """The JSON results of training commands, `jobs` of them at a time (each printed as it starts)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda cmd: last_json(run(cmd, log)), cmds))


def size_args(setup: str) -> list:
    return [x for k, v in SIZES[setup].items() for x in (f"--{k.replace('_', '-')}", v)]


def paired(out: Path, seed: int, name: str) -> dict:
    """Per held-out text, -log P(text | label) of model `name` minus -log P(text) of the
    unconditional one (nats): mean, its standard error, and how many texts are more likely."""
    d = np.load(out / f"{name}-seed{seed}.test_nats.npy") - np.load(out / f"unconditional-seed{seed}.test_nats.npy")
    return {"mean_nats_per_text": round(float(d.mean()), 4), "standard_error": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4),
            "texts_more_likely": round(float(np.mean(d < 0)), 4)}


def mr(a, out, log) -> dict:
    train, test = mr_folds(a.data, 10, out)[0]
    common_args = ["--test", test, *size_args("mr"), "--steps", a.steps, "--eval-every", a.eval_every,
                   "--seed", a.seed, "--lr-decay", a.lr_decay]
    every, uncond, first = run_all([train_cmd(train, out, *common_args, "--condition-input", "every"),
                                    train_cmd(train, out, *common_args, "--unconditional"),   # with --jobs 2: these two first
                                    train_cmd(train, out, *common_args, "--condition-input", "first")], log, a.jobs)
    return {"every": every, "first": first, "unconditional": uncond,
            "lower_by_label": {mode: {n: r["test_perplexity_by_label"][n] < uncond["test_perplexity_by_label"][n]
                                      for n in r["labels"]} for mode, r in (("every", every), ("first", first))},
            "paired_difference": {mode: paired(out, a.seed, f"conditional-{mode}") for mode in ("every", "first")}}


def mr_cv(a, out, log) -> dict:
    first = a.first_fold
    folds = mr_folds(a.data, a.folds, out)[first:first + (a.run_folds or a.folds)]
    cmds = [train_cmd(train, out / f"fold{first + i}", "--test", test, *size_args("mr"), "--steps", a.steps,
                      "--eval-every", a.eval_every, "--seed", a.seed, "--samples", 2) for i, (train, test) in enumerate(folds)]
    keep = ("test_bayes_accuracy", "best_step", "steps", "wall_s", "test_nats_per_char", "val_nats_per_char")
    per_fold = [{"fold": first + i, **{k: r[k] for k in keep}} for i, r in enumerate(run_all(cmds, log, a.jobs))]
    accs = [r["test_bayes_accuracy"] for r in per_fold]
    return {"folds": len(per_fold), "of": a.folds, "mean_test_accuracy": round(float(np.mean(accs)), 4),
            "std": round(float(np.std(accs)), 4), "discriminative_10_fold": DISCRIMINATIVE_MR, "per_fold": per_fold}


def dinos_file(out: Path) -> tuple[Path, Path, Path]:
    """(train, test, shuffled) LABEL<TAB>NAME files: every 5th name (from a seeded shuffle) is held
    out; `shuffled` is the training file with its labels permuted among the names (a control that
    has the conditional model's parameters and label frequencies, but no information in the label)."""
    names = [n.strip() for n in open(REPO / "data" / "dinos.txt", encoding="utf-8") if n.strip()]
    labels = ["saurus" if n.lower().endswith("saurus") else "other" for n in names]
    order = np.random.default_rng(0).permutation(len(names))
    test = set(order[::5].tolist())
    train = [k for k in range(len(names)) if k not in test]
    permuted = np.random.default_rng(1).permutation([labels[k] for k in train])
    paths = out / "dinos.train.tsv", out / "dinos.test.tsv", out / "dinos.shuffled.tsv"
    paths[0].write_text("".join(f"{labels[k]}\t{names[k]}\n" for k in train), encoding="utf-8")
    paths[1].write_text("".join(f"{labels[k]}\t{names[k]}\n" for k in sorted(test)), encoding="utf-8")
    paths[2].write_text("".join(f"{c}\t{names[k]}\n" for c, k in zip(permuted, train)), encoding="utf-8")
    return paths


def keeps_to(label: str, text: str) -> bool:
    """A sample keeps to its label: "saurus" names end in -saurus, "other" names do not."""
    return text.lower().endswith("saurus") == (label == "saurus")


def dinos(a, out, log) -> dict:
    train, test, shuffled = dinos_file(out)
    common_args = ["--test", test, *size_args("dinos"), "--steps", a.steps, "--eval-every", a.eval_every,
                   "--batch-size", 32, "--samples", 100, "--length", 40, "--temperature", 1.0]
    variants = {"every": (train, out, "--condition-input", "every"), "first": (train, out, "--condition-input", "first"),
                "shuffled-labels": (shuffled, out / "shuffled", "--condition-input", "every"),
                "unconditional": (train, out, "--unconditional")}
    result = {}
    for variant, (file, folder, *extra) in variants.items():
        runs = run_all([train_cmd(file, folder, *common_args, *extra, "--seed", seed)
                        for seed in range(a.seed, a.seed + a.seeds)], log, a.jobs)
        for r in runs:
            r["keeps_to_label"] = {n: round(float(np.mean([keeps_to(n, t) for t in s])), 3)
                                   for n, s in r["samples"].items() if n != "(none)"}
            r["ends_in_saurus"] = {n: round(float(np.mean([t.lower().endswith("saurus") for t in s])), 3)
                                   for n, s in r["samples"].items()}
            r["samples"] = {n: s[:8] for n, s in r["samples"].items()}
        keys = ["test_nats_per_char", "val_nats_per_char", "test_bayes_accuracy", "wall_s"]
        mean = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in keys if k in runs[0]}
        if variant != "unconditional":
            mean["keeps_to_label"] = {n: round(float(np.mean([r["keeps_to_label"][n] for r in runs])), 3)
                                      for n in runs[0]["keeps_to_label"]}
        result[variant] = {"mean": mean, "runs": runs}
    return result


def speakers(a, out, log) -> dict:
    labelled = out / "speakers.tsv"
    run([sys.executable, HERE / "shakespeare_speakers.py", a.data / "tinyshakespeare" / "input.txt", "-o", labelled,
         "--top", 20], log)
    rows = labelled.read_text(encoding="utf-8").splitlines(keepends=True)
    held = set(np.random.default_rng(a.seed).permutation(len(rows))[:round(0.1 * len(rows))].tolist())
    parts = {"train": [r for k, r in enumerate(rows) if k not in held], "val": [r for k, r in enumerate(rows) if k in held]}
    files = {}
    for part, lines in parts.items():
        pairs = [line.rstrip("\n").split("\t", 1) for line in lines]
        files[part] = out / f"{part}.tsv", out / f"{part}.txt"   # labelled; the texts grouped by label, unlabelled
        files[part][0].write_text("".join(lines), encoding="utf-8")
        files[part][1].write_text("".join(f"{t}\n" for c in sorted({c for c, _ in pairs}) for c2, t in pairs if c2 == c),
                                  encoding="utf-8")
    common_args = ["--mode", "stream", "--seq-len", 100, "--batch-size", 32, "--max-steps", a.steps, "--epochs", 1000,
                   "--eval-every", a.eval_every, "--seed", a.seed, "-q"]
    sizes = {k: v for k, v in SIZES["speakers"].items() if k != "label_embedding"}
    size = [x for k, v in sizes.items() for x in (f"--{k}", v)]
    cond, uncond = out / "conditional.npz", out / "unconditional.npz"
    cmds = [CHARLM + ["train", "--condition", files["train"][0], "--val-file", files["val"][0], "-o", cond, *size,
                      "--label-embedding", SIZES["speakers"]["label_embedding"], *common_args,
                      "--metrics", out / "conditional.metrics.jsonl"],
            CHARLM + ["train", files["train"][1], "--val-file", files["val"][1], "-o", uncond, *size, *common_args,
                      "--metrics", out / "unconditional.metrics.jsonl"]]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        list(pool.map(lambda cmd: run(cmd, log), cmds))
    wall = round(time.perf_counter() - started, 1)
    given = json.loads(run(CHARLM + ["eval", "-m", cond, files["val"][0], "--json"], log).stdout.strip().splitlines()[-1])
    plain = json.loads(run(CHARLM + ["score", "-m", uncond, "--file", files["val"][1], "--stream", "--json"],
                           log).stdout.strip().splitlines()[-1])
    best = {name: min((json.loads(line) for line in open(out / f"{name}.metrics.jsonl", encoding="utf-8")),
                      key=lambda r: r["val_loss"]) for name in ("conditional", "unconditional")}
    return {"speeches": {k: len(v) for k, v in parts.items()}, "labels": given["labels"], "train_wall_s": wall,
            "best_eval": {k: {"step": r["step"], "val_nats_per_char": round(r["val_loss"], 4)} for k, r in best.items()},
            "val_nats_per_char": {"conditional": round(given["nats_per_token"], 4),
                                  "unconditional": round(plain["nats_per_token"], 4)},
            "val_tokens": {"conditional": given["tokens"], "unconditional": plain["tokens"]},
            "conditional_per_label": {n: round(d["nats_per_token"], 4) for n, d in given["per_label"].items()},
            "bayes_accuracy": round(given["accuracy"], 4), "bayes_macro_f1": round(given["macro_f1"], 4)}


SETUPS = {"mr": (mr, 2700, 270), "mr-cv": (mr_cv, 2700, 270), "dinos": (dinos, 1500, 100),
          "speakers": (speakers, 600, 150)}


def main() -> int:
    if sys.argv[1:2] == ["train"]:
        return train_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("setup", choices=sorted(SETUPS))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with mr/ (and tinyshakespeare/)")
    p.add_argument("--out", type=Path, default=None, help="run directory")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default: the setup's)")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3, help="dinos: seeds per variant")
    p.add_argument("--folds", type=int, default=10, help="mr-cv: folds of the cross-validation")
    p.add_argument("--run-folds", type=int, default=None, help="mr-cv: run only K folds ...")
    p.add_argument("--first-fold", type=int, default=0, help="mr-cv: ... from this one (0-based)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads of each training process")
    p.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    p.add_argument("--lr-decay", type=float, default=0.5,
                   help="mr: the learning-rate decay on a plateau (0.9999: a fixed rate, so that the models' "
                        "schedules cannot part ways)")
    a = p.parse_args()
    common.prepare()
    fn, steps, every = SETUPS[a.setup]
    a.steps, a.eval_every = a.steps or steps, a.eval_every or every
    ENV.update(OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    if a.setup.startswith("mr") and not (a.data / "mr").exists():
        print(f"bench_condlm: {a.data / 'mr'} not found (pass --data DIR)", file=sys.stderr)
        return 2
    out = a.out or HERE / "runs" / f"condlm-{a.setup}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    for line in common.machine_lines():
        print(line)
    print(f"float32 GEMM: {common.gemm_peak(quick=True)['gflops']:.1f} GFLOP/s", flush=True)
    with open(out / "log.txt", "a", encoding="utf-8") as log:
        started = time.perf_counter()
        result = {"setup": a.setup, "steps": a.steps, "eval_every": a.eval_every, "threads": a.threads,
                  "load_before": os.getloadavg(), **fn(a, out, log)}
        result.update(load_after=os.getloadavg(), wall_s=round(time.perf_counter() - started, 1))
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

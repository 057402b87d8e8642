"""The training loop: truncated backpropagation through time on a token stream.

The corpus is one long id sequence, cut into `B` contiguous parallel streams, shape `(N, B)`
(time-major). Each step takes the next window of `T` tokens from every stream: inputs
`x = data[p:p+T]`, targets `y = data[p+1:p+1+T]`, both `(T, B)`. The hidden state at the end
of a window is the initial state of the next one (the forward pass sees the whole stream), but
gradients stop at the window's edge (truncated BPTT). At the start of each epoch the state is
reset to zeros.

Everything needed to continue a run exactly is in the "last" checkpoint: parameters, optimizer
state, learning-rate schedule, random-number-generator state, carried hidden state, position in
the data, step, epoch, metrics. A run interrupted after any step and resumed ends with the same
parameters, bit for bit, as one that was never interrupted.

Nothing here prints: progress goes through the `Reporter` callbacks, errors are `CharlmError`s.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from charlm import __version__
from charlm import checkpoint as ckpt
from charlm.corpus import batchify, build_vocab, fit_batch, iter_windows, read_corpus, split_point
from charlm.errors import CharlmError, CheckpointError, DataError, UsageError
from charlm.model import LanguageModel, ModelConfig
from charlm.nn.cells import cell_from_config
from charlm.optim import ReduceOnPlateau, clip_grad_norm, make_optimizer
from charlm.tokenizer import Tokenizer, TokenizerConfig
from charlm.vocab import Vocab

MAX_BAD_STEPS = 5  # consecutive non-finite steps before training gives up
EVAL_STREAMS = 16  # parallel streams used to evaluate the validation text


@dataclass
class TrainOptions:
    """What `charlm train` was asked to do. Stored in the checkpoint to resume the same run."""

    corpus: str
    output: str = "charlm.npz"
    tokenizer: dict = field(default_factory=dict)  # TokenizerConfig.to_dict()
    min_count: int = 1
    max_vocab: int | None = None
    vocab: str | None = None  # a vocabulary file made by `charlm tokenize --vocab-out`
    model: dict = field(default_factory=dict)  # ModelConfig fields except vocab_size
    seq_len: int = 100
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 3e-3
    clip: float = 5.0
    epochs: int = 20
    max_steps: int | None = None
    time_limit: float | None = None
    val_fraction: float = 0.1
    val_file: str | None = None
    eval_every: int = 200
    patience: int = 5
    lr_decay: float = 0.5
    seed: int = 0
    metrics: str | None = None


class Reporter:
    """Progress callbacks; the CLI subclasses this to draw a progress bar. All are optional."""

    def start(self, total_steps: int | None, done_steps: int, info: dict) -> None: ...

    def step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None: ...

    def evaluate(self, record: dict, improved: bool) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


def last_path(output: str | os.PathLike) -> Path:
    """Where the resumable training state lives: `charlm.npz` -> `charlm.last.npz`."""
    p = Path(output)
    stem = p.name[: -len(".npz")] if p.name.endswith(".npz") else p.name
    return p.with_name(stem + ".last.npz")


# ----------------------------------------------------------------------------- data


@dataclass
class Data:
    """The encoded corpus: `train` is `(N, B)`, `val` is `(Nv, Bv)` or None."""

    vocab: Vocab
    train: np.ndarray
    val: np.ndarray | None
    n_train_tokens: int
    n_val_tokens: int
    batch_size: int
    seq_len: int
    warning: str | None = None


def _encode_with(vocab: Vocab, ids: np.ndarray, types: list[str]) -> np.ndarray:
    """Map provisional ids (indices into `types`) to `vocab` ids; unknown types -> <UNK>."""
    lookup = np.array([vocab.index.get(t, vocab.unk_id) for t in types], dtype=np.int32)
    if vocab.tokenizer.split == "whitespace":
        for i, t in enumerate(types):
            if t in ("<unk>", "<UNK>"):
                lookup[i] = vocab.unk_id
    return lookup[ids]


def prepare_data(opts: TrainOptions, vocab: Vocab | None = None, n_train: int | None = None) -> Data:
    """Tokenize and encode the corpus, split it, build (or use) the vocabulary, lay out batches.

    `vocab`/`n_train` are given when resuming, so the data is encoded exactly as before.
    """
    if vocab is None and opts.vocab:
        vocab = Vocab.load(opts.vocab)
    tok_config = vocab.tokenizer if vocab is not None else TokenizerConfig.from_dict(opts.tokenizer)
    tokenizer = Tokenizer(tok_config)
    ids, types = read_corpus(opts.corpus, tokenizer)
    if opts.val_file:
        n_train = len(ids)
        val_ids, val_types = read_corpus(opts.val_file, tokenizer)
    else:
        if n_train is None:
            n_train = split_point(len(ids), opts.val_fraction)
        val_ids = val_types = None
    if vocab is None:
        vocab, ids = build_vocab(ids, types, n_train, opts.min_count, opts.max_vocab, tok_config)
    else:
        ids = _encode_with(vocab, ids, types)
    train_ids = ids[:n_train]
    if val_ids is not None:
        val = _encode_with(vocab, val_ids, val_types)
    else:
        val = ids[n_train:]
    batch, seq_len, warning = fit_batch(len(train_ids), opts.batch_size, opts.seq_len)
    val_data = None
    if len(val) >= 2:
        streams = max(1, min(EVAL_STREAMS, (len(val) - 1) // 2))
        val_data = batchify(val, streams)
    return Data(vocab, batchify(train_ids, batch), val_data, len(train_ids), len(val), batch, seq_len, warning)


def evaluate(model: LanguageModel, data: np.ndarray, seq_len: int) -> float:
    """Mean negative log-likelihood (nats per token) of the `(N, B)` streams, state carried."""
    state = model.init_state(data.shape[1])
    total, count = 0.0, 0
    for _, x, y in iter_windows(data, seq_len):
        lp, state = model.target_log_probs(x, y, state)
        total -= float(lp.sum(dtype=np.float64))
        count += lp.size
    return total / max(count, 1)


# ------------------------------------------------------------------------ checkpoints


def _meta(kind: str, model: LanguageModel, vocab: Vocab, train: dict) -> dict:
    return {
        "format": ckpt.FORMAT,
        "format_version": ckpt.FORMAT_VERSION,
        "charlm_version": __version__,
        "kind": kind,
        "model": model.config.to_dict(),
        "vocab": vocab.to_dict(),
        "train": train,
    }


class _Stop(Exception):
    """Raised inside the loop to end training early with a reason."""


def _install_signal_handlers(flag: dict) -> Callable[[], None]:
    """Ctrl-C / SIGTERM set `flag["signal"]`; the loop finishes the step, saves and stops.

    A second Ctrl-C raises KeyboardInterrupt at once (the last saved checkpoint stays intact).
    Returns a function that restores the previous handlers.
    """

    def handler(signum, frame):
        if flag.get("signal"):
            raise KeyboardInterrupt
        flag["signal"] = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread: leave signals alone
            pass

    def restore():
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore


def train(opts: TrainOptions, resume: bool = False, reporter: Reporter | None = None) -> dict:
    """Train a language model as `opts` says; return a summary dict.

    Writes the best model (by validation loss) to `opts.output` and the resumable state to
    `last_path(opts.output)`. Raises `CharlmError` for user mistakes and for a diverged run;
    on a signal, saves and returns with `summary["interrupted"]` set to the signal's name.
    """
    rep = reporter or Reporter()
    _check_options(opts)
    _check_output(opts.output)
    started = time.perf_counter()
    last_file = last_path(opts.output)

    if resume:
        model, data, opt, sched, rng, st = _resume(opts, last_file)
        rep.message(f"resuming from {last_file} at step {st['step']} (epoch {st['epoch'] + 1})")
    else:
        data = prepare_data(opts)
        config = ModelConfig(vocab_size=len(data.vocab), **opts.model)
        _check_memory(config, data.batch_size, data.seq_len, opts.optimizer)
        model = LanguageModel(config, seed=opts.seed)
        opt = make_optimizer(opts.optimizer, opts.lr)
        sched = ReduceOnPlateau(factor=opts.lr_decay, patience=0, min_lr=opts.lr * 1e-3)
        rng = np.random.default_rng(opts.seed + 1)
        st = {
            "step": 0, "epoch": 0, "position": 0, "best_val_loss": None, "saved_val_loss": None,
            "best_step": None,
            "bad_evals": 0, "tokens_seen": 0, "metrics": [], "n_train": data.n_train_tokens,
        }
    if data.warning:
        rep.message(data.warning)
    if data.val is None and not resume:
        rep.message("no validation text: the model at the output is the latest, not the best")

    steps_per_epoch = math.ceil((data.train.shape[0] - 1) / data.seq_len)
    total = steps_per_epoch * opts.epochs
    if opts.max_steps is not None:
        total = min(total, opts.max_steps)
    rep.start(total, st["step"], {
        "params": model.num_params(), "vocab": len(data.vocab), "train_tokens": data.n_train_tokens,
        "val_tokens": data.n_val_tokens, "batch": data.batch_size, "seq_len": data.seq_len,
        "steps_per_epoch": steps_per_epoch,
    })

    if opts.metrics:
        try:  # find out now, not at the first evaluation, that the log cannot be written
            open(opts.metrics, "a", encoding="utf-8").close()
        except OSError as err:
            raise UsageError(f"cannot write --metrics {opts.metrics}: {err.strerror}") from None
    flag: dict = {}
    restore = _install_signal_handlers(flag)
    state = st.pop("_state", None) or model.init_state(data.batch_size)
    reason = "finished"
    bad_steps = 0
    window_loss, window_count = 0.0, 0
    tick, tick_tokens = time.perf_counter(), 0

    def check_finite():
        """Never overwrite a good checkpoint with parameters that are inf/NaN (the loader
        would refuse them): stop with the previous files intact instead."""
        if not all(np.isfinite(p).all() for p in model.params.values()):
            raise CharlmError(
                f"training diverged at step {st['step']}: the parameters are no longer finite; "
                f"the last good model is in {opts.output} (resumable state in {last_file}): "
                "try a lower --lr or --clip")

    def save_last():
        check_finite()
        arrays = ckpt.model_arrays(model)
        scalars, opt_arrays = opt.state_dict()
        arrays.update({f"optim/{k}": v for k, v in opt_arrays.items()})
        for l, layer_state in enumerate(state):
            for k, a in enumerate(layer_state):
                arrays[f"state/{l}/{k}"] = a
        record = dict(st, options=asdict(opts), optimizer=scalars, schedule=sched.state_dict(),
                      rng=rng.bit_generator.state)
        ckpt.save_checkpoint(last_file, arrays, _meta("last", model, data.vocab, record))

    def save_best(val_loss):
        check_finite()
        info = {"step": st["step"], "epoch": st["epoch"], "val_loss": val_loss,
                "train_tokens": st["tokens_seen"], "options": asdict(opts)}
        ckpt.save_checkpoint(opts.output, ckpt.model_arrays(model), _meta("best", model, data.vocab, info))

    def run_eval(scheduled: bool = True):
        """Evaluate; save the best model and the resumable state.

        Only scheduled evaluations (every --eval-every steps) drive the learning-rate decay and
        early stopping, so an interrupted and resumed run makes the same decisions as one that
        ran straight through. Any evaluation may replace the best model file.
        """
        nonlocal window_loss, window_count
        val_loss = evaluate(model, data.val, data.seq_len) if data.val is not None else None
        elapsed = time.perf_counter() - started
        record = {
            "step": st["step"], "epoch": st["epoch"] + st["position"] / max(data.train.shape[0] - 1, 1),
            "train_loss": window_loss / window_count if window_count else None,
            "val_loss": val_loss, "lr": opt.lr,
            "tokens_per_s": tick_tokens / elapsed if elapsed > 0 else None, "elapsed": elapsed,
        }
        window_loss, window_count = 0.0, 0
        saved = st["saved_val_loss"]
        improved = val_loss is None or saved is None or val_loss < saved
        if improved:
            st["saved_val_loss"], st["best_step"] = val_loss, st["step"]
            save_best(val_loss)
        if scheduled and val_loss is not None:
            if st["best_val_loss"] is None or val_loss < st["best_val_loss"]:
                st["best_val_loss"], st["bad_evals"] = val_loss, 0
            else:
                st["bad_evals"] += 1
            if sched.observe(val_loss):
                opt.lr = sched.decayed_lr(opt.lr)
        st["metrics"].append(record)
        if opts.metrics:
            with open(opts.metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        rep.evaluate(record, improved)
        save_last()
        if scheduled and data.val is not None and st["bad_evals"] >= opts.patience:
            raise _Stop(f"early stop: no improvement in {opts.patience} evaluations")

    try:
        while st["epoch"] < opts.epochs:
            for pos, x, y in iter_windows(data.train, data.seq_len, start=st["position"]):
                if opts.max_steps is not None and st["step"] >= opts.max_steps:
                    raise _Stop("reached --max-steps")
                loss, new_state, cache = model.loss(x, y, state, train=True, rng=rng)
                grads = model.backward(cache)
                norm = clip_grad_norm(grads, opts.clip)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    bad_steps += 1
                    opt.lr *= 0.5
                    rep.message(f"step {st['step'] + 1}: non-finite loss or gradient; update skipped, "
                                f"learning rate lowered to {opt.lr:.3g}")
                    if bad_steps >= MAX_BAD_STEPS:
                        raise CharlmError(
                            f"training diverged ({bad_steps} non-finite steps in a row); the last good "
                            f"model is in {opts.output}: try a lower --lr or --clip")
                    state = model.init_state(data.batch_size)
                else:
                    bad_steps = 0
                    opt.step(model.params, grads)
                    state = new_state
                    window_loss += loss
                    window_count += 1
                st["step"] += 1
                st["position"] = pos + x.shape[0]
                st["tokens_seen"] += x.size
                tick_tokens += x.size
                now = time.perf_counter()
                rep.step(st["step"], loss, opt.lr, tick_tokens / max(now - tick, 1e-9))
                if st["step"] % opts.eval_every == 0:
                    run_eval()
                if flag.get("signal"):
                    raise _Stop(f"interrupted by {flag['signal']}")
                if opts.time_limit is not None and now - started >= opts.time_limit:
                    raise _Stop("reached --time-limit")
            st["epoch"] += 1
            st["position"] = 0
            state = model.init_state(data.batch_size)
    except _Stop as stop:
        reason = str(stop)
    finally:
        restore()

    # Evaluate and save unless the last thing the loop did was exactly that.
    last_eval_step = st["metrics"][-1]["step"] if st["metrics"] else None
    if last_eval_step != st["step"] or not Path(opts.output).exists():
        try:
            run_eval(scheduled=False)
        except _Stop:
            pass
    rep.close()
    return {
        "reason": reason,
        "interrupted": flag.get("signal"),
        "step": st["step"],
        "epoch": st["epoch"],
        "best_val_loss": st["saved_val_loss"],
        "best_step": st["best_step"],
        "output": str(opts.output),
        "last": str(last_file),
        "level": data.vocab.tokenizer.level,
        "elapsed": time.perf_counter() - started,
    }


def _check_options(opts: TrainOptions) -> None:
    """Reject option values that make no sense (exit status 2)."""
    positive = {"--seq-len": opts.seq_len, "--batch-size": opts.batch_size, "--epochs": opts.epochs,
                "--eval-every": opts.eval_every, "--patience": opts.patience}
    for name, value in positive.items():
        if value is None or value < 1:
            raise UsageError(f"{name} must be at least 1 (got {value})")
    if not (opts.lr > 0 and math.isfinite(opts.lr)):
        raise UsageError(f"--lr must be a positive number (got {opts.lr})")
    if opts.clip is not None and (opts.clip < 0 or not math.isfinite(opts.clip)):
        raise UsageError(f"--clip must be >= 0 (0 turns clipping off; got {opts.clip})")
    if opts.max_steps is not None and opts.max_steps < 1:
        raise UsageError(f"--max-steps must be at least 1 (got {opts.max_steps})")
    if opts.time_limit is not None and not opts.time_limit > 0:
        raise UsageError(f"--time-limit must be a positive number of seconds (got {opts.time_limit})")
    if not 0 <= opts.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1) (got {opts.val_fraction})")
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or opts.seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0 (got {opts.seed})")
    if not 0 < opts.lr_decay < 1:
        raise UsageError(f"the learning-rate decay must be in (0, 1) (got {opts.lr_decay})")


def _check_output(output) -> None:
    """Fail before training, not at the first save, when the model cannot be written."""
    out = Path(output)
    for p in (out, last_path(out)):
        if p.is_dir():
            raise UsageError(f"-o/--output {p} is a directory: give a file name such as {p / 'charlm.npz'}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write the model to {out}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the model to {out}: folder {folder} is not writable")


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(config: ModelConfig, batch: int, seq_len: int, optimizer: str) -> None:
    """Refuse a model that cannot fit in memory (rather than being killed by the OS later).

    A rough lower bound: parameters, gradients and optimizer slots (Adam keeps two), plus the
    activations of one window: about (4 + 2 per gate) H values per layer per token and the
    (T*B, V) logits/probabilities.
    """
    itemsize = np.dtype(config.dtype).itemsize
    cell = cell_from_config(config)
    V, E, H, L = config.vocab_size, config.embedding, config.hidden, config.layers
    n = V * E + V + (0 if config.tie_weights else H * V)
    gates = 1
    for l in range(L):
        shapes = cell.param_shapes(E if l == 0 else H, H)
        n += sum(int(np.prod(s)) for s in shapes.values())
        gates = max(gates, int(shapes["W"][1]) // H if "W" in shapes else 4)
    slots = {"adam": 2, "rmsprop": 1, "adagrad": 1}.get(optimizer, 1)
    tokens = batch * seq_len
    need = itemsize * (n * (2 + slots) + tokens * (L * H * (4 + 2 * gates) + 3 * V))
    have = _available_memory()
    if have is not None and need > have:
        gib = 1 << 30
        raise UsageError(
            f"this model needs about {need / gib:.1f} GiB of memory ({n:,} parameters) but only "
            f"{have / gib:.1f} GiB is available: use a smaller --hidden, --layers, --embedding, "
            "--batch-size or --seq-len")


def _resume(opts: TrainOptions, last_file: Path):
    """Load the last training state; the run continues with the options saved in it.

    Only the stopping options given now (epochs, max steps, time limit, patience, metrics
    path) replace the saved ones.
    """
    if not last_file.exists():
        raise DataError(f"nothing to resume: no training state at {last_file} (train without --resume first)")
    arrays, meta = ckpt.load_checkpoint(last_file)
    if meta.get("kind") != "last":
        raise DataError(f"{last_file} holds no training state to resume")
    tr = meta.get("train")
    try:
        saved = TrainOptions(**tr["options"])
        missing = [k for k in ("step", "epoch", "position", "best_val_loss", "saved_val_loss", "best_step",
                               "bad_evals", "tokens_seen", "metrics", "n_train", "optimizer", "schedule", "rng")
                   if k not in tr]
    except (KeyError, TypeError, ValueError, AttributeError):
        missing = ["options"]
    if missing:
        raise CheckpointError(f"{last_file} has no usable training state (missing {', '.join(missing)}): "
                              "train again without --resume")
    for name in ("epochs", "max_steps", "time_limit", "patience", "metrics"):
        setattr(saved, name, getattr(opts, name))
    if Path(saved.corpus).resolve() != Path(opts.corpus).resolve():
        raise UsageError(f"--resume continues the run on {saved.corpus}, not {opts.corpus}")
    opts.__dict__.update(saved.__dict__)
    model, vocab, _ = ckpt.model_from_checkpoint(arrays, meta, str(last_file))
    data = prepare_data(opts, vocab=vocab, n_train=tr["n_train"])
    try:
        opt = make_optimizer(opts.optimizer, opts.lr)
        opt.load_state_dict(tr["optimizer"], ckpt.arrays_under(arrays, "optim"))
        sched = ReduceOnPlateau(factor=opts.lr_decay, patience=0, min_lr=opts.lr * 1e-3)
        sched.load_state_dict(tr["schedule"])
        rng = np.random.default_rng()
        rng.bit_generator.state = tr["rng"]
    except CharlmError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{last_file} has a corrupt training state ({type(err).__name__}: {err}): "
                              "train again without --resume") from None
    st = {k: tr[k] for k in ("step", "epoch", "position", "best_val_loss", "saved_val_loss", "best_step", "bad_evals",
                             "tokens_seen", "metrics", "n_train")}
    layers = model.config.layers
    state = []
    for l in range(layers):
        k, layer_state = 0, []
        while f"state/{l}/{k}" in arrays:
            layer_state.append(arrays[f"state/{l}/{k}"].astype(model.params["embed.W"].dtype))
            k += 1
        want = model.init_state(data.batch_size)[l]
        if len(layer_state) != len(want) or any(a.shape != w.shape for a, w in zip(layer_state, want)):
            raise CheckpointError(f"{last_file} has a corrupt training state (hidden state of layer {l} "
                                  "does not fit the model): train again without --resume")
        state.append(tuple(layer_state))
    st["_state"] = state
    return model, data, opt, sched, rng, st

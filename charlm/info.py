"""What a model file holds, as one JSON-able dict (`charlm info`, `charlm.Model.info()`).

Read from the checkpoint's metadata (`meta`, see `charlm.checkpoint`) and the loaded network:

    file, kind ("best" model or "last" training state), format_version, charlm_version, task
    model:      the network's settings (cell, layers, hidden, embedding, ...) and `parameters`
    vocabulary: size, min_count, max_vocab, `top`: the most frequent tokens [[token, count], ...]
    tokenizer:  the tokenizer settings the model re-creates
    target_vocabulary, target_tokenizer: the same of the output side, for a model that has its own
                (a sequence-to-sequence model: "vocabulary" and "tokenizer" are its source side's)
    training:   step, epoch, tokens_seen, the figures of the model's evaluation (its task's:
                val_loss in nats/token with bits_per_char or perplexity for a language model,
                accuracy and F1 for a tagger or classifier), and the options the run was given
    run:        only for a NAME.last.npz: where the run stands (step, epochs done, learning rate,
                evaluations without improvement against the patience, the last evaluation, and
                the command that continues it)

The `train` record of a checkpoint is read defensively: a file made by other code (or an older
charlm) may lack any of its keys, and then the figure is left out. Which figures an evaluation has
is the task's business (`Task.figures`, passed in); `quality` writes any of them in the units
people quote, for `charlm info`, the progress lines and `charlm train`'s last line.
"""

from __future__ import annotations

import math
import shlex

LN2 = math.log(2.0)
TOP_TOKENS = 10


def _number(x) -> float | None:
    """x as a float when it is a finite number, else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def loss_figures(val_loss, level: str) -> dict:
    """{"val_loss": nats} plus bits_per_char (char level) or perplexity (word level)."""
    loss = _number(val_loss)
    if loss is None:
        return {}
    if level == "char":
        return {"val_loss": loss, "bits_per_char": loss / LN2}
    return {"val_loss": loss, "perplexity": math.exp(min(loss, 700.0))}


def quality(figures: dict) -> str:
    """An evaluation's figures in the units people quote: "2.146 bits/char", "perplexity 87.67",
    "accuracy 93.20%, F1 80.10", "accuracy 71.00%, token error rate 6.10%", or "n/a"."""
    if "bits_per_char" in figures:
        return f"{figures['bits_per_char']:.3f} bits/char"
    if "perplexity" in figures:
        return f"perplexity {figures['perplexity']:.2f}"
    if "accuracy" in figures:
        f1 = f", F1 {100 * figures['f1']:.2f}" if "f1" in figures else ""
        ter = f", token error rate {100 * figures['token_error_rate']:.2f}%" if "token_error_rate" in figures else ""
        return f"accuracy {100 * figures['accuracy']:.2f}%{f1}{ter}"
    return "n/a"


def _evaluation(train: dict, step) -> dict:
    """The evaluation record of `step` in a training record's metrics ({} when there is none)."""
    for r in train.get("metrics") or []:
        if isinstance(r, dict) and r.get("step") == step and step is not None:
            return r
    return {}


def _vocabulary(vocab: dict, top: int) -> tuple[dict, dict]:
    """(size, min_count, max_vocab and the `top` most frequent tokens; the tokenizer settings) of a
    vocabulary's metadata."""
    tokens, counts = vocab.get("tokens") or [], vocab.get("counts") or []
    ranked = sorted(zip(tokens, counts), key=lambda tc: -tc[1])[:top]
    return ({"size": len(tokens), "min_count": vocab.get("min_count"), "max_vocab": vocab.get("max_vocab"),
             "top": [list(tc) for tc in ranked]}, dict(vocab.get("tokenizer") or {}))


def describe(path: str, meta: dict, num_params: int, task, top: int = TOP_TOKENS) -> dict:
    """The description of the model file at `path` (see the module docstring), a model of `task`
    (its `name`, and `figures(record, level)`: the figures of an evaluation record)."""
    vocabulary, tokenizer = _vocabulary(meta.get("vocab") or {}, top)
    info = {
        "file": path,
        "kind": meta.get("kind"),
        "format_version": meta.get("format_version"),
        "charlm_version": meta.get("charlm_version"),
        "task": task.name,
        "model": dict(meta.get("model") or {}, parameters=num_params),
        "vocabulary": vocabulary,
        "tokenizer": tokenizer,
    }
    if isinstance(meta.get("target_vocab"), dict):  # a sequence-to-sequence model's output side
        info["target_vocabulary"], info["target_tokenizer"] = _vocabulary(meta["target_vocab"], top)
    if isinstance(meta.get("labels"), list) and isinstance(meta.get("label_counts"), list):
        info["labels"] = dict(zip(meta["labels"], meta["label_counts"]))  # a conditional language model's
    train = meta.get("train") or {}
    level = tokenizer.get("level", "char")
    if train:
        # the model's evaluation: in a best model's own record, or among a run state's evaluations
        best = train if "val_loss" in train else _evaluation(train, train.get("best_step"))
        info["training"] = {
            "step": train.get("step"),
            "epoch": train.get("epoch"),
            "tokens_seen": train.get("tokens_seen", train.get("train_tokens")),
            **task.figures(best, level),
            "options": train.get("options"),
        }
    if meta.get("kind") == "last" and train:
        info["run"] = _run_state(train, level, task.figures)
    return info


def _epochs_done(train: dict, metrics: list) -> float | None:
    """Epochs done, as the training printed them: recorded by the engine (`epochs_done`), or in
    older files the epoch of an evaluation at the saved step (else unknown)."""
    done = _number(train.get("epochs_done"))
    if done is None and metrics and isinstance(metrics[-1], dict) and metrics[-1].get("step") == train.get("step"):
        done = _number(metrics[-1].get("epoch"))
    return done


def _run_state(train: dict, level: str, figures) -> dict:
    """Where a resumable run stands, from the `train` record of a NAME.last.npz."""
    options = train.get("options") or {}
    metrics = train.get("metrics") or []
    run = {
        "step": train.get("step"),
        "epochs_done": _epochs_done(train, metrics),
        "epochs": options.get("epochs"),
        "max_steps": options.get("max_steps"),
        "lr": (train.get("optimizer") or {}).get("lr"),
        "best_step": train.get("best_step"),  # the model at -o: its step and its evaluation's figures
        "best": figures(_evaluation(train, train.get("best_step")), level),
        "evaluations": len(metrics),
        "without_improvement": train.get("bad_evals"),
        "patience": options.get("patience"),
        "last_evaluation": metrics[-1] if metrics else None,
    }
    if options.get("corpus") and options.get("output"):
        run["resume"] = "charlm train {} -o {} --resume".format(
            shlex.quote(str(options["corpus"])), shlex.quote(str(options["output"])))
    return run

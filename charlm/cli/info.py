"""`charlm info`: what a model file holds (settings, vocabulary, training, where a run stands)."""

from __future__ import annotations

import json
import math

import click

from charlm.cli.group import cli, json_line
from charlm.cli.options import load_model
from charlm.info import quality


def _figures(d: dict) -> str:
    """"1.4875 nats (2.146 bits/char)", "4.47 nats (perplexity 87.67)" or "0.4123 nats (accuracy
    93.20%, F1 80.10)": an evaluation's figures (its task's, `Task.figures`)."""
    if "val_loss" not in d:
        return "-"
    extra = quality(d)
    return f"{d['val_loss']:.4f} nats" + (f" ({extra})" if extra != "n/a" else "")


def _options(options: dict) -> str:
    """The run's options as "key=value" pairs (model and tokenizer settings flattened)."""
    flat = {}
    for k, v in options.items():
        if isinstance(v, dict):
            flat.update(v)
        elif v is not None:
            flat[k] = v
    return " ".join(f"{k}={v}" for k, v in flat.items())


def _vocabulary(voc: dict) -> str:
    """"28 tokens (min_count 1, max_vocab None); most frequent: "a":120 ..." of a vocabulary."""
    top = " ".join(f"{json.dumps(t, ensure_ascii=False)}:{c}" for t, c in voc["top"])
    return f"{voc['size']:,} tokens (min_count {voc['min_count']}, max_vocab {voc['max_vocab']}); most frequent: {top}"


def _encoder_decoder(m: dict) -> list[str]:
    """The encoder's, the decoder's and the attention's sizes of a sequence-to-sequence model."""
    per = " per direction (bidirectional)" if m.get("bidirectional") else ""
    attention = m.get("attention")
    how = {"none": "none (the decoder starts from the encoder's final states)",
           "additive": f"additive, hidden {m.get('attention_hidden')}"}.get(attention, attention)
    return [f"encoder:     layers {m.get('layers')}, hidden {m.get('hidden')}{per}, source embedding "
            f"{m.get('embedding')}",
            f"decoder:     layers {m.get('layers')}, hidden {m.get('decoder_hidden')}, target embedding "
            f"{m.get('target_embedding')}",
            f"attention:   {how}"]


def _lines(info: dict) -> list[str]:
    m, voc = info["model"], info["vocabulary"]
    seq2seq = "target_vocabulary" in info
    sizes = "encoder-decoder" if seq2seq else ", ".join(f"{k} {m[k]}" for k in ("layers", "hidden", "embedding")
                                                       if k in m)
    flags = [k for k in ("tie_weights", "peephole", "crf") if m.get(k)]
    source, target = ("source ", "target ") if seq2seq else ("", "")
    lines = [
        f"file:        {info['file']} ({info['kind'] or 'unknown kind'}, format "
        f"{info['format_version']}, charlm {info['charlm_version'] or '?'})",
        f"task:        {info['task']}",
        f"model:       {m.get('cell', '?')}, {sizes}, dropout {m.get('dropout', 0)}"
        + (" (locked)" if m.get("dropout_kind") == "locked" else "")
        + "".join(f", {k.replace('_', ' ')} {m[k]}" for k in ("embedding_dropout", "weight_drop") if m.get(k))
        + (f", activation {m['activation']}" if m.get("cell") == "rnn" else "")
        + "".join(f", {f}" for f in flags) + f", {m.get('dtype', '?')}",
        *(_encoder_decoder(m) if seq2seq else []),
        f"parameters:  {m['parameters']:,}",
        f"vocabulary:  {source}{_vocabulary(voc)}",
        *([f"             {target}{_vocabulary(info['target_vocabulary'])}"] if seq2seq else []),
        f"tokenizer:   {source}" + " ".join(f"{k}={v}" for k, v in info["tokenizer"].items()),
        *([f"             {target}" + " ".join(f"{k}={v}" for k, v in info["target_tokenizer"].items())]
          if seq2seq else []),
    ]
    if info.get("labels"):  # a conditional language model: its labels, training texts and prior P(c)
        total = sum(info["labels"].values())
        form = ("each label's texts as one running text (--mode stream)" if info["tokenizer"].get("mode") == "stream"
                else "whole texts")
        lines.append(f"labels:      {', '.join(f'{k} ({n:,} texts, P {n / total:.3f})' for k, n in info['labels'].items())}"
                     f"; label embedding {m.get('label_embedding')}, fed at "
                     f"{'the first step' if m.get('condition_input') == 'first' else 'every step'}; trained on {form}")
    t = info.get("training")
    if t is None:
        lines.append("training:    no record (not written by charlm train)")
    else:
        seen = t.get("tokens_seen")
        lines.append(f"training:    step {t.get('step')}, epoch {t.get('epoch')}, "
                     f"{seen:,} tokens seen" if isinstance(seen, int) else
                     f"training:    step {t.get('step')}, epoch {t.get('epoch')}")
        lines.append(f"best val:    {_figures(t)}")
        if t.get("options"):
            lines.append(f"options:     {_options(t['options'])}")
    r = info.get("run")
    if r is not None:
        done = r.get("epochs_done")
        lr = r.get("lr")
        stand = [f"step {r['step']}"]
        if done is not None:
            stand.append(f"{done:.2f} of {r.get('epochs')} epochs")
        if r.get("max_steps"):
            stand.append(f"max steps {r['max_steps']}")
        if isinstance(lr, (int, float)) and math.isfinite(lr):
            stand.append(f"learning rate {lr:.3g}")
        lines.append("run:         " + ", ".join(stand))
        lines.append(f"evaluations: {r['evaluations']}, best at step {r.get('best_step')}: "
                     f"{_figures(r.get('best') or {})}; {r.get('without_improvement')} without "
                     f"improvement (patience {r.get('patience')})")
        if r.get("resume"):
            lines.append(f"continue:    {r['resume']}")
    return lines


@cli.command("info")
@click.argument("model_path", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with every field.")
def info_command(model_path, as_json) -> None:
    """Show what a model file holds.

    MODEL's task, cell, layers and sizes (a sequence-to-sequence model: its encoder, decoder,
    attention and both vocabularies), parameter count, vocabulary and its most frequent
    tokens, tokenizer settings, the training summary (steps, epochs, tokens seen, best
    validation loss, the options it was trained with) and the file format.

    For a NAME.last.npz (a run's resumable state) it also shows where the run stands: the
    step, epochs done, learning rate, evaluations without improvement, and the command that
    continues it.

    \b
    Examples:
      charlm info charlm.npz
      charlm info charlm.last.npz        # where the run stands
      charlm info ptb.npz --json
    """
    info = load_model(model_path, any_task=True).info()
    if as_json:
        click.echo(json_line(info))
    else:
        click.echo("\n".join(_lines(info)))

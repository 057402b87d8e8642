"""The one rule for every file a charlm command writes: never destroy the user's files.

    check_outputs(outputs, inputs, force=False)

* No output may be one of the command's own inputs (corpus, validation file, vocabulary,
  model) — not even with `force`.
* No two outputs may be the same file.
* An existing output is replaced (or appended to) only when it is already a file of the kind
  the command writes: a charlm checkpoint, a charlm metrics log, a charlm vocabulary, a charlm
  plot (an image whose metadata names `PLOT_MARK`), a charlm token cache (`charlm.text.tokencache`:
  its record or its .npy id file), an ONNX model written by `charlm export`. Anything
  else is refused unless `force` is given, which allows replacing it (never an input).
* An output cannot be a directory, and its folder must exist and be writable.

Every refusal is a `UsageError` (one line, exit status 2) raised before any work is done.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from charlm.checkpoint import META
from charlm.errors import UsageError

# What a command writes, and how to recognise an existing file of that kind.
CHECKPOINT, METRICS, VOCAB = "charlm checkpoint", "charlm metrics log", "charlm vocabulary"
PLOT = "charlm plot"
PLOT_MARK = "charlm plot"  # `charlm plot` writes it in the image's metadata (PNG Software, SVG Creator)
TOKEN_CACHE = "charlm token cache"
TOKEN_CACHE_FORMAT = "charlm-token-cache"
VOCAB_FORMAT = "charlm-vocab"  # the "format" of a vocabulary file (charlm.text.vocab)
ONNX = "charlm ONNX export"


@dataclass(frozen=True)
class Output:
    """A file a command is about to write: `option` names it in messages (e.g. "-o/--output")."""

    path: str
    kind: str
    option: str


def _is_checkpoint(path: str) -> bool:
    """A zip archive whose first member is __meta__.npy: what `checkpoint.save_checkpoint` writes
    (recognised from the first bytes, so a truncated charlm checkpoint is still one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(30 + len(META) + 4)
    except OSError:
        return False
    name_length = int.from_bytes(head[26:28], "little") if len(head) >= 28 else 0
    return head[:4] == b"PK\x03\x04" and head[30:30 + name_length] == (META + ".npy").encode()


def _is_metrics_log(path: str) -> bool:
    """JSON lines, each an object with a "step" (what `charlm train --metrics` appends)."""
    try:
        with open(path, encoding="utf-8") as f:
            for _, line in zip(range(1000), f):
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or "step" not in record:
                    return False
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return True


def _json_format(path: str):
    """The "format" of a JSON object file (None for anything else)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return d.get("format") if isinstance(d, dict) else None


def _is_plot(path: str) -> bool:
    """A PNG or SVG whose metadata, near the start of the file, names PLOT_MARK."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    image = head.startswith(b"\x89PNG") or b"<svg" in head
    return image and PLOT_MARK.encode() in head


def _is_vocab(path: str) -> bool:
    return _json_format(path) == VOCAB_FORMAT


def _is_token_cache(path: str) -> bool:
    """A token cache's JSON record, or its id file (a .npy array, recognised by its magic bytes)."""
    if path.endswith(".npy"):
        try:
            with open(path, "rb") as f:
                return f.read(6) == b"\x93NUMPY"
        except OSError:
            return False
    return _json_format(path) == TOKEN_CACHE_FORMAT


def _is_onnx_export(path: str) -> bool:
    """An ONNX model whose producer is charlm: a protobuf ModelProto starts with field 1 (ir_version,
    a varint), then field 2 (producer_name, a string) = "charlm" (export/onnxfile.py PRODUCER)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return False
    if head[:1] != b"\x08":
        return False
    end = next((i for i in range(1, 11) if i < len(head) and not head[i] & 0x80), 10) + 1
    return head[end:end + 8] == b"\x12\x06charlm"


_RECOGNISE = {CHECKPOINT: _is_checkpoint, METRICS: _is_metrics_log, VOCAB: _is_vocab, PLOT: _is_plot,
              TOKEN_CACHE: _is_token_cache, ONNX: _is_onnx_export}


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare the paths
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: list[Output], inputs: dict[str, str | None], force: bool = False) -> None:
    """Refuse, before any work, to write where the rule above forbids.

    outputs: the files about to be written; inputs: {"the corpus": path, ...} (None: absent).
    """
    inputs = {what: path for what, path in inputs.items() if path and path != "-"}
    for i, out in enumerate(outputs):
        for what, path in inputs.items():
            if _same_file(out.path, path):
                raise UsageError(f"{out.option} {out.path} is {what}: charlm never writes over one of "
                                 "its inputs; choose another file name")
        for other in outputs[:i]:
            if _same_file(out.path, other.path):
                raise UsageError(f"{out.option} and {other.option} name the same file ({out.path})")
        if os.path.isdir(out.path):
            raise UsageError(f"{out.option} {out.path} is a directory: give a file name")
        folder = os.path.dirname(os.path.abspath(out.path))
        if not os.path.isdir(folder):
            raise UsageError(f"cannot write {out.path}: folder {folder} does not exist (create it first)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write {out.path}: folder {folder} is not writable")
        if os.path.exists(out.path) and os.path.getsize(out.path) > 0 \
                and not _RECOGNISE[out.kind](out.path) and not force:
            raise UsageError(f"{out.option} {out.path} exists and is not a {out.kind}: refusing to "
                             "replace it (choose another name, or add --force to replace it)")


def is_foreign(out: Output) -> bool:
    """True when `out` exists, is not empty and is not a file of its kind (only --force let it by)."""
    return os.path.exists(out.path) and os.path.getsize(out.path) > 0 and not _RECOGNISE[out.kind](out.path)

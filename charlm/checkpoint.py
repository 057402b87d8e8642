"""Model files: one .npz archive of named arrays plus JSON metadata, safe to load.

Layout of a checkpoint (a zip of .npy members, readable by `np.load(allow_pickle=False)`):

    __meta__          uint8 (k,)  UTF-8 JSON: format, format_version, charlm_version, kind,
                                  model (ModelConfig), vocab (Vocab + tokenizer), train (...)
    param/<name>      the model parameters, e.g. param/rnn.0.W (H+D, G*H)
    optim/<slot.name> optimizer state (in "last" checkpoints), e.g. optim/m.rnn.0.W

Saving is atomic (temp file in the same folder, fsync, os.replace, fsync the folder): a
crash or a full disk mid-save leaves the previous file as it was. Loading never unpickles
and checks the format before reading anything else; every problem is a CheckpointError
whose one-line message names the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import partial

import numpy as np

from charlm import __version__
from charlm.decode import label_constraints
from charlm.errors import CharlmError, CheckpointError
from charlm.model import LanguageModel, ModelConfig
from charlm.tagger import MODELS, TaggerConfig
from charlm.vocab import Vocab

FORMAT = "charlm-checkpoint"
FORMAT_VERSION = 1
META = "__meta__"

# The member writer, a module attribute so tests can make it fail half-way.
_write_array = np.lib.format.write_array


def _json_default(obj):
    """Let numpy scalars/arrays (and paths) inside meta serialise as plain JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"meta value of type {type(obj).__name__} is not JSON-serialisable")


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path, arrays: dict, meta: dict) -> None:
    """Write arrays {name: ndarray} and meta (JSON-able dict) to `path`, atomically.

    meta["format"] and meta["format_version"] are set here. Object arrays are refused.
    Raises CheckpointError("could not save checkpoint to PATH: reason; ...") on failure,
    after removing the temporary file; the previous file at PATH is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    existed = os.path.exists(path)
    tmp = None
    try:
        meta = dict(meta, format=FORMAT, format_version=FORMAT_VERSION)
        if "charlm_version" not in meta:
            meta["charlm_version"] = __version__
        blob = json.dumps(meta, default=_json_default, ensure_ascii=False).encode("utf-8")
        members = {META: np.frombuffer(blob, dtype=np.uint8)}
        for name, arr in arrays.items():
            if not isinstance(name, str) or not name or name == META:
                raise ValueError(f"bad array name {name!r}")
            arr = np.asarray(arr)
            if arr.dtype.hasobject:
                raise ValueError(f"array {name} has dtype object (not allowed in model files)")
            members[name] = arr
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                                   suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a model file is an ordinary file
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, arr in members.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as member:
                        _write_array(member, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if not isinstance(err, Exception):
            raise  # KeyboardInterrupt etc.: cleaned up, propagate as is
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        after = "the previous file is intact" if existed else "no file was written"
        raise CheckpointError(f"could not save checkpoint to {path}: {reason}; {after}") from err


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint safely: returns (arrays {name: ndarray}, meta dict).

    Checked in order: a readable file; a complete zip archive; a __meta__ member with a
    JSON object; meta["format"] == FORMAT; format_version <= FORMAT_VERSION; then every
    array: no object dtype (never unpickled), float arrays all finite.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such model file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is not a file (a charlm model is one .npz file)")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        is_zip = zipfile.is_zipfile(path)
    except OSError as err:
        raise CheckpointError(f"could not read {path}: {err.strerror or err}") from None
    if not is_zip:
        if head == b"PK\x03\x04":
            raise CheckpointError(f"{path} is truncated or corrupt (incomplete archive); "
                                  "retrain or use an earlier checkpoint")
        raise CheckpointError(f"{path} is not a charlm model file")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if META not in names:
                raise CheckpointError(f"{path} is not a charlm model file (no metadata)")
            meta = _read_meta(path, z[META])
            arrays = {}
            for name in names:
                if name == META:
                    continue
                try:
                    arr = z[name]
                except ValueError as err:  # object arrays: np.load refuses to unpickle
                    if "pickle" in str(err).lower() or "object" in str(err).lower():
                        raise CheckpointError(
                            f"{path} contains a pickled object array ({name}): refusing to "
                            "load it (unsafe); this is not a charlm model file") from None
                    raise
                if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                    raise CheckpointError(f"{path} contains NaN/inf in {name}: the model is "
                                          "corrupt; retrain or use an earlier checkpoint")
                arrays[name] = arr
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({err}); retrain or use an "
                              "earlier checkpoint") from None
    except (MemoryError, OverflowError):  # a member whose header claims an absurd shape
        raise CheckpointError(f"{path} is corrupt (an array larger than memory); retrain or use "
                              "an earlier checkpoint") from None
    return arrays, meta


def _read_meta(path: str, raw: np.ndarray) -> dict:
    """Decode and check the __meta__ member: JSON object, right format, supported version."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path} is not a charlm model file (bad metadata)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path} has corrupt metadata (not JSON); retrain or use an "
                              "earlier checkpoint") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has corrupt metadata (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a charlm model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path} has a bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was made by a newer charlm (format {version} > "
                              f"{FORMAT_VERSION}): upgrade charlm")
    return meta


def model_arrays(model) -> dict:
    """{"param/<name>": array} for every parameter of a model of any task (no copies)."""
    return {f"param/{name}": arr for name, arr in model.params.items()}


def arrays_under(arrays: dict, prefix: str) -> dict:
    """The arrays whose name starts with "<prefix>/", with that prefix removed.

    arrays_under(arrays, "optim") -> {"m.rnn.0.W": ...} for Optimizer.load_state_dict.
    """
    p = prefix.rstrip("/") + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


@dataclass
class Loaded:
    """A model file, loaded. Unpacks as `model, vocab, meta = load_model(path)` for every task.

    task: "lm", "tag" or "classify" (files without a task are language models); char_vocab: the
    character Vocab of a tagger/classifier (None without a character encoder, and for language
    models); labels: the names of label ids 0..K-1 (None for language models).
    """

    model: object
    vocab: Vocab
    meta: dict
    task: str = "lm"
    char_vocab: Vocab | None = None
    labels: list | None = None

    def __iter__(self):
        return iter((self.model, self.vocab, self.meta))


def load_model(path) -> Loaded:
    """Load a model file of any task: a `Loaded` (unpacks as (model, vocab, meta)). See
    `model_from_checkpoint`."""
    path = os.fspath(path)
    arrays, meta = load_checkpoint(path)
    return model_from_checkpoint(arrays, meta, path)


def model_from_checkpoint(arrays: dict, meta: dict, path: str) -> Loaded:
    """A `Loaded` model from what `load_checkpoint(path)` returned, built by the loader of
    meta["task"] (TASK_LOADERS; no task: a language model).

    The "param/*" arrays must match model.param_shapes() exactly (names and shapes; float
    dtypes are cast to the config dtype) and the vocabularies and labels must fit the settings.
    """
    task = meta.get("task", "lm")
    if task not in TASK_LOADERS:
        raise CheckpointError(f"{path} holds a model for task {task!r}, which this version of charlm "
                              "does not know: upgrade charlm")
    for key in ("model", "vocab"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"{path} has no {key} settings: not a model file (or corrupt)")
    vocab = _vocab(meta["vocab"], path, "vocabulary")
    params = arrays_under(arrays, "param")
    for name, arr in params.items():
        if arr.dtype.kind != "f":
            raise CheckpointError(f"{path}: param/{name} has dtype {arr.dtype}, expected float")
    return TASK_LOADERS[task](meta, params, vocab, path)


def _vocab(d, path: str, what: str) -> Vocab:
    try:
        return Vocab.from_dict(d)
    except (CharlmError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path} has a bad {what}: {err}") from None


def _settings(cls, meta: dict, vocab: Vocab, path: str):
    """The model's configuration from meta["model"], checked against the word vocabulary."""
    try:
        config = cls.from_dict(meta["model"])
    except (CharlmError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has bad model settings: {err}") from None
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f"{path} is inconsistent: vocabulary has {len(vocab)} tokens but "
                              f"the model expects {config.vocab_size}")
    return config


def _build(cls, config, params: dict, path: str):
    """cls(config, params), the params cast to the config's dtype; names and shapes that do not fit
    the settings are a CheckpointError."""
    dtype = np.dtype(config.dtype)
    try:  # the constructor checks names and shapes against the config
        return cls(config, params={k: v.astype(dtype, copy=False) for k, v in params.items()})
    except (CharlmError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} does not match its model settings: {err}") from None


def _language_model(meta: dict, params: dict, vocab: Vocab, path: str) -> Loaded:
    config = _settings(ModelConfig, meta, vocab, path)
    return Loaded(_build(LanguageModel, config, params, path), vocab, meta)


def _sentence_model(meta: dict, params: dict, vocab: Vocab, path: str) -> Loaded:
    """A tagger or classifier: meta also holds "char_vocab" (a Vocab; may be absent or null without a
    character encoder) and "labels" (the names of label ids 0..K-1)."""
    config = _settings(TaggerConfig, meta, vocab, path)
    if config.task != meta["task"]:
        raise CheckpointError(f"{path} is inconsistent: a {meta['task']!r} file with settings for "
                              f"{config.task!r}")
    char_vocab = None if meta.get("char_vocab") is None else _vocab(meta["char_vocab"], path,
                                                                   "character vocabulary")
    if config.char_hidden and (char_vocab is None or len(char_vocab) != config.char_vocab_size):
        have = "none" if char_vocab is None else f"{len(char_vocab)} characters"
        raise CheckpointError(f"{path} is inconsistent: the model reads {config.char_vocab_size} "
                              f"characters but the character vocabulary has {have}")
    labels = meta.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) \
            or len(labels) != config.num_labels:
        raise CheckpointError(f"{path} is inconsistent: the model predicts {config.num_labels} labels "
                              f"but the file names {len(labels) if isinstance(labels, list) else 'no'} labels")
    cls = MODELS[config.task]
    if config.task == "tag":  # a tagger knows the transitions its labels allow (a CRF needs them)
        try:
            cls = partial(cls, constraints=label_constraints(labels, meta.get("tag_scheme")))
        except CharlmError as err:
            raise CheckpointError(f"{path} is inconsistent: {err}") from None
    return Loaded(_build(cls, config, params, path), vocab, meta, config.task, char_vocab, list(labels))


# How each task's model is built from a checkpoint: (meta, params, word vocab, path) -> Loaded.
TASK_LOADERS = {"lm": _language_model, "tag": _sentence_model, "classify": _sentence_model}

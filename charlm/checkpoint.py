"""Model files: one .npz archive of named arrays plus JSON metadata, safe to load.

Layout of a checkpoint (a zip of .npy members, readable by `np.load(allow_pickle=False)`):

    __meta__          uint8 (k,)  UTF-8 JSON: format, format_version, charlm_version, kind,
                                  task (DEFAULT_TASK when absent), model (the network's settings),
                                  vocab (Vocab + tokenizer), train (...), and the task's own keys
    param/<name>      the model parameters, e.g. param/rnn.0.W (H+D, G*H)
    optim/<slot.name> optimizer state (in "last" checkpoints), e.g. optim/m.rnn.0.W

Saving is atomic (temp file in the same folder, fsync, os.replace, fsync the folder): a
crash or a full disk mid-save leaves the previous file as it was. Loading never unpickles
and checks the format before reading anything else; every problem is a CheckpointError
whose one-line message names the file.

This module is the file format only: arrays and metadata. What the metadata means and which
network a file holds is its task's business: `charlm.tasks.load(path)` builds the model of any
file (the registry, dispatching on meta["task"]).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from charlm.errors import CheckpointError
from charlm.version import __version__

FORMAT = "charlm-checkpoint"
FORMAT_VERSION = 1
DEFAULT_TASK = "lm"  # the task of files without meta["task"] (0.1.0 wrote language models only)
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
    except (MemoryError, OverflowError):  # a member whose header claims an absurd shape
        raise CheckpointError(f"{path} is corrupt (an array larger than memory); retrain or use "
                              "an earlier checkpoint") from None
    except Exception as err:  # noqa: BLE001 - damage shows up as any error of zipfile or numpy
        # (BadZipFile, EOFError, ValueError, KeyError; a damaged .npy header even fails in
        # Python's tokenizer): every one is the same message
        raise CheckpointError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); retrain or "
                              "use an earlier checkpoint") from None
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
    """{"param/<name>": array} for every parameter of a model of any task, and {"fixed/<name>": array}
    for the arrays it carries untrained (`model.fixed`: a tagger's language models of --lm-features);
    no copies."""
    return {**{f"param/{name}": arr for name, arr in model.params.items()},
            **{f"fixed/{name}": arr for name, arr in getattr(model, "fixed", {}).items()}}


def arrays_under(arrays: dict, prefix: str) -> dict:
    """The arrays whose name starts with "<prefix>/", with that prefix removed.

    arrays_under(arrays, "optim") -> {"m.rnn.0.W": ...} for Optimizer.load_state_dict.
    """
    p = prefix.rstrip("/") + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}

"""Model settings: the base of the networks' configuration dataclasses (`lm.model.ModelConfig`,
`sentence.network.TaggerConfig`) and the checks they share.

A configuration is validated on construction (CharlmError naming the setting), written to a
checkpoint as a plain dict (`to_dict`, the file's meta["model"]) and read back with `from_dict`,
which refuses unknown keys and missing `REQUIRED` ones. The settings of the cells (which cell,
and each cell's own settings) are `nn.cells.CellSettings`, a subclass of `Settings`.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, fields

import numpy as np

from charlm.errors import CharlmError

DTYPES = ("float32", "float64")


def is_int(v) -> bool:
    """A whole number (Python or NumPy), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_settings(config, ints=(), flags=()) -> None:
    """The checks every model configuration shares, in place: `ints` are positive integers,
    `flags` true/false; the dtype and the dropout rate. Raises CharlmError naming the setting."""
    for name in ints:
        v = getattr(config, name)
        if not is_int(v) or v < 1:
            raise CharlmError(f"model setting {name} must be a positive integer, got {v!r}")
        setattr(config, name, int(v))
    if config.dtype not in DTYPES:
        raise CharlmError(f"dtype must be float32 or float64, got {config.dtype!r}")
    check_rate(config, "dropout")
    for name in flags:
        if not isinstance(getattr(config, name), (bool, np.bool_)):
            raise CharlmError(f"model setting {name} must be true or false, "
                              f"got {getattr(config, name)!r}")
        setattr(config, name, bool(getattr(config, name)))


def check_rate(config, name: str) -> None:
    """config.<name> is a probability in [0, 1) (a dropout rate): made a float, or CharlmError."""
    d = getattr(config, name)
    if isinstance(d, bool) or not isinstance(d, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(d) < 1.0:
        raise CharlmError(f"{name} must be a number in [0, 1), got {d!r}")
    setattr(config, name, float(d))


class Settings:
    """Base of the model configuration dataclasses: validated on construction (`validate`,
    CharlmError on nonsense), written to and read from a plain dict (a checkpoint's settings).
    `REQUIRED` lists the fields a dict must have."""

    REQUIRED: tuple = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """The configuration a mapping describes; unknown or missing keys are a CharlmError."""
        if not isinstance(d, dict):
            raise CharlmError("model settings must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CharlmError(f"unknown model setting(s): {', '.join(map(str, unknown))}")
        for key in cls.REQUIRED:
            if key not in d:
                raise CharlmError(f"model settings lack {key}")
        return cls(**d)

    @classmethod
    def defaults(cls) -> dict:
        """{setting: default} of the settings that have one: the task's defaults of its model
        options (`charlm train --hidden` and the rest) come from here."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def checked_params(params: dict, shapes: dict, dtype) -> dict:
    """Given parameters checked against a model's param_shapes() (names and shapes; a CharlmError
    names what is missing, unexpected or of the wrong shape) and made contiguous arrays of `dtype`,
    in the shapes' order."""
    missing = sorted(set(shapes) - set(params))
    extra = sorted(set(params) - set(shapes))
    wrong = sorted(f"{k} {np.shape(params[k])} (expected {shapes[k]})" for k in set(shapes) & set(params)
                   if tuple(np.shape(params[k])) != tuple(shapes[k]))
    if missing or extra or wrong:
        raise CharlmError("; ".join(x for x in (missing and f"missing {', '.join(missing)}",
                                                extra and f"unexpected {', '.join(extra)}",
                                                wrong and f"wrong shape {', '.join(wrong)}") if x))
    return {k: np.ascontiguousarray(params[k], dtype=dtype) for k in shapes}

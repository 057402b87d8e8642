"""A request body to checked parameters: strict UTF-8 JSON, one object, declared fields only.

`parse_body(bytes)` reads the JSON (400 for bytes that are not UTF-8, malformed JSON, NaN or
Infinity, numbers too large to be finite, nesting deeper than `MAX_DEPTH`, anything but an
object); `check_fields(declared, body, limits)` checks it against an endpoint's `Field`s: no
unknown field, every required field present, each value of its JSON type (a boolean is not a
number), in range and within the server's limits, and every string valid Unicode (no lone
surrogates from "\\ud800" escapes). It returns the parameters with the defaults filled in.

Each failure is a `RequestError(status, message)`; the message names the field (`texts[3]`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from charlm.serve.limits import Limits

MAX_DEPTH = 8
"""Deepest nesting of a request body: an object holding a list of token lists is 3 levels."""

REQUIRED = object()  # the default of a field that must be given


class RequestError(Exception):
    """A request the server refuses: an HTTP status (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Field:
    """One field of a request body.

    kind: "string", "integer", "number", "boolean", "strings" (a list of strings), "texts" (a
          non-empty list of texts; a text is a string, or with `token_lists` a list of tokens).
    limit: the `Limits` field bounding the value (integers) or the list's length (lists).
    nullable: null is accepted (and means "the default behaviour", e.g. no beam search).
    """

    name: str
    kind: str
    default: object = REQUIRED
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    limit: str | None = None
    nullable: bool = False
    choices: tuple = ()
    token_lists: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


# -- JSON -------------------------------------------------------------------------------------

def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is too large")
    return x


def parse_body(body: bytes) -> dict:
    """The JSON object in `body` (strict UTF-8); RequestError(400) for anything else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the body is not UTF-8 (byte {err.start} is {body[err.start]:#04x})") from None
    if not text.strip():
        raise RequestError(400, "the body is empty: send a JSON object")
    try:
        obj = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise RequestError(400, f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # json.JSONDecodeError, and int() of a number with too many digits
        raise RequestError(400, f"malformed JSON: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(obj, dict):
        raise RequestError(400, f"the body must be a JSON object, not {_json_type(obj)}")
    _check_depth(obj)
    return obj


def _check_depth(obj) -> None:
    """RequestError(400) when containers nest more than MAX_DEPTH levels (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RequestError(400, f"the JSON is nested more than {MAX_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _json_type(x) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, (int, float)):
        return "a number"
    if isinstance(x, str):
        return "a string"
    return "an array" if isinstance(x, list) else "an object"


# -- fields -----------------------------------------------------------------------------------

def check_fields(declared: tuple[Field, ...], body: dict, limits: Limits) -> dict:
    """The parameters of `body` (see the module docstring), defaults filled in."""
    known = {f.name: f for f in declared}
    unknown = [k for k in body if k not in known]
    if unknown:
        names = ", ".join(f.name for f in declared)
        raise RequestError(400, f"unknown field {unknown[0][:40]!r}; the fields are: {names}")
    params = {}
    for f in declared:
        if f.name not in body:
            if f.required:
                raise RequestError(400, f"missing field {f.name!r} ({f.help})")
            params[f.name] = f.default
        else:
            params[f.name] = _check_value(f, body[f.name], limits)
    return params


def _wrong(where: str, expected: str, value) -> RequestError:
    return RequestError(400, f"{where} must be {expected}, not {_json_type(value)}")


def check_string(where: str, value) -> str:
    if not isinstance(value, str):
        raise _wrong(where, "a string", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(400, f"{where} is not valid Unicode (a lone surrogate escape)") from None
    return value


def _check_value(f: Field, value, limits: Limits):
    if value is None and f.nullable:
        return None
    where = f.name
    if f.kind == "string":
        value = check_string(where, value)
        if f.choices and value not in f.choices:
            raise RequestError(400, f"{where} must be one of {', '.join(f.choices)}, not {value[:40]!r}")
        return value
    if f.kind == "boolean":
        if not isinstance(value, bool):
            raise _wrong(where, "true or false", value)
        return value
    if f.kind in ("integer", "number"):
        ok = isinstance(value, int) if f.kind == "integer" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise _wrong(where, "an integer" if f.kind == "integer" else "a number", value)
        if f.minimum is not None and value < f.minimum:
            raise RequestError(400, f"{where} must be at least {f.minimum:g}, not {value:g}")
        if f.maximum is not None and value > f.maximum:
            raise RequestError(400, f"{where} must be at most {f.maximum:g}, not {value:g}")
        if f.limit is not None and value > getattr(limits, f.limit):
            raise RequestError(400, f"{where} is {value:g}, above this server's limit of "
                                    f"{getattr(limits, f.limit):g} ({limits.option(f.limit)})")
        return float(value) if f.kind == "number" else value
    # lists: "strings" and "texts"
    if not isinstance(value, list):
        raise _wrong(where, "an array", value)
    if f.limit is not None and len(value) > getattr(limits, f.limit):
        raise RequestError(413, f"{where} has {len(value)} items, more than this server's limit of "
                                f"{getattr(limits, f.limit)} ({limits.option(f.limit)})")
    if f.kind == "texts" and not value:
        raise RequestError(400, f"{where} is empty: give at least one text")
    return [_check_item(f, f"{where}[{i}]", item) for i, item in enumerate(value)]


def _check_item(f: Field, where: str, item):
    if f.token_lists and isinstance(item, list):
        if not item:
            raise RequestError(400, f"{where} is an empty list of tokens")
        for j, tok in enumerate(item):
            if not check_string(f"{where}[{j}]", tok):
                raise RequestError(400, f"{where}[{j}] is an empty token")
        return item
    if not isinstance(item, str):
        raise _wrong(where, "a string or a list of tokens" if f.token_lists else "a string", item)
    return check_string(where, item)

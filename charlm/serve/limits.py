"""What one request may ask of the server: the limits of `charlm serve`, each an option.

Every limit is declared once in `LIMITS` (its option, default and meaning); the command builds its
click options from that table and the server a `Limits` record from their values. A request over
a limit is refused before any model work with a 4xx JSON error that names the option raising it:

    body size          413   --max-body      bytes of the request body, counted while it is read
    texts per request  413   --max-texts     texts to score, tag or classify; stop strings; samples
                                             (num, a number: 400)
    tokens per text    413   --max-tokens    tokens of a text, a prefix or a prime (the model's tokenizer)
    sample length      400   --max-length    tokens generated per sample or beam hypothesis
    beam width         400   --max-beam      hypotheses of a beam search
    next tokens        400   --max-k         tokens listed by /next
    time               408   --time-limit    seconds from the request's arrival to its answer
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limit:
    """One limit: the `Limits` field, the command-line option, its type, default and meaning."""

    name: str
    option: str
    type: type
    default: int | float
    help: str


LIMITS = (
    Limit("max_body", "--max-body", int, 1_000_000, "Largest request body in bytes (1 MB)."),
    Limit("max_texts", "--max-texts", int, 64,
          "Most texts per request (score, tag, classify), samples (num) and stop strings."),
    Limit("max_tokens", "--max-tokens", int, 2000, "Most tokens per text, prefix or prime."),
    Limit("max_length", "--max-length", int, 1000, "Most tokens generated per sample (length)."),
    Limit("max_beam", "--max-beam", int, 16, "Widest beam search (beam)."),
    Limit("max_k", "--max-k", int, 1000, "Most tokens listed by /next (k)."),
    Limit("time_limit", "--time-limit", float, 30.0,
          "Seconds a request may take, from its arrival to its answer (queueing included)."),
)


@dataclass(frozen=True)
class Limits:
    """The limits in force (see the module docstring); defaults as in `LIMITS`."""

    max_body: int = 1_000_000
    max_texts: int = 64
    max_tokens: int = 2000
    max_length: int = 1000
    max_beam: int = 16
    max_k: int = 1000
    time_limit: float = 30.0

    def option(self, name: str) -> str:
        """The command-line option of limit `name` ("max_texts" -> "--max-texts")."""
        return next(lim.option for lim in LIMITS if lim.name == name)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


"""A seeded generator of date-normalisation pairs: a date as people write it -> its ISO form.

    the 29th of August 1958  ->  1958-08-29
    29 aug 1958, August 29, 1958, 29/08/1958, saturday 29 august 1958, 29.8.1958, ...  ->  1958-08-29

The classic small sequence-to-sequence task: the output is short, every output character can be
traced to one part of the input, and the attention picture is easy to read. Only unambiguous forms
are written (numeric dates day first, month names in English), with four-digit years and the right
weekday; words come in lower case, capitalised or upper case. The same seed gives the same pairs on any machine
(standard library only: `random.Random`, `datetime.date`; no locale is read).
"""

from __future__ import annotations

import datetime as dt
import random
import string
from pathlib import Path

__all__ = ["FORMS", "date_pair", "date_pairs", "write_date_pairs"]

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FIRST, LAST = dt.date(1900, 1, 1), dt.date(2099, 12, 31)


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Each form writes a date from its parts: d day, m month (1-12), y year, M month name, A its
# abbreviation, W weekday name, w its abbreviation (names in lower case; casing comes after).
FORMS = (
    lambda d, m, y, M, A, W, w: f"the {_ordinal(d)} of {M} {y}",
    lambda d, m, y, M, A, W, w: f"{d} {A} {y}",
    lambda d, m, y, M, A, W, w: f"{M} {d}, {y}",
    lambda d, m, y, M, A, W, w: f"{d:02d}/{m:02d}/{y}",
    lambda d, m, y, M, A, W, w: f"{W} {d} {M} {y}",
    lambda d, m, y, M, A, W, w: f"{d}.{m}.{y}",
    lambda d, m, y, M, A, W, w: f"{A} {d} {y}",
    lambda d, m, y, M, A, W, w: f"{d} {M} {y}",
    lambda d, m, y, M, A, W, w: f"{W}, {M} {d}, {y}",
    lambda d, m, y, M, A, W, w: f"{d:02d}-{A}-{y}",
    lambda d, m, y, M, A, W, w: f"{y}-{m:02d}-{d:02d}",
    lambda d, m, y, M, A, W, w: f"{M} {_ordinal(d)}, {y}",
    lambda d, m, y, M, A, W, w: f"{_ordinal(d)} {M} {y}",
    lambda d, m, y, M, A, W, w: f"{w}, {d} {A} {y}",
    lambda d, m, y, M, A, W, w: f"{d} {A}. {y}",
    lambda d, m, y, M, A, W, w: f"{d}/{m}/{y}",
    lambda d, m, y, M, A, W, w: f"{W} the {_ordinal(d)} of {M}, {y}",
)
CASES = (str.lower, string.capwords, str.upper)


def date_pair(rng: random.Random, first: dt.date = FIRST, last: dt.date = LAST) -> tuple[str, str]:
    """One (written date, YYYY-MM-DD) pair for a date drawn uniformly from first..last."""
    day = dt.date.fromordinal(rng.randint(first.toordinal(), last.toordinal()))
    M, W = MONTHS[day.month - 1], WEEKDAYS[day.weekday()]
    form, case = rng.choice(FORMS), rng.choice(CASES)
    written = form(day.day, day.month, day.year, M, M[:3], W, W[:3])
    return case(written), day.isoformat()


def date_pairs(n: int, seed: int = 0, first: dt.date = FIRST, last: dt.date = LAST) -> list[tuple[str, str]]:
    """n pairs from random.Random(seed): the same list for the same arguments."""
    rng = random.Random(seed)
    return [date_pair(rng, first, last) for _ in range(n)]


def write_date_pairs(path, n: int, seed: int = 0) -> None:
    """Write n pairs as a SOURCE<TAB>TARGET file (charlm.seq2seq.pairs)."""
    Path(path).write_text("".join(f"{s}\t{t}\n" for s, t in date_pairs(n, seed)), encoding="utf-8")

"""Label sets and entity tag schemes.

An entity tag is "O" (outside any entity) or PREFIX-TYPE, e.g. B-PER. Three schemes are in use:

    IOB1   I- everywhere; B- only for the first token of an entity that directly follows
           another entity of the same type:          Teddy/I-PER Roosevelt/I-PER was/O
    IOB2   (BIO) every entity starts with B-:        Teddy/B-PER Roosevelt/I-PER was/O
    IOBES  B- first, I- inside, E- last, S- for a one-token entity:
                                                     Teddy/B-PER Roosevelt/E-PER was/O

An entity ("chunk") is found the way the CoNLL `conlleval` script finds it: a chunk starts at a
B- (or S-), at an I- or E- after O, and wherever the type changes; it ends before O, B- or S-,
after E- or S-, and where the type changes. So every sequence has one reading, valid or not, and
converting between schemes keeps the chunks. Taggers train and decode in IOB2 (or IOBES when the
data is IOBES), where a constrained decoder can rule out invalid sequences, and report in the
scheme of the data.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

SCHEMES = ("IOB1", "IOB2", "IOBES")  # the entity tag schemes, the one list of them
ALIASES = {"BIO": "IOB2"}  # other names of a scheme
OUTSIDE = "O"
_ENTITY_TAG = re.compile(r"([BIES])-(.+)")

Chunk = tuple  # (type, start, end): tokens start..end-1 form an entity of that type


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) as conlleval splits a tag: at the first "-"; "O" -> ("O", "")."""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def is_entity_tag(tag: str) -> bool:
    """True for "O" and B-/I-/E-/S-TYPE."""
    return tag == OUTSIDE or _ENTITY_TAG.fullmatch(tag) is not None


def is_entity_tagset(tags: Iterable[str]) -> bool:
    """True when every tag is "O" or B-/I-/E-/S-TYPE and at least one is not "O"."""
    tags = list(tags)
    return all(map(is_entity_tag, tags)) and any(t != OUTSIDE for t in tags)


def detect_scheme(sequences: Iterable[Sequence[str]]) -> str | None:
    """The entity scheme of tag sequences: "IOBES" (any E- or S-), "IOB1" (an entity that starts
    with I-), "IOB2" (every entity starts with B-), or None when the tags are not entity tags."""
    sequences = [list(s) for s in sequences]
    if not is_entity_tagset(t for s in sequences for t in s):
        return None
    if any(split_tag(t)[0] in "ES" for s in sequences for t in s if t != OUTSIDE):
        return "IOBES"
    for seq in sequences:
        prev_type = ""
        for tag in seq:
            prefix, kind = split_tag(tag)
            if prefix == "I" and kind != prev_type:
                return "IOB1"
            prev_type = kind
    return "IOB2"


def chunks(tags: Sequence[str]) -> list[Chunk]:
    """The entities of one sentence's tags, [(type, start, end)], found as the module docstring
    says (any of the three schemes, valid or not)."""
    out: list[Chunk] = []
    start, prev_prefix, prev_type = None, OUTSIDE, ""
    for t, tag in enumerate(tags):
        prefix, kind = split_tag(tag) if tag != OUTSIDE else (OUTSIDE, "")
        if start is not None and (prefix in ("O", "B", "S") or prev_prefix in ("E", "S") or kind != prev_type):
            out.append((prev_type, start, t))
            start = None
        if prefix != OUTSIDE and start is None:
            start = t
        prev_prefix, prev_type = prefix, kind
    if start is not None:
        out.append((prev_type, start, len(tags)))
    return out


def from_chunks(found: Sequence[Chunk], n: int, scheme: str) -> list[str]:
    """The n tags that mark the entities `found` in `scheme` (the inverse of `chunks`)."""
    tags = [OUTSIDE] * n
    prev_end, prev_type = None, None
    for kind, start, end in found:
        if scheme == "IOBES":
            if end - start == 1:
                tags[start] = f"S-{kind}"
            else:
                tags[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 2) + [f"E-{kind}"]
        else:
            touching = prev_end == start and prev_type == kind
            first = "B" if scheme == "IOB2" or touching else "I"
            tags[start:end] = [f"{first}-{kind}"] + [f"I-{kind}"] * (end - start - 1)
        prev_end, prev_type = end, kind
    return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """One sentence's entity tags rewritten in `scheme` (the same entities)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}")
    return from_chunks(chunks(tags), len(tags), scheme)


def scheme_named(name: str) -> str | None:
    """The scheme a name stands for, in any case ("iob2", "bio" -> "IOB2"), or None."""
    upper = str(name).upper()
    upper = ALIASES.get(upper, upper)
    return upper if upper in SCHEMES else None


def training_scheme(data_scheme: str | None) -> str | None:
    """The scheme a tagger learns and decodes in: IOBES for IOBES data, IOB2 for IOB1/IOB2, None
    for tags that are not entity tags."""
    if data_scheme is None:
        return None
    return "IOBES" if data_scheme == "IOBES" else "IOB2"


def entity_types(tags: Iterable[str]) -> list[str]:
    """The sorted entity types among tags ("B-PER", "I-LOC" -> ["LOC", "PER"])."""
    return sorted({split_tag(t)[1] for t in tags if t != OUTSIDE})


def label_list(values: Iterable[str]) -> list[str]:
    """The label set of a training set: its distinct values, sorted (so a model's label ids do not
    depend on the order of the file)."""
    return sorted(set(values))

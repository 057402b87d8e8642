"""Splitting a column file into train/dev/test parts by document, reproducibly: the rule that made
data/wikigold.{train,dev,test}.txt from data/wikigold.conll.txt (see data/README.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from charlm.sentence.formats import DOCSTART


@dataclass
class Split:
    """The text of each part of a document-level split ({"train": ..., "dev": ..., "test": ...})."""

    parts: dict = field(default_factory=dict)
    documents: dict = field(default_factory=dict)  # part -> number of documents


def split_documents(text: str, seed: int = 0, fractions=(("train", 0.8), ("dev", 0.1), ("test", 0.1))) -> Split:
    """Split a column file into parts by document, reproducibly.

    Documents are the runs of lines that each -DOCSTART- line opens (the text before the first one
    is a document too, when it has tokens). They are ranked by the SHA-256 of
    "charlm-split:{seed}:{index}" (index = position in the file, from 0); the first
    round(n * fraction) of that ranking go to the first part, the next to the second, the rest to
    the last. Each part keeps its documents in file order, each opened by "-DOCSTART- O" and a
    blank line, every sentence followed by one blank line.
    """
    docs: list[list[str]] = [[]]
    for line in text.split("\n"):
        fields = line.split()
        if fields and fields[0] == DOCSTART:
            docs.append([])
        else:
            docs[-1].append(line)
    docs = [d for d in docs if any(l.strip() for l in d)]
    n = len(docs)
    rank = sorted(range(n), key=lambda i: hashlib.sha256(f"charlm-split:{seed}:{i}".encode()).hexdigest())
    out, start = Split(), 0
    for k, (part, frac) in enumerate(fractions):
        stop = n if k == len(fractions) - 1 else start + round(n * frac)
        chosen = sorted(rank[start:stop])
        out.parts[part] = "".join(f"{DOCSTART} O\n\n" + _sentences_text(docs[i]) for i in chosen)
        out.documents[part] = len(chosen)
        start = stop
    return out


def _sentences_text(lines: list[str]) -> str:
    """Token lines, each sentence followed by exactly one blank line."""
    out, in_sentence = [], False
    for line in lines:
        if line.strip():
            out.append(line + "\n")
            in_sentence = True
        elif in_sentence:
            out.append("\n")
            in_sentence = False
    if in_sentence:
        out.append("\n")
    return "".join(out)

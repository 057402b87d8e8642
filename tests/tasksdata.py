"""Small synthetic corpora for the tagging and classification tests (built in memory, seeded)."""

from __future__ import annotations

import random

FIRST = ["Teddy", "Anna", "Harry", "Maria", "John", "Olga", "Pierre", "Chen"]
LAST = ["Roosevelt", "Smith", "Potter", "Garcia", "Ivanova", "Dubois", "Wang"]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["Cape", "Town"], ["Lima"]]
ORGS = [["Acme", "Corp"], ["United", "Nations"], ["Google"], ["Red", "Cross"]]
VERBS = ["visited", "left", "praised", "joined", "met"]


def ner_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """n sentences of (token, IOB1 tag): people, places and organisations in a few patterns,
    including two touching PER entities (the second starts with B-PER)."""
    rng = random.Random(seed)

    def person():
        return [(rng.choice(FIRST), "I-PER"), (rng.choice(LAST), "I-PER")]

    def span(words, kind):
        return [(w, f"I-{kind}") for w in words]

    out = []
    for _ in range(n):
        k = rng.randrange(4)
        if k == 0:
            s = person() + [(rng.choice(VERBS), "O")] + span(rng.choice(PLACES), "LOC") + [(".", "O")]
        elif k == 1:
            s = [("In", "O")] + span(rng.choice(PLACES), "LOC") + [(",", "O")] + span(rng.choice(ORGS), "ORG") + \
                [(rng.choice(VERBS), "O")] + person()
        elif k == 2:
            second = person()
            second[0] = (second[0][0], "B-PER")
            s = [("He", "O"), ("said", "O")] + person() + second + [("were", "O"), ("there", "O")]
        else:
            s = [("The", "O"), ("bears", "O"), ("are", "O"), ("on", "O"), ("sale", "O"), ("!", "O")]
        out.append(s)
    return out


def column_text(sentences, docstart_every: int = 10) -> str:
    """Sentences as a CoNLL-2003-style column file with -DOCSTART- lines."""
    parts = []
    for i, s in enumerate(sentences):
        if i % docstart_every == 0:
            parts.append("-DOCSTART- O\n\n")
        parts.append("".join(f"{w} {t}\n" for w, t in s) + "\n")
    return "".join(parts)


POS_LEXICON = {"DET": ["the", "a", "this"], "NOUN": ["cat", "dog", "mat", "story", "film"],
               "VERB": ["saw", "likes", "took", "found"], "ADJ": ["big", "red", "old"], "PUNCT": [".", "!"]}
POS_PATTERNS = [["DET", "NOUN", "VERB", "DET", "NOUN", "PUNCT"], ["DET", "ADJ", "NOUN", "VERB", "PUNCT"],
                ["NOUN", "VERB", "DET", "ADJ", "NOUN", "PUNCT"]]


def conllu_text(n: int, seed: int = 0) -> str:
    """n CoNLL-U sentences with UPOS tags (XPOS: the UPOS lowercased), a comment line each."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pattern = rng.choice(POS_PATTERNS)
        words = [rng.choice(POS_LEXICON[p]) for p in pattern]
        out.append(f"# sent_id = {i + 1}\n# text = {' '.join(words)}\n")
        for j, (w, p) in enumerate(zip(words, pattern), 1):
            out.append(f"{j}\t{w}\t{w}\t{p}\t{p.lower()}\t_\t0\tdep\t_\t_\n")
        out.append("\n")
    return "".join(out)


GOOD = ["great", "wonderful", "witty", "gorgeous", "moving"]
BAD = ["dull", "boring", "tedious", "awful", "clumsy"]
FILLER = ["a", "film", "the", "story", "is", "and", "very", "plot"]


def classification_text(n: int, seed: int = 0, fasttext: bool = False) -> str:
    """n labelled lines (pos/neg) whose label follows from the sentiment words they hold."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(GOOD if label == "pos" else BAD))
        text = " ".join(words)
        lines.append(f"__label__{label} {text}\n" if fasttext else f"{label}\t{text}\n")
    return "".join(lines)

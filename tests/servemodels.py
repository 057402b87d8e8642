"""The models the `charlm serve` tests serve, trained in memory in about a second: a character
language model, an entity tagger, a part-of-speech tagger and a classifier, saved in a folder."""

from __future__ import annotations

from pathlib import Path

import charlm
from tasksdata import classification_text, column_text, conllu_text, ner_sentences
from tinymodel import TEXT, build, save

TINY = dict(hidden=16, embedding=8, char_embedding=4, char_hidden=4, layers=1, batch_size=8, eval_every=1000)
ENTITY_SENTENCE = "He said, Teddy Roosevelt was a great President"   # the tagger finds Teddy Roosevelt (PER)


def train_models(folder: Path) -> dict[str, str]:
    """{name: path} of the four models, written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ner, pos, cls = folder / "ner.txt", folder / "pos.conllu", folder / "cls.tsv"
    ner.write_text(column_text(ner_sentences(60, seed=1)), encoding="utf-8")
    pos.write_text(conllu_text(40, seed=1), encoding="utf-8")
    cls.write_text(classification_text(80, seed=1), encoding="utf-8")
    paths = {"lm": save(folder / "lm.npz", *build("char", "stream", text=TEXT + "The apple and pear salad\n",
                                                  steps=30, hidden=16, embedding=8)[:2])}
    for name, corpus, options in (("ner", ner, dict(task="tag", max_steps=80, lr=0.02)),
                                  ("pos", pos, dict(task="tag", format="conllu", tag_column="upos", max_steps=30)),
                                  ("cls", cls, dict(task="classify", max_steps=30))):
        paths[name] = charlm.train(corpus, output=folder / f"{name}.npz", **options, **TINY).path
    return paths

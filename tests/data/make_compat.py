"""Make the compatibility fixtures of today's checkpoints: run once, with the charlm to freeze.

    python tests/data/make_compat.py            # from the repository root, in its virtual environment

Writes into tests/data/, for each task (language model, tagger with its character encoder, classifier):

    compat-main-TASK.npz                the best model of a run stopped after STOP steps
    compat-main-TASK.last.npz           that run's resumable state (step STOP)
    compat-main-TASK-straight.last.npz  the same run, uninterrupted, at step END
    compat-main.json                    what the best and .last models predict now (scores,
                                        next-token and tag/label probabilities), and the options

and the training files the runs read (compat-ner.txt, compat-reviews.tsv; the language model reads
the existing compat-corpus.txt). `tests/test_compat.py` loads every file, checks the predictions
against compat-main.json, and resumes each .last file to step END, which must end where the
uninterrupted run ended.

The script uses the public API only (`charlm.train`, `charlm.load`), so it runs on any charlm from
the one that wrote the fixtures (main at 27129ab) on; run it again only to freeze a new format.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the synthetic corpora

import charlm  # noqa: E402
from tasksdata import classification_text, column_text, ner_sentences  # noqa: E402

STOP, END = 6, 12  # the fixture's .last file is at step STOP; the straight run ends at END
SENTENCES = ["To be, or not to be", "Whether 'tis nobler in the mind"]
PREFIX = "To be, or not"
TAG = ["Teddy Roosevelt visited Paris .", ["He", "said", "Anna", "Smith", "were", "there"]]
CLASSIFY = ["a great film", "dull and boring plot", "the story is very witty"]

# Each run: (task, training file, charlm.train options). Tiny sizes: the files stay a few kB.
RUNS = {
    "lm": ("corpus.txt", dict(hidden=8, embedding=4, layers=1, seq_len=10, batch_size=3, lr=5e-3,
                              dropout=0.1, eval_every=4, seed=5)),
    "tag": ("ner.txt", dict(task="tag", hidden=6, embedding=5, char_embedding=3, char_hidden=3, layers=1,
                            batch_size=8, eval_every=4, seed=3)),
    "classify": ("reviews.tsv", dict(task="classify", hidden=6, embedding=5, char_embedding=3, char_hidden=3,
                                     layers=1, pool="max", batch_size=8, eval_every=4, seed=4)),
}
DATA = {"corpus.txt": "compat-corpus.txt", "ner.txt": "compat-ner.txt", "reviews.tsv": "compat-reviews.tsv"}


def predictions(model) -> dict:
    """What a model predicts now, as JSON numbers (the test compares them)."""
    if isinstance(model, charlm.LM):
        return {"score": [[s.logprob, s.per_token] for s in model.score(SENTENCES)],
                "next": [[t, p] for t, p in model.next_tokens(PREFIX, k=5)]}
    if isinstance(model, charlm.Tagger):
        return {"tag": [[t.tags, t.probs] for t in model.tag(TAG)]}
    return {"classify": [c.probs for c in model.classify(CLASSIFY, top_k=None)]}


def main() -> None:
    (HERE / "compat-ner.txt").write_text(column_text(ner_sentences(40, seed=7)), encoding="utf-8")
    (HERE / "compat-reviews.tsv").write_text(classification_text(60, seed=7), encoding="utf-8")
    record = {"charlm_version": charlm.__version__, "stop": STOP, "end": END, "sentences": SENTENCES,
              "prefix": PREFIX, "tag": TAG, "classify": CLASSIFY, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for name, fixture in DATA.items():
            shutil.copy(HERE / fixture, name)
        for task, (corpus, options) in RUNS.items():
            charlm.train(corpus, output=f"{task}.npz", max_steps=STOP, **options)
            charlm.train(corpus, output=f"{task}-straight.npz", max_steps=END, **options)
            files = {"best": f"compat-main-{task}.npz", "last": f"compat-main-{task}.last.npz"}
            shutil.copy(f"{task}.npz", HERE / files["best"])
            shutil.copy(f"{task}.last.npz", HERE / files["last"])
            shutil.copy(f"{task}-straight.last.npz", HERE / f"compat-main-{task}-straight.last.npz")
            record["runs"][task] = {"corpus": corpus, "options": options, "files": files,
                                    **{kind: predictions(charlm.load(HERE / f)) for kind, f in files.items()}}
    (HERE / "compat-main.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

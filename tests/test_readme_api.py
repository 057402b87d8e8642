"""The README's "Python API" section runs as written: its ```python blocks, in order, in one
namespace, in a scratch folder that holds copies of data/dinos.txt and data/wikigold.*.txt and a
small data/reviews.tsv."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import charlm
from tasksdata import classification_text

README = Path(__file__).resolve().parent.parent / "README.md"


def api_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Python API\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_shows_every_call():
    code = "\n".join(api_blocks())
    for call in ("charlm.train(", "charlm.load(", ".score(", ".next_tokens(", ".sample(",
                 ".complete(", ".perplexity(", ".evaluate(", ".info(", "charlm.CharlmError",
                 'task="tag"', 'task="classify"', ".tag(", ".spans(", ".classify("):
        assert call in code, call


def test_the_examples_run(tmp_path, monkeypatch, data_dir, capsys):
    (tmp_path / "data").mkdir()
    for name in ("dinos.txt", "wikigold.train.txt", "wikigold.dev.txt", "wikigold.test.txt"):
        shutil.copy(data_dir / name, tmp_path / "data" / name)
    (tmp_path / "data" / "reviews.tsv").write_text(classification_text(200, seed=3), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = api_blocks()
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md Python API block {i + 1}", "exec"), namespace)
    lm = namespace["lm"]
    assert isinstance(lm, charlm.LM) and (tmp_path / "dinos.npz").exists()
    out = capsys.readouterr().out
    assert "tyrannosaurus" in out and "saurus" in out
    ner, clf = namespace["ner"], namespace["clf"]
    assert isinstance(ner, charlm.Tagger) and isinstance(clf, charlm.Classifier)
    assert (tmp_path / "ner.npz").exists() and (tmp_path / "reviews.npz").exists()
    assert "['Teddy', 'bears', 'are', 'on', 'sale', '!']" in out
    assert "ner.npz: a Tagger (task tag) has no sample(), a method of LM" in out

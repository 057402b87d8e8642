"""The Python API of taggers and classifiers (`charlm.Tagger`, `charlm.Classifier`, `charlm.train(task=...)`):
the same results as `charlm tag`, `charlm classify` and `charlm eval` on the same model, and clear errors
for a model used as another task's."""

from __future__ import annotations

import json

import pytest

import charlm
from charlm.errors import UsageError
from tasksdata import classification_text, column_text, conllu_text, ner_sentences
from tinymodel import build, save

TINY = dict(hidden=8, embedding=8, char_embedding=4, char_hidden=4, layers=1, batch_size=8, eval_every=10,
            max_steps=30)
TEDDY = ["He said, Teddy Roosevelt was a great President", "Teddy bears are on sale!"]
TEXTS = ["a great film", "dull and boring", "the plot is very witty and moving"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An entity tagger (IOB1), a part-of-speech tagger and a classifier trained by charlm.train, a
    language model, and their data files."""
    d = tmp_path_factory.mktemp("api_tasks")
    files = {"ner": d / "ner.txt", "ner_dev": d / "ner.dev.txt", "pos": d / "pos.conllu", "cls": d / "cls.tsv",
             "cls_ft": d / "cls.ft"}
    files["ner"].write_text(column_text(ner_sentences(60, seed=1)), encoding="utf-8")
    files["ner_dev"].write_text(column_text(ner_sentences(20, seed=2)), encoding="utf-8")
    files["pos"].write_text(conllu_text(40, seed=1), encoding="utf-8")
    files["cls"].write_text(classification_text(80, seed=1), encoding="utf-8")
    files["cls_ft"].write_text(classification_text(20, seed=2, fasttext=True), encoding="utf-8")
    out = {"files": files, "dir": d}
    out["ner"] = charlm.train(files["ner"], task="tag", val_file=files["ner_dev"], output=d / "ner.npz", **TINY)
    out["pos"] = charlm.train(files["pos"], task="tag", format="conllu", tag_column="upos",
                              bidirectional=False, output=d / "pos.npz", **TINY)
    out["cls"] = charlm.train(files["cls"], task="classify", pool="max", output=d / "cls.npz", **TINY)
    model, vocab, _ = build("word", "lines", steps=5, hidden=8, embedding=4)
    out["lm"] = charlm.load(save(d / "lm.npz", model, vocab))
    return out


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def as_json(x):
    return json.loads(json.dumps(x))


# -- charlm.train(task=...) ------------------------------------------------------------------------

def test_train_returns_taggers_and_classifiers_the_commands_load(models, stdout_of):
    d = models["dir"]
    for name, cls, task in (("ner", charlm.Tagger, "tag"), ("pos", charlm.Tagger, "tag"),
                            ("cls", charlm.Classifier, "classify")):
        m = models[name]
        assert type(m) is cls and m.task == task and m.path == str(d / f"{name}.npz")
        assert type(charlm.load(m.path)) is cls and (d / f"{name}.last.npz").exists()
        assert as_json(m.info()) == json.loads(stdout_of("info", m.path, "--json"))
    options = models["pos"].info()["training"]["options"]
    assert options["task"] == "tag" and options["model"]["bidirectional"] is False
    assert options["format"] == "conllu" and options["tag_column"] == "upos"
    assert models["cls"].info()["training"]["options"]["model"]["pool"] == "max"
    assert stdout_of("tag", "-m", models["ner"].path, *TEDDY).count("/") >= 12


# -- the same results as the commands ---------------------------------------------------------------

def test_tag_equals_charlm_tag_json(models, stdout_of):
    ner = models["ner"]
    path = ner.path
    assert [t.to_dict() for t in ner.tag(TEDDY)] == jsonl(stdout_of("tag", "-m", path, "--json", *TEDDY))
    got = [t.to_dict() for t in ner.tag(TEDDY, scheme="iobes")]
    assert got == jsonl(stdout_of("tag", "-m", path, "--json", "--scheme", "iobes", *TEDDY))
    assert any(tag.startswith(("S-", "E-")) for t in got for tag in t["tags"]) or \
        all(tag == "O" for t in got for tag in t["tags"])
    cli = jsonl(stdout_of("tag", "-m", path, "--json", "--spans", *TEDDY))
    assert ner.spans(TEDDY) == [[(s["text"], s["type"], s["start"], s["end"]) for s in d["spans"]] for d in cli]
    pos = models["pos"]
    assert [t.to_dict() for t in pos.tag(TEXTS)] == jsonl(stdout_of("tag", "-m", pos.path, "--json", *TEXTS))


def test_a_sentence_is_a_text_or_a_token_list(models):
    ner = models["ner"]
    (one,) = ner.tag(TEDDY[0])  # a lone string is one sentence
    assert one.tokens == ner.tokenizer.tokenize(TEDDY[0]) and one.tokens[:3] == ["He", "said", ","]
    (again,) = ner.tag([one.tokens])
    assert again == one
    assert ner.tag(iter(TEDDY)) == ner.tag(TEDDY)
    assert len(one.tags) == len(one.probs) == len(one.tokens) and all(0 < p <= 1 for p in one.probs)
    clf = models["cls"]
    (c,) = clf.classify([["a", "great", "film"]], top_k=None)
    assert c.text == "a great film" and c.to_dict() == clf.classify("a great film", top_k=None)[0].to_dict()


def test_classify_equals_charlm_classify_json(models, stdout_of):
    clf = models["cls"]
    path = clf.path
    assert [c.to_dict() for c in clf.classify(TEXTS)] == jsonl(stdout_of("classify", "-m", path, "--json", *TEXTS))
    got = [c.to_dict() for c in clf.classify(TEXTS, top_k=2)]
    assert got == jsonl(stdout_of("classify", "-m", path, "--json", "--top-k", "2", *TEXTS))
    assert all(len(c["probs"]) == 2 for c in got)
    for c in clf.classify(TEXTS, top_k=None):
        assert set(c.probs) == set(clf.labels) == {"pos", "neg"}
        assert sum(c.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert c.label == max(c.probs, key=c.probs.get) and c.prob == c.probs[c.label]


@pytest.mark.parametrize("name,data", [("ner", "ner_dev"), ("pos", "pos"), ("cls", "cls_ft"), ("cls", "cls")])
def test_evaluate_equals_charlm_eval_json(models, stdout_of, name, data):
    model, path = models[name], models["files"][data]
    report = model.evaluate(path)
    assert as_json(report) == json.loads(stdout_of("eval", "-m", model.path, path, "--json"))
    assert report["task"] == model.task
    assert model.evaluate(path.read_text(encoding="utf-8")) == report  # a text, not only a file
    if name == "ner":
        assert report["scheme"] == "IOB1" and report["entity_f1"] is not None
    if name == "pos":
        assert report["entity_f1"] is None
        assert model.evaluate(path, tag_column="upos") == report


# -- wrong task, bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,method,needles", [
    ("ner", "sample", ["ner.npz: a Tagger (task tag) has no sample(), a method of LM",
                       "it has evaluate, info, spans, tag"]),
    ("ner", "classify", ["a Tagger", "no classify(), a method of LM and Classifier"]),  # a conditional LM classifies
    ("cls", "tag", ["cls.npz: a Classifier (task classify) has no tag(), a method of Tagger"]),
    ("cls", "next_tokens", ["a Classifier", "no next_tokens(), a method of LM"]),
    ("lm", "spans", ["lm.npz: a LM (task lm) has no spans(), a method of Tagger", "sample"]),
])
def test_a_method_of_another_task_says_what_the_model_is(models, name, method, needles):
    model = models[name]
    assert not hasattr(model, method)
    with pytest.raises(AttributeError) as err:
        getattr(model, method)
    for n in needles:
        assert n in str(err.value), str(err.value)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_method'"):
        model.no_such_method


def test_bad_input_is_a_usage_error(models):
    ner, pos, clf, files = models["ner"], models["pos"], models["cls"], models["files"]
    with pytest.raises(UsageError, match="sentence 2 is empty: nothing to tag"):
        ner.tag(["Teddy", "  "])
    with pytest.raises(UsageError, match="text 1 is empty: nothing to classify"):
        clf.classify("")
    for bad in ([3], [["Teddy", ""]], [["Teddy", 4]]):
        with pytest.raises(UsageError, match="a list of tokens"):
            ner.tag(bad)
    with pytest.raises(UsageError, match="spans needs entity tags"):
        pos.spans(TEXTS)
    with pytest.raises(UsageError, match="--scheme needs entity tags"):
        pos.tag(TEXTS, scheme="iob2")
    with pytest.raises(UsageError, match="--scheme must be one of"):
        ner.tag(TEDDY, scheme="bio")
    for k in (0, 1.5, True):
        with pytest.raises(UsageError, match="top_k"):
            clf.classify(TEXTS, top_k=k)
    with pytest.raises(UsageError, match="batch_size"):
        ner.tag(TEDDY, batch_size=0)
    with pytest.raises(UsageError, match="classification format; the model is a tagger"):
        ner.evaluate(files["cls"], format="tab")
    with pytest.raises(UsageError, match="--format conllu applies to taggers; the model is a classifier"):
        clf.evaluate(files["pos"], format="conllu")
    with pytest.raises(charlm.DataError):
        clf.evaluate("no label here\n")

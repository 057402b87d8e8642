"""The command line of the tagging and classification tasks: charlm train --task, tag, classify, eval."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.sentence.formats import read_tagged
from charlm.sentence.labels import chunks
from tasksdata import classification_text, column_text, conllu_text, ner_sentences

TINY = ["--hidden", "8", "--embedding", "8", "--char-embedding", "4", "--char-hidden", "4", "--layers", "1",
        "--batch-size", "8", "--eval-every", "10", "-q"]
TEDDY = ["He said, Teddy Roosevelt was a great President", "Teddy bears are on sale!"]


def _invoke(*args, input=None):
    r = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    return r


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tagger (IOB1 entities), a part-of-speech tagger, a classifier and a language model."""
    d = tmp_path_factory.mktemp("cli_tasks")
    paths = {"ner": d / "ner.txt", "ner_dev": d / "ner.dev.txt", "pos": d / "pos.conllu",
             "cls": d / "cls.tsv", "cls_ft": d / "cls.ft", "lm_text": d / "lm.txt"}
    paths["ner"].write_text(column_text(ner_sentences(60, seed=1)))
    paths["ner_dev"].write_text(column_text(ner_sentences(20, seed=2)))
    paths["pos"].write_text(conllu_text(40, seed=1))
    paths["cls"].write_text(classification_text(80, seed=1))
    paths["cls_ft"].write_text(classification_text(20, seed=2, fasttext=True))
    paths["lm_text"].write_text("the cat sat on the mat\nthe dog sat on the log\n" * 10)
    runs = {"ner.npz": ["--task", "tag", paths["ner"], "--val-file", paths["ner_dev"]],
            "pos.npz": ["--task", "tag", paths["pos"]],
            "cls.npz": ["--task", "classify", paths["cls"], "--pool", "max"],
            "lm.npz": [paths["lm_text"], "--seq-len", "8"]}
    for name, args in runs.items():
        extra = TINY if name != "lm.npz" else ["--hidden", "8", "--embedding", "4", "--layers", "1", "-q"]
        r = _invoke("train", *args, "-o", d / name, "--max-steps", "30", *extra)
        assert r.exit_code == 0, r.output
        paths[name] = d / name
    return paths


def test_train_progress_shows_the_task_metric(trained, tmp_path):
    r = _invoke("train", "--task", "tag", trained["ner"], "--val-file", trained["ner_dev"], "-o", tmp_path / "m.npz",
                "--max-steps", "10", *TINY[:-1])
    assert r.exit_code == 0, r.output
    assert "9 tags (IOB1)" in r.stderr or "tags (IOB1)" in r.stderr
    assert "training and" in r.stderr and "sentences" in r.stderr
    assert "F1" in r.stderr and "accuracy" in r.stderr and "bits/char" not in r.stderr


def test_tag_sentences_default_json_spans_and_scheme(trained):
    m = trained["ner.npz"]
    r = _invoke("tag", "-m", m, *TEDDY)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("He/") and "/" in lines[1]
    pairs = [tok.rsplit("/", 1) for tok in lines[0].split()]
    assert [p[0] for p in pairs] == ["He", "said", ",", "Teddy", "Roosevelt", "was", "a", "great", "President"]
    r = _invoke("tag", "-m", m, "--json", "--spans", TEDDY[0])
    d = json.loads(r.stdout)
    assert set(d) == {"tokens", "tags", "probs", "spans"} and len(d["probs"]) == len(d["tokens"]) == 9
    assert all(0 < p <= 1 for p in d["probs"])
    assert [(s["type"], s["start"], s["end"]) for s in d["spans"]] == chunks(d["tags"])
    r = _invoke("tag", "-m", m, "--spans", *TEDDY)
    want = [json.loads(line)["spans"] for line in _invoke("tag", "-m", m, "--json", "--spans", *TEDDY).stdout.splitlines()]
    blocks = [[f"{s['text']}  {s['type']}  {s['start']}-{s['end']}" for s in spans] for spans in want]
    assert r.stdout.splitlines() == blocks[0] + [""] + blocks[1]  # a blank line between sentences
    r = _invoke("tag", "-m", m, "--json", "--scheme", "iobes", TEDDY[0])
    tags = json.loads(r.stdout)["tags"]
    assert all(t == "O" or t[0] in "BIES" for t in tags)


def test_tag_files_conll_output_reads_back(trained, tmp_path):
    m = trained["ner.npz"]
    r = _invoke("tag", "-m", m, "--file", trained["ner_dev"], "--conll")
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.txt"
    out.write_text(r.stdout)
    tagged = read_tagged(out)
    gold = read_tagged(trained["ner_dev"])
    assert [s.tokens for s in tagged.sentences] == [s.tokens for s in gold.sentences]
    text = tmp_path / "plain.txt"
    text.write_text("\n".join(TEDDY) + "\n")
    r = _invoke("tag", "-m", m, "--file", text)
    assert r.stdout.splitlines()[1].startswith("Teddy/")  # plain text, cut by the tokenizer
    r = _invoke("tag", "-m", m, "--file", "-", "--format", "text", input="Teddy bears\n")
    assert r.stdout.startswith("Teddy/") and r.stdout.count("/") == 2
    r = _invoke("tag", "-m", m, "--file", "-", input=trained["ner_dev"].read_text())  # detected: columns
    assert r.stdout.splitlines()[0].split()[0].rsplit("/", 1)[0] == read_tagged(trained["ner_dev"]).sentences[0].tokens[0]
    assert len(r.stdout.splitlines()) == len(read_tagged(trained["ner_dev"]).sentences)
    r = _invoke("tag", "-m", trained["pos.npz"], "--file", trained["pos"], "--json")
    first = json.loads(r.stdout.splitlines()[0])
    assert first["tokens"] == read_tagged(trained["pos"]).sentences[0].tokens


def test_classify_texts_top_k_json_and_files(trained):
    m = trained["cls.npz"]
    r = _invoke("classify", "-m", m, "a great film", "dull and boring")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] in ("pos", "neg") and lines[0].endswith("a great film")
    assert 0.5 <= float(lines[0].split()[1]) <= 1
    r = _invoke("classify", "-m", m, "--top-k", "2", "--json", "a great film")
    d = json.loads(r.stdout)
    assert set(d) == {"text", "label", "prob", "probs"} and set(d["probs"]) == {"pos", "neg"}
    assert d["probs"][d["label"]] == d["prob"] and abs(sum(d["probs"].values()) - 1) < 1e-4
    r = _invoke("classify", "-m", m, "--file", trained["cls_ft"])  # labelled lines: labels removed
    assert len(r.stdout.splitlines()) == 20 and "__label__" not in r.stdout


def test_eval_json_keys_for_every_task(trained):
    r = _invoke("eval", "-m", trained["ner.npz"], trained["ner_dev"], "--json")
    d = json.loads(r.stdout)
    assert d["task"] == "tag" and d["scheme"] == "IOB1"
    assert {"accuracy", "entity_precision", "entity_recall", "entity_f1", "per_type", "per_tag"} <= set(d)
    assert set(d["per_type"]) <= {"PER", "LOC", "ORG"} and d["tokens"] > 0
    r = _invoke("eval", "-m", trained["pos.npz"], trained["pos"], "--json")
    d = json.loads(r.stdout)
    assert d["task"] == "tag" and d["entity_f1"] is None and set(d["per_tag"]) <= {"ADJ", "DET", "NOUN", "PUNCT", "VERB"}
    r = _invoke("eval", "-m", trained["cls.npz"], trained["cls_ft"], "--json")
    d = json.loads(r.stdout)
    assert d["task"] == "classify" and {"accuracy", "macro_f1", "per_class", "confusion"} <= set(d)
    assert sum(map(sum, d["confusion"])) == 20
    r = _invoke("eval", "-m", trained["cls.npz"], trained["cls_ft"])
    assert "macro-F1" in r.stdout and "confusion" in r.stdout


def test_eval_of_a_language_model_is_score_stream(trained):
    e = json.loads(_invoke("eval", "-m", trained["lm.npz"], trained["lm_text"], "--json").stdout)
    s = json.loads(_invoke("score", "-m", trained["lm.npz"], "--file", trained["lm_text"], "--stream",
                           "--json").stdout.splitlines()[-1])
    assert e["task"] == "lm"
    for key in ("tokens", "nats_per_token", "perplexity"):
        assert e[key] == s[key]


@pytest.mark.parametrize("command,model,needles", [
    (["sample"], "ner.npz", ["is a tagger (task tag)", "use `charlm tag`", "not `charlm sample`"]),
    (["score", "hello"], "cls.npz", ["is a classifier (task classify)", "`charlm classify`"]),
    (["tag", "hello"], "lm.npz", ["is a language model (task lm)", "`charlm score` or `charlm sample`"]),
    (["classify", "hello"], "ner.npz", ["is a tagger", "not `charlm classify`"]),
    (["tag", "hello"], "cls.npz", ["is a classifier", "not `charlm tag`"]),
])
def test_a_model_used_with_the_wrong_command(trained, command, model, needles):
    r = _invoke(*command, "-m", trained[model])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    for n in needles:
        assert n in r.stderr, r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--task", "tag", "--seq-len", "20"], "--seq-len does not apply to --task tag"),
    (["--task", "tag", "--tie-weights"], "--tie-weights does not apply"),
    (["--task", "tag", "--pool", "max"], "--pool does not apply to --task tag"),
    (["--char-hidden", "5"], "--char-hidden applies to --task tag and --task classify"),
    (["--task", "classify", "--format", "conllu"], "--format must be one of tab, fasttext"),
    (["--task", "tag", "--level", "char"], "--level char does not apply"),
])
def test_train_refuses_options_the_task_cannot_use(trained, tmp_path, args, needle):
    r = _invoke("train", trained["ner"], "-o", tmp_path / "x.npz", *args)
    assert r.exit_code == 2 and needle in r.stderr, r.stderr
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("command", ["tag", "classify", "eval"])
def test_help_has_examples(command):
    r = _invoke(command, "--help")
    assert r.exit_code == 0 and "Examples:" in r.stdout

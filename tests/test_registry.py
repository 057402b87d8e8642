"""The task registry and the option declarations (issue 19): one object per task, each option
declared once; what the refusals, `charlm info` and `charlm plot` say comes from them (issue 18,
items 9, 17 and 22)."""

from __future__ import annotations

import inspect
import json

import pytest

from charlm import tasks
import charlm
from charlm.cli.train import train_command
from charlm.errors import UsageError
from charlm.tasks.training import TrainOptions, from_flags
from tasksdata import classification_text, column_text, ner_sentences

TINY = ["--hidden", "6", "--embedding", "5", "--char-hidden", "3", "--char-embedding", "3", "--layers", "1",
        "--batch-size", "8", "-q"]


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    d = tmp_path_factory.mktemp("registry")
    (d / "ner.txt").write_text(column_text(ner_sentences(40)), encoding="utf-8")
    return d


def test_the_registry_knows_each_task_by_name():
    assert list(tasks.TASKS) == ["lm", "tag", "classify"]
    for name, task in tasks.TASKS.items():
        assert tasks.get(name) is task and task.name == name and task.api_class.__name__ in charlm.__all__
    with pytest.raises(UsageError, match="unknown task 'seq2seq': charlm knows lm, tag, classify"):
        tasks.get("seq2seq")


def test_every_option_is_declared_once_and_reaches_the_command_line_and_the_api():
    names = [o.name for o in tasks.OPTIONS]
    assert len(names) == len(set(names))
    exposed = {o.name for o in tasks.OPTIONS if o.cli}
    assert exposed | {"resume", "quiet"} == {p.name for p in train_command.params} - {"corpus"}
    assert exposed | {"corpus", "resume", "progress"} == set(inspect.signature(charlm.train).parameters)
    assert all(o.name in charlm.train.__doc__ for o in tasks.OPTIONS if o.cli)


def test_each_task_default_comes_from_its_network_settings():
    lm, tag = tasks.get("lm"), tasks.get("tag")
    assert lm.defaults()["cell"] == lm.config.defaults()["cell"] == "gru"
    assert tag.defaults()["cell"] == "lstm" and tag.defaults()["level"] == "word"
    opts = from_flags(corpus="c.txt")
    assert opts.model["cell"] == "gru" and opts.model["dropout"] == 0.1 and opts.seq_len == 100
    help_text = train_command.get_help(train_command.make_context("train", ["c.txt"]))
    assert "[default: gru (lm), lstm (tag, classify)]" in " ".join(help_text.split())


@pytest.mark.parametrize("task,kw,needle", [
    ("lm", {"model": {"pool": "max"}}, "--pool applies to --task classify, not to a language model"),
    ("lm", {"tag_column": "xpos"}, "--tag-column applies to --task tag, not to a language model"),
    ("lm", {"model": {"char_hidden": 4}}, "--char-hidden applies to --task tag and --task classify, not to"),
    ("tag", {"model": {"pool": "max"}}, "--pool does not apply to --task tag: it predicts a tag at every token"),
    ("classify", {"seq_len": 5}, "--seq-len does not apply to --task classify: it reads whole sentences"),
    ("tag", {"tokenizer": {"level": "word", "mode": "stream"}},
     "--mode stream does not apply to --task tag: it reads a sentence at a time, a token per line"),
    ("classify", {"tokenizer": {"level": "word", "mode": "stream"}},
     "--mode stream does not apply to --task classify: it reads one example per line"),
])
def test_refusals_name_exactly_the_tasks_that_accept_the_option(task, kw, needle):
    with pytest.raises(UsageError) as err:
        TrainOptions(corpus="c.txt", task=task, **kw)
    assert needle in str(err.value)


def test_a_sentence_run_stores_the_options_main_can_read(ner, tmp_path):
    """The stored options of a tagger hold only what the tagger accepts (main's reader refuses
    --pool or --tie-weights for a tagger), its model settings in full."""
    opts = from_flags(corpus=str(ner / "ner.txt"), task="tag", hidden=6)
    assert "pool" not in opts.model and "tie_weights" not in opts.model and opts.seq_len is None
    assert opts.model["hidden"] == 6 and opts.model["char_hidden"] == 25 and opts.model["cell"] == "lstm"
    assert TrainOptions(**vars(opts)) == opts  # what a .last file holds reads back the same


def test_info_and_plot_of_a_tagger_show_its_own_figures(ner, run, tmp_path):
    """issue 18.9: a tagger's `charlm info` shows accuracy and F1, never a perplexity; its plot draws."""
    out = tmp_path / "ner.npz"
    r = run("train", "--task", "tag", ner / "ner.txt", "-o", out, *TINY, "--max-steps", "6", "--eval-every", "3")
    assert r.exit_code == 0, r.output
    for path in (out, tmp_path / "ner.last.npz"):
        text = run("info", path).stdout
        line = next(x for x in text.splitlines() if x.startswith("best val:"))
        assert "accuracy" in line and "perplexity" not in line and "-0.0" not in line, line
        training = json.loads(run("info", path, "--json").stdout)["training"]
        assert 0 <= training["accuracy"] <= 1 and "perplexity" not in training
    last = json.loads(run("info", tmp_path / "ner.last.npz", "--json").stdout)["run"]
    assert 0 <= last["best"]["accuracy"] <= 1 and last["best"]["val_loss"] > 0
    pytest.importorskip("matplotlib")
    r = run("plot", tmp_path / "ner.last.npz", "-o", tmp_path / "c.png")
    assert r.exit_code == 0 and (tmp_path / "c.png").stat().st_size > 0, r.output


def test_a_classifier_progress_line_quotes_accuracy(tmp_path, run):
    data = tmp_path / "c.tsv"
    data.write_text(classification_text(60), encoding="utf-8")
    r = run("train", "--task", "classify", data, "-o", tmp_path / "c.npz", *TINY[:-1], "--max-steps", "4",
            "--eval-every", "2")
    assert r.exit_code == 0, r.output
    evals = [x for x in r.stderr.splitlines() if x.startswith("step ")]
    assert evals and all("accuracy" in x and "perplexity" not in x for x in evals), r.stderr
    assert "best validation loss" in r.stderr.splitlines()[-1] and "accuracy" in r.stderr.splitlines()[-1]

"""The Python API: load a model once and query it many times, or train one from Python.

    import charlm
    lm = charlm.load("charlm.npz")              # a charlm.LM for a language model
    lm.score(["The apple and pear salad"])      # [SentenceScore]: as `charlm score --json`
    lm.next_tokens("The apple and p", k=5)      # [(token, probability)], likeliest first
    lm.sample(num=3, temperature=0.8, seed=1)   # [Sample]: as `charlm sample --json`
    lm.complete("ROMEO:", beam=5)               # [Candidate]: beam search
    lm.perplexity("test.txt")                   # a file (or a text) as one running stream
    lm.info()                                   # as `charlm info --json`
    lm = charlm.train("corpus.txt", hidden=128, max_steps=500)   # options as on the command line

    ner = charlm.load("ner.npz")                # a charlm.Tagger (task "tag")
    ner.tag("Teddy Roosevelt was a President")  # [Tagged]: as `charlm tag --json`
    ner.spans("Teddy bears are on sale!")       # [[(text, type, start, end)]]: `charlm tag --spans`
    ner.evaluate("test.txt")                    # as `charlm eval --json`
    clf = charlm.load("sentiment.npz")          # a charlm.Classifier (task "classify")
    clf.classify(["a witty film"], top_k=2)     # [Classified]: as `charlm classify --json`

The model classes belong to their tasks (`charlm.tasks.lm.LM`, `tasks.tag.Tagger`,
`tasks.classify.Classifier`, base `tasks.base.Model`); `load` builds the one of the file's task
(the registry, `charlm.tasks`). Their methods compute with the same functions as the commands;
the commands only format. `train` takes the options of `charlm train`, generated from the same
declarations (`charlm.tasks.OPTIONS`), so its signature lists every one.
"""

from __future__ import annotations

import inspect
import os

from charlm.engine.options import Option
from charlm.engine.progress import BarReporter, LogReporter
from charlm.tasks import OPTIONS, get, takers
from charlm.tasks import load as _load
from charlm.tasks.base import Model
from charlm.tasks.classify import Classifier
from charlm.tasks.lm import LM
from charlm.tasks.tag import Tagger
from charlm.tasks.training import RESUME_OPTION, from_flags, given_names, resumed_task
from charlm.tasks.training import train as _train_engine

__all__ = ["Model", "LM", "Tagger", "Classifier", "load", "train"]

KEYWORDS = tuple(o for o in OPTIONS if o.cli) + (RESUME_OPTION,)  # charlm.train()'s options, as `charlm train`'s


def load(path: str | os.PathLike) -> Model:
    """Load a model file written by `charlm train` (a best model or a NAME.last.npz).

    Returns the model class of the file's task: `LM` for a language model, `Tagger`, `Classifier`.
    Raises `CheckpointError` for a missing, corrupt, unsafe or incompatible file.
    """
    return _load(path)


def train(corpus: str | os.PathLike, **options) -> Model:
    """(Replaced by `_train_doc()` below: the signature and this text list every option.)"""
    bound = train.__signature__.bind(corpus, **options)
    flags = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in bound.arguments.items()}
    resume, progress = flags.pop("resume", False), flags.pop("progress", False)
    corpus = flags.pop("corpus")
    given = given_names(flags)
    if resume and "task" not in given:
        flags["task"] = resumed_task(flags.get("output", "charlm.npz")) or flags.get("task")  # the saved run's
    opts = from_flags(corpus=corpus, **flags)
    reporter = BarReporter(get(opts.task)) if progress else LogReporter()
    summary = _train_engine(opts, resume=resume, reporter=reporter, given=given)
    if summary.get("interrupted"):
        raise KeyboardInterrupt(f"training {summary['reason']} at step {summary['step']}; saved "
                                f"(resume with resume=True)")
    return load(summary["output"])


def _annotation(option: Option):
    if option.type is bool and not option.switch:
        return bool
    kind = str | os.PathLike if option.path else {int: int, float: float, bool: bool}.get(option.type, str)
    return kind if option.default is not None else kind | None


def _signature() -> inspect.Signature:
    params = [inspect.Parameter("corpus", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str | os.PathLike)]
    for option in KEYWORDS:
        params.append(inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                                        annotation=_annotation(option)))
    params.append(inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool))
    return inspect.Signature(params, return_annotation=Model)


def _train_doc() -> str:
    lines = [
        "Train a model on `corpus` as `charlm train` does, and return the best one: an `LM`, or",
        'with task="tag" a `Tagger`, with task="classify" a `Classifier`.',
        "",
        "The options are those of `charlm train`, with the same names (`--seq-len` is `seq_len`,",
        "`--no-bidirectional` is `bidirectional=False`) and defaults (None: the task's default; `lr`",
        "None: the optimizer's). The best model is written to `output` and the resumable state beside",
        "it (NAME.last.npz); `resume=True` continues that run with its own options (only",
        ", ".join(o.name for o in KEYWORDS if o.resumable) + " may be given again to change them);",
        "a new run refuses to replace another run's files at `output` unless `force=True`, which also",
        "lets it replace an output that is not a charlm file (never an input). No progress bar unless",
        '`progress=True`; the engine\'s messages go to the "charlm" logger. Ctrl-C saves the run, then',
        "raises KeyboardInterrupt.",
        "",
        "Options:",
    ]
    for option in KEYWORDS:
        default = option.default_text({t.name: t.default(option) for t in takers(option)})
        lines.append(f"    {option.name}: {' '.join(x for x in (option.help, default) if x)}")
    lines.append("    progress: draw the progress bar of `charlm train` on stderr.")
    return "\n".join(lines)


train.__signature__ = _signature()
train.__doc__ = _train_doc()

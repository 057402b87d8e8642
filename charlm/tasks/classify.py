"""The classification task (`--task classify`): a label for every text (sentiment, topic).

Many-to-one: a bidirectional network (`sentence.network.ClassifierNetwork`) reads LABEL<TAB>TEXT or
fastText `__label__` lines, the text cut into words by the tokenizer options, and reads the
sentence out from the last step of each direction (or the mean or max over time, --pool); quality
is the accuracy (and the macro-F1). `Classifier` is what `charlm.load` returns for its files.
"""

from __future__ import annotations

import os
from typing import IO, Iterable, Sequence

from charlm.engine.options import Option
from charlm.errors import UsageError
from charlm.nn.layers import POOLS
from charlm.sentence.data import read_labels
from charlm.sentence.formats import LABEL_FORMATS, TAG_FORMATS, read_labelled
from charlm.sentence.network import ClassifierNetwork
from charlm.sentence.predict import BATCH_SIZE, Classified, evaluate_labels
from charlm.tasks.base import Report, items
from charlm.tasks.sentence import SENTENCE_OPTIONS, SentenceModel, SentenceTask, percent, prf_table, unknown_warning

POOL = Option("pool", choices=tuple(POOLS), group="model",
              help="classify: the sentence vector: the last step of each direction, or the mean or max over time.")


class Classifier(SentenceModel):
    """A classifier (many-to-one): ŷ = softmax(W_y[a→<Tx>, a←<1>] + b_y) (or pooled over t).

    A text is a str, cut into words by the model's tokenizer as `charlm classify` cuts it, or a
    list of tokens."""

    def classify(self, texts: str | Iterable[str] | Iterable[Sequence[str]], top_k: int | None = 1, *,
                 batch_size: int = BATCH_SIZE) -> list[Classified]:
        """The likeliest label of each text (a lone str is one text): one `Classified` (text,
        label, prob, probs) per text, in order; `probs` holds the top_k likeliest labels, best
        first (None: every label), and `to_dict()` is a line of `charlm classify --json --top-k`."""
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise UsageError(f"top_k must be a positive integer or None (got {top_k!r})")
        texts = items(texts)
        token_lists = self.predictor.token_lists(texts)
        shown = [t if isinstance(t, str) else " ".join(t) for t in texts]
        return self._predictor(batch_size).classify(token_lists, shown, top_k)

    def evaluate(self, path_or_text: str | os.PathLike | IO[str], *, format: str | None = None,
                 batch_size: int = BATCH_SIZE) -> dict:
        """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix of a LABEL<TAB>TEXT or
        fastText file (or text): the dict `charlm eval --json` prints."""
        return self._evaluate(path_or_text, format, None, batch_size)


class ClassifyTask(SentenceTask):
    """Classification (see the module docstring): a label per example, from labelled lines."""

    name, noun, commands, options = "classify", "a classifier", ("classify",), (*SENTENCE_OPTIONS, POOL)
    refusals = {**SentenceTask.refusals, "tag_column": "it reads labelled lines"}
    per_token, formats, read = False, LABEL_FORMATS, staticmethod(read_labels)
    lines_reason = "it reads one example per line"
    network, api_class = ClassifierNetwork, Classifier

    def evaluate(self, model, source, format=None, tag_column=None, batch_size: int = BATCH_SIZE) -> Report:
        """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix of a labelled file."""
        if format in TAG_FORMATS or tag_column:
            raise UsageError(f"{'--format ' + format if format else '--tag-column'} applies to taggers; "
                             f"the model is a classifier")
        predictor = model._predictor(batch_size)
        examples = read_labelled(source, predictor.encoder.tokenizer().tokenize, format=format).examples
        report = evaluate_labels(predictor, [e.tokens for e in examples], [e.label for e in examples])
        report = {"task": self.name, **report}
        return Report(report, _lines(report), unknown_warning(getattr(source, "name", source), report["unknown_labels"],
                                                                self.label))


def _lines(r: dict) -> list[str]:
    """A classification report as `charlm eval` prints it."""
    lines = [f"examples: {r['examples']}", f"accuracy: {percent(r['accuracy'])}%",
             f"macro-F1: {percent(r['macro_f1'])}", ""] + prf_table("label", r["per_class"]) + \
        ["", "confusion (rows: gold label, columns: predicted)"]
    width = max(len(x) for x in r["labels"])
    cells = max([width] + [len(str(c)) for row in r["confusion"] for c in row])
    lines.append(" " * width + "  " + " ".join(f"{x:>{cells}}" for x in r["labels"]))
    for label, row in zip(r["labels"], r["confusion"]):
        lines.append(f"{label:<{width}}  " + " ".join(f"{c:>{cells}}" for c in row))
    return lines


TASK = ClassifyTask()
Classifier._task = TASK  # the task of the files a Classifier is made from

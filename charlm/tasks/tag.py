"""The tagging task (`--task tag`): a tag for every token (named entities, parts of speech).

Many-to-many with Tx = Ty: a bidirectional network (`sentence.network.TaggerNetwork`) reads
CoNLL-U or column files; entity tags are learnt and decoded in IOB2 (IOBES for IOBES data) with a
constrained Viterbi search and reported in the data's scheme; quality is the entity F1 (conlleval's
count) for entity tags, else the token accuracy. With --crf the network's output layer is a
linear-chain CRF (`nn.crf`) whose transitions the labels' scheme constrains (`network_args`).
`Tagger` is what `charlm.load` returns for its files.
"""

from __future__ import annotations

import os
from typing import IO, Iterable, Sequence

from charlm.engine.options import Option
from charlm.errors import UsageError
from charlm.sentence.data import read_tags
from charlm.sentence.decode import label_constraints
from charlm.sentence.formats import LABEL_FORMATS, TAG_FORMATS, parse_tag_column, read_tagged
from charlm.sentence.encoder import Encoder
from charlm.sentence.network import TaggerNetwork
from charlm.sentence.predict import BATCH_SIZE, Tagged, evaluate_tags
from charlm.tasks.base import Report, items
from charlm.tasks.sentence import SENTENCE_OPTIONS, SentenceModel, SentenceTask, percent, prf_table, unknown_warning

TAG_COLUMN = Option("tag_column", metavar="upos|xpos|N",
                    help="tag: which tag to learn: CoNLL-U upos (default) or xpos, or column N (1-based) of a "
                         "column file [default: the last column].")
CRF = Option("crf", bool, group="model", only="a CRF scores tag sequences",
             help="tag: a linear-chain CRF output layer: learned tag-transition scores (never a transition the tag "
                  "scheme forbids), trained on the sentence likelihood and decoded by Viterbi.")


class Tagger(SentenceModel):
    """A tagger (many-to-many, Tx = Ty): ŷ<t> = softmax(W_y[a→<t>, a←<t>] + b_y) at every token.

    A sentence is a str, cut into words by the model's tokenizer as `charlm tag` cuts it, or a
    list of tokens (pre-tokenized). Entity tags are decoded with the constrained Viterbi search of
    `charlm tag` (never an invalid sequence) and given in the training data's scheme. A tagger
    trained with crf=True (`--crf`) decodes with its CRF's Viterbi search, and its probs are the
    CRF's marginal probabilities of the tags chosen.
    """

    def tag(self, sentences: str | Iterable[str] | Iterable[Sequence[str]], *, scheme: str | None = None,
            batch_size: int = BATCH_SIZE) -> list[Tagged]:
        """Tag each sentence (a lone str is one sentence): one `Tagged` (tokens, tags, probs =
        the probability of each token's tag) per sentence, in order; `to_dict()` is a line of
        `charlm tag --json`. scheme "iob1", "iob2" or "iobes" rewrites entity tags (`--scheme`)."""
        return self._predictor(batch_size).tag(self.predictor.token_lists(items(sentences)), scheme)

    def spans(self, sentences: str | Iterable[str] | Iterable[Sequence[str]], *,
              batch_size: int = BATCH_SIZE) -> list[list[tuple[str, str, int, int]]]:
        """The entities of each sentence, as `charlm tag --spans` lists them: (text, type, start,
        end), tokens start..end-1. Only for entity tags (else UsageError)."""
        self.predictor.need_entity_tags("spans")
        return [t.spans() for t in self.tag(sentences, batch_size=batch_size)]

    def evaluate(self, path_or_text: str | os.PathLike | IO[str], *, format: str | None = None,
                 tag_column: str | int | None = None, batch_size: int = BATCH_SIZE) -> dict:
        """Token accuracy, per-tag P/R/F1 and, for entity tags, entity P/R/F1 overall and per type
        (counted as conlleval counts them) of a CoNLL-U or column file (or text): the dict
        `charlm eval --json` prints. tag_column: the gold tags' column (default: the model's)."""
        return self._evaluate(path_or_text, format, tag_column, batch_size)


class TagTask(SentenceTask):
    """Tagging (see the module docstring): a tag per token, learnt from CoNLL-U or column files."""

    name, noun, commands, options = "tag", "a tagger", ("tag",), (*SENTENCE_OPTIONS, TAG_COLUMN, CRF)
    refusals = {**SentenceTask.refusals, "pool": "it predicts a tag at every token"}
    per_token, formats, read = True, TAG_FORMATS, staticmethod(read_tags)
    lines_reason = "it reads a sentence at a time, a token per line"
    network, api_class = TaggerNetwork, Tagger

    def check_options(self, opts) -> None:
        super().check_options(opts)
        if opts.tokenizer["level"] == "char":
            raise UsageError("--level char does not apply to --task tag: it tags words")
        if opts.tag_column is not None:
            opts.tag_column = str(parse_tag_column(opts.tag_column))

    def network_args(self, encoder: Encoder) -> dict:
        """The transitions its labels allow (entity tags; None for others), which a CRF never takes."""
        return {"constraints": label_constraints(encoder.labels, encoder.scheme)}

    def evaluate(self, model, source, format=None, tag_column=None, batch_size: int = BATCH_SIZE) -> Report:
        """Token accuracy, per-tag P/R/F1 and, for entity tags, conlleval's entity P/R/F1 of a
        CoNLL-U or column file; the gold tags in `tag_column` (by default the model's)."""
        if format in LABEL_FORMATS:
            raise UsageError(f"--format {format} is a classification format; the model is a tagger")
        predictor = model._predictor(batch_size)
        data = read_tagged(source, format=format, tag_column=tag_column or predictor.tag_column())
        gold = [s.tags for s in data.sentences]
        report = evaluate_tags(predictor, [s.tokens for s in data.sentences], gold)
        report["sentences"] = len(gold)
        for key in ("entity_precision", "entity_recall", "entity_f1", "per_type", "scheme"):
            report.setdefault(key, None)
        report = {"task": self.name, **report}
        return Report(report, _lines(report), unknown_warning(getattr(source, "name", source), report["unknown_labels"],
                                                                self.label))


def _lines(r: dict) -> list[str]:
    """A tagging report as `charlm eval` prints it."""
    lines = [f"tokens: {r['tokens']} in {r['sentences']} sentences", f"token accuracy: {percent(r['accuracy'])}%"]
    if r.get("entity_f1") is not None:
        lines.append(f"entities ({r['scheme']}, counted as conlleval counts them): {r['entities']} in the data, "
                     f"{r['predicted_entities']} found, {r['correct_entities']} correct")
        lines.append(f"entity precision: {percent(r['entity_precision'])}%  recall: {percent(r['entity_recall'])}%  "
                     f"F1: {percent(r['entity_f1'])}")
        lines += [""] + prf_table("type", r["per_type"])
    return lines + [""] + prf_table("tag", r["per_tag"])


TASK = TagTask()
Tagger._task = TASK  # the task of the files a Tagger is made from

"""The model endpoints: `POST /v1/{model}/{name}` runs `ENDPOINTS[name]` on the model named.

Each `Endpoint` mirrors the command of its name: it declares the fields of its request body
(`charlm.serve.schema.Field`) and computes its answer with the model classes of the Python API
(`charlm.tasks`: `LM`, `Tagger`, `Classifier`) and the commands' own functions, so an answer holds
the very records the command prints with --json:

    score     {"texts": [...], "per_token", "label"}  {"results": [charlm score --json]}
    next      {"prefix", "k", "label"}              charlm next --json
    sample    {"num", "length", "temperature", ...} {"results": [charlm sample --json]}
    tag       {"texts": [...], "spans", "scheme"}   {"results": [charlm tag --json]}
    classify  {"texts": [...], "top_k"}             {"results": [charlm classify --json]}
    translate {"texts": [...], "beam", "nbest", ...} {"results": [charlm translate --json]}

Which endpoints a model has is its task's answer (the registry, `charlm.tasks`): those named by
the task object's `commands`, the commands that use its model files (`served(model)`). A
language model serves /score, /next and /sample, a tagger /tag, a classifier /classify, a
sequence-to-sequence model /translate. A conditional language model (trained with --condition)
also serves /classify (Bayes' rule, as `charlm classify` classifies with it: `Endpoint.also`), and
its /score, /next and /sample take the label the text is given (`label`, one of its labels).

`run(model, params, limits)` answers one request; it runs in a pool thread and first checks the
limits that need the model's tokenizer (tokens per text). `run_many` (score only) answers several
requests of one model with one scoring call: the server's batcher collects concurrent requests
for it (`charlm.serve.batching`). Nothing here knows about HTTP beyond `RequestError`'s status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from charlm.api import LM, Model
from charlm.errors import CharlmError, UsageError
from charlm.lm.generate import Prime, default_length, next_record, next_tokens
from charlm.sentence.labels import SCHEMES
from charlm.serve.limits import Limits
from charlm.serve.schema import Field, RequestError
from charlm.tasks import TASKS
from charlm.tasks.base import Task

Params = dict


@dataclass(frozen=True)
class Endpoint:
    """One model endpoint (see the module docstring): `name` is the command it mirrors. `example`
    is a request body for the docs; `check_body(body)` refuses combinations of fields before they
    are checked one by one; `about(model)` is what `GET /v1/models` adds for a model it serves
    (what a client needs to call it: a tagger's labels and whether they are entity tags).
    `also` is (what, test): models of another task that it serves too, those for which
    test(model) holds (a conditional language model's /classify)."""

    name: str
    summary: str
    fields: tuple[Field, ...]
    run: Callable[[Model, Params, Limits], dict]
    example: dict
    run_many: Callable[[Model, list[Params], Limits], list] | None = None
    check_body: Callable[[dict], None] | None = None
    about: Callable[[Model], dict] | None = None
    also: tuple[str, Callable[[Model], bool]] | None = None


def count_tokens(n: int, where: str, limits: Limits) -> None:
    """RequestError(413) when a text of n tokens is over --max-tokens."""
    if n > limits.max_tokens:
        raise RequestError(413, f"{where} has {n} tokens, more than this server's limit of "
                                f"{limits.max_tokens} (--max-tokens)")


def _texts_field(what: str, token_lists: bool = False) -> Field:
    return Field("texts", "texts", help=f"the texts to {what}" + (", each a string or a list of tokens"
                                                                   if token_lists else ""),
                 limit="max_texts", token_lists=token_lists)


# -- language models ---------------------------------------------------------------------------

def _label_field(what: str) -> Field:
    return Field("label", "string", None, f"a conditional language model's label: {what} given it "
                                          f"(required there; see GET /v1/models)", nullable=True)


def conditioned(lm, label: str | None):
    """The network of `lm` given `label` (`LM.conditioned`), refused with a 400 that suits a
    client: a label for a model without labels; none, or an unknown one, for a conditional
    model (the message lists its labels)."""
    if lm.labels is None:
        if label is not None:
            raise RequestError(400, "label is only for a conditional language model (trained with "
                                    "--condition); this language model has no labels")
        return lm.network
    if label is None or label not in lm.labels.index:
        say = "give a label" if label is None else f"unknown label {label[:40]!r}"
        raise RequestError(400, f"{say}: this is a conditional language model, its labels are: "
                                f"{', '.join(lm.labels.names)}")
    return lm.conditioned(label)


def check_texts(texts: list, tokenize: Callable[[str], list], verb: str, limits: Limits) -> None:
    """RequestError for a text of no tokens (400) or of more than --max-tokens (413)."""
    for i, text in enumerate(texts):
        n = len(tokenize(text))
        if n == 0:
            raise RequestError(400, f"texts[{i}] has no tokens: nothing to {verb}")
        count_tokens(n, f"texts[{i}]", limits)


def _check_score(lm, params: Params, limits: Limits) -> None:
    conditioned(lm, params["label"])
    check_texts(params["texts"], lm.tokenizer.tokenize, "score", limits)


def _score_answer(scores, params: Params) -> dict:
    return {"results": [s.to_dict(params["per_token"]) for s in scores]}


def score_many(lm, requests: list[Params], limits: Limits) -> list:
    """The answers to several score requests, computed with one `lm.score` call over all their
    texts (one per label for a conditional model): for each request its answer (a dict) or the
    exception that fails it alone."""
    out = [_outcome(lambda: _check_score(lm, params, limits)) for params in requests]  # None: fine
    by_label: dict = {}
    for i, checked in enumerate(out):
        if checked is None:
            by_label.setdefault(requests[i]["label"], []).append(i)
    for label, group in by_label.items():
        for i, answer in zip(group, _score_together(lm, label, [requests[i] for i in group])):
            out[i] = answer
    return out


def _score_together(lm, label: str | None, requests: list[Params]) -> list:
    """The answers to score requests of one label, from one `lm.score` call over all their texts."""
    try:
        scores = lm.score([t for params in requests for t in params["texts"]], label=label)
    except CharlmError:  # a text no check foresaw: score each request alone to fail only its own
        return [_outcome(lambda p=params: _score_answer(lm.score(p["texts"], label=label), p)) for params in requests]
    answers, start = [], 0
    for params in requests:
        n = len(params["texts"])
        answers.append(_score_answer(scores[start:start + n], params))
        start += n
    return answers


def _outcome(compute: Callable[[], object]):
    """What compute() returned, or the exception it raised (one request's among several)."""
    try:
        return compute()
    except Exception as err:  # noqa: BLE001 - handed to that one request's response
        return err


def _score(lm, params: Params, limits: Limits) -> dict:
    (answer,) = score_many(lm, [params], limits)
    if isinstance(answer, Exception):
        raise answer
    return answer


def _prime(lm, text: str, where: str, limits: Limits) -> Prime:
    prime = Prime.from_text(lm.tokenizer, text)
    count_tokens(len(prime.tokens), where, limits)
    return prime


def _next(lm, params: Params, limits: Limits) -> dict:
    lm.forward_only("next")
    network = conditioned(lm, params["label"])
    prime = _prime(lm, params["prefix"], "prefix", limits)
    return next_record(params["prefix"], next_tokens(network, lm.vocab, prime, params["k"]))


SAMPLING_ONLY = ("temperature", "top_k", "top_p", "num", "seed")
BEAM_ONLY = ("nbest", "length_penalty")


def check_sample_fields(body: dict) -> None:
    """RequestError(400) for fields of sampling given with beam search, or the reverse (as
    `charlm sample` refuses --temperature with --beam)."""
    if body.get("beam") is None:
        given = [f for f in BEAM_ONLY if f in body]
        if given:
            raise RequestError(400, f"{given[0]} needs beam")
        return
    given = [f for f in SAMPLING_ONLY if f in body]
    if given:
        raise RequestError(400, f"{given[0]} is for sampling; beam searches for the most probable "
                                f"continuations (use nbest for several)")


def _sample(lm, params: Params, limits: Limits) -> dict:
    label = params["label"]
    conditioned(lm, label)
    _prime(lm, params["prime"], "prime", limits)
    length = params["length"]
    if length is None:  # the command's default, within --max-length
        length = min(default_length(lm.vocab), limits.max_length)
    p = params
    if p["beam"] is not None:
        found = lm.complete(p["prime"], beam=p["beam"], nbest=p["nbest"], length=length,
                            length_penalty=p["length_penalty"], stop_at=p["stop_at"], label=label)
    else:
        found = lm.sample(p["num"], length=length, temperature=p["temperature"], top_k=p["top_k"],
                          top_p=p["top_p"], prime=p["prime"], stop_at=p["stop_at"], seed=p["seed"], label=label)
    # given a label, `charlm sample --json --label` starts each record with it
    return {"results": [r.to_dict() if label is None else dict(label=label, **r.to_dict()) for r in found]}


def is_conditional(model: Model) -> bool:
    """A language model trained with --condition (it has labels, and classifies by Bayes' rule)."""
    return isinstance(model, LM) and model.labels is not None


def _lm_labels(lm) -> dict:
    return {"labels": list(lm.labels.names)} if is_conditional(lm) else {}


# -- taggers and classifiers -------------------------------------------------------------------

def _token_lists(model, texts: list, limits: Limits, verb: str) -> list[list[str]]:
    """The tokens of each text (cut by the model's tokenizer), each within --max-tokens."""
    out = []
    for i, text in enumerate(texts):
        try:
            (tokens,) = model.predictor.token_lists([text])
        except UsageError:  # no tokens (the fields' check let only strings and token lists through)
            raise RequestError(400, f"texts[{i}] has no tokens: nothing to {verb}") from None
        count_tokens(len(tokens), f"texts[{i}]", limits)
        out.append(tokens)
    return out


def _tag(tagger, params: Params, limits: Limits) -> dict:
    if params["spans"]:
        tagger.predictor.need_entity_tags("spans")
    token_lists = _token_lists(tagger, params["texts"], limits, "tag")
    return {"results": [t.to_dict(params["spans"]) for t in tagger.tag(token_lists, scheme=params["scheme"])]}


def _classify(clf, params: Params, limits: Limits) -> dict:
    if is_conditional(clf):  # Bayes' rule over the labels (`LM.classify`): texts as strings
        for i, text in enumerate(params["texts"]):
            if not isinstance(text, str):
                raise RequestError(400, f"texts[{i}] must be a string: a conditional language model reads "
                                        f"text with its own tokenizer, not a list of tokens")
        check_texts(params["texts"], clf.tokenizer.tokenize, "classify", limits)
    else:
        _token_lists(clf, params["texts"], limits, "classify")
    return {"results": [c.to_dict() for c in clf.classify(params["texts"], top_k=params["top_k"])]}


def _translate(translator, params: Params, limits: Limits) -> dict:
    check_texts(params["texts"], translator.pairs.source_tokens, "translate", limits)
    found = translator.translate(params["texts"], beam=params["beam"], nbest=params["nbest"],
                                 length_penalty=params["length_penalty"], max_length=params["max_length"])
    return {"results": [t.to_dict(params["attention"]) for t in found]}


def _labels(model) -> dict:
    return _lm_labels(model) if isinstance(model, LM) else {"labels": list(model.labels)}


def _tag_labels(tagger) -> dict:
    return {**_labels(tagger), "entities": bool(tagger.predictor.encoder.model_scheme)}


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (
    Endpoint("score", "The probability of each text under the language model (`charlm score --json`).",
             (_texts_field("score"),
              Field("per_token", "boolean", False, "also each token's log-probability (--per-token)"),
              _label_field("log P(text | label)")),
             _score, {"texts": ["The apple and pear salad", "The apple and pair salad"]}, score_many,
             about=_lm_labels),
    Endpoint("next", "The k likeliest next tokens after a prefix (`charlm next --json`).",
             (Field("prefix", "string", "", "the text so far"),
              Field("k", "integer", 10, "how many tokens, likeliest first", minimum=1, limit="max_k"),
              _label_field("the next token")),
             _next, {"prefix": "The apple and p", "k": 5}),
    Endpoint("sample", "Generate text, or beam-search the likeliest continuations (`charlm sample --json`).",
             (Field("num", "integer", 1, "how many samples (one batch)", minimum=1, limit="max_texts"),
              Field("length", "integer", None, "most tokens per sample [default: 200 characters or 50 words]",
                    minimum=1, limit="max_length", nullable=True),
              Field("temperature", "number", 1.0, "softmax temperature (0: greedy)", minimum=0),
              Field("top_k", "integer", None, "sample from the k likeliest tokens", minimum=1, nullable=True),
              Field("top_p", "number", None, "sample from the likeliest tokens of total probability p",
                    minimum=0, maximum=1, nullable=True),
              Field("prime", "string", "", "text read first, which the samples continue"),
              Field("stop_at", "strings", (), "end a sample with the token that completes one of these",
                    limit="max_texts"),
              Field("seed", "integer", None, "random seed: same seed, same samples", minimum=0,
                    maximum=2 ** 63 - 1, nullable=True),
              Field("beam", "integer", None, "beam search of this width instead of sampling", minimum=1,
                    limit="max_beam", nullable=True),
              Field("nbest", "integer", 1, "with beam: how many candidates", minimum=1, limit="max_beam"),
              Field("length_penalty", "number", 0.0, "with beam: rank by logprob / length^alpha", minimum=0),
              _label_field("the text generated")),
             _sample, {"prime": "The apple", "temperature": 0.8, "length": 40, "seed": 1},
             check_body=check_sample_fields),
    Endpoint("tag", "The tag of every token of each sentence (`charlm tag --json`).",
             (_texts_field("tag", token_lists=True),
              Field("spans", "boolean", False, "also the entities of each sentence (--spans)"),
              Field("scheme", "string", None, "write entity tags in this scheme (--scheme)", nullable=True,
                    choices=tuple(s.lower() for s in SCHEMES))),
             _tag, {"texts": ["He said, Teddy Roosevelt was a great President"], "spans": True},
             about=_tag_labels),
    Endpoint("classify", "The label of each text (`charlm classify --json`).",
             (_texts_field("classify", token_lists=True),
              Field("top_k", "integer", 1, "how many labels with their probabilities (null: all)",
                    minimum=1, nullable=True)),
             _classify, {"texts": ["a gorgeous, witty film"], "top_k": 2}, about=_labels,
             also=("a conditional language model (task lm, trained with --condition)", is_conditional)),
    Endpoint("translate", "The output sequence of each source (`charlm translate --json`).",
             (_texts_field("translate"),
              Field("beam", "integer", 4, "beam width (1: greedy)", minimum=1, limit="max_beam"),
              Field("nbest", "integer", 1, "how many outputs per source, best first", minimum=1,
                    limit="max_beam"),
              Field("length_penalty", "number", 0.0, "rank by logprob / length^alpha", minimum=0),
              Field("max_length", "integer", None, "most output tokens [default: from the source's length]",
                    minimum=1, limit="max_length", nullable=True),
              Field("attention", "boolean", False, "also the attention matrix of each output")),
             _translate, {"texts": ["the 29th of August 1958"], "beam": 4}),
)}


def served(model: Model) -> list[Endpoint]:
    """The endpoints of `model`: those its task's `commands` name, and those that serve it too
    (`Endpoint.also`), in the order of ENDPOINTS."""
    commands = TASKS[model.task].commands
    return [e for e in ENDPOINTS.values() if e.name in commands or (e.also is not None and e.also[1](model))]


def servers(endpoint: Endpoint) -> list[Task]:
    """The tasks whose models `endpoint` serves."""
    return [t for t in TASKS.values() if endpoint.name in t.commands]


def whom(endpoint: Endpoint) -> str:
    """The models `endpoint` serves, in words: "a tagger (task tag)"."""
    return " or ".join([f"{t.noun} (task {t.name})" for t in servers(endpoint)] + list(endpoint.also or ())[:1])


def paths(endpoints: list[Endpoint]) -> str:
    """The endpoints' paths, "/score, /next, /sample" ("nothing" for none)."""
    return ", ".join(f"/{e.name}" for e in endpoints) or "nothing"


def wrong_task(name: str, model: Model, endpoint: Endpoint) -> RequestError:
    """The 400 for an endpoint of another task: what the model is and what it serves."""
    task = TASKS[model.task]
    return RequestError(400, f"model {name!r} is {task.noun} (task {task.name}): it serves "
                             f"{paths(served(model))}; /{endpoint.name} is for {whom(endpoint)}")

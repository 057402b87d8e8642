"""`charlm export --check`: the exported graph, run by ONNX Runtime, against charlm's own forward pass.

    compare(proto, model, sample, seed=0) -> Check     proto: onnxfile.export_model(model);
                                                       sample: the task's (builders.EXPORTERS)

The inputs are a sample of the model's own vocabulary. A language model reads two windows of random
token ids from a random initial state, the second window from the state the first left (each side
carries its own, as a caller streaming through the graph does): `language_model`. A tagger or
classifier reads a padded batch of sentences of different lengths made of random vocabulary words,
encoded as charlm encodes them (the model's `sentence.encoder.Encoder`: word ids, and the characters
of each distinct word): `sentence_model`. Compared: the log-probabilities (log-softmax of the graph's
logits against the network's `log_probs`; a CRF tagger's log marginals from the graph's scores) at every
real position, and a language model's final states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError
from charlm.nn import crf
from charlm.nn.layers import log_softmax
from charlm.sentence.batch import make_batch

INSTALL_HINT = "checking an export needs onnxruntime: pip install 'charlm[export]'"
TOLERANCE = 1e-3   # a wrong weight mapping is off by far more; float32 rounding by about 1e-6


def available() -> bool:
    """Whether onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def session(proto):
    """An ONNX Runtime session (CPU) of an exported model."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CharlmError(INSTALL_HINT) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3                                  # errors only
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


@dataclass
class Check:
    """The largest absolute difference overall and per compared output, over `tokens` positions."""

    largest: float
    parts: dict
    tokens: int
    runtime: str

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.2e}" for k, v in self.parts.items())
        return (f"check: ONNX Runtime {self.runtime} against charlm on {self.tokens} tokens: largest absolute "
                f"difference {self.largest:.2e} ({parts})")


def _largest(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max(initial=0.0))


def language_model(sess, model, rng, T: int = 12, B: int = 4) -> tuple[dict, int]:
    """A language model (`LM`) on two windows of random ids, the state carried -> (differences, tokens)."""
    net = model.network
    c = net.config
    names = [i.name for i in sess.get_inputs()][1:]                 # a0 [, c0]
    state = [tuple((0.5 * rng.standard_normal((B, c.hidden))).astype(net.dtype) for _ in names)
             for _ in range(c.layers)]
    feeds = {n: np.stack([s[i] for s in state]).astype(np.float32) for i, n in enumerate(names)}
    parts = {"log-probabilities": 0.0, "state": 0.0}
    for _ in range(2):                                              # two windows, the state carried
        x = rng.integers(0, c.vocab_size, size=(T, B))
        lp, state = net.log_probs(x, state)
        out = sess.run(None, {"tokens": x.astype(np.int64), **feeds})
        feeds = dict(zip(names, out[1:]))
        parts["log-probabilities"] = max(parts["log-probabilities"],
                                         _largest(log_softmax(out[0].astype(np.float64)), lp))
        for i, n in enumerate(names):
            parts["state"] = max(parts["state"], _largest(feeds[n], np.stack([s[i] for s in state])))
    return parts, 2 * T * B


def sentence_model(sess, model, rng, B: int = 6) -> tuple[dict, int]:
    """A tagger or classifier on a padded batch of random vocabulary words -> (differences, tokens)."""
    encoder = model.predictor.encoder
    words = model.vocab.tokens[2:] or model.vocab.tokens            # not <UNK>, <EOS> when there are others
    lengths = rng.permutation(np.linspace(1, 12, B).astype(int))    # padding of every amount, longest 12
    sentences = [[words[i] for i in rng.integers(0, len(words), size=n)] for n in lengths]
    batch = make_batch([encoder.encode(s) for s in sentences], with_labels=False)
    names = [i.name for i in sess.get_inputs()]
    feeds = {n: getattr(batch, n).astype(np.int64) for n in names}
    logits, *crf_scores = [v.astype(np.float64) for v in sess.run(None, feeds)]
    ref = model.network.log_probs(batch)          # a CRF tagger's: the log marginals log P(y<t> = k | x)
    real = batch.mask.astype(bool) if encoder.per_token else np.ones(B, dtype=bool)
    if crf_scores:                                # transitions, start, end (−∞ where forbidden)
        got, ref = crf.log_marginals(logits, batch.lengths, *crf_scores)[real], ref[real]
        impossible = np.isneginf(got) & np.isneginf(ref)         # a tag the scheme forbids there, in both
        return {"log-marginals": _largest(np.where(impossible, 0, got), np.where(impossible, 0, ref))}, \
            int(lengths.sum())
    return {"log-probabilities": _largest(log_softmax(logits)[real], ref[real])}, int(lengths.sum())


def compare(proto, model, sample, seed: int = 0) -> Check:
    """Run the graph and the model on the same `sample` (see the module docstring)."""
    import onnxruntime

    sess = session(proto)
    parts, tokens = sample(sess, model, np.random.default_rng(seed))
    return Check(max(parts.values()), parts, tokens, onnxruntime.__version__)

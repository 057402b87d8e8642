"""A tagger or classifier that starts from a charlm language model (`charlm train --init-from LM.npz`),
and holds what it took still for a while (`--freeze-epochs N`): ULMFiT's transfer, on the notes'
stacked RNNs.

The language model reads x<t> = E[w<t>] through L' layers a[l]<t> = cell(W[l][a[l]<t-1>, a[l-1]<t>] + b[l]).
The sentence model's forward direction is the same computation with a wider input: x<t> = [E[w<t>],
c(w<t>)] (the character code) in layer 1, [→a[l-1]<t>, ←a[l-1]<t>] above it. So it takes

    embed.W[w]                 <- the LM's embed.W[w']  for every token w that the LM's vocabulary has
                                  (w' the same token; <UNK> too); the other rows stay as initialised
    rnn.{l}.fwd.W[:H + D']     <- the LM's rnn.{l}.W   (the rows of [a<t-1>, x<t>] the LM has: a<t-1>
                                  and the first D' inputs, E[w<t>] resp. →a[l-1]<t>); the rows of
                                  the inputs the LM never saw (c(w<t>), ←a[l-1]<t>) stay as initialised
    rnn.{l}.fwd.b (and .P)     <- the LM's rnn.{l}.b (.P)
(one-directional models: rnn.{l}.* instead of rnn.{l}.fwd.*), for l = 0 .. L-1: the model's L layers
take the LM's first L. The backward layers, the character encoder and the output layer start as
usual. The two must match: a language model (not a tagger or classifier), the same token level and
case folding, and the same cell (peepholes, activation), hidden and embedding sizes, with at least
as many layers; anything else is one UsageError.

--freeze-epochs N: during the first N epochs the parameters taken (embed.W and the forward
recurrent layers, whole) are not updated: their gradients are left out of the update and of the
clipping norm, so the optimizer keeps no state for them until they join (and then Adam counts
their steps from their first update, as a fresh Adam would: charlm.engine.optim). The engine does
that for the parameters a run names (`engine.run.Run.frozen`); `frozen_names` says which.

This module spans the two sides that stay independent below it: it reads a language model file
(the `lm` task's `open`) and writes into a sentence network (`sentence.network`).
"""

from __future__ import annotations

from charlm.errors import UsageError
from charlm.tasks import lm

__all__ = ["init_from_lm", "frozen_names"]


def _prefix(model, layer: int) -> str:
    """The checkpoint name prefix of the forward direction of `layer` (see sentence.network)."""
    return f"rnn.{layer}.fwd." if model.config.bidirectional else f"rnn.{layer}."


def frozen_names(model) -> list[str]:
    """The parameters --freeze-epochs holds still: embed.W and every forward recurrent layer."""
    return ["embed.W"] + [k for l in range(model.config.layers) for k in model.params
                          if k.startswith(_prefix(model, l))]


def _checked_lm(path: str, model, vocab):
    """The language model at `path` (a `tasks.lm.LM`), checked against the sentence model."""
    what = "the tagger" if model.task == "tag" else "the classifier"
    loaded = lm.checked_source(path, model.config, vocab.tokenizer, what)
    theirs_layers, c = loaded.network.config.layers, model.config
    if c.layers > theirs_layers:
        raise UsageError(f"--init-from {path}: the language model has {theirs_layers} layer(s), fewer "
                         f"than the {c.layers} of {what}: use --layers {theirs_layers} or fewer")
    return loaded


def init_from_lm(model, vocab, path: str) -> str:
    """Copy the language model at `path` into `model` (a TaggerNetwork or ClassifierNetwork whose
    word or character vocabulary is `vocab`), in place, as the module docstring says. -> a one-line note."""
    loaded = _checked_lm(path, model, vocab)
    theirs_params, p = loaded.network.params, model.params
    mine, theirs_ids = lm.shared_tokens(path, vocab, loaded.vocab, "the training data")
    p["embed.W"][mine] = theirs_params["embed.W"][theirs_ids]
    for l in range(model.config.layers):
        for key, theirs in theirs_params.items():
            if not key.startswith(f"rnn.{l}."):
                continue
            target = p[_prefix(model, l) + key[len(f"rnn.{l}."):]]
            target[:theirs.shape[0]] = theirs                   # W: rows [a<t-1>, first D' inputs]
    unit = "words" if vocab.tokenizer.level == "word" else "characters"
    return (f"initialised from {path}: the embeddings of {len(mine) - 2:,} of {len(vocab) - 2:,} {unit} and "
            f"the forward recurrent layers 1-{model.config.layers} of its {loaded.network.config.layers}")

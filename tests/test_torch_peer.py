"""The PyTorch peer of the NER benchmark (benchmarks/torch_tagger.py) computes charlm's tagger: from the
same weights, on the same padded batch, without dropout, the loss, the log-probabilities and every
gradient agree to float64 rounding. Skipped without the `bench` extra (torch)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from charlm.sentence.batch import make_batch
from charlm.sentence.encoder import Encoder
from charlm.sentence.labels import detect_scheme
from charlm.sentence.network import TaggerConfig, TaggerNetwork
from charlm.text.tokenizer import TokenizerConfig
from tasksdata import ner_sentences

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import torch_tagger  # noqa: E402


@pytest.mark.parametrize("char_hidden", [3, 0])
def test_peer_from_charlm_weights_has_charlm_loss_and_gradients(char_hidden):
    sents = ner_sentences(12, seed=3)
    tokens, tags = [[w for w, _ in s] for s in sents], [[t for _, t in s] for s in sents]
    enc = Encoder.build(True, tokens, tags, TokenizerConfig(level="word"), detect_scheme(tags))
    batch = make_batch([enc.encode(t, g) for t, g in zip(tokens, tags)])   # sentences of several lengths
    assert len(set(batch.lengths.tolist())) > 1
    sizes = dict(layers=2, hidden=5, embedding=4, char_embedding=3, char_hidden=char_hidden)
    config = TaggerConfig(task="tag", vocab_size=len(enc.vocab), char_vocab_size=len(enc.chars),
                          num_labels=len(enc.labels), cell="lstm", dtype="float64", **sizes)
    model = TaggerNetwork(config, seed=1)
    rng = np.random.default_rng(2)
    for v in model.params.values():            # biases too (charlm starts them at 0 and 1)
        v += rng.uniform(-0.3, 0.3, v.shape)
    loss, _, cache = model.loss(batch)
    grads = model.backward(cache)

    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            peer = torch_tagger.BiLSTMTagger(len(enc.vocab), len(enc.chars), len(enc.labels), sizes["embedding"],
                                             sizes["char_embedding"], char_hidden, sizes["hidden"], sizes["layers"],
                                             0.25, 0.1)
        finally:
            torch.set_default_dtype(torch.float32)
    torch_tagger.load_charlm(peer, model.params)
    peer.eval()                                # no dropout, no word dropout
    peer_loss = torch_tagger.mean_loss(peer, batch)
    peer_loss.backward()

    assert abs(peer_loss.item() - loss) < 1e-12
    real = batch.mask[..., None] > 0
    lp = peer(batch).detach().numpy()
    np.testing.assert_allclose(np.where(real, lp, 0), np.where(real, model.log_probs(batch), 0), atol=1e-12)
    peer_grads = torch_tagger.charlm_gradients(peer)
    assert peer_grads.keys() == grads.keys()
    for name, g in grads.items():
        np.testing.assert_allclose(peer_grads[name], g, rtol=1e-9, atol=1e-13, err_msg=name)
    assert not any(getattr(peer.rnn, n).requires_grad for n in ("bias_hh_l0", "bias_hh_l1_reverse"))

"""The PyTorch peer of the seq2seq comparison (benchmarks/torch_seq2seq.py) computes charlm's model:
from the same weights, on the same padded batch, without dropout, the loss and every gradient agree to
float64 rounding, for every attention kind, both encoders and the bridge; its greedy decoding gives
charlm's. Skipped without the `bench` extra (torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from charlm.seq2seq.network import Seq2Seq, Seq2SeqConfig, pad_pairs
from charlm.seq2seq.search import greedy

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import torch_seq2seq  # noqa: E402


def peer_of(model: Seq2Seq):
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            peer = torch_seq2seq.Seq2SeqPeer(model.config)
        finally:
            torch.set_default_dtype(torch.float32)
    torch_seq2seq.load_charlm(peer, model.params)
    peer.eval()                                               # no dropout
    return peer


@pytest.mark.parametrize("settings", [
    dict(attention="additive"),
    dict(attention="dot", decoder_hidden=6),
    dict(attention="none"),
    dict(attention="additive", bidirectional=False),            # bridge: H != Hd
    dict(attention="none", bidirectional=False, decoder_hidden=4),   # no bridge: the final states
], ids=["additive", "dot", "none", "plain-bridge", "plain-none"])
def test_peer_from_charlm_weights_has_charlm_loss_and_gradients(settings):
    config = Seq2SeqConfig(**{**dict(source_vocab_size=9, target_vocab_size=8, cell="lstm", layers=2, hidden=4,
                                     decoder_hidden=5, embedding=3, target_embedding=3, attention_hidden=6,
                                     dropout=0.3, dtype="float64"), **settings})
    model = Seq2Seq(config, seed=1)
    rng = np.random.default_rng(2)
    for v in model.params.values():            # biases too (charlm starts them at 0 and 1)
        v += rng.uniform(-0.3, 0.3, v.shape)
    sources = [rng.integers(0, 9, n) for n in (4, 1, 6, 3, 5)]
    targets = [rng.integers(0, 8, n) for n in (2, 5, 0, 3, 1)]
    batch = pad_pairs(sources, targets)
    loss, _, cache = model.loss(batch)
    grads = model.backward(cache)

    peer = peer_of(model)
    peer_loss = torch_seq2seq.mean_loss(peer, batch)
    peer_loss.backward()
    assert abs(peer_loss.item() - loss) < 1e-12
    peer_grads = torch_seq2seq.charlm_gradients(peer)
    assert peer_grads.keys() == grads.keys()
    for name, g in grads.items():
        np.testing.assert_allclose(peer_grads[name], g, rtol=1e-9, atol=1e-13, err_msg=name)
    assert [o.ids for o in greedy(model, sources)] == torch_seq2seq.greedy(peer, sources)


def test_quality_bench_trains_the_peer_as_charlm_trains(tmp_path):
    """bench_seq2seq_quality.py --peer torch on the shipped subset, a few steps without dropout: the
    peer starts from charlm's weights and reads the same batches in the same order, so its
    evaluations (loss, token error rate, learning rate) are charlm's to float32 rounding; its best
    model is a charlm model file, and its own greedy decoding of the test set, counted by charlm's
    metric code, agrees with `charlm eval` of that file."""
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "run"
    proc = subprocess.run([
        sys.executable, root / "benchmarks" / "bench_seq2seq_quality.py", "--pairs", root / "data" / "cmudict-g2p",
        "--variants", "main", "--peer", "torch", "--parallel", "--budget", "600", "--out", out,
        "--max-steps", "6", "--eval-every", "3", "--hidden", "8", "--layers", "1", "--embedding", "8",
        "--dropout", "0"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "charlm WER - PyTorch WER:" in proc.stdout
    results = json.loads((out / "result.json").read_text())["results"]
    assert results["main"]["steps"] == results["torch"]["steps"] == 6
    assert results["torch"]["test_examples"] == results["main"]["test_examples"] == 300
    assert results["torch"]["peer_decoded_wer"] == results["torch"]["test_wer"]
    assert results["torch"]["peer_decoded_per"] == pytest.approx(results["torch"]["test_per"], abs=1e-3)
    ours, peer = ([json.loads(x) for x in open(out / f"{n}.metrics.jsonl")] for n in ("main", "torch"))
    assert [r["step"] for r in ours] == [r["step"] for r in peer] == [3, 6]
    for a, b in zip(ours, peer):
        for key in ("train_loss", "val_loss", "val_ter", "lr", "epoch"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key

"""Tiny trained models for the scoring, sampling and CLI tests (built in memory, in seconds)."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np

from charlm import __version__, checkpoint
from charlm.engine import optim
from charlm.lm.model import LanguageModel, ModelConfig
from charlm.text.tokenizer import Tokenizer, TokenizerConfig
from charlm.text.vocab import Vocab

TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog\n" * 2


def build(level="word", mode="lines", text=TEXT, steps=20, dtype="float32", cell="lstm", seed=0,
          layers=1, hidden=12, embedding=6):
    """(model, vocab, tokenizer): a model trained for a few full-batch Adam steps on `text`."""
    cfg = TokenizerConfig(level=level, mode=mode)
    tok = Tokenizer(cfg)
    pieces = list(tok.iter_sentences(io.StringIO(text)))
    counts = Counter(t for p in pieces for t in p)
    if cfg.mode == "lines":
        counts["<EOS>"] = len(pieces)
    vocab = Vocab.from_counts(counts, tokenizer=cfg)
    model = LanguageModel(ModelConfig(vocab_size=len(vocab), cell=cell, layers=layers, hidden=hidden,
                                      embedding=embedding, dtype=dtype), seed=seed)
    ids = []
    for p in pieces:  # the training stream: EOS s1 EOS s2 ... EOS in lines mode
        ids += ([vocab.eos_id] if cfg.mode == "lines" else []) + list(vocab.encode(p))
    ids = np.array(ids + ([vocab.eos_id] if cfg.mode == "lines" else []))
    opt = optim.Adam(0.03)
    x, y = ids[:-1, None], ids[1:, None]
    for _ in range(steps):
        _, _, cache = model.loss(x, y, model.init_state(1))
        opt.step(model.params, model.backward(cache))
    return model, vocab, tok


def save(path, model, vocab) -> str:
    """Write `model` as a "best" checkpoint at `path`, the way `charlm train` does."""
    meta = {"format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION,
            "charlm_version": __version__, "kind": "best", "model": model.config.to_dict(),
            "vocab": vocab.to_dict(), "train": {}}
    checkpoint.save_checkpoint(str(path), checkpoint.model_arrays(model), meta)
    return str(path)

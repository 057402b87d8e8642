"""Tagger training throughput: charlm vs PyTorch (bidirectional LSTM tagger with a character encoder).

The model of the issue: word embedding 100 + a character BiLSTM (embedding 25, 25 per direction)
-> 2 bidirectional LSTM layers, 128 per direction -> softmax over 17 tags; dropout (charlm's default
rate, on both sides) on the word input, between the layers and before the output layer; charlm's
word dropout is off (PyTorch has no counterpart; its cost is one random draw per word).
One training step per batch of 32 sentences: forward, mean cross-entropy over the real tokens,
backward, global gradient-norm clipping at 5, Adam.

    charlm:  loss, _, cache = tagger.loss(batch, None, train=True, rng=rng)
             grads = tagger.backward(cache); clip_grad_norm(grads, 5.0); opt.step(params, grads)
    PyTorch: the same sizes: nn.Embedding + char nn.LSTM(bidirectional=True) on packed words,
             nn.LSTM(2 layers, bidirectional=True, dropout) on packed sentences
             (pack_padded_sequence), nn.Linear, F.cross_entropy over real tokens, backward,
             clip_grad_norm_(…, 5.0), torch.optim.Adam; torch.set_num_threads(2), float32.

Data: random word ids (Zipf-distributed over 20,000 ids, each id with a fixed random spelling over
100 characters) in sentences with the lengths of UD EWT's training sentences, word spellings with
the lengths of its words (read from ../shared/data/ud-ewt/ when present; otherwise log-normal
lengths of the same means, said in the notes). Both sides train on the same batches; each batch's
distinct words are encoded once (the SentenceBatch's W words) by both.

Cases:  bucketed  sentences sorted by length and cut into batches of 32 (as training batches them);
                  8 batches at evenly spaced length quantiles make one timed call.  Target ≥ 1.0×.
        shuffled  batches of 32 random sentences (more padding), 8 batches per call.  Information.
Throughput = real tokens of the 8 batches / median time of a call (after warm-up).

Usage:  python benchmarks/bench_tagger.py [--quick] [--steps N] [--no-torch]
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

import common
from charlm.sentence.network import TaggerConfig

V, C, K = 20000, 100, 17          # word ids, character ids, tags
BATCH, PER_CALL = 32, 8           # sentences per batch, batches per timed call
DROPOUT = next(f.default for f in fields(TaggerConfig) if f.name == "dropout")   # charlm's default rate
# ../shared/data from the main checkout, ../../shared/data from a worktree in /work/wt/NAME
DATA = next((d for d in (common.SHARED_DATA, common.ROOT.parent.parent / "shared" / "data")
             if (d / "ud-ewt").is_dir()), common.SHARED_DATA)
EWT = DATA / "ud-ewt" / "en_ewt-ud-train.conllu"


def ewt_lengths(path: Path = EWT):
    """(sentence lengths, word lengths in characters) of a CoNLL-U file; None when it is missing."""
    if not path.exists():
        return None
    sents, words, n = [], [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 2:                           # blank line (or a comment): sentence boundary
                if n and not line.startswith("#"):
                    sents.append(n)
                    n = 0
                continue
            if "-" in cols[0] or "." in cols[0]:        # multiword ranges, empty nodes
                continue
            n += 1
            words.append(len(cols[1]))
    if n:
        sents.append(n)
    return np.array(sents), np.array(words)


def random_corpus(seed: int = 0):
    """-> (word ids per sentence, spelling of every word id, source note)."""
    rng = np.random.default_rng(seed)
    shapes = ewt_lengths()
    if shapes is None:
        sent_len = np.maximum(1, rng.lognormal(2.6, 0.7, size=12544).astype(int))
        word_len = np.maximum(1, rng.lognormal(1.3, 0.5, size=50000).astype(int))
        note = "lengths: log-normal stand-in (UD EWT not found at ../shared/data/ud-ewt/)"
    else:
        sent_len, word_len = shapes
        note = f"lengths: UD EWT train ({len(sent_len)} sentences, mean {sent_len.mean():.1f} words, " \
               f"max {sent_len.max()}; mean word {word_len.mean():.1f} characters)"
    p = 1.0 / np.arange(1, V - 1)                       # Zipf over ids 2.. (0, 1 are <UNK>, <EOS>)
    p /= p.sum()
    sentences = [2 + rng.choice(V - 2, size=n, p=p) for n in sent_len]
    spelling = [rng.integers(2, C, size=rng.choice(word_len)) for _ in range(V)]
    return sentences, spelling, note


def make_batches(sentences, spelling, order, seed: int):
    """PER_CALL SentenceBatches of BATCH sentences each, taken from `order` at evenly spaced places."""
    from charlm.sentence.batch import pad_sentences

    rng = np.random.default_rng(seed)
    chunks = [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
    picks = [chunks[int((k + 0.5) * len(chunks) / PER_CALL)] for k in range(PER_CALL)]
    out = []
    for idx in picks:
        words = [sentences[i] for i in idx]
        out.append(pad_sentences(words, [[spelling[w] for w in s] for s in words],
                                 [rng.integers(0, K, size=len(s)) for s in words]))
    return out


def charlm_fn(batches, crf: bool = False):
    """(one timed call: a training step on each batch, the number of parameters); crf: with a CRF
    output layer (benchmarks/bench_crf.py)."""
    from charlm.engine.optim import clip_grad_norm, make_optimizer
    from charlm.sentence.network import TaggerNetwork as Tagger

    config = TaggerConfig(task="tag", vocab_size=V, char_vocab_size=C, num_labels=K, word_dropout=0.0, crf=crf)
    model = Tagger(config, seed=0)
    opt = make_optimizer("adam", 1e-3)
    rng = np.random.default_rng(0)

    def call():
        for b in batches:
            _, _, cache = model.loss(b, None, train=True, rng=rng)
            grads = model.backward(cache)
            clip_grad_norm(grads, 5.0)
            opt.step(model.params, grads)

    return call, model.num_params()


def torch_tagger(torch):
    nn = torch.nn
    pack = nn.utils.rnn.pack_padded_sequence

    class TorchTagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, 100)
            self.char_embed = nn.Embedding(C, 25)
            self.char_rnn = nn.LSTM(25, 25, bidirectional=True)
            self.rnn = nn.LSTM(150, 128, num_layers=2, bidirectional=True, dropout=DROPOUT)
            self.drop = nn.Dropout(DROPOUT)
            self.out = nn.Linear(256, K)

        def forward(self, words, lengths, chars, char_lengths, word_index):
            """-> logits (T, B, K). Packed sequences: every RNN stops at each sequence's own end."""
            _, (h, _) = self.char_rnn(pack(self.char_embed(chars), char_lengths, enforce_sorted=False))
            codes = torch.cat([h[0], h[1]], dim=1)            # [→a at the last char, ←a at the first]
            x = self.drop(torch.cat([self.embed(words), codes[word_index]], dim=2))
            y, _ = self.rnn(pack(x, lengths, enforce_sorted=False))
            y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=words.shape[0])
            return self.out(self.drop(y))

    torch.manual_seed(0)
    return TorchTagger()


def torch_fn(torch, batches):
    model = torch_tagger(torch)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = list(model.parameters())
    F = torch.nn.functional
    tb = [tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in
                (b.words, b.lengths, b.chars, b.char_lengths, b.word_index, b.labels, b.mask > 0))
          for b in batches]

    def call():
        for words, lengths, chars, char_lengths, word_index, labels, real in tb:
            opt.zero_grad(set_to_none=True)
            logits = model(words, lengths, chars, char_lengths, word_index)
            loss = F.cross_entropy(logits[real], labels[real])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()

    return call, sum(p.numel() for p in params)


def run(args, log=print) -> tuple[list[dict], list[str]]:
    """Measure both cases; returns (table rows, notes)."""
    warm, steps = common.budget(args)
    torch = common.torch_or_none(args.no_torch, args.torch_threads)
    sentences, spelling, note = random_corpus()
    by_length = np.argsort([len(s) for s in sentences], kind="stable")
    shuffled = np.random.default_rng(1).permutation(len(sentences))
    rows, notes = [], [note]
    for case, order, target in (("bucketed", by_length, "≥ 1.0× PyTorch"), ("shuffled", shuffled, "(info)")):
        batches = make_batches(sentences, spelling, order, seed=2)
        tokens = sum(b.tokens for b in batches)
        fns = {}
        fns["charlm"], n_params = charlm_fn(batches)
        if torch is not None:
            fns["torch"], n_torch = torch_fn(torch, batches)
        times = common.interleaved_times(fns, warm, steps, block=1, budget_s=common.case_budget(args))
        med = {k: common.median(v) for k, v in times.items()}
        tps = {k: tokens / v for k, v in med.items()}
        rt = common.ratio(tps["charlm"], tps.get("torch"))
        padded = sum(b.words.size for b in batches)
        log(f"[tagger] {case}: {tokens} tokens ({100 * tokens / padded:.0f} % of padded positions) in "
            f"{PER_CALL} batches: charlm {med['charlm']:.3f} s" +
            (f", PyTorch {med['torch']:.3f} s" if "torch" in med else ""))
        label = f"{case} B={BATCH} bilstm 2×128 char 25{common.cut_short(times, steps)}"
        rows.append(dict(benchmark="tagger train", case=label,
                         charlm=tps["charlm"], torch=tps.get("torch"), ratio=rt, target=target,
                         met=None if rt is None or target.startswith("(") else rt >= 1.0))
        if case == "bucketed":
            notes.append(f"tagger: {n_params:,} parameters (charlm)"
                         + (f", {n_torch:,} (PyTorch: two biases per gate)" if torch is not None else "")
                         + f"; {warm} warm-up + {steps} timed calls of {PER_CALL} training steps per side, "
                           "interleaved; median call time")
    return rows, notes


def main(argv=None) -> int:
    return common.bench_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())

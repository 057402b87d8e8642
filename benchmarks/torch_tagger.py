"""The PyTorch peer of `charlm train --task tag`: the same BiLSTM tagger, data, batches, schedule and
metric, for the side-by-side NER comparison of bench_tasks.py (needs the `bench` extra, torch==2.13.0).

    python benchmarks/torch_tagger.py TRAIN --val-file DEV --test-file TEST --time-limit S [options]

What is the same as charlm's run with the same options:
  * data: charlm's readers, vocabularies (`Encoder.build`: words, characters, labels in IOB2) and
    batches (`SentenceBatches`: the same sentences in the same order, padded the same way);
  * model: word embedding E (in training a --word-dropout share of the words gets <UNK>'s, as
    charlm's TaggerConfig.word_dropout) concatenated with a character BiLSTM's final states
    (embedding Ec, Hc per direction, over each distinct word of the batch), dropout, an L-layer bidirectional
    LSTM with H per direction (dropout between layers), dropout, a linear layer to the K tags,
    log-softmax; the mean −log ŷ<t>[tag] over the real tokens (packed sequences: no padding is read);
  * training: Adam (lr), global-norm clipping, evaluation every --eval-every steps on the
    validation file; the best model by entity F1 is kept, the learning rate halves after an
    evaluation that does not improve, --patience of them stop the run, and so do --time-limit
    and --epochs;
  * decoding and metric: charlm's constrained Viterbi (`charlm.sentence.decode`) on the log-probabilities,
    and conlleval's entity F1 (`charlm.sentence.metrics`) in the data's scheme.
  * initialisation (--init charlm, the default): the peer starts from exactly the weights
    `charlm train --seed S` starts from (`charlm.sentence.network.TaggerNetwork`, copied by `load_charlm`), with
    one bias per gate as charlm has (nn.LSTM's second bias, bias_hh, is held at 0 and not trained;
    with both trained, Adam moves a gate's bias twice as fast). --init torch: PyTorch's own
    initialisation and its two trained biases per gate.
With the same weights the two models compute the same loss and gradients (to float rounding;
tests/test_torch_peer.py checks it in float64), so the runs differ only in their dropout draws
and in rounding. Prints one JSON object (dev and test F1, steps, tokens/s).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from charlm.sentence.source import SentenceBatches  # noqa: E402
from charlm.sentence.decode import decode_batch, tag_constraints  # noqa: E402
from charlm.sentence.labels import detect_scheme  # noqa: E402
from charlm.sentence.metrics import conlleval_counts  # noqa: E402
from charlm.sentence.encoder import Encoder  # noqa: E402
from charlm.sentence.batch import make_batch  # noqa: E402
from charlm.sentence.network import TaggerConfig, TaggerNetwork  # noqa: E402
from charlm.sentence.formats import read_tagged  # noqa: E402
from charlm.text.tokenizer import TokenizerConfig  # noqa: E402


class BiLSTMTagger(nn.Module):
    def __init__(self, V, C, K, E, Ec, Hc, H, L, dropout, word_dropout):
        super().__init__()
        self.word_dropout = word_dropout
        self.embed = nn.Embedding(V, E)
        self.char_embed = nn.Embedding(C, Ec) if Hc else None
        self.char_rnn = nn.LSTM(Ec, Hc, bidirectional=True) if Hc else None
        self.rnn = nn.LSTM(E + 2 * Hc, H, num_layers=L, bidirectional=True, dropout=dropout if L > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * H, K)

    def forward(self, b):
        """b: a charlm SentenceBatch -> log-probabilities (T, B, K)."""
        words = torch.from_numpy(b.words)
        if self.training and self.word_dropout > 0:
            words = torch.where(torch.rand(words.shape) < self.word_dropout, torch.zeros_like(words), words)
        x = self.embed(words)
        if self.char_rnn is not None:
            packed = pack_padded_sequence(self.char_embed(torch.from_numpy(b.chars)),
                                          torch.from_numpy(b.char_lengths), enforce_sorted=False)
            _, (h, _) = self.char_rnn(packed)  # h (2, W, Hc): last state of each direction
            words = torch.cat([h[0], h[1]], dim=1)
            x = torch.cat([x, words[torch.from_numpy(b.word_index)]], dim=2)
        packed = pack_padded_sequence(self.drop(x), torch.from_numpy(b.lengths), enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = pad_packed_sequence(y, total_length=b.words.shape[0])
        return torch.log_softmax(self.out(self.drop(y)), dim=-1)

    def lstms(self):
        """(charlm name prefix, nn.LSTM, torch suffix, H) of every direction of every LSTM."""
        if self.char_rnn is not None:
            for d, sfx in (("fwd", "l0"), ("bwd", "l0_reverse")):
                yield f"char.{d}", self.char_rnn, sfx, self.char_rnn.hidden_size
        for l in range(self.rnn.num_layers):
            for d, sfx in (("fwd", f"l{l}"), ("bwd", f"l{l}_reverse")):
                yield f"rnn.{l}.{d}", self.rnn, sfx, self.rnn.hidden_size


def _gate_order(H: int) -> np.ndarray:
    """Columns of charlm's LSTM W (H+D, 4H), [Γu | Γf | Γo | c~], in nn.LSTM's row order [i | f | g | o]."""
    return np.concatenate([np.arange(0, 2 * H), np.arange(3 * H, 4 * H), np.arange(2 * H, 3 * H)])


def put(tensor, array) -> None:
    """Copy a NumPy array into a torch parameter (in the parameter's dtype)."""
    tensor.data.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(tensor.dtype))


def grad(tensor) -> np.ndarray:
    return tensor.grad.detach().numpy()


def value(tensor) -> np.ndarray:
    return tensor.detach().numpy()


def load_lstms(model, params: dict) -> None:
    """Copy charlm's LSTM parameters into every (name, nn.LSTM, suffix, H) of model.lstms(). charlm's
    W (H+D, 4H) holds [W_hh; W_ih] transposed (rows [:H] act on a<t-1>); its one bias per gate goes
    to bias_ih, and bias_hh is set to 0 and frozen (requires_grad False)."""
    for name, lstm, sfx, H in model.lstms():
        W, b, cols = params[f"{name}.W"], params[f"{name}.b"], _gate_order(H)
        put(getattr(lstm, f"weight_ih_{sfx}"), W[H:, cols].T)
        put(getattr(lstm, f"weight_hh_{sfx}"), W[:H, cols].T)
        put(getattr(lstm, f"bias_ih_{sfx}"), b[cols])
        bias_hh = getattr(lstm, f"bias_hh_{sfx}")
        bias_hh.data.zero_()
        bias_hh.requires_grad_(False)


def lstm_gradients(model, read=grad) -> dict:
    """The gradients of the LSTMs set up by `load_lstms` (with read=value: their weights), in charlm's
    names and layouts."""
    g = {}
    for name, lstm, sfx, H in model.lstms():
        back = np.argsort(_gate_order(H))
        g[f"{name}.W"] = np.concatenate([read(getattr(lstm, f"weight_hh_{sfx}")).T,
                                         read(getattr(lstm, f"weight_ih_{sfx}")).T])[:, back]
        g[f"{name}.b"] = read(getattr(lstm, f"bias_ih_{sfx}"))[back]
    return g


def load_charlm(model: BiLSTMTagger, params: dict) -> None:
    """Copy a charlm tagger's parameters (checkpoint names, a BiLSTMTagger of the same sizes) into
    the model (the LSTMs as `load_lstms` says)."""
    put(model.embed.weight, params["embed.W"])
    if model.char_embed is not None:
        put(model.char_embed.weight, params["char.embed.W"])
    load_lstms(model, params)
    put(model.out.weight, params["out.W"].T)
    put(model.out.bias, params["out.b"])


def charlm_gradients(model: BiLSTMTagger) -> dict:
    """The gradients of a model set up by `load_charlm`, in charlm's names and layouts."""
    g = {"embed.W": grad(model.embed.weight)}
    if model.char_embed is not None:
        g["char.embed.W"] = grad(model.char_embed.weight)
    g.update(lstm_gradients(model))
    g["out.W"], g["out.b"] = grad(model.out.weight).T, grad(model.out.bias)
    return g


def mean_loss(model: BiLSTMTagger, b) -> torch.Tensor:
    """The mean −log ŷ<t>[y<t>] over the real tokens of a SentenceBatch."""
    lp = model(b)
    labels = torch.from_numpy(b.labels)
    mask = torch.from_numpy(b.mask).to(lp.dtype)
    return -(lp.gather(2, labels.unsqueeze(2)).squeeze(2) * mask).sum() / mask.sum()


class Clock:
    epoch = 0


def entity_f1(model, enc, sentences, batch_size=64) -> float:
    """conlleval entity F1 of the model's constrained-Viterbi tags (data scheme) on sentences."""
    model.eval()
    constraints = tag_constraints(enc.labels, enc.model_scheme.lower())
    encoded = [enc.encode(s.tokens) for s in sentences]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    predicted = [None] * len(encoded)
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            b = make_batch([encoded[j] for j in idx], with_labels=False)
            lp = model(b).numpy()
            for j, ids in zip(idx, decode_batch(lp, b.lengths, constraints)):
                predicted[j] = enc.report_labels([enc.labels[k] for k in ids])
    model.train()
    return conlleval_counts([s.tags for s in sentences], predicted).report()["f1"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train")
    p.add_argument("--val-file", required=True)
    p.add_argument("--test-file", required=True)
    p.add_argument("--time-limit", type=float, required=True)
    for name, default in (("embedding", 100), ("char-embedding", 25), ("char-hidden", 25), ("hidden", 128),
                          ("layers", 2), ("dropout", 0.25), ("word-dropout", 0.1), ("lr", 3e-3), ("clip", 5.0), ("batch-size", 32),
                          ("epochs", 1000), ("eval-every", 100), ("patience", 5), ("seed", 0), ("threads", 2)):
        p.add_argument(f"--{name}", type=type(default), default=default)
    p.add_argument("--init", choices=("charlm", "torch"), default="charlm",
                   help="charlm: start from the weights `charlm train --seed S` starts from (default); "
                        "torch: PyTorch's own initialisation")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    train = read_tagged(a.train).sentences
    dev, test = read_tagged(a.val_file).sentences, read_tagged(a.test_file).sentences
    scheme = detect_scheme([s.tags for s in train])
    enc = Encoder.build(True, [s.tokens for s in train], [s.tags for s in train], TokenizerConfig(level="word"),
                        scheme)
    encoded = [enc.encode(s.tokens, s.tags) for s in train]
    clock = Clock()
    source = SentenceBatches(encoded, make_batch, a.batch_size, a.seed, clock)
    model = BiLSTMTagger(len(enc.vocab), len(enc.chars), len(enc.labels), a.embedding, a.char_embedding,
                         a.char_hidden, a.hidden, a.layers, a.dropout, a.word_dropout)
    if a.init == "charlm":
        config = TaggerConfig(task="tag", vocab_size=len(enc.vocab), char_vocab_size=len(enc.chars),
                              num_labels=len(enc.labels), cell="lstm", layers=a.layers, hidden=a.hidden,
                              embedding=a.embedding, char_embedding=a.char_embedding, char_hidden=a.char_hidden,
                              dropout=a.dropout, word_dropout=a.word_dropout)
        load_charlm(model, TaggerNetwork(config, seed=a.seed).params)
    trained = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(trained, lr=a.lr)
    best_f1, best_state, best_step, bad, step, tokens, position = -1.0, None, 0, 0, 0, 0, 0
    started = time.perf_counter()
    reason = "finished"

    def evaluate() -> bool:
        nonlocal best_f1, best_state, best_step, bad
        f1 = entity_f1(model, enc, dev)
        print(json.dumps({"step": step, "epoch": round(clock.epoch + source.epoch_fraction(position), 2),
                          "val_f1": round(f1, 4), "lr": opt.param_groups[0]["lr"]}), file=sys.stderr, flush=True)
        if f1 > best_f1:
            best_f1, best_state, best_step, bad = f1, copy.deepcopy(model.state_dict()), step, 0
            return False
        bad += 1
        for g in opt.param_groups:
            g["lr"] = max(g["lr"] * 0.5, a.lr * 1e-3)
        return bad >= a.patience

    try:
        while clock.epoch < a.epochs:
            for batch in source.batches(0):
                position = batch.end
                b = batch.inputs[0]
                loss = mean_loss(model, b)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(trained, a.clip)
                opt.step()
                step += 1
                tokens += batch.tokens
                if step % a.eval_every == 0 and evaluate():
                    raise StopIteration("early stop")
                if time.perf_counter() - started >= a.time_limit:
                    raise StopIteration("reached --time-limit")
            clock.epoch, position = clock.epoch + 1, 0
    except StopIteration as stop:
        reason = str(stop)
    elapsed = time.perf_counter() - started
    if best_step != step:
        evaluate()
    model.load_state_dict(best_state)
    result = {"reason": reason, "steps": step, "epochs": round(clock.epoch + source.epoch_fraction(position), 2),
              "train_s": round(elapsed, 1), "tokens_per_s": round(tokens / elapsed),
              "best_step": best_step, "dev_entity_f1": round(best_f1, 4),
              "test_entity_f1": round(entity_f1(model, enc, test), 4), "params": sum(p.numel() for p in trained),
              "init": a.init}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

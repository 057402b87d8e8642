"""Models that run outside charlm: a trained model as one self-contained ONNX graph (`charlm export`).

    export_model(loaded) -> onnx.ModelProto     loaded: a `checkpoint.Loaded` (load_model's result)
    save(proto, path)                           written atomically

The graph computes charlm's evaluation forward pass (no dropout) in float32 (a float64 model's
weights are rounded), opset OPSET, with ONNX's own recurrent operators. The mapping of a cell
(nn.cells: W (H+D, G·H), rows [:H] on a<t-1>, rows [H:] on x<t>; b (G·H,)) onto an operator
(W (dirs, G·H, D) on x<t>, R (dirs, G·H, H) on a<t-1>, B (dirs, 2·G·H) = [Wb | Rb], gates as row blocks):

    RNN   a<t> = g(W_a[a<t-1>, x<t>] + b_a): ONNX RNN, activations Tanh or Relu.
    GRU   ONNX GRU with linear_before_reset=0: the reset gate multiplies c<t-1> before the product,
          as the notes' Γr does in c~ = tanh(W_c[Γr * c<t-1>, x<t>] + b_c). Its gates are
          [z | r | h] = [−Γu | Γr | c~]: ONNX's c<t> = (1 − z) * c~ + z * c<t-1> with
          z = σ(−(W_u[c<t-1>, x<t>] + b_u)) = 1 − Γu, so z's rows are those of Γu negated.
    LSTM  gates [i | o | f | c] = [Γu | Γo | Γf | c~]. Peepholes do NOT map: ONNX's output gate reads
          the new cell, Γo = σ(... + P_o * c<t>), the notes' reads c<t-1> (measured: equal with
          P_o = 0, 1.6e-2 apart otherwise). An LSTM with peepholes therefore runs as an ONNX Scan
          over one step of the notes' equations (`_lstm_step`), with charlm's W, b and P as they are.

Bidirectional layers (taggers, classifiers, the character encoder) pass the sentence lengths as the
operator's `sequence_lens`: ONNX Runtime's reverse direction starts at each sequence's own last
element, as charlm's (nn.layers.reverse_within) does — measured equal; steps past a length come out 0
(padding, which no real position reads). The Scan path reverses within the lengths explicitly.

Inputs and outputs (T steps, B sequences; ids int64; float32 otherwise):
    language model   tokens (T,B), a0 (layers,B,H) [, c0 (layers,B,H): LSTM]
                     -> logits (T,B,V), aT (layers,B,H) [, cT]: the state after the last step
    tagger           words (T,B) (padding 0), lengths (B,) [, chars (Lc,W), char_lengths (W,),
                     word_index (T,B): the character encoder's inputs, as a `tagger.SentenceBatch`]
                     -> logits (T,B,K) (rows past a sentence's length are meaningless)
    classifier       the same inputs -> logits (B,K)
`metadata(loaded)` (in the file as metadata_props, each value JSON) holds what a caller needs to
tokenize as charlm does: see the README, "Using a model elsewhere".

A new task adds its graph builder to EXPORTERS (a sequence-to-sequence model would add a builder
that returns its encoder and one decoder step; `export_model` returns one graph per task today).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile

import numpy as np

from charlm import __version__, tokenizer
from charlm.errors import CharlmError, UsageError
from charlm.sentences import MAX_WORD_CHARS

OPSET = 17
IR_VERSION = 8          # the IR of opset 17: runtimes of its time can read the file
PRODUCER = "charlm"     # files.py recognises a charlm export by it
MAX_BYTES = 2 ** 31 - 2 ** 24   # one protobuf holds < 2 GiB; leave room for the graph
INSTALL_HINT = "charlm export needs onnx: pip install 'charlm[export]'"


def _onnx():
    """The onnx package (CharlmError with the pip line when it is missing)."""
    try:
        import onnx
    except ImportError:
        raise CharlmError(INSTALL_HINT) from None
    return onnx


# -- a graph under construction ---------------------------------------------------------------------------
class _Graph:
    """Nodes and initializers of one graph; every value gets a fresh name (shared with its subgraphs)."""

    def __init__(self, counter=None):
        self.onnx = _onnx()
        self.nodes, self.inits = [], []
        self._count = counter if counter is not None else itertools.count()
        self._memo: dict = {}

    def sub(self) -> "_Graph":
        """A graph for a Scan body: its own nodes, names from the same counter."""
        return _Graph(self._count)

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._count)}"

    def const(self, array, name: str | None = None) -> str:
        """An initializer (float arrays become float32)."""
        a = np.asarray(array)
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
        name = name or self.fresh("c")
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def once(self, key, make):
        """The value make() gives, made once per key in this graph."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def ints(self, *values) -> str:
        """A 1-D int64 constant."""
        return self.once(("ints", values), lambda: self.const(np.array(values, dtype=np.int64)))

    def scalar(self, value: int) -> str:
        """A 0-d int64 constant."""
        return self.once(("scalar", value), lambda: self.const(np.array(value, dtype=np.int64)))

    def op(self, op_type: str, *inputs: str, outputs: int | list = 1, **attrs):
        """Add a node; its output name (or names, when `outputs` is a count > 1 or a list)."""
        names = [self.fresh(op_type) for _ in range(outputs)] if isinstance(outputs, int) else list(outputs)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if len(names) == 1 else names

    def dim(self, x: str, axis: int) -> str:
        """x.shape[axis] as a 1-element int64 tensor."""
        return self.op("Slice", self.op("Shape", x), self.ints(axis), self.ints(axis + 1))

    def steps(self, x: str) -> str:
        """t = 0..T-1 as a (T, 1) int64 column, T = x.shape[0]."""
        T = self.op("Squeeze", self.dim(x, 0), self.ints(0))
        return self.op("Unsqueeze", self.op("Range", self.scalar(0), T, self.scalar(1)), self.ints(1))

    def zeros(self, like: str, axis: int, width: int) -> str:
        """Zeros (like.shape[axis], width): an initial state of B rows."""
        shape = self.op("Concat", self.dim(like, axis), self.ints(width), axis=0)
        return self.op("ConstantOfShape", shape,
                       value=self.onnx.helper.make_tensor("zero", self.onnx.TensorProto.FLOAT, [1], [0.0]))

    def matmul_add(self, x: str, W, b) -> str:
        """x (..., H) @ W (H, K) + b (K,); W may be a value name (a tied output layer)."""
        return self.op("Add", self.op("MatMul", x, W if isinstance(W, str) else self.const(W)), self.const(b))


# -- recurrent layers -----------------------------------------------------------------------------------------
# ONNX's gates in its order, as (charlm's gate block, sign), per cell (see the module docstring)
_ONNX_GATES = {"rnn": ((0, 1),), "gru": ((1, -1), (0, 1), (2, 1)), "lstm": ((0, 1), (2, 1), (1, 1), (3, 1))}


def _onnx_weights(cell, p: dict):
    """One direction's (W (G·H, D), R (G·H, H), B (2·G·H,)) in ONNX's layout and gate order."""
    W, b = p["W"], p["b"]
    H = W.shape[1] // cell.G
    blocks = [(s * W[:, k * H:(k + 1) * H], s * b[k * H:(k + 1) * H]) for k, s in _ONNX_GATES[cell.kind]]
    return (np.concatenate([w[H:].T for w, _ in blocks]),            # rows on x<t>
            np.concatenate([w[:H].T for w, _ in blocks]),            # rows on a<t-1>
            np.concatenate([bb for _, bb in blocks] + [np.zeros(cell.G * H, dtype=b.dtype)]))


def _native(cell) -> bool:
    """Whether ONNX has the cell as an operator (all but the LSTM with peepholes)."""
    return not getattr(cell, "peephole", False)


def _lengths32(g: _Graph, lengths: str) -> str:
    """The operators' sequence_lens: int32."""
    return g.once(("int32", lengths), lambda: g.op("Cast", lengths, to=g.onnx.TensorProto.INT32))


def _operator(g: _Graph, cell, ps: list, x: str, lengths: str | None, state0: tuple | None):
    """ONNX's RNN/GRU/LSTM over x (T,B,D), one or two directions -> (y (T,B,dirs·H), finals (dirs,B,H)...)."""
    H = ps[0]["W"].shape[1] // cell.G
    W, R, B = (np.stack(a) for a in zip(*(_onnx_weights(cell, p) for p in ps)))
    inputs = [x, g.const(W), g.const(R), g.const(B), "" if lengths is None else _lengths32(g, lengths)]
    inputs += list(state0) if state0 is not None else []
    attrs = {"hidden_size": H, "direction": "bidirectional" if len(ps) == 2 else "forward"}
    if cell.kind == "rnn":
        attrs["activations"] = [cell.activation.capitalize()] * len(ps)
    if cell.kind == "gru":
        attrs["linear_before_reset"] = 0
    outs = g.op(cell.kind.upper(), *inputs, outputs=1 + cell.n_states, **attrs)
    Y = outs[0]                                                     # (T, dirs, B, H)
    if len(ps) == 1:
        y = g.op("Squeeze", Y, g.ints(1))
    else:                                                           # [→a<t>, ←a<t>]
        y = g.op("Reshape", g.op("Transpose", Y, perm=[0, 2, 1, 3]), g.ints(0, 0, -1))
    return y, tuple(outs[1:])


def _lstm_step(g: _Graph, p: dict, H: int, D: int):
    """The Scan body of one step of the notes' LSTM with peepholes: (a<t-1>, c<t-1>, x<t>) ->
    (a<t>, c<t>, a<t>), each (B, H) / (B, D), from charlm's own W (H+D, 4H), b (4H,), P (3, H)."""
    helper, F = g.onnx.helper, g.onnx.TensorProto.FLOAT
    body = g.sub()
    a_prev, c_prev, x = body.fresh("a_prev"), body.fresh("c_prev"), body.fresh("x")
    z = body.matmul_add(body.op("Concat", a_prev, x, axis=1), p["W"], p["b"])   # W[a<t-1>, x<t>] + b
    peep = np.concatenate([p["P"].reshape(-1), np.zeros(H, dtype=p["P"].dtype)])    # [P_u | P_f | P_o | 0]
    z = body.op("Add", z, body.op("Mul", body.op("Tile", c_prev, body.ints(1, 4)), body.const(peep)))
    zu, zf, zo, zc = body.op("Split", z, outputs=4, axis=1)
    Gu, Gf, Go = (body.op("Sigmoid", v) for v in (zu, zf, zo))           # Γu, Γf, Γo (+ P * c<t-1>)
    cand = body.op("Tanh", zc)                                           # c~
    c = body.op("Add", body.op("Mul", Gu, cand), body.op("Mul", Gf, c_prev))   # c<t> = Γu*c~ + Γf*c<t-1>
    a = body.op("Mul", Go, body.op("Tanh", c))                           # a<t> = Γo * tanh(c<t>)
    info = [helper.make_tensor_value_info(n, F, [None, w]) for n, w in ((a_prev, H), (c_prev, H), (x, D))]
    out = [helper.make_tensor_value_info(n, F, [None, H]) for n in (a, c, body.op("Identity", a))]
    return helper.make_graph(body.nodes, g.fresh("lstm_step"), info, out, body.inits)


def _reverse_within(g: _Graph, x: str, lengths: str) -> str:
    """x (T,B,F) with each column reversed within its own length (nn.layers.reverse_within):
    rev[t, b] = L_b - 1 - t for t < L_b, else t."""
    def rev():                                                        # (T, B, 1)
        t = g.steps(x)
        last = g.op("Sub", g.op("Sub", lengths, g.scalar(1)), t)         # L_b - 1 - t
        return g.op("Unsqueeze", g.op("Where", g.op("Less", t, lengths), last, t), g.ints(2))

    index = g.op("Expand", g.once(("reverse", lengths), rev), g.op("Shape", x))
    return g.op("GatherElements", x, index, axis=0)


def _scanned(g: _Graph, cell, ps: list, x: str, lengths: str | None, state0: tuple | None, D: int):
    """The peephole LSTM as a Scan per direction (the backward one over x reversed within the lengths)
    -> (y (T,B,dirs·H), finals (dirs,B,H)... ; a backward direction's finals include padding steps)."""
    H = ps[0]["W"].shape[1] // 4
    ys, finals = [], []
    for d, p in enumerate(ps):
        xd = x if d == 0 else _reverse_within(g, x, lengths)
        if state0 is None:
            init = [g.zeros(x, 1, H)] * 2
        else:
            init = [g.op("Squeeze", s, g.ints(0)) for s in state0]
        aT, cT, y = g.op("Scan", *init, xd, outputs=3, num_scan_inputs=1, body=_lstm_step(g, p, H, D))
        ys.append(y if d == 0 else _reverse_within(g, y, lengths))
        finals.append([g.op("Unsqueeze", s, g.ints(0)) for s in (aT, cT)])
    y = ys[0] if len(ys) == 1 else g.op("Concat", *ys, axis=2)
    return y, tuple(f[0] if len(ps) == 1 else g.op("Concat", *f, axis=0) for f in zip(*finals))


def _recurrent(g: _Graph, cell, ps: list, x: str, D: int, lengths: str | None = None, state0=None):
    """One recurrent layer, `ps` its directions' params ([p] or [p_fwd, p_bwd]), over x (T,B,D);
    two directions need `lengths` (B,). state0: (a0[, c0]) each (dirs,B,H), or None for zeros.
    -> (y (T,B,dirs·H), final states (dirs,B,H) of a forward layer)."""
    if _native(cell):
        return _operator(g, cell, ps, x, lengths, state0)
    return _scanned(g, cell, ps, x, lengths, state0, D)


# -- pooling over time (nn.layers.pool_forward) ----------------------------------------------------------------
def _steps_mask(g: _Graph, y: str, lengths: str) -> str:
    """(T,B,1) bool: t < L_b."""
    return g.op("Unsqueeze", g.op("Less", g.steps(y), lengths), g.ints(2))


def _pool(g: _Graph, y: str, lengths: str, how: str, split: int, width: int) -> str:
    """y (T,B,F) -> (B,F) over each column's real steps: "last" = [features [:split] at step L_b - 1,
    features [split:] at step 0], "mean", "max"."""
    if how == "last":
        last = g.op("Unsqueeze", g.op("Sub", lengths, g.scalar(1)), g.ints(1))             # (B, 1)
        at_last = g.op("GatherND", g.op("Transpose", y, perm=[1, 0, 2]), last, batch_dims=1)   # y[L_b-1, b]
        fwd = g.op("Slice", at_last, g.ints(0), g.ints(split), g.ints(1))
        if split == width:
            return fwd
        first = g.op("Slice", g.op("Squeeze", g.op("Slice", y, g.ints(0), g.ints(1), g.ints(0)), g.ints(0)),
                     g.ints(split), g.ints(width), g.ints(1))
        return g.op("Concat", fwd, first, axis=1)
    real = _steps_mask(g, y, lengths)
    if how == "mean":
        total = g.op("ReduceSum", g.op("Mul", y, g.op("Cast", real, to=g.onnx.TensorProto.FLOAT)),
                     g.ints(0), keepdims=0)
        return g.op("Div", total, g.op("Unsqueeze", g.op("Cast", lengths, to=g.onnx.TensorProto.FLOAT),
                                       g.ints(1)))
    if how == "max":
        return g.op("ReduceMax", g.op("Where", real, y, g.const(np.array(-np.inf, dtype=np.float32))),
                    axes=[0], keepdims=0)
    raise UsageError(f"charlm export cannot pool with {how!r}")


# -- the graphs of the tasks -------------------------------------------------------------------------------------
def _value(g: _Graph, name: str, elem, shape) -> object:
    return g.onnx.helper.make_tensor_value_info(name, elem, shape)


def _language_model(g: _Graph, loaded):
    """tokens (T,B), a0 [, c0] (L,B,H) -> logits (T,B,V), aT [, cT]."""
    model = loaded.model
    c, p = model.config, model.params
    L, H, V = c.layers, c.hidden, c.vocab_size
    I64, F = g.onnx.TensorProto.INT64, g.onnx.TensorProto.FLOAT
    states = ["a0", "c0"][:model.cell.n_states]
    x = g.op("Gather", g.const(p["embed.W"], "embed.W"), "tokens")            # e<t> = E[x<t>]
    per_layer = [g.op("Split", s, outputs=[g.fresh(f"{s}_layer") for _ in range(L)], axis=0) for s in states]
    per_layer = [[s] if L == 1 else s for s in per_layer]            # (1,B,H) each
    finals = []
    for l, lp in enumerate(model._layer_params()):
        state0 = tuple(s[l] for s in per_layer)
        x, fin = _recurrent(g, model.cell, [lp], x, c.embedding if l == 0 else H, state0=state0)
        finals.append(fin)
    W_y = g.op("Transpose", "embed.W") if c.tie_weights else p["out.W"]       # tied: W_y = Eᵀ
    g.op("Identity", g.matmul_add(x, W_y, p["out.b"]), outputs=["logits"])
    for name, fin in zip(states, zip(*finals)):
        g.op("Concat", *fin, axis=0, outputs=[name[0] + "T"])
    inputs = [_value(g, "tokens", I64, ["T", "B"])] + [_value(g, s, F, [L, "B", H]) for s in states]
    outputs = [_value(g, "logits", F, ["T", "B", V])] + [_value(g, s[0] + "T", F, [L, "B", H]) for s in states]
    return inputs, outputs


def _sentence_model(g: _Graph, loaded):
    """words, lengths [, chars, char_lengths, word_index] -> logits (T,B,K) (tagger) or (B,K) (classifier)."""
    model = loaded.model
    c, p = model.config, model.params
    I64, F = g.onnx.TensorProto.INT64, g.onnx.TensorProto.FLOAT
    inputs = [_value(g, "words", I64, ["T", "B"]), _value(g, "lengths", I64, ["B"])]
    x = g.op("Gather", g.const(p["embed.W"], "embed.W"), "words")             # E[w<t>]  (T,B,Emb)
    if model.chars is not None:                                                # [→c, ←c](w<t>)
        inputs += [_value(g, "chars", I64, ["Lc", "W"]), _value(g, "char_lengths", I64, ["W"]),
                   _value(g, "word_index", I64, ["T", "B"])]
        e = g.op("Gather", g.const(p["char.embed.W"], "char.embed.W"), "chars")      # (Lc, W, Ec)
        pair = list(model._group("char", ("fwd", "bwd")))
        y, _ = _recurrent(g, model.cell, pair, e, c.char_embedding, "char_lengths")
        codes = _pool(g, y, "char_lengths", "last", c.char_hidden, 2 * c.char_hidden)  # (W, 2Hc)
        x = g.op("Concat", x, g.op("Gather", codes, "word_index"), axis=2)
    for l, lp in enumerate(model._layer_params()):
        ps = list(lp) if c.bidirectional else [lp]
        D = model._input_width() if l == 0 else model._width()
        x, _ = _recurrent(g, model.cell, ps, x, D, "lengths" if c.bidirectional else None)
    K = c.num_labels
    if model.task == "tag":
        out = _value(g, "logits", F, ["T", "B", K])
    else:
        x = _pool(g, x, "lengths", c.pool, c.hidden, model._width())
        out = _value(g, "logits", F, ["B", K])
    g.op("Identity", g.matmul_add(x, p["out.W"], p["out.b"]), outputs=["logits"])
    return inputs, [out]


# task -> graph builder (g, loaded) -> (graph inputs, graph outputs); the parameter prefixes it reads
EXPORTERS = {"lm": _language_model, "tag": _sentence_model, "classify": _sentence_model}
READS = {"lm": ("embed.", "rnn.", "out."), "tag": ("embed.", "char.", "rnn.", "out."),
         "classify": ("embed.", "char.", "rnn.", "out.")}


def _check_exportable(loaded) -> None:
    """UsageError for what the graph cannot hold: a task without a builder, parameters no builder
    reads (a layer charlm export does not know), or more than one protobuf holds."""
    task = loaded.task
    if task not in EXPORTERS:
        raise UsageError(f"charlm export cannot write a {task!r} model yet (it exports: {', '.join(EXPORTERS)})")
    unread = sorted(k for k in loaded.model.params if not k.startswith(READS[task]))
    if unread:
        raise UsageError(f"charlm export cannot write this {task} model: it does not know the layer of "
                         f"parameter(s) {', '.join(unread)}")
    size = sum(a.size for a in loaded.model.params.values()) * 4
    if size > MAX_BYTES:
        raise UsageError(f"the model's parameters take {size / 2 ** 30:.1f} GiB in float32: more than one "
                         "ONNX file holds (2 GiB)")


def export_model(loaded):
    """The ONNX model (onnx.ModelProto) of a loaded model; checked by onnx.checker."""
    _check_exportable(loaded)
    g = _Graph()
    inputs, outputs = EXPORTERS[loaded.task](g, loaded)
    onnx = g.onnx
    graph = onnx.helper.make_graph(g.nodes, f"charlm_{loaded.task}", inputs, outputs, g.inits)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name=PRODUCER, producer_version=__version__,
                                   doc_string=f"charlm {loaded.task} model: metadata_props hold the vocabulary "
                                              "and tokenizer settings (JSON)")
    proto.ir_version = IR_VERSION
    onnx.helper.set_model_props(proto, {k: json.dumps(v, ensure_ascii=False) for k, v in metadata(loaded).items()})
    onnx.checker.check_model(proto)
    return proto


# -- metadata ----------------------------------------------------------------------------------------------------
def _token_pattern(config) -> str | None:
    """The regular expression (Python `regex` syntax) whose matches are the tokens; None: code points."""
    if config.level == "char":
        return tokenizer._GRAPHEME_RE.pattern if config.graphemes else None
    return (tokenizer._WHITESPACE_RE if config.split == "whitespace" else tokenizer._WORD_RE).pattern


def metadata(loaded) -> dict:
    """What the file's metadata_props hold (each value as JSON): see the README."""
    vocab, model = loaded.vocab, loaded.model
    meta = {"charlm_version": __version__, "task": loaded.task, "model": model.config.to_dict(),
            "vocab": list(vocab.tokens), "unk_id": vocab.unk_id, "eos_id": vocab.eos_id,
            "tokenizer": vocab.tokenizer.to_dict(), "token_pattern": _token_pattern(vocab.tokenizer)}
    if loaded.task == "lm":
        states = ["a0", "c0"][:model.cell.n_states]
        meta["inputs"] = ["tokens"] + states
        meta["outputs"] = ["logits"] + [s[0] + "T" for s in states]
        return meta
    meta["inputs"] = ["words", "lengths"] + (["chars", "char_lengths", "word_index"] if model.chars else [])
    meta["outputs"] = ["logits"]
    meta["labels"] = list(loaded.labels)
    meta["tag_scheme"] = loaded.meta.get("tag_scheme")
    meta["char_vocab"] = list(loaded.char_vocab.tokens) if loaded.char_vocab is not None else None
    meta["max_word_chars"] = MAX_WORD_CHARS
    return meta


def read_metadata(proto) -> dict:
    """The metadata of an exported model (a ModelProto), decoded."""
    return {p.key: json.loads(p.value) for p in proto.metadata_props}


def save(proto, path) -> None:
    """Write the model to `path` atomically (a temporary file in the same folder, then a rename)."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".charlm-export.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.SerializeToString())
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)                 # mkstemp makes it 0600: an ordinary file instead
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

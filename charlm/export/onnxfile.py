"""The ONNX file of a model: its graph (builders.py), its metadata, the checker, the check, the writing.

    export_model(model) -> onnx.ModelProto     model: what charlm.load returns (LM, Tagger, Classifier)
    check(proto, model) -> check.Check         ONNX Runtime against charlm (--check)
    save(proto, path)                          written atomically

The graph computes charlm's evaluation forward pass (no dropout) in float32 (a float64 model's
weights are rounded), opset OPSET, with ONNX's own recurrent operators (recurrent.py). `metadata`
(in the file as metadata_props, each value JSON) holds what a caller needs to tokenize as charlm
does: see the README, "Using a model elsewhere".
"""

from __future__ import annotations

import json
import os
import tempfile

from charlm.errors import UsageError
from charlm.export import check as checking
from charlm.export.builders import EXPORTERS, Exporter
from charlm.export.graph import Graph
from charlm.tasks import get
from charlm.version import __version__

OPSET = 17
IR_VERSION = 8          # the IR of opset 17: runtimes of its time can read the file
PRODUCER = "charlm"     # files.py recognises a charlm export by it
MAX_BYTES = 2 ** 31 - 2 ** 24   # one protobuf holds < 2 GiB; leave room for the graph


def exporter(model) -> Exporter:
    """The task's entry of EXPORTERS; UsageError for what the graph cannot hold: a task without an
    entry, parameters it does not read (a layer charlm export does not know), or more than one
    protobuf holds."""
    task = get(model.task)
    if task not in EXPORTERS:
        known = ", ".join(t.name for t in EXPORTERS)
        raise UsageError(f"charlm export cannot write {task.noun} (task {task.name}) yet: it exports {known}")
    if getattr(model.network, "fixed", None):
        raise UsageError(f"charlm export cannot write {model.path or 'this model'}: it reads the states of character "
                         f"language models (--lm-features), which its ONNX graph would not include")
    entry = EXPORTERS[task]
    params = model.network.params
    unread = sorted(k for k in params if not k.startswith(entry.reads))
    if unread:
        raise UsageError(f"charlm export cannot write this {task.name} model: it does not know the layer of "
                         f"parameter(s) {', '.join(unread)}")
    size = sum(a.size for a in params.values()) * 4
    if size > MAX_BYTES:
        raise UsageError(f"the model's parameters take {size / 2 ** 30:.1f} GiB in float32: more than one "
                         "ONNX file holds (2 GiB)")
    return entry


def export_model(model):
    """The ONNX model (onnx.ModelProto) of a loaded model; checked by onnx.checker."""
    entry = exporter(model)
    g = Graph()
    inputs, outputs = entry.build(g, model)
    onnx = g.onnx
    graph = onnx.helper.make_graph(g.nodes, f"charlm_{model.task}", inputs, outputs, g.inits)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name=PRODUCER, producer_version=__version__,
                                   doc_string=f"charlm {model.task} model: metadata_props hold the vocabulary "
                                              "and tokenizer settings (JSON)")
    proto.ir_version = IR_VERSION
    meta = dict(metadata(model), inputs=[v.name for v in inputs], outputs=[v.name for v in outputs],
                **entry.metadata(model))
    onnx.helper.set_model_props(proto, {k: json.dumps(v, ensure_ascii=False) for k, v in meta.items()})
    onnx.checker.check_model(proto)
    return proto


def check(proto, model, seed: int = 0) -> checking.Check:
    """The exported graph in ONNX Runtime against the model, on a sample of its vocabulary."""
    return checking.compare(proto, model, exporter(model).sample, seed)


def metadata(model) -> dict:
    """The keys of the file's metadata_props every task has (each value as JSON; see the README);
    `export_model` adds the graph's input and output names and the task's own keys."""
    vocab = model.vocab
    return {"charlm_version": __version__, "task": model.task, "model": model.network.config.to_dict(),
            "vocab": list(vocab.tokens), "unk_id": vocab.unk_id, "eos_id": vocab.eos_id,
            "tokenizer": vocab.tokenizer.to_dict(), "token_pattern": model.tokenizer.pattern}


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

"""An ONNX graph under construction: nodes, initializers and fresh value names (the `export` extra).

    g = Graph()                     onnx is imported here (CharlmError with the pip line when absent)
    g.op("Add", x, g.const(b))      a node; its output's name
    g.const(array)                  an initializer (float arrays in float32)

The helpers below are the few shapes the graph builders (`recurrent.py`, `builders.py`) need:
a dimension of a value, the steps t = 0..T-1, a zero state, x @ W + b.
"""

from __future__ import annotations

import itertools

import numpy as np

from charlm.errors import CharlmError

INSTALL_HINT = "charlm export needs onnx: pip install 'charlm[export]'"


def onnx_module():
    """The onnx package (CharlmError with the pip line when it is missing)."""
    try:
        import onnx
    except ImportError:
        raise CharlmError(INSTALL_HINT) from None
    return onnx


class Graph:
    """Nodes and initializers of one graph; every value gets a fresh name (shared with its subgraphs)."""

    def __init__(self, counter=None):
        self.onnx = onnx_module()
        self.nodes, self.inits = [], []
        self._count = counter if counter is not None else itertools.count()
        self._memo: dict = {}

    def sub(self) -> "Graph":
        """A graph for a Scan body: its own nodes, names from the same counter."""
        return Graph(self._count)

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

    def value(self, name: str, elem: str, shape) -> object:
        """A graph input or output: `elem` "INT64" or "FLOAT", `shape` sizes or dimension names."""
        return self.onnx.helper.make_tensor_value_info(name, getattr(self.onnx.TensorProto, elem), shape)

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

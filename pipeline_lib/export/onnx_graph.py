"""The ONNX graph being written from a Caffe net: nodes, initializers, tensor names.

Caffe's in-place blobs become fresh tensor names, since ONNX tensors have one
producer: the last write of each blob takes its Caffe name, earlier ones get
`name__k`, and helper tensors never take a blob's name. An input keeps its
name, so a layer working in place on it writes `name__k` tensors.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.engine.net import Net


class ExportError(ValueError):
    """The net cannot be written as ONNX; the message names the layer and why."""


def onnx_module():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install "
                          "'pipeline-lib[onnx]'") from None
    return onnx


class Graph:
    """The ONNX nodes and initializers being written, and each Caffe blob's current tensor."""

    def __init__(self, onnx, net: Net):
        self.onnx, self.h, self.net = onnx, onnx.helper, net
        self.nodes: list = []
        self.inits: list = []
        self.tensor: dict[str, str] = {}  # Caffe blob name -> ONNX tensor holding it now
        # the last write of each blob takes its Caffe name; earlier (in-place) ones get
        # name__k, and helper tensors never take a blob's name
        self.writes_left: dict[str, int] = {}
        for tops in net.tops:
            for blob in tops:
                self.writes_left[blob.name] = self.writes_left.get(blob.name, 0) + 1
        self.used: set[str] = set(self.writes_left)

    def target(self, blob: str) -> str:
        """The tensor name for the next write of Caffe blob `blob`."""
        self.writes_left[blob] -= 1
        return blob if self.writes_left[blob] == 0 else self.fresh(f"{blob}__")

    def input(self, blob: str) -> str:
        """A graph input: it keeps the blob's name, so in-place writes to it get fresh ones."""
        self.writes_left[blob] = -1  # never 0 again
        self.tensor[blob] = blob
        return blob

    def fresh(self, name: str) -> str:
        out, k = name, 0
        while out in self.used:
            k += 1
            out = f"{name}__{k}"
        self.used.add(out)
        return out

    def const(self, name: str, array) -> str:
        name = self.fresh(name)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        """Add a node; `output` is a name from `target`, or a helper's name made unique."""
        return self.multi(op, inputs, [output], **attrs)[0]

    def multi(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        """Add a node with several outputs (names as for `node`)."""
        outs = [o if o in self.writes_left else self.fresh(o) for o in outputs]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=outs[0], **attrs))
        return outs

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar initializer."""
        return self.const(name, np.array(value, np.float32))

    def ints(self, name: str, values) -> str:
        """An int64 vector initializer (shapes, axes, starts and ends)."""
        return self.const(name, np.array(list(values), np.int64).reshape(-1))


def param_array(layer, k: int) -> np.ndarray:
    return np.ascontiguousarray(to_host(layer.blobs[k].data), dtype=np.float32)



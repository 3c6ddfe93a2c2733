"""A deploy net with its weights as an ONNX model (`pcaffe export-onnx`; needs `onnx`).

Each Caffe layer becomes the ONNX operators that compute the same values in
TEST mode, on the net's blob shapes (the batch size is fixed, as in the
prototxt). Caffe's in-place blobs become fresh tensor names, since ONNX
tensors have one producer; the graph's outputs keep the Caffe names. Pooling
keeps Caffe's ceil rounding by padding the end of each axis so that ONNX's
floor rounding gives Caffe's size. A layer with no mapping is refused with
one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.engine.layers.conv_utils import pool_out_size
from pipeline_lib.engine.layers.data_layer import DataLayer
from pipeline_lib.engine.net import Net, NetError
from pipeline_lib.proto import caffe_pb2

OPSET = 17
P = caffe_pb2.PoolingParameter
E = caffe_pb2.EltwiseParameter
#: layers that run only in training or only measure: a deploy net has none
NOT_DEPLOY = ("Loss", "Accuracy", "Data")


class ExportError(ValueError):
    """The net cannot be written as ONNX; the message names the layer and why."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install "
                          "'pipeline-lib[onnx]'") from None
    return onnx


class _Graph:
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
        out = output if output in self.writes_left else self.fresh(output)
        self.nodes.append(self.h.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _param(layer, k: int) -> np.ndarray:
    return np.ascontiguousarray(to_host(layer.blobs[k].data), dtype=np.float32)


def _pool_pads(layer, size_hw) -> tuple[list[int], dict]:
    """ONNX pads giving Caffe's (ceil-rounded, clipped) pooled size with floor rounding."""
    begin, end = [], []
    for size, k, p, s in zip(size_hw, layer.kernel, layer.pad, layer.stride):
        want = pool_out_size(size, k, p, s, layer.ceil_mode)
        floor = (size + 2 * p - k) // s + 1
        begin.append(p)
        end.append(p + (want - floor) * s)  # floor((size + 2p + extra - k) / s) + 1 == want
    attrs = {}
    if layer.method == P.AVE:
        added = begin != end
        if added and any(begin):
            raise ExportError(f"layer {layer.name!r} (Pooling): AVE pooling with pad "
                              f"{list(layer.pad)} whose ceil rounding adds a window has no ONNX "
                              "equivalent (Caffe averages that window over part of the "
                              "padding); use round_mode: FLOOR or pad 0")
        # Caffe divides by the window clipped to the padded image: padding counts, but an
        # added end window (pad 0) is clipped to the image
        attrs["count_include_pad"] = int(any(begin))
    return begin + end, attrs


def _convert(g: _Graph, i: int) -> None:
    net, layer = g.net, g.net.layers[i]
    lp, t = layer.param, layer.type
    bottoms = [g.tensor[b.name] for b in net.bottoms[i]]
    names = [b.name for b in net.tops[i]]
    tops = [g.target(n) for n in names]  # the tensor names this layer writes
    x = bottoms[0] if bottoms else None

    def done(*outputs: str) -> None:
        for name, tensor in zip(names, outputs):
            g.tensor[name] = tensor

    if t == "Split":
        done(*[g.node("Identity", [x], top) for top in tops])
    elif t == "Convolution":
        w = layer.win
        inputs = [x, g.const(f"{lp.name}_W", _param(layer, 0))]
        if layer.bias_term:
            inputs.append(g.const(f"{lp.name}_B", _param(layer, 1)))
        done(g.node("Conv", inputs, tops[0], kernel_shape=[w.kernel_h, w.kernel_w],
                    strides=[w.stride_h, w.stride_w], pads=[w.pad_h, w.pad_w, w.pad_h, w.pad_w],
                    dilations=[w.dilation_h, w.dilation_w], group=layer.group))
    elif t == "Pooling":
        if len(tops) > 1:
            raise ExportError(f"layer {lp.name!r} (Pooling): the mask top has no ONNX export")
        if layer.global_pooling:
            op = "GlobalMaxPool" if layer.method == P.MAX else "GlobalAveragePool"
            done(g.node(op, [x], tops[0]))
            return
        pads, attrs = _pool_pads(layer, net.bottoms[i][0].shape[2:])
        op = "MaxPool" if layer.method == P.MAX else "AveragePool"
        done(g.node(op, [x], tops[0], kernel_shape=list(layer.kernel),
                    strides=list(layer.stride), pads=pads, **attrs))
    elif t == "InnerProduct":
        shape = net.bottoms[i][0].shape
        flat = g.node("Flatten", [x], f"{lp.name}_flat", axis=layer.axis)
        inputs = [flat, g.const(f"{lp.name}_W", _param(layer, 0))]
        if layer.bias_term:
            inputs.append(g.const(f"{lp.name}_B", _param(layer, 1)))
        y = g.node("Gemm", inputs, tops[0] if layer.axis == 1 else f"{lp.name}_gemm",
                   transB=0 if layer.transpose else 1)
        if layer.axis != 1:
            target = g.const(f"{lp.name}_shape",
                             np.array([*shape[:layer.axis], layer.num_output], np.int64))
            y = g.node("Reshape", [y, target], tops[0])
        done(y)
    elif t == "ReLU":
        slope = float(lp.relu_param.negative_slope)
        done(g.node("LeakyRelu", [x], tops[0], alpha=slope) if slope
             else g.node("Relu", [x], tops[0]))
    elif t in ("Sigmoid", "TanH", "AbsVal"):
        done(g.node({"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs"}[t], [x], tops[0]))
    elif t == "Dropout":
        done(g.node("Identity", [x], tops[0]))  # TEST mode: Caffe's dropout passes values on
    elif t == "LRN":
        done(g.node("LRN", [x], tops[0], size=layer.size, alpha=layer.alpha, beta=layer.beta,
                    bias=layer.k) if layer.across else _lrn_within_channel(g, layer, x, tops[0]))
    elif t == "Softmax":
        done(g.node("Softmax", [x], tops[0], axis=layer.axis))
    elif t == "Concat":
        done(g.node("Concat", bottoms, tops[0], axis=layer.axis))
    elif t == "Eltwise":
        done(_eltwise(g, layer, bottoms, tops[0]))
    elif t in ("Flatten", "Reshape"):
        target = g.const(f"{lp.name}_shape", np.array(net.tops[i][0].shape, np.int64))
        done(g.node("Reshape", [x, target], tops[0]))
    else:
        raise ExportError(f"layer {lp.name!r}: type {t} has no ONNX export; exported types: "
                          "Input, Convolution, Pooling, InnerProduct, ReLU, Sigmoid, TanH, "
                          "AbsVal, Dropout, LRN, Softmax, Concat, Eltwise, Flatten, Reshape")


def _lrn_within_channel(g: _Graph, layer, x: str, top: str) -> str:
    """Caffe's WITHIN_CHANNEL LRN: x * (1 + alpha * mean of x^2 over the n x n window)^-beta,
    the mean over the zero-padded window (stride 1, so every window counts n^2 values)."""
    n, pad, name = layer.size, layer.pre, layer.name

    def c(tag: str, v: float) -> str:
        return g.const(f"{name}_{tag}", np.array(v, np.float32))

    sq = g.node("Mul", [x, x], f"{name}_sq")
    mean = g.node("AveragePool", [sq], f"{name}_mean", kernel_shape=[n, n], strides=[1, 1],
                  pads=[pad] * 4, count_include_pad=1)
    scale = g.node("Add", [g.node("Mul", [mean, c("alpha", layer.alpha)], f"{name}_scaled"),
                           c("one", 1.0)], f"{name}_scale")
    factor = g.node("Pow", [scale, c("neg_beta", -layer.beta)], f"{name}_factor")
    return g.node("Mul", [x, factor], top)


def _eltwise(g: _Graph, layer, bottoms: list[str], top: str) -> str:
    if layer.op == E.PROD:
        acc = bottoms[0]
        for j, b in enumerate(bottoms[1:]):
            acc = g.node("Mul", [acc, b], top if j == len(bottoms) - 2 else f"{top}_prod")
        return acc
    if layer.op == E.MAX:
        return g.node("Max", bottoms, top)
    terms = []
    for j, (b, c) in enumerate(zip(bottoms, layer.coeffs)):
        terms.append(b if c == 1 else g.node(
            "Mul", [b, g.const(f"{top}_coeff{j}", np.array(c, np.float32))], f"{top}_term{j}"))
    return g.node("Sum", terms, top)


def to_onnx(net: Net, outputs: Sequence[str] = (), opset: int = OPSET):
    """The ONNX ModelProto of a deploy net: Input layers are the graph's inputs; its
    outputs are the net's outputs and the blobs named in `outputs`, by their Caffe names."""
    onnx = _onnx()
    g = _Graph(onnx, net)
    h, f32 = onnx.helper, onnx.TensorProto.FLOAT
    inputs = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, DataLayer) and layer.is_input:
            for blob in net.tops[i]:
                g.tensor[blob.name] = g.target(blob.name)
                inputs.append(h.make_tensor_value_info(g.tensor[blob.name], f32,
                                                       list(blob.shape)))
            continue
        if isinstance(layer, DataLayer) or any(w in layer.type for w in NOT_DEPLOY):
            raise ExportError(f"layer {layer.name!r} ({layer.type}): export a deploy net "
                              "(Input layers, no data, loss or accuracy layers)")
        _convert(g, i)
    wanted = list(net.output_blob_names) + [n for n in outputs if n not in net.output_blob_names]
    for name in wanted:
        if name not in net.blobs:
            raise ExportError(f"no blob {name!r} to output; blobs: {', '.join(net.blobs)}")
    graph_outputs = [h.make_tensor_value_info(name, f32, list(net.blobs[name].shape))
                     for name in wanted]
    graph = h.make_graph(g.nodes, net.name or "net", inputs, graph_outputs, g.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)],
                         producer_name="pipeline-lib")
    model.ir_version = min(model.ir_version, 8)  # readable by older onnxruntime releases
    onnx.checker.check_model(model)
    return model


def export_onnx(model: str | os.PathLike, weights: Sequence[str | os.PathLike],
                output: str | os.PathLike) -> Net:
    """Read a deploy prototxt and its .caffemodel(s), write the ONNX file (atomically)."""
    from pipeline_lib.engine.weights import copy_weights, read_weights
    from pipeline_lib.proto.prototxt import read_net

    net = Net(read_net(model), caffe_pb2.TEST)
    try:
        if weights:
            copy_weights(net, read_weights(list(weights)))
        onnx_model = to_onnx(net)
    except NetError as e:
        raise ExportError(str(e)) from None
    atomic_write_bytes(output, onnx_model.SerializeToString())
    return net


def max_abs_difference(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


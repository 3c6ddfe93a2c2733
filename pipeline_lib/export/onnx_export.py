"""A deploy net with its weights as an ONNX model (`pcaffe export-onnx`; needs `onnx`).

Each Caffe layer becomes the ONNX operators that compute the same values in
TEST mode, on the net's blob shapes (the batch size is fixed, as in the
prototxt); the graph (onnx_graph) gives in-place blobs fresh tensor names and
the graph's outputs keep the Caffe names. The older layer types are mapped
here, the newer ones in onnx_layers. Pooling (and SPP's levels) keeps Caffe's
ceil rounding by padding the end of each axis so that ONNX's floor rounding
gives Caffe's size. A layer with no mapping is refused with one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.engine.layers.conv_utils import pool_out_size
from pipeline_lib.engine.layers.data_layer import DataLayer
from pipeline_lib.engine.net import Net, NetError
from pipeline_lib.export.onnx_graph import ExportError, Graph, onnx_module, param_array
from pipeline_lib.export.onnx_layers import CONVERTERS, Site
from pipeline_lib.proto import caffe_pb2

OPSET = 17
P = caffe_pb2.PoolingParameter
E = caffe_pb2.EltwiseParameter
#: layers that run only in training or only measure: a deploy net has none
NOT_DEPLOY = ("Loss", "Accuracy", "Data")
EXPORTED = ("Input", "Convolution", "Pooling", "InnerProduct", "ReLU", "Sigmoid", "TanH",
            "AbsVal", "Dropout", "LRN", "Softmax", "Concat", "Eltwise", "Flatten", "Reshape",
            "Split", "SPP", *CONVERTERS)


def _pool_pads(layer, size_hw) -> tuple[list[int], dict]:
    """ONNX pads giving Caffe's (ceil-rounded, clipped) pooled size with floor rounding."""
    begin, end = [], []
    for size, k, p, s in zip(size_hw, layer.kernel, layer.pad, layer.stride):
        want = pool_out_size(size, k, p, s, layer.ceil_mode, clip=any(layer.pad))
        # the end padding that makes the last window fit: above p only if ceil added it
        fit = (want - 1) * s + k - size - p
        if fit >= k:
            raise ExportError(f"layer {layer.name!r} (Pooling): ceil rounding with stride {s} "
                              f"above kernel {k} leaves a last window past the {size}-pixel "
                              "image, which ONNX pooling cannot express; use round_mode: FLOOR")
        begin.append(p)
        end.append(max(p, fit))
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


def _convert(g: Graph, i: int) -> None:
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
        inputs = [x, g.const(f"{lp.name}_W", param_array(layer, 0))]
        if layer.bias_term:
            inputs.append(g.const(f"{lp.name}_B", param_array(layer, 1)))
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
        done(_pool(g, layer, x, net.bottoms[i][0].shape[2:], tops[0]))
    elif t == "InnerProduct":
        shape = net.bottoms[i][0].shape
        flat = g.node("Flatten", [x], f"{lp.name}_flat", axis=layer.axis)
        inputs = [flat, g.const(f"{lp.name}_W", param_array(layer, 0))]
        if layer.bias_term:
            inputs.append(g.const(f"{lp.name}_B", param_array(layer, 1)))
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
    elif t == "SPP":
        done(_spp(g, layer, x, net.bottoms[i][0].shape, tops[0]))
    elif t in CONVERTERS:
        done(*CONVERTERS[t](Site(g, layer, bottoms, tops, [b.shape for b in net.bottoms[i]],
                                 [b.shape for b in net.tops[i]])))
    else:
        raise ExportError(f"layer {lp.name!r}: type {t} has no ONNX export; exported types: "
                          f"{', '.join(EXPORTED)}")


def _pool(g: Graph, layer, x: str, size_hw, top: str) -> str:
    pads, attrs = _pool_pads(layer, size_hw)
    op = "MaxPool" if layer.method == P.MAX else "AveragePool"
    return g.node(op, [x], top, kernel_shape=list(layer.kernel), strides=list(layer.stride),
                  pads=pads, **attrs)


def _spp(g: Graph, layer, x: str, shape, top: str) -> str:
    """Each pyramid level is the Pooling layer the SPP layer runs, flattened and joined."""
    if len(layer.levels) == 1:
        return _pool(g, layer.levels[0][0], x, shape[2:], top)
    flat = [g.node("Flatten", [_pool(g, pool, x, shape[2:], f"{layer.name}_level{k}")],
                   f"{layer.name}_flat{k}", axis=1)
            for k, (pool, _) in enumerate(layer.levels)]
    return g.node("Concat", flat, top, axis=1)


def _lrn_within_channel(g: Graph, layer, x: str, top: str) -> str:
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


def _eltwise(g: Graph, layer, bottoms: list[str], top: str) -> str:
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
    outputs are the net's outputs and the blobs named in `outputs`, in that order, by
    their Caffe names (an input blob that a layer rewrote in place: `name__k`)."""
    onnx = onnx_module()
    g = Graph(onnx, net)
    h, f32 = onnx.helper, onnx.TensorProto.FLOAT
    inputs = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, DataLayer) and layer.is_input:
            for blob in net.tops[i]:
                inputs.append(h.make_tensor_value_info(g.input(blob.name), f32,
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
    graph_outputs = [h.make_tensor_value_info(g.tensor[name], f32, list(net.blobs[name].shape))
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


"""ONNX operators for Caffe's newer layer types (`CONVERTERS`: type -> converter).

Each converter gets a `Site`: the graph, the Caffe layer (after the net's reshape,
so its shapes and derived settings are known), its bottom tensors, the top tensor
names and the bottom/top shapes; it returns the tensors it wrote, one per top. Values
follow the layer's TEST-mode forward: BatchNorm with its stored estimates (or the
batch's when `use_global_stats: false`), ArgMax's ties to the larger index, RNN and
LSTM unrolled over their fixed number of time steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.engine.layers.axis_util import count
from pipeline_lib.export.onnx_graph import Graph, param_array
from pipeline_lib.proto import caffe_pb2

R = caffe_pb2.ReductionParameter


@dataclass
class Site:
    """One layer being converted: what a converter reads."""

    g: Graph
    layer: object
    xs: list[str]                  # bottom tensors
    tops: list[str]                # tensor names to write
    shapes: list[tuple[int, ...]]  # bottom shapes
    top_shapes: list[tuple[int, ...]]

    @property
    def x(self) -> str:
        return self.xs[0]

    def name(self, tag: str) -> str:
        return f"{self.layer.name}_{tag}"

    def node(self, op: str, inputs: list[str], tag: str | None = None, **attrs) -> str:
        """A node writing the (first) top when `tag` is None, else a helper tensor."""
        return self.g.node(op, inputs, self.tops[0] if tag is None else self.name(tag), **attrs)

    def const(self, tag: str, array) -> str:
        return self.g.const(self.name(tag), array)

    def scalar(self, tag: str, value: float) -> str:
        return self.g.scalar(self.name(tag), value)

    def ints(self, tag: str, values) -> str:
        return self.g.ints(self.name(tag), values)

    def reshape(self, x: str, shape, tag: str | None = None) -> str:
        return self.node("Reshape", [x, self.ints(f"{tag or 'top'}_shape", shape)], tag)


def _reduce_mean(s: Site, x: str, axes, tag: str) -> str:
    return s.node("ReduceMean", [x], tag, axes=list(axes), keepdims=1)  # opset < 18: attribute


def _batch_norm(s: Site) -> list[str]:
    layer = s.layer
    ndim = len(s.shapes[0])
    if not layer.use_global_stats:  # the batch's own statistics, as Caffe's TRAIN forward
        axes = (0, *range(2, ndim))
        centred = s.node("Sub", [s.x, _reduce_mean(s, s.x, axes, "mean")], "centred")
        var = _reduce_mean(s, s.node("Mul", [centred, centred], "sq"), axes, "var")
        std = s.node("Sqrt", [s.node("Add", [var, s.scalar("eps", layer.eps)], "var_eps")],
                     "std")
        return [s.node("Div", [centred, std])]
    mean, var = (np.asarray(to_host(a), np.float32) for a in layer._stored_estimates())
    c = layer.channels
    return [s.node("BatchNormalization",
                   [s.x, s.const("scale", np.ones(c, np.float32)),
                    s.const("bias", np.zeros(c, np.float32)), s.const("mean", mean),
                    s.const("var", var)], epsilon=layer.eps)]


def _operand(s: Site, k: int, view, tag: str) -> str:
    """Learned blob k, or the second bottom (k None), shaped to broadcast like Caffe's."""
    if k is None:
        return s.reshape(s.xs[1], view, tag)
    return s.const(tag, param_array(s.layer, k).reshape(view))


def _scale(s: Site) -> list[str]:
    layer = s.layer
    two = len(s.xs) > 1
    scale = _operand(s, None if two else 0, layer.broadcast.view, "scale")
    if not layer.bias_term:
        return [s.node("Mul", [s.x, scale])]
    y = s.node("Mul", [s.x, scale], "scaled")
    bias = _operand(s, len(layer.blobs) - 1, layer.bias_broadcast.view, "bias")
    return [s.node("Add", [y, bias])]


def _bias(s: Site) -> list[str]:
    b = _operand(s, None if len(s.xs) > 1 else 0, s.layer.broadcast.view, "bias")
    return [s.node("Add", [s.x, b])]


def _deconvolution(s: Site) -> list[str]:
    layer, g = s.layer, s.g
    w = layer.win
    inputs = [s.const("W", param_array(layer, 0))]
    if layer.bias_term:
        inputs.append(s.const("B", param_array(layer, 1)))
    # ONNX's output size with no output_padding is Caffe's: stride*(in-1) + extent - 2*pad
    return [g.node("ConvTranspose", [x, *inputs], top, kernel_shape=[w.kernel_h, w.kernel_w],
                   strides=[w.stride_h, w.stride_w], pads=[w.pad_h, w.pad_w, w.pad_h, w.pad_w],
                   dilations=[w.dilation_h, w.dilation_w], group=layer.group)
            for x, top in zip(s.xs, s.tops)]


def _crop(s: Site) -> list[str]:
    index = s.layer.index
    return [s.node("Slice", [s.x, s.ints("starts", [i.start for i in index]),
                             s.ints("ends", [i.stop for i in index]),
                             s.ints("axes", range(len(index)))])]


def _prelu(s: Site) -> list[str]:
    slope = param_array(s.layer, 0)
    ndim = len(s.shapes[0])
    view = (1,) if s.layer.channel_shared else (slope.size,) + (1,) * (ndim - 2)
    return [s.node("PRelu", [s.x, s.const("slope", slope.reshape(view))])]


def _elu(s: Site) -> list[str]:
    return [s.node("Elu", [s.x], alpha=s.layer.alpha)]


def _affine(s: Site, x: str, scale: float, shift: float) -> str:
    """scale * x + shift, leaving out a factor 1 and a shift 0."""
    if scale != 1:
        x = s.node("Mul", [x, s.scalar("scale", scale)], "scaled")
    if shift != 0:
        x = s.node("Add", [x, s.scalar("shift", shift)], "shifted")
    return x


def _power(s: Site) -> list[str]:
    layer = s.layer
    if layer.diff_scale == 0:  # Caffe's constant output (power 0 or scale 0)
        value = 1.0 if layer.power == 0 else layer._constant()
        tensor = s.g.h.make_tensor(s.name("value"), s.g.onnx.TensorProto.FLOAT, [1], [value])
        return [s.node("ConstantOfShape", [s.ints("shape", s.top_shapes[0])], value=tensor)]
    base = _affine(s, s.x, layer.scale, layer.shift)
    if layer.power == 1:
        return [s.node("Identity", [base])]
    return [s.node("Pow", [base, s.scalar("power", layer.power)])]


def _exp(s: Site) -> list[str]:
    layer = s.layer
    inner = s.x if layer.inner_scale == 1 else s.node(
        "Mul", [s.x, s.scalar("inner", layer.inner_scale)], "inner")
    if layer.outer_scale == 1:
        return [s.node("Exp", [inner])]
    return [s.node("Mul", [s.node("Exp", [inner], "exp"), s.scalar("outer", layer.outer_scale)])]


def _log(s: Site) -> list[str]:
    layer = s.layer
    inner = _affine(s, s.x, layer.scale, layer.shift)
    if layer.base_scale == 1:
        return [s.node("Log", [inner])]
    return [s.node("Mul", [s.node("Log", [inner], "ln"), s.scalar("base", layer.base_scale)])]


def _clip(s: Site) -> list[str]:
    lo, hi = s.scalar("min", s.layer.min), s.scalar("max", s.layer.max)
    if s.layer.min <= s.layer.max:
        return [s.node("Clip", [s.x, lo, hi])]
    # min > max: Caffe's max(min, min(x, max)) gives min everywhere; ONNX's Clip gives max
    return [s.node("Max", [s.node("Min", [s.x, hi], "upper"), lo])]


def _swish(s: Site) -> list[str]:
    beta = s.layer.beta
    inner = s.x if beta == 1 else s.node("Mul", [s.x, s.scalar("beta", beta)], "beta_x")
    return [s.node("Mul", [s.x, s.node("Sigmoid", [inner], "sigmoid")])]


def _unary(op: str):
    return lambda s: [s.node(op, [s.x])]


def _threshold(s: Site) -> list[str]:
    above = s.node("Greater", [s.x, s.scalar("threshold", s.layer.threshold)], "above")
    return [s.node("Cast", [above], to=s.g.onnx.TensorProto.FLOAT)]


def _tile(s: Site) -> list[str]:
    repeats = [1] * len(s.shapes[0])
    repeats[s.layer.axis] = s.layer.tiles
    return [s.node("Tile", [s.x, s.ints("repeats", repeats)])]


def _argmax(s: Site) -> list[str]:
    layer, shape = s.layer, s.shapes[0]
    if layer.axis is None:
        x, axis, dim = s.node("Flatten", [s.x], "flat", axis=1), 1, count(shape, 1)
    else:
        x, axis, dim = s.x, layer.axis, shape[layer.axis]
    # TopK puts the smaller index first on ties, Caffe the larger: sort the reversed axis
    reversed_x = s.node("Slice", [x, s.ints("rev_start", [-1]), s.ints("rev_end", [-dim - 1]),
                                  s.ints("rev_axis", [axis]), s.ints("rev_step", [-1])],
                        "reversed")
    values, rev_index = s.g.multi("TopK", [reversed_x, s.ints("k", [layer.top_k])],
                                  [s.name("values"), s.name("rev_index")], axis=axis,
                                  largest=1, sorted=1)
    index = s.node("Sub", [s.const("last", np.array(dim - 1, np.int64)), rev_index], "index")
    index = s.node("Cast", [index], "index_f", to=s.g.onnx.TensorProto.FLOAT)
    top = s.top_shapes[0]
    if layer.axis is not None:
        return [s.node("Identity", [values if layer.out_max_val else index])]
    if not layer.out_max_val:
        return [s.reshape(index, top)]
    n, k = shape[0], layer.top_k
    both = s.node("Concat", [s.reshape(index, (n, 1, k), "index3"),
                             s.reshape(values, (n, 1, k), "values3")], "both", axis=1)
    return [s.reshape(both, top)]


def _reduction(s: Site) -> list[str]:
    layer = s.layer
    x = s.reshape(s.x, layer.rows, "rows")
    if layer.op == R.ASUM:
        x = s.node("Abs", [x], "abs")
    elif layer.op == R.SUMSQ:
        x = s.node("Mul", [x, x], "sq")
    total = s.node("ReduceSum", [x, s.ints("axis", [1])], "sum", keepdims=0)
    if layer.coeff != 1:
        total = s.node("Mul", [total, s.scalar("coeff", layer.coeff)], "times")
    return [s.reshape(total, s.top_shapes[0])]


def _mvn(s: Site) -> list[str]:
    layer = s.layer
    x = s.reshape(s.x, layer.rows, "rows")
    y = s.node("Sub", [x, _reduce_mean(s, x, [1], "mean")], "centred")
    if layer.normalize_variance:
        std = s.node("Sqrt", [_reduce_mean(s, s.node("Mul", [y, y], "sq"), [1], "var")], "std")
        y = s.node("Div", [y, s.node("Add", [std, s.scalar("eps", layer.eps)], "std_eps")],
                   "normalised")
    return [s.reshape(y, s.top_shapes[0])]


def _embed(s: Site) -> list[str]:
    layer = s.layer
    index = s.node("Cast", [s.x], "index", to=s.g.onnx.TensorProto.INT64)
    rows = [s.const("W", param_array(layer, 0)), index]
    if not layer.bias_term:
        return [s.node("Gather", rows, axis=0)]
    return [s.node("Add", [s.node("Gather", rows, "rows", axis=0),
                           s.const("B", param_array(layer, 1))])]


def _im2col(s: Site) -> list[str]:
    """A grouped convolution whose one-hot kernels copy each window tap to its channel."""
    w = s.layer.win
    c = s.shapes[0][1]
    taps = w.kernel_h * w.kernel_w
    kernel = np.zeros((c * taps, 1, w.kernel_h, w.kernel_w), np.float32)
    tap = np.arange(c * taps) % taps
    kernel[np.arange(c * taps), 0, tap // w.kernel_w, tap % w.kernel_w] = 1
    return [s.node("Conv", [s.x, s.const("onehot", kernel)],
                   kernel_shape=[w.kernel_h, w.kernel_w], strides=[w.stride_h, w.stride_w],
                   pads=[w.pad_h, w.pad_w, w.pad_h, w.pad_w],
                   dilations=[w.dilation_h, w.dilation_w], group=c)]


def _batch_reindex(s: Site) -> list[str]:
    index = s.node("Cast", [s.xs[1]], "index", to=s.g.onnx.TensorProto.INT64)
    return [s.node("Gather", [s.x, index], axis=0)]


def _parameter(s: Site) -> list[str]:
    return [s.node("Identity", [s.const("blob", param_array(s.layer, 0))])]


def _lstm_step(s: Site, d: int, c_prev: str, gates: str, cont: str, tag: str,
               c_out: str | None = None, h_out: str | None = None) -> tuple[str, str]:
    """One LSTM step from gate pre-activations (1, N, 4D), i f o g blocks; cont (1, N, 1)
    gates the forget gate. Returns (c, h), written to `c_out`/`h_out` when given."""
    i, f, o, g = s.g.multi("Split", [gates, s.ints(f"{tag}gate_sizes", [d] * 4)],
                           [s.name(f"{tag}{k}_pre") for k in "ifog"], axis=2)
    i, o = (s.node("Sigmoid", [v], f"{tag}{k}") for v, k in ((i, "i"), (o, "o")))
    f = s.node("Mul", [s.node("Sigmoid", [f], f"{tag}f_sig"), cont], f"{tag}f")
    g = s.node("Tanh", [g], f"{tag}g")
    c = s.g.node("Add", [s.node("Mul", [f, c_prev], f"{tag}kept"),
                         s.node("Mul", [i, g], f"{tag}new")], c_out or s.name(f"{tag}c"))
    h = s.g.node("Mul", [o, s.node("Tanh", [c], f"{tag}tanh_c")], h_out or s.name(f"{tag}h"))
    return c, h


def _lstm_unit(s: Site) -> list[str]:
    c_prev, gates, cont = s.xs
    cont = s.reshape(cont, (1, s.layer.n, 1), "cont")
    return list(_lstm_step(s, s.layer.d, c_prev, gates, cont, "", s.tops[0], s.tops[1]))


def _recurrent(s: Site) -> list[str]:
    """RNN and LSTM unrolled over the net's T steps (T is fixed, as every blob shape).
    Without expose_hidden the initial state is zero: a fresh net's (the state Caffe
    carries from one forward to the next is not part of the model)."""
    layer = s.layer
    t_steps, n, d = layer.steps, layer.streams, layer.hidden
    width = layer.gates * d
    x2d = s.reshape(s.x, (t_steps * n, layer.input_dim), "x2d")
    xw = s.node("Gemm", [x2d, s.const("W_x", param_array(layer, 0)),
                         s.const("b", param_array(layer, 1))], "xw2d", transB=1)
    xw = s.reshape(xw, (t_steps, n, width), "xw")
    if layer.static:
        xs = s.reshape(s.xs[2], (n, layer.static_dim), "static2d")
        xw = s.node("Add", [xw, s.node("Gemm", [xs, s.const("W_static", param_array(layer, 2))],
                                       "static_w", transB=1)], "xw_static")
    steps = s.g.multi("Split", [xw, s.ints("steps", [1] * t_steps)],
                      [s.name(f"xw{t}") for t in range(t_steps)], axis=0) \
        if t_steps > 1 else [xw]
    cont = s.reshape(s.xs[1], (t_steps, n, 1), "cont")
    conts = s.g.multi("Split", [cont, s.ints("cont_steps", [1] * t_steps)],
                      [s.name(f"cont{t}") for t in range(t_steps)], axis=0) \
        if t_steps > 1 else [cont]
    w_rec = s.const("W_rec_T", param_array(layer, 3 if layer.static else 2).T.copy())
    if layer.expose:
        state = [s.reshape(b, (1, n, d), f"{name}0")
                 for b, name in zip(s.xs[2 + layer.static:], layer.state_names)]
    else:
        state = [s.const(f"{name}0", np.zeros((1, n, d), np.float32))
                 for name in layer.state_names]
    hs = []
    for t in range(t_steps):
        last = t == t_steps - 1 and layer.expose
        conted = s.node("Mul", [conts[t], state[0]], f"t{t}_conted")
        pre = s.node("Add", [s.node("MatMul", [conted, w_rec], f"t{t}_rec"), steps[t]],
                     f"t{t}_pre")
        if layer.type == "LSTM":
            c, h = _lstm_step(s, d, state[1], pre, conts[t], f"t{t}_",
                              s.tops[2] if last else None, s.tops[1] if last else None)
            state = [h, c]
        else:
            state = [s.g.node("Tanh", [pre], s.tops[1] if last else s.name(f"t{t}_h"))]
        hs.append(state[0])
    h_all = s.node("Concat", hs, "h_all", axis=0) if t_steps > 1 else hs[0]
    if layer.type == "LSTM":
        return [s.node("Identity", [h_all]), *state][:len(s.tops)]
    out = s.node("Add", [s.node("MatMul", [h_all, s.const("W_o_T", param_array(layer, -2).T
                                                          .copy())], "o_w"),
                         s.const("b_o", param_array(layer, -1))], "o_pre")
    return [s.node("Tanh", [out]), *state][:len(s.tops)]


def _slice(s: Site) -> list[str]:
    axis = s.layer.axis
    sizes = [index[axis].stop - index[axis].start for index in s.layer.index]
    return s.g.multi("Split", [s.x, s.ints("sizes", sizes)], s.tops, axis=axis)


CONVERTERS = {
    "BatchNorm": _batch_norm, "Scale": _scale, "Bias": _bias,
    "Deconvolution": _deconvolution, "Crop": _crop, "PReLU": _prelu, "ELU": _elu,
    "Power": _power, "Exp": _exp, "Log": _log, "Clip": _clip, "Swish": _swish,
    "BNLL": _unary("Softplus"), "Threshold": _threshold, "Tile": _tile, "ArgMax": _argmax,
    "Reduction": _reduction, "MVN": _mvn, "Embed": _embed, "Im2col": _im2col,
    "Slice": _slice, "BatchReindex": _batch_reindex, "Parameter": _parameter,
    "Silence": lambda s: [], "LSTMUnit": _lstm_unit,
    "LSTM": _recurrent, "RNN": _recurrent,
}

"""InnerProduct (fully connected): top = bottom flattened from `axis` times W^T, plus bias.

Weights are Caffe's (num_output, K), or (K, num_output) with `transpose: true`;
biases (num_output,). The axes before `axis` are kept, the rest flattened to K.
"""

from __future__ import annotations

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis, count
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.conv_utils import Buffers


@register
class InnerProductLayer(Layer):
    type = "InnerProduct"
    num_bottom = (1, 1)
    num_top = (1, 1)
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ip = self.param.inner_product_param
        self.num_output = int(ip.num_output)
        if self.num_output <= 0:
            raise self.error("num_output must be positive")
        self.bias_term = bool(ip.bias_term)
        self.transpose = bool(ip.transpose)
        shape = bottom[0].shape
        self.axis = canonical_axis(self, ip.axis, len(shape))
        self.k = count(shape, self.axis)
        w_shape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
        self.weight_and_bias(w_shape, self.num_output if self.bias_term else None,
                             ip.weight_filler, ip.bias_filler)
        self.buffers = Buffers(self.xp)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        axis = canonical_axis(self, self.param.inner_product_param.axis, len(shape))
        if count(shape, axis) != self.k:
            raise self.error(f"bottom shape {shape} flattens to {count(shape, axis)} values "
                             f"from axis {axis}; the weights expect {self.k}")
        self.axis = axis
        self.m = count(shape, 0, axis)
        top[0].reshape(shape[:axis] + (self.num_output,))

    def _matmul_into(self, a, b, dest, name: str) -> None:
        """dest (any shape holding rows x cols) = a @ b, split over the lanes; through the
        scratch `name` when dest is not contiguous (a channels-last blob seen as NCHW)."""
        rows, cols = a.shape[0], b.shape[1]
        if dest.flags.c_contiguous:
            lanes.matmul(self.xp, a, b, dest.reshape(rows, cols))
            return
        out = self.buffers.get(name, (rows, cols), dest.dtype)
        lanes.matmul(self.xp, a, b, out)
        dest[...] = out.reshape(dest.shape)

    def _weight_t(self):
        """W as (K, num_output), a view either way."""
        w = self.blobs[0].data
        return w if self.transpose else w.T

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.m, self.k)
        y = top[0].data
        self._matmul_into(x, self._weight_t(), y, "top")
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        dy = top[0].diff.reshape(self.m, self.num_output)
        x = bottom[0].data.reshape(self.m, self.k)
        weight = self.blobs[0]
        fresh = weight.overwrite_diff()  # the product goes straight into the diff
        weight_diff = weight.diff
        dw = weight_diff if fresh else self.buffers.get("dw", weight.shape, weight_diff.dtype)
        bias = self.blobs[1] if self.bias_term else None
        fresh_bias = bias is not None and bias.overwrite_diff()
        bias_diff = bias.diff if bias is not None else None

        def params() -> None:
            if self.transpose:
                lanes.matmul(xp, x.T, dy, dw)      # (K, N)
            else:
                lanes.matmul(xp, dy.T, x, dw)      # (N, K)
            if not fresh:
                weight_diff[...] += dw
            if fresh_bias:
                xp.sum(dy, axis=0, out=bias_diff)
            elif bias_diff is not None:
                bias_diff[...] += dy.sum(axis=0)

        tasks = [params]
        if propagate_down[0]:
            bottom_diff = bottom[0].diff
            tasks.append(lambda: self._matmul_into(dy, self._weight_t().T, bottom_diff,
                                                   "bottom_diff"))
        # two independent products: a lane each (each whole) when there are lanes
        lanes.together(xp, tasks, self.m * self.k * self.num_output)

"""Reduction: SUM, ASUM (sum of absolute values), SUMSQ or MEAN of all axes from `axis`
(default 0: everything, a 0-axis top), times `coeff`. The top keeps the axes before
`axis`; the backward spreads coeff * top diff back (times sign(x) for ASUM, 2x for SUMSQ).
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis, count
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.proto import caffe_pb2

R = caffe_pb2.ReductionParameter


@register
class ReductionLayer(Layer):
    type = "Reduction"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.op = self.param.reduction_param.operation
        if self.op not in (R.SUM, R.ASUM, R.SUMSQ, R.MEAN):
            raise self.error(f"unknown operation {self.op}; allowed: SUM, ASUM, SUMSQ, MEAN")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        rp = self.param.reduction_param
        shape = bottom[0].shape
        axis = canonical_axis(self, rp.axis, len(shape))
        top[0].reshape(shape[:axis])
        self.rows = (count(shape, 0, axis), count(shape, axis))
        self.coeff = float(rp.coeff) / (self.rows[1] if self.op == R.MEAN else 1)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data.reshape(self.rows)
        if self.op == R.ASUM:
            x = xp.abs(x)
        elif self.op == R.SUMSQ:
            x = xp.square(x)
        top[0].data[...] = (x.sum(axis=1) * self.coeff).reshape(top[0].shape)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        xp = self.xp
        scale = top[0].diff.reshape(-1, 1) * self.coeff
        dx = bottom[0].diff.reshape(self.rows)
        x = bottom[0].data.reshape(self.rows)
        if self.op == R.ASUM:
            xp.multiply(xp.sign(x), scale, out=dx)
        elif self.op == R.SUMSQ:
            xp.multiply(x, 2 * scale, out=dx)
        else:
            dx[...] = scale

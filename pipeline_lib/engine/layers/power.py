"""Power: (shift + scale * x)^power.

Caffe's special cases: with power or scale 0 the output is a constant (1 for power 0,
shift^power otherwise) and the gradient 0; with power 1 the gradient is the constant
scale. Otherwise the gradient is power * scale * (shift + scale * x)^(power - 1), computed
directly rather than as Caffe's y / (shift + scale * x), which is 0/0 where the base is 0:
there it is 0 for power > 1 and inf for power < 1 (Caffe: NaN). It needs the input, so in
place the layer keeps a copy of it during forward.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class PowerLayer(NeuronLayer):
    type = "Power"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.diff_scale = self.power * self.scale
        self.constant_gradient = self.diff_scale == 0 or self.power == 1
        self.kept_input = None

    def _constant(self) -> float:
        # pow in the blob's precision: a negative shift to a fractional power is NaN, 0 to a
        # negative power inf, as C's pow gives them (Python's ** would raise or go complex).
        with np.errstate(all="ignore"):
            return float(np.power(self.dtype.type(self.shift), self.dtype.type(self.power)))

    def _base(self, x):
        base = x * self.scale if self.scale != 1 else x
        return base + self.shift if self.shift != 0 else base

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        y = top[0].data
        if self.diff_scale == 0:
            y[...] = 1.0 if self.power == 0 else self._constant()
            return
        x = bottom[0].data
        in_place = top[0] is bottom[0]
        self.kept_input = x.copy() if in_place and not self.constant_gradient else None
        base = self._base(x)
        if self.power == 1:
            y[...] = base
        elif self.power == 2:
            self.xp.multiply(base, base, out=y)
        else:
            self.xp.power(base, self.power, out=y)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dy = top[0].diff
        if self.constant_gradient:
            # Caffe sets the gradient to diff_scale; 0 stays 0 whatever dy holds.
            bottom[0].diff[...] = dy * self.diff_scale if self.diff_scale else 0
            return
        x = self.kept_input if top[0] is bottom[0] else bottom[0].data
        base = self._base(x)
        if self.power == 2:
            slope = base * self.diff_scale
        else:
            slope = self.xp.power(base, self.power - 1) * self.diff_scale
        bottom[0].diff[...] = dy * slope

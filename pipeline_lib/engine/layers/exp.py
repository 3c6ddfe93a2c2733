"""Exp: base^(shift + scale * x) (base -1 means e); the gradient is y * scale * ln(base),
taken from the output, so the layer works in place."""

from __future__ import annotations

import math

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class ExpLayer(NeuronLayer):
    type = "Exp"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.exp_param
        base, scale, shift = float(p.base), float(p.scale), float(p.shift)
        if base != -1 and not base > 0:
            raise self.error(f"base must be strictly positive (or -1 for e), got {base}")
        log_base = 1.0 if base == -1 else math.log(base)
        # y = outer * exp(inner * x)
        self.inner_scale = log_base * scale
        if shift == 0:
            self.outer_scale = 1.0
        else:
            self.outer_scale = math.exp(shift) if base == -1 else base ** shift

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        y = top[0].data
        if self.inner_scale == 1:
            self.xp.exp(x, out=y)
        else:
            self.xp.exp(x * self.inner_scale, out=y)
        if self.outer_scale != 1:
            y *= self.outer_scale

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * top[0].data * self.inner_scale

"""Log: log_base(shift + scale * x) (base -1 means e); the gradient is
scale / (ln(base) * (shift + scale * x)). It needs the input, so in place the layer keeps
a copy of it during forward (Caffe would read the output instead)."""

from __future__ import annotations

import math

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class LogLayer(NeuronLayer):
    type = "Log"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.log_param
        base = float(p.base)
        if base != -1 and not base > 0:
            raise self.error(f"base must be strictly positive (or -1 for e), got {base}")
        log_base = 1.0 if base == -1 else math.log(base)
        if log_base == 0:
            raise self.error("base 1 has no logarithm (1 / ln(1) is infinite)")
        self.base_scale = 1.0 / log_base
        self.scale = float(p.scale)
        self.shift = float(p.shift)
        self.backward_scale = self.scale / log_base
        self.kept_input = None

    def _inner(self, x):
        if self.scale == 1 and self.shift == 0:
            return x
        return x * self.scale + self.shift

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        self.kept_input = x.copy() if top[0] is bottom[0] else None
        y = top[0].data
        self.xp.log(self._inner(x), out=y)
        if self.base_scale != 1:
            y *= self.base_scale

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            x = self.kept_input if top[0] is bottom[0] else bottom[0].data
            bottom[0].diff[...] = top[0].diff * self.backward_scale / self._inner(x)

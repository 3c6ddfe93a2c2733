"""Clip: min(max(x, min), max). The gradient passes where min <= x <= max (both ends
included, as in Caffe) and is 0 elsewhere. The output cannot tell a clipped input from one
on the boundary, so in place the layer keeps that mask from forward."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class ClipLayer(NeuronLayer):
    type = "Clip"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.clip_param
        self.min, self.max = float(p.min), float(p.max)
        self.kept_mask = None

    def _passes(self, x):
        return (x >= self.dtype.type(self.min)) & (x <= self.dtype.type(self.max))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        self.kept_mask = self._passes(x) if top[0] is bottom[0] else None
        lo, hi = self.dtype.type(self.min), self.dtype.type(self.max)
        # max(min, min(x, max)) in Caffe's order: with min > max every value becomes min
        top[0].data[...] = self.xp.maximum(lo, self.xp.minimum(x, hi))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            passes = self.kept_mask if top[0] is bottom[0] else self._passes(bottom[0].data)
            bottom[0].diff[...] = top[0].diff * passes

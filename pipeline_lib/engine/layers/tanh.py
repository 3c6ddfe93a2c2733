"""TanH: tanh(x); the gradient uses the output, so it works in place."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class TanHLayer(NeuronLayer):
    type = "TanH"

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.xp.tanh(bottom[0].data, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            y = top[0].data
            bottom[0].diff[...] = top[0].diff * (1 - y * y)

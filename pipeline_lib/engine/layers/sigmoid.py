"""Sigmoid: 1 / (1 + exp(-x)); the gradient uses the output, so it works in place."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class SigmoidLayer(NeuronLayer):
    type = "Sigmoid"

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        # 0.5 * tanh(x / 2) + 0.5 is the logistic function without overflow in exp.
        x = bottom[0].data
        top[0].data[...] = 0.5 * self.xp.tanh(0.5 * x) + 0.5

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            y = top[0].data
            bottom[0].diff[...] = top[0].diff * y * (1 - y)

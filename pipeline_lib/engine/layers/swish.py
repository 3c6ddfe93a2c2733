"""Swish: x * sigmoid(beta * x). The gradient, beta * y + s * (1 - beta * y) with
s = sigmoid(beta * x) kept from forward, needs no input, so the layer works in place."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class SwishLayer(NeuronLayer):
    type = "Swish"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.beta = float(self.param.swish_param.beta)
        self.sigmoid = None  # sigmoid(beta * x) of the last forward

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        # the logistic function as the Sigmoid layer computes it, without overflow
        self.sigmoid = 0.5 * self.xp.tanh((0.5 * self.beta) * x) + 0.5
        top[0].data[...] = x * self.sigmoid

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            by = self.beta * top[0].data
            bottom[0].diff[...] = top[0].diff * (by + self.sigmoid * (1 - by))

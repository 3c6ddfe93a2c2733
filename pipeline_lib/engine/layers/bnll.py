"""BNLL (binomial normal log likelihood): log(1 + exp(x)), the softplus.

Computed without overflow as Caffe does: x + log(1 + exp(-x)) for x > 0. The gradient,
sigmoid(x), is taken from the output (sigmoid(x) = 1 - exp(-y)), so the layer also works
in place, where Caffe would read the output as the input.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class BNLLLayer(NeuronLayer):
    type = "BNLL"

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        # max(x, 0) + log(1 + exp(-|x|)) is both of Caffe's branches in one expression.
        top[0].data[...] = xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            # -expm1(-y) keeps full precision where y is tiny (very negative x).
            bottom[0].diff[...] = top[0].diff * -self.xp.expm1(-top[0].data)

"""ELU: x for x > 0, alpha * (exp(x) - 1) otherwise; the gradient there is y + alpha.

For alpha > 0 the output has the sign of the input, so the layer works in place.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class ELULayer(NeuronLayer):
    type = "ELU"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.alpha = float(self.param.elu_param.alpha)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        top[0].data[...] = xp.maximum(x, 0) + self.alpha * xp.expm1(xp.minimum(x, 0))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            x = bottom[0].data  # the output when in place: same sign for alpha > 0
            y = top[0].data
            bottom[0].diff[...] = top[0].diff * self.xp.where(x > 0, 1, y + self.alpha)

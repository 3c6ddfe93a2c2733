"""AbsVal: |x|; the gradient is sign(x) * dy (sign(0) = 0). As in Caffe, not in place:
the output no longer tells the sign of the input."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class AbsValLayer(NeuronLayer):
    type = "AbsVal"
    in_place = False

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("does not allow in-place computation (top == bottom)")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.xp.abs(bottom[0].data, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = self.xp.sign(bottom[0].data) * top[0].diff

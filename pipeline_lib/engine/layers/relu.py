"""ReLU: max(x, 0), or x * negative_slope for x <= 0 (leaky); works in place."""

from __future__ import annotations

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class ReLULayer(NeuronLayer):
    type = "ReLU"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.negative_slope = float(self.param.relu_param.negative_slope)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        if self.negative_slope == 0:
            lanes.elementwise(xp, lambda x, y: xp.maximum(x, 0, out=y), x, top[0].data)
        else:
            top[0].data[...] = xp.where(x > 0, x, x * self.negative_slope)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        # In place, bottom.data holds the output; its sign still tells the branch
        # (a zero output means x <= 0 either way).
        x = bottom[0].data
        dy = top[0].diff
        if self.negative_slope == 0:
            lanes.elementwise(self.xp, lambda x, dy, dx: self.xp.multiply(dy, x > 0, out=dx),
                              x, dy, bottom[0].diff)
        else:
            bottom[0].diff[...] = self.xp.where(x > 0, dy, dy * self.negative_slope)

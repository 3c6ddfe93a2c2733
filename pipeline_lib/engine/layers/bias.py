"""Bias: top = bottom[0] + b, b broadcast along bottom[0]'s axes `axis`..`axis+num_axes-1`.

b is bottom[1] when given (its shape sets the axes covered), else a learned blob of
those dims of bottom[0] (`num_axes` -1: to the last axis, 0: a scalar), filled by
`filler` (Caffe's default: constant 0). Works in place.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import Broadcast, learned_operand_shape
from pipeline_lib.engine.layers.base import Layer, register


@register
class BiasLayer(Layer):
    type = "Bias"
    num_bottom = (1, 2)
    num_top = (1, 1)
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        bp = self.param.bias_param
        if len(bottom) == 1:
            want = learned_operand_shape(self, bottom[0].shape, bp.axis, bp.num_axes)
            if self.blobs:
                if self.blobs[0].shape != want:
                    raise self.error(f"bias blob has shape {self.blobs[0].shape}, "
                                     f"expected {want}")
            else:
                self.blobs = [self.make_blob(want, bp.filler)]

    def _bias(self, bottom: list[Blob]) -> Blob:
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.broadcast = Broadcast(self, bottom[0].shape, self._bias(bottom).shape,
                                   self.param.bias_param.axis)
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        b = self.broadcast.expand(self._bias(bottom).data)
        self.xp.add(bottom[0].data, b, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff
        if len(bottom) == 1:
            self.blobs[0].diff += self.broadcast.reduce(dy)
        elif propagate_down[1]:
            bottom[1].diff[...] = self.broadcast.reduce(dy)
        if propagate_down[0] and bottom[0] is not top[0]:
            bottom[0].diff[...] = dy

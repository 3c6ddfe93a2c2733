"""Scale: top = bottom[0] * s (+ b), s broadcast along bottom[0]'s axes from `axis`.

s is bottom[1] when given (its shape sets the axes covered), else a learned blob of
`num_axes` dims of bottom[0] (-1: to the last axis, 0: a scalar) filled by `filler`
(default: constant 1). With `bias_term` a learned bias of the same dims follows s
in the blobs, filled by `bias_filler` (default 0): Caffe's BatchNorm + Scale pair.
Works in place (the bottom is kept for the scale's gradient).
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import Broadcast, learned_operand_shape
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.proto import caffe_pb2


@register
class ScaleLayer(Layer):
    type = "Scale"
    num_bottom = (1, 2)
    num_top = (1, 1)
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        sp = self.param.scale_param
        shape = bottom[0].shape
        self.bias_term = bool(sp.bias_term)
        if len(bottom) == 1:
            operand = learned_operand_shape(self, shape, sp.axis, sp.num_axes)
        else:
            operand = learned_operand_shape(self, shape, sp.axis, len(bottom[1].shape))
        want = ([operand] if len(bottom) == 1 else []) + ([operand] if self.bias_term else [])
        if self.blobs:
            got = [b.shape for b in self.blobs]
            if got != want:
                raise self.error(f"learnable blobs have shapes {got}, expected {want}")
            return
        if len(bottom) == 1:
            filler = sp.filler if sp.HasField("filler") else caffe_pb2.FillerParameter(
                type="constant", value=1)
            self.blobs.append(self.make_blob(operand, filler))
        if self.bias_term:
            self.blobs.append(self.make_blob(operand, sp.bias_filler))

    def _scale(self, bottom: list[Blob]) -> Blob:
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        axis = self.param.scale_param.axis
        self.broadcast = Broadcast(self, bottom[0].shape, self._scale(bottom).shape, axis)
        if self.bias_term:
            self.bias_broadcast = Broadcast(self, bottom[0].shape, self.blobs[-1].shape, axis)
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        # the scale's gradient needs the bottom, which an in-place forward overwrites
        self.x = x.copy() if top[0] is bottom[0] else x
        xp.multiply(x, self.broadcast.expand(self._scale(bottom).data), out=top[0].data)
        if self.bias_term:
            top[0].data += self.bias_broadcast.expand(self.blobs[-1].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff
        if self.bias_term:
            self.blobs[-1].diff += self.bias_broadcast.reduce(dy)
        if len(bottom) == 1:
            self.blobs[0].diff += self.broadcast.reduce(dy * self.x)
        elif propagate_down[1]:
            bottom[1].diff[...] = self.broadcast.reduce(dy * self.x)
        if propagate_down[0]:
            s = self.broadcast.expand(self._scale(bottom).data)
            self.xp.multiply(dy, s, out=bottom[0].diff)

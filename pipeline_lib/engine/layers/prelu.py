"""PReLU: max(x, 0) + a_c * min(x, 0) with a learnable slope a per channel (axis 1), or
one slope for all channels (channel_shared). The slope blob is (C,), or () when shared;
without a filler it starts at 0.25.

Backward adds sum(dy * x * [x <= 0]) over each channel to the slope's diff and writes
dy * ([x > 0] + a_c * [x <= 0]) to the bottom's. Both need the input, so in place the layer
keeps a copy of it during forward; the slope's gradient is taken first, since in place the
bottom's diff is the top's.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.fillers import fill
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer
from pipeline_lib.proto import caffe_pb2


@register
class PReLULayer(NeuronLayer):
    type = "PReLU"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(bottom[0].shape) < 2:
            raise self.error(f"bottom needs at least 2 axes, got shape {list(bottom[0].shape)}")
        p = self.param.prelu_param
        self.channel_shared = bool(p.channel_shared)
        channels = bottom[0].shape[1]
        shape = () if self.channel_shared else (channels,)
        if not self.blobs:
            filler = p.filler if p.HasField("filler") else caffe_pb2.FillerParameter(
                type="constant", value=0.25)
            # filled as a (count,) array: the filler refuses a 0-axis shape
            blob = self.make_blob(shape)
            values = fill(filler, (1 if self.channel_shared else channels,), self.rng, self.dtype)
            blob.data[...] = self.xp.asarray(values.reshape(shape))
            self.blobs = [blob]
        want = 1 if self.channel_shared else channels
        if self.blobs[0].count != want:
            raise self.error(f"slope blob has {self.blobs[0].count} values, expected {want} "
                             f"(channel_shared: {str(self.channel_shared).lower()})")
        self.kept_input = None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(bottom[0].shape) < 2:
            raise self.error(f"bottom needs at least 2 axes, got shape {list(bottom[0].shape)}")
        super().reshape(bottom, top)

    def _slope(self, ndim: int):
        """The slope shaped to broadcast over an NCHW... array of `ndim` axes."""
        a = self.blobs[0].data
        if self.channel_shared:
            return a.reshape(())
        return a.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        self.kept_input = x.copy() if top[0] is bottom[0] else None
        a = self._slope(x.ndim)
        top[0].data[...] = xp.maximum(x, 0) + a * xp.minimum(x, 0)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        x = self.kept_input if top[0] is bottom[0] else bottom[0].data
        dy = top[0].diff
        negative = x <= 0
        slope = self.blobs[0]
        contribution = dy * x * negative
        if self.channel_shared:
            slope.diff[...] += contribution.sum()
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            slope.diff[...] += contribution.sum(axis=axes)
        if propagate_down[0]:
            a = self._slope(x.ndim)
            bottom[0].diff[...] = dy * self.xp.where(negative, a, 1)

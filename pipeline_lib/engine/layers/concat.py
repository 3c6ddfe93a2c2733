"""Concat: join bottoms along `concat_param.axis` (or the legacy `concat_dim`)."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis
from pipeline_lib.engine.layers.base import Layer, register


@register
class ConcatLayer(Layer):
    type = "Concat"
    num_bottom = (1, None)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = self.param.concat_param
        if cp.HasField("axis") and cp.HasField("concat_dim"):
            raise self.error("give concat_param.axis or the legacy concat_dim, not both")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = self.param.concat_param
        shape = list(bottom[0].shape)
        if cp.HasField("concat_dim"):
            if cp.concat_dim >= len(shape):
                raise self.error(f"concat_dim {cp.concat_dim} is out of range for the "
                                 f"{len(shape)}-D bottom {tuple(shape)}")
            self.axis = int(cp.concat_dim)
        else:
            self.axis = canonical_axis(self, cp.axis, len(shape))
        for i, b in enumerate(bottom[1:], start=1):
            other = list(b.shape)
            if len(other) != len(shape) or any(
                    d != e for j, (d, e) in enumerate(zip(shape, other)) if j != self.axis):
                raise self.error(
                    f"bottoms must match except along axis {self.axis}: bottom[0] "
                    f"{bottom[0].shape} vs bottom[{i}] {b.shape}")
        self.sizes = [b.shape[self.axis] for b in bottom]
        shape[self.axis] = sum(self.sizes)
        top[0].reshape(shape)

    def _slices(self):
        lead = (slice(None),) * self.axis
        start = 0
        for size in self.sizes:
            yield lead + (slice(start, start + size),)
            start += size

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for b, index in zip(bottom, self._slices()):
            top[0].data[index] = b.data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        for b, down, index in zip(bottom, propagate_down, self._slices()):
            if down:
                b.diff[...] = top[0].diff[index]

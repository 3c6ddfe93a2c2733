"""Parameter: a learnable blob of `parameter_param.shape` (zeros until trained or loaded)
given as the top; the top's diff is added to the blob's. No bottoms."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class ParameterLayer(Layer):
    type = "Parameter"
    num_bottom = (0, 0)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = tuple(int(d) for d in self.param.parameter_param.shape.dim)
        if any(d < 0 for d in shape):
            raise self.error(f"parameter_param.shape {list(shape)} has a negative dim")
        if self.blobs:
            if self.blobs[0].shape != shape:
                raise self.error(f"blob has shape {self.blobs[0].shape}, parameter_param "
                                 f"gives {shape}")
        else:
            self.blobs = [self.make_blob(shape)]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(self.blobs[0].shape)

    # a copy, not the blob itself: an in-place layer on the top must not change the weights
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = self.blobs[0].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self.blobs[0].diff += top[0].diff

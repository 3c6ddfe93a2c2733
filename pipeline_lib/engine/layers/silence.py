"""Silence: consume bottoms that nothing else reads; their gradient is zero."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class SilenceLayer(Layer):
    type = "Silence"
    num_bottom = (1, None)
    num_top = (0, 0)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        for b, down in zip(bottom, propagate_down):
            if down:
                b.diff[...] = 0

"""Split: copy one bottom to several tops; backward sums the tops' diffs."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class SplitLayer(Layer):
    type = "Split"
    num_bottom = (1, 1)
    num_top = (1, None)
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if any(t is bottom[0] for t in top):
            raise self.error("cannot work in place; give each top its own name")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t in top:
            t.reshape(bottom[0].shape)

    # Each top gets its own copy (Caffe shares one buffer), so an in-place layer
    # on one top cannot change what the other consumers see.
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t in top:
            t.data[...] = bottom[0].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        diff = bottom[0].diff
        diff[...] = top[0].diff
        for t in top[1:]:
            diff += t.diff

"""Flatten: merge axes `axis`..`end_axis` (inclusive) of the bottom into one."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis, count
from pipeline_lib.engine.layers.base import Layer, register


@register
class FlattenLayer(Layer):
    type = "Flatten"
    num_bottom = (1, 1)
    num_top = (1, 1)
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("cannot work in place; give the top another name")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        fp = self.param.flatten_param
        shape = bottom[0].shape
        start = canonical_axis(self, fp.axis, len(shape))
        end = canonical_axis(self, fp.end_axis, len(shape))
        if end < start:
            raise self.error(f"end_axis {fp.end_axis} comes before axis {fp.axis} "
                             f"for the bottom {shape}")
        top[0].reshape(shape[:start] + (count(shape, start, end + 1),) + shape[end + 1:])

    # Copies rather than views: a later in-place layer on the top must not
    # change this layer's bottom.
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = bottom[0].data.reshape(top[0].shape)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff.reshape(bottom[0].shape)

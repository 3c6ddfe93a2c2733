"""Crop: cut bottom[0] to the shape of bottom[1] on every axis from `axis` (default 2) on.

Offsets, as Caffe's: none (0 everywhere), one (used on every cropped axis), or one
per cropped axis. bottom[1] only gives a shape and gets no gradient; the gradient
of bottom[0] is the top's, put back at the offsets, zero elsewhere.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis
from pipeline_lib.engine.layers.base import Layer, register


@register
class CropLayer(Layer):
    type = "Crop"
    num_bottom = (2, 2)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = self.param.crop_param
        ndim = len(bottom[0].shape)
        start = canonical_axis(self, cp.axis, ndim)
        if len(cp.offset) > 1 and start + len(cp.offset) != ndim:
            raise self.error(f"{len(cp.offset)} offsets given for the {ndim - start} axes "
                             f"cropped (axis {start} to {ndim - 1}); give one per cropped "
                             "axis, one for all, or none")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = self.param.crop_param
        data, like = bottom[0].shape, bottom[1].shape
        start = canonical_axis(self, cp.axis, len(data))
        if len(like) < len(data):
            raise self.error(f"bottom[1] has shape {like}: it needs the {len(data)} axes of "
                             f"bottom[0] {data}")
        shape, index = [], []
        for i, size in enumerate(data):
            offset, new = 0, size
            if i >= start:
                new = like[i]
                if len(cp.offset) == 1:
                    offset = cp.offset[0]
                elif len(cp.offset) > 1:
                    offset = cp.offset[i - start]
                if size - offset < new:
                    raise self.error(f"axis {i}: a crop of {new} at offset {offset} does not "
                                     f"fit bottom[0]'s size {size}")
            shape.append(new)
            index.append(slice(offset, offset + new))
        self.index = tuple(index)
        top[0].reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = bottom[0].data[self.index]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            diff = bottom[0].diff
            diff[...] = 0
            diff[self.index] = top[0].diff

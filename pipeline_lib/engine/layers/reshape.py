"""Reshape: give the bottom's data a new shape (reshape_param.shape).

In the new shape 0 copies the bottom's dim at that position and -1 (at most once)
is inferred from the count. `axis` and `num_axes` pick the range of bottom axes
that the new shape replaces (default: all).
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import count
from pipeline_lib.engine.layers.base import Layer, register


@register
class ReshapeLayer(Layer):
    type = "Reshape"
    num_bottom = (1, 1)
    num_top = (1, 1)
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("cannot work in place; give the top another name")
        self.dims = [int(d) for d in self.param.reshape_param.shape.dim]
        if self.dims.count(-1) > 1:
            raise self.error(f"shape {self.dims} has more than one -1 (inferred) dim")
        if any(d < -1 for d in self.dims):
            raise self.error(f"shape {self.dims} has a dim below -1")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        rp = self.param.reshape_param
        shape = bottom[0].shape
        n = len(shape)
        start = rp.axis if rp.axis >= 0 else n + rp.axis + 1
        if not 0 <= start <= n:
            raise self.error(f"axis {rp.axis} is out of range for the {n}-D bottom {shape}")
        if rp.num_axes < -1:
            raise self.error(f"num_axes must be >= 0, or -1 for all; got {rp.num_axes}")
        end = n if rp.num_axes == -1 else start + rp.num_axes
        if end > n:
            raise self.error(f"axis {rp.axis} + num_axes {rp.num_axes} goes past the "
                             f"{n}-D bottom {shape}")
        new = list(self.dims)
        for i, d in enumerate(new):
            if d == 0:
                if start + i >= n:
                    raise self.error(f"shape {self.dims} has a 0 at position {i} but the bottom "
                                     f"{shape} has no axis {start + i} to copy")
                new[i] = shape[start + i]
        if -1 in new:
            known = count(shape, 0, start) * count(shape, end) * count(
                tuple(d for d in new if d != -1))
            if known == 0 or bottom[0].count % known:
                raise self.error(f"bottom count {bottom[0].count} {shape} is not divisible by "
                                 f"the product {known} of the given dims {self.dims}")
            new[new.index(-1)] = bottom[0].count // known
        top_shape = shape[:start] + tuple(new) + shape[end:]
        if count(top_shape) != bottom[0].count:
            raise self.error(f"new shape {top_shape} has {count(top_shape)} elements, the "
                             f"bottom {shape} has {bottom[0].count}")
        top[0].reshape(top_shape)

    # Copies rather than views: a later in-place layer on the top must not
    # change this layer's bottom.
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = bottom[0].data.reshape(top[0].shape)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff.reshape(bottom[0].shape)

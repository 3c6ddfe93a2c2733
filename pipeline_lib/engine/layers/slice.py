"""Slice: cut one bottom along `slice_param.axis` (or legacy `slice_dim`) into tops,
at `slice_point`s, or into equal parts when no points are given.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis
from pipeline_lib.engine.layers.base import Layer, register


@register
class SliceLayer(Layer):
    type = "Slice"
    num_bottom = (1, 1)
    num_top = (1, None)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        sp = self.param.slice_param
        if sp.HasField("axis") and sp.HasField("slice_dim"):
            raise self.error("give slice_param.axis or the legacy slice_dim, not both")
        self.points = [int(p) for p in sp.slice_point]
        if self.points and len(self.points) != len(top) - 1:
            raise self.error(f"{len(self.points)} slice_point(s) for {len(top)} tops; "
                             f"expected {len(top) - 1}")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        sp = self.param.slice_param
        shape = list(bottom[0].shape)
        if sp.HasField("slice_dim"):
            if sp.slice_dim >= len(shape):
                raise self.error(f"slice_dim {sp.slice_dim} is out of range for the "
                                 f"{len(shape)}-D bottom {tuple(shape)}")
            self.axis = int(sp.slice_dim)
        else:
            self.axis = canonical_axis(self, sp.axis, len(shape))
        dim = shape[self.axis]
        if self.points:
            bounds = [0, *self.points, dim]
            if any(b <= a for a, b in zip(bounds, bounds[1:])):
                raise self.error(f"slice_point {self.points} must increase strictly within "
                                 f"(0, {dim}) along axis {self.axis} of {tuple(shape)}")
        else:
            if dim % len(top):
                raise self.error(f"{len(top)} tops do not evenly divide axis {self.axis} "
                                 f"(size {dim}) of {tuple(shape)}")
            step = dim // len(top)
            bounds = [i * step for i in range(len(top) + 1)]
        lead = (slice(None),) * self.axis
        self.index = [lead + (slice(a, b),) for a, b in zip(bounds, bounds[1:])]
        for t, (a, b) in zip(top, zip(bounds, bounds[1:])):
            shape[self.axis] = b - a
            t.reshape(shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t, index in zip(top, self.index):
            t.data[...] = bottom[0].data[index]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            for t, index in zip(top, self.index):
                bottom[0].diff[index] = t.diff

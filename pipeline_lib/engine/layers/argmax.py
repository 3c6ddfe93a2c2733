"""ArgMax: the indices (or values) of the `top_k` largest values; no backward.

Without `axis`: over each instance's flattened values, top (N, 1, top_k), or with
`out_max_val` (N, 2, top_k) holding indices then values (at least 3 axes, more if
the bottom has more, all 1). With `axis`: the bottom's shape with `axis` cut to
top_k, holding indices, or the values with `out_max_val`. Ties go to the larger
index, as Caffe's sort of (value, index) pairs in descending order gives.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis, count
from pipeline_lib.engine.layers.base import Layer, register


@register
class ArgMaxLayer(Layer):
    type = "ArgMax"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ap = self.param.argmax_param
        self.out_max_val = bool(ap.out_max_val)
        self.top_k = int(ap.top_k)
        self.axis = canonical_axis(self, ap.axis, len(bottom[0].shape)) \
            if ap.HasField("axis") else None
        if self.top_k < 1:
            raise self.error("top_k must be 1 or more")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if self.axis is None:
            dim = count(shape, 1)
            out = [1] * max(len(shape), 3)
            out[0], out[1], out[2] = shape[0], 2 if self.out_max_val else 1, self.top_k
        else:
            dim = shape[self.axis]
            out = list(shape)
            out[self.axis] = self.top_k
        if self.top_k > dim:
            raise self.error(f"top_k {self.top_k} is more than the {dim} values it chooses from")
        top[0].reshape(out)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        if self.axis is None:
            x = x.reshape(x.shape[0], -1)
        axis = 1 if self.axis is None else self.axis
        # a stable descending sort of the reversed axis puts the larger index first on ties
        reversed_x = -xp.flip(x, axis=axis)
        order = (xp.argsort(reversed_x, axis=axis, kind="stable") if xp is np
                 else xp.argsort(reversed_x, axis=axis))
        first = [slice(None)] * x.ndim
        first[axis] = slice(0, self.top_k)
        index = x.shape[axis] - 1 - order[tuple(first)]
        values = xp.take_along_axis(x, index, axis=axis)
        if self.axis is not None:
            top[0].data[...] = values if self.out_max_val else index
            return
        out = top[0].data.reshape(x.shape[0], -1, self.top_k)
        out[:, 0] = index
        if self.out_max_val:
            out[:, 1] = values

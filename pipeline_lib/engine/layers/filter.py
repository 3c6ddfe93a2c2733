"""Filter: keep the items (axis 0) of bottoms 0..k-1 whose selector (the last bottom,
shape (N,) or (N, 1, ...)) is non-zero; tops k. The batch size of the tops changes
with the selector at every forward. The backward puts each kept item's diff back
where it came from, zero for the items left out; the selector gets no gradient.

As Caffe: the first reshape (at setup, before any selector is read) gives the tops
the whole batch.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class FilterLayer(Layer):
    type = "Filter"
    num_bottom = (2, None)
    num_top = (1, None)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(top) != len(bottom) - 1:
            raise self.error(f"needs one top per filtered bottom (all but the last, the "
                             f"selector): {len(bottom) - 1}, got {len(top)}")
        self._first = True

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        selector = bottom[-1]
        shape = selector.shape
        if len(shape) < 1 or any(d != 1 for d in shape[1:]):
            raise self.error(f"the selector (last bottom) must be (N,) or (N, 1, ...), "
                             f"got shape {shape}")
        for i, b in enumerate(bottom[:-1]):
            if not b.shape or b.shape[0] != shape[0]:
                raise self.error(f"bottom[{i}] has shape {b.shape}: its first axis must be "
                                 f"the selector's {shape[0]}")
        self.kept = self.xp.flatnonzero(selector.data.reshape(-1))
        n = shape[0] if self._first else int(self.kept.size)
        self._first = False
        for b, t in zip(bottom, top):
            t.reshape((n,) + b.shape[1:])

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for b, t in zip(bottom, top):
            if t.shape[0] != self.kept.size:  # the setup-time batch: reshape to the kept ones
                t.reshape((int(self.kept.size),) + b.shape[1:])
            self.xp.take(b.data, self.kept, axis=0, out=t.data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        for i, (t, b) in enumerate(zip(top, bottom)):
            if propagate_down[i]:
                diff = b.diff
                diff[...] = 0
                diff[self.kept] = t.diff

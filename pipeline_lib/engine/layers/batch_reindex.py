"""BatchReindex: top[i] = bottom[0][index[i]] for the 1-D index bottom[1] (items may be
repeated or left out); the backward adds each top item's diff to the item it came from.
Indices must be integers in [0, batch size); the index bottom gets no gradient."""

from __future__ import annotations

from pipeline_lib.core.backend import scatter_add, to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class BatchReindexLayer(Layer):
    type = "BatchReindex"
    num_bottom = (2, 2)
    num_top = (1, 1)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if len(bottom[1].shape) != 1:
            raise self.error(f"the index bottom must be 1-D, got shape {bottom[1].shape}")
        top[0].reshape(bottom[1].shape + bottom[0].shape[1:])

    def _indices(self, bottom: list[Blob]):
        xp = self.xp
        x = bottom[1].data
        index = x.astype(xp.int64)
        bad = (index != x) | (index < 0) | (index >= bottom[0].shape[0])
        if bool(bad.any()):
            where = int(to_host(xp.argmax(bad)))
            raise self.error(f"index {float(to_host(x[where]))!r} at position {where} is not "
                             f"an integer in [0, {bottom[0].shape[0]}) (the batch size)")
        return index

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.index = self._indices(bottom)
        self.xp.take(bottom[0].data, self.index, axis=0, out=top[0].data)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            diff = bottom[0].diff
            diff[...] = 0
            scatter_add(diff, self.index, top[0].diff)
        if len(propagate_down) > 1 and propagate_down[1]:
            bottom[1].diff[...] = 0

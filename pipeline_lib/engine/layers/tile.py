"""Tile: repeat the bottom `tiles` times along `axis` (whole blocks: [x, x, ...], like
numpy.tile); the backward sums the copies."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis
from pipeline_lib.engine.layers.base import Layer, register


@register
class TileLayer(Layer):
    type = "Tile"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        tp = self.param.tile_param
        if not tp.HasField("tiles") or tp.tiles <= 0:
            raise self.error("tile_param.tiles must be given and positive")
        if top[0] is bottom[0]:
            raise self.error("cannot work in place; give the top another name")
        self.tiles = int(tp.tiles)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        self.axis = canonical_axis(self, self.param.tile_param.axis, len(shape))
        out = list(shape)
        out[self.axis] *= self.tiles
        top[0].reshape(out)
        # the top seen with the copies on an axis of their own, before `axis`
        self.split = shape[:self.axis] + (self.tiles,) + shape[self.axis:]

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        top[0].data.reshape(self.split)[...] = x.reshape(x.shape[:self.axis] + (1,)
                                                         + x.shape[self.axis:])

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff.reshape(self.split).sum(axis=self.axis)

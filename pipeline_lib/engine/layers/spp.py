"""SPP (spatial pyramid pooling): pool each image into 1, 2x2, 4x4, ... bins and join them.

Level l has 2^l bins a side: kernel ceil(H / 2^l), stride = kernel and padding
(kernel * 2^l - H + 1) // 2 (likewise for W), pooled by a Pooling layer of
`pool`'s method. Each level is flattened to (N, C * bins) and the levels are
concatenated in order: top (N, C * sum 4^l). With `pyramid_height` 1 the single
pooling is the top as is, (N, C, 1, 1), as in Caffe.
"""

from __future__ import annotations

import math

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.pooling import PoolingLayer
from pipeline_lib.proto import caffe_pb2


def level_pooling(level: int, height: int, width: int, method: int) -> caffe_pb2.PoolingParameter:
    """The pooling of pyramid level `level` over an H x W bottom, by Caffe's rule."""
    bins = 2 ** level
    kh, kw = math.ceil(height / bins), math.ceil(width / bins)
    return caffe_pb2.PoolingParameter(
        pool=method, kernel_h=kh, kernel_w=kw, stride_h=kh, stride_w=kw,
        pad_h=(kh * bins - height + 1) // 2, pad_w=(kw * bins - width + 1) // 2)


@register
class SPPLayer(Layer):
    type = "SPP"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        sp = self.param.spp_param
        if not sp.HasField("pyramid_height") or sp.pyramid_height < 1:
            raise self.error("spp_param.pyramid_height must be given, 1 or more")
        self.height = int(sp.pyramid_height)
        self._geometry = None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) != 4 or min(shape[2:]) <= 0:
            raise self.error(f"needs a 4-D bottom (N, C, H, W) with H, W > 0, got {shape}")
        if self._geometry != shape[2:]:
            self._geometry = shape[2:]
            self.levels = []
            method = self.param.spp_param.pool
            for level in range(self.height):
                lp = caffe_pb2.LayerParameter(name=f"{self.name}/level{level}", type="Pooling")
                lp.pooling_param.CopyFrom(level_pooling(level, *shape[2:], method))
                pool = PoolingLayer(lp, self.phase, self.xp, self.rng, self.dtype)
                self.levels.append((pool, Blob((), self.xp, self.dtype)))
            for pool, out in self.levels:
                pool.setup(bottom, [out])
        for pool, out in self.levels:
            pool.reshape(bottom, [out])
        if self.height == 1:
            top[0].reshape(self.levels[0][1].shape)
        else:
            top[0].reshape((shape[0], sum(out.count // shape[0] for _, out in self.levels)))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        n = bottom[0].shape[0]
        start = 0
        for pool, out in self.levels:
            pool.forward(bottom, [out])
            size = out.count // n
            top[0].data.reshape(n, -1)[:, start:start + size] = out.data.reshape(n, size)
            start += size

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        n = bottom[0].shape[0]
        total = self.xp.zeros(bottom[0].shape, bottom[0].data.dtype)
        start = 0
        for pool, out in self.levels:
            size = out.count // n
            out.diff[...] = top[0].diff.reshape(n, -1)[:, start:start + size].reshape(out.shape)
            start += size
            pool.backward([out], [True], bottom)
            total += bottom[0].diff
        bottom[0].diff[...] = total

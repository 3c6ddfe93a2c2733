"""MVN: subtract the mean of each (image, channel), or of each image `across_channels`;
with `normalize_variance` (default) then divide by the standard deviation plus `eps`.

As Caffe: eps is added to the standard deviation (not the variance), the top has the
bottom's legacy 4-D shape (N, C, H, W; missing axes are 1), and the backward with
variance is Caffe's formula (dy - mean(dy) - mean(dy * y) * y) / (std + eps), exact
when eps is 0.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class MVNLayer(Layer):
    type = "MVN"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        mp = self.param.mvn_param
        self.normalize_variance = bool(mp.normalize_variance)
        self.across_channels = bool(mp.across_channels)
        self.eps = float(mp.eps)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if not 1 <= len(shape) <= 4:
            raise self.error(f"needs a bottom of 1 to 4 axes (N, C, H, W), got shape {shape}")
        self.legacy = tuple(shape) + (1,) * (4 - len(shape))
        if top[0] is not bottom[0]:
            top[0].reshape(self.legacy)
        elif len(shape) != 4:
            raise self.error(f"in place needs a 4-D bottom (the top is 4-D), got shape {shape}")
        n, c = self.legacy[:2]
        self.rows = (n, -1) if self.across_channels else (n * c, -1)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data.reshape(self.rows)
        y = x - x.mean(axis=1, keepdims=True)
        if self.normalize_variance:
            std = self.xp.sqrt(self.xp.square(y).mean(axis=1, keepdims=True))
            self.scale = std + self.eps
            y /= self.scale
            self.y = y
        top[0].data[...] = y.reshape(self.legacy)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(self.rows)
        dx = dy - dy.mean(axis=1, keepdims=True)
        if self.normalize_variance:
            dx -= (dy * self.y).mean(axis=1, keepdims=True) * self.y
            dx /= self.scale
        bottom[0].diff[...] = dx.reshape(bottom[0].shape)

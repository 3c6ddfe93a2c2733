"""ContrastiveLoss: pulls similar pairs of features together, pushes dissimilar ones apart.

Bottoms: features a and b (N x C, or N x C x 1 x 1) and a similarity label y (N
values; nonzero after truncation to an integer means similar). With d the
Euclidean distance of a row pair and m = contrastive_loss_param.margin, the loss
is sum(y d^2 + (1 - y) max(m - d, 0)^2) / (2 N); with `legacy_version` a
dissimilar pair costs max(m - d^2, 0) instead. As in Caffe, the gradient of a
dissimilar pair divides by d + 1e-4 (not d), so a zero distance gives no NaN.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register

#: Caffe's guard against dividing by a zero distance in the gradient
_DIST_EPS = 1e-4


@register
class ContrastiveLossLayer(Layer):
    type = "ContrastiveLoss"
    is_loss = True
    num_bottom = (3, 3)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.contrastive_loss_param
        self.margin = float(p.margin)
        self.legacy = bool(p.legacy_version)

    def allow_force_backward(self, bottom_index: int) -> bool:
        """Both features may be forced to take a gradient; the similarity label (third) not."""
        return bottom_index != 2

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        a, b, y = (blob.shape for blob in bottom)
        if a != b or len(a) < 2 or any(d != 1 for d in a[2:]):
            raise self.error(f"features must be two N x C (x 1 x 1) blobs of one shape: "
                             f"bottom[0] {a} vs bottom[1] {b}")
        if bottom[2].count != a[0]:
            raise self.error(f"the similarity label must hold one value per pair ({a[0]}), "
                             f"got shape {y}")
        self.num, self.channels = a[0], a[1]
        top[0].reshape(())

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        shape = (self.num, self.channels)
        self.delta = bottom[0].data.reshape(shape) - bottom[1].data.reshape(shape)
        self.dist_sq = (self.delta * self.delta).sum(axis=1)
        self.similar = bottom[2].data.reshape(-1).astype(np.int64) != 0
        if self.legacy:
            apart = xp.maximum(self.margin - self.dist_sq, 0)
        else:
            apart = xp.maximum(self.margin - xp.sqrt(self.dist_sq), 0) ** 2
        per = xp.where(self.similar, self.dist_sq, apart)
        top[0].data[...] = xp.sum(per, dtype=np.float64) / self.num / 2

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        if propagate_down[2]:
            bottom[2].diff[...] = 0  # labels are constants
        if not (propagate_down[0] or propagate_down[1]):
            return
        if self.legacy:
            mdist = self.margin - self.dist_sq
            beta = -xp.ones_like(mdist)
        else:
            dist = xp.sqrt(self.dist_sq)
            mdist = self.margin - dist
            beta = -mdist / (dist + _DIST_EPS)
        coeff = xp.where(self.similar, 1.0, xp.where(mdist > 0, beta, 0.0))
        grad = coeff[:, None] * self.delta * (top[0].diff.reshape(-1)[0] / self.num)
        for sign, blob, down in ((1, bottom[0], propagate_down[0]),
                                 (-1, bottom[1], propagate_down[1])):
            if down:
                blob.diff[...] = (sign * grad).reshape(blob.shape).astype(blob.dtype)

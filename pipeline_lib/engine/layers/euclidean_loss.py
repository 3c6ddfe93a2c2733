"""EuclideanLoss: sum((a - b)^2) / (2 N), N the first dimension; gradients to both bottoms."""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.softmax_loss import check_same_num


@register
class EuclideanLossLayer(Layer):
    type = "EuclideanLoss"
    is_loss = True
    num_bottom = (2, 2)
    num_top = (1, 1)

    def allow_force_backward(self, bottom_index: int) -> bool:
        return True  # both bottoms are values, not labels

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.delta = None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        check_same_num(self, bottom)
        if bottom[0].count != bottom[1].count:
            raise self.error(f"bottoms must have the same number of values per item: "
                             f"bottom[0] {bottom[0].shape} vs bottom[1] {bottom[1].shape}")
        self.num = bottom[0].shape[0] if bottom[0].shape else 1
        top[0].reshape(())

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.delta = bottom[0].data - bottom[1].data.reshape(bottom[0].shape)
        sq = self.xp.sum(self.delta * self.delta, dtype=np.float64)
        top[0].data[...] = sq / self.num / 2

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        weight = top[0].diff.reshape(-1)[0] / self.num
        for sign, b, down in ((1, bottom[0], propagate_down[0]),
                              (-1, bottom[1], propagate_down[1])):
            if down:
                b.diff[...] = (sign * weight * self.delta).reshape(b.shape)

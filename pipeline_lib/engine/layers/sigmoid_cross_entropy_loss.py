"""SigmoidCrossEntropyLoss: the cross-entropy of targets in [0, 1] and sigmoid(x).

Per element: -(t log s + (1 - t) log(1 - s)), s = sigmoid(x), computed from x as
max(x, 0) - x t + log(1 + exp(-|x|)), which neither overflows nor takes log(0).
Elements whose target, truncated to an integer, equals loss_param.ignore_label add
nothing and get no gradient. The sum is divided by loss_param.normalization's
normalizer; unlike SoftmaxWithLoss, the default (neither normalization nor the
legacy normalize set) is BATCH_SIZE, the first dimension, as in Caffe.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import count
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.loss_norm import Norm, normalization_mode, normalizer
from pipeline_lib.engine.layers.softmax_loss import check_same_num


@register
class SigmoidCrossEntropyLossLayer(Layer):
    type = "SigmoidCrossEntropyLoss"
    is_loss = True
    num_bottom = (2, 2)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        lp = self.param.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = normalization_mode(self, Norm.BATCH_SIZE)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        check_same_num(self, bottom)
        if bottom[0].count != bottom[1].count:
            raise self.error(f"scores and targets must have the same count: bottom[0] "
                             f"{bottom[0].shape} vs bottom[1] {bottom[1].shape}")
        shape = bottom[0].shape
        self.outer = shape[0] if shape else 1
        self.inner = count(shape, 1)
        top[0].reshape(())

    def _valid(self, target):
        if self.ignore_label is None:
            return None
        return target.astype(np.int64) != self.ignore_label  # truncates, as C's cast

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        t = bottom[1].data.reshape(x.shape)
        per = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        valid = self._valid(t)
        if valid is not None:
            per = xp.where(valid, per, 0)
            self.valid_count = valid.sum()
        else:
            self.valid_count = None
        self.norm = normalizer(self, self.normalization, self.outer, self.inner,
                               self.valid_count)
        top[0].data[...] = xp.sum(per, dtype=np.float64) / self.norm

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        if propagate_down[1]:
            bottom[1].diff[...] = 0  # targets are constants: no gradient flows to them
        if not propagate_down[0]:
            return
        x = bottom[0].data
        t = bottom[1].data.reshape(x.shape)
        grad = 0.5 * xp.tanh(0.5 * x) + 0.5 - t
        valid = self._valid(t)
        if valid is not None:
            grad = xp.where(valid, grad, 0)
        scale = top[0].diff.reshape(-1)[0] / self.norm
        bottom[0].diff[...] = grad * xp.asarray(scale, dtype=grad.dtype)

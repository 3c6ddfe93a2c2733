"""HingeLoss: the one-vs-all hinge loss of scores (N x K) and class labels (N).

With s_k = -1 for the true class and +1 for every other, each score costs
max(0, 1 + s_k x_k); hinge_loss_param.norm L1 (the default) sums these, L2
sums their squares; either is divided by N.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.softmax_loss import class_labels, reshape_per_item
from pipeline_lib.proto import caffe_pb2

_Norm = caffe_pb2.HingeLossParameter


@register
class HingeLossLayer(Layer):
    type = "HingeLoss"
    is_loss = True
    num_bottom = (2, 2)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.norm = self.param.hinge_loss_param.norm
        if self.norm not in (_Norm.L1, _Norm.L2):
            raise self.error(f"hinge_loss_param.norm {self.norm} is not L1 or L2")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.num, self.dim = reshape_per_item(self, bottom, top)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data.reshape(self.num, self.dim)
        labels, _ = class_labels(self, bottom[1], self.num, 1, self.dim, None)
        self.sign = xp.where(xp.arange(self.dim)[None, :] == labels, -1.0, 1.0).astype(x.dtype)
        self.margin = xp.maximum(0, 1 + self.sign * x)
        total = self.margin.sum(dtype=np.float64) if self.norm == _Norm.L1 else \
            (self.margin * self.margin).sum(dtype=np.float64)
        top[0].data[...] = total / self.num

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[1]:
            bottom[1].diff[...] = 0  # labels are constants
        if not propagate_down[0]:
            return
        weight = top[0].diff.reshape(-1)[0] / self.num
        if self.norm == _Norm.L1:
            grad = self.sign * (self.margin > 0)
        else:
            grad = 2 * self.sign * self.margin
        bottom[0].diff[...] = (weight * grad).reshape(bottom[0].shape)

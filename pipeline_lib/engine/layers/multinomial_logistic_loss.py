"""MultinomialLogisticLoss: -log of the probability given to the true class, averaged over N.

Bottom 0 holds probabilities (N x K, e.g. a Softmax's top), bottom 1 one class
label per item. A probability below Caffe's kLOG_THRESHOLD (1e-20) is taken as
1e-20, so a zero costs 46.05 and its gradient stays finite.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.softmax_loss import class_labels, reshape_per_item

#: the smallest probability taken, in both precisions (Caffe's kLOG_THRESHOLD)
LOG_THRESHOLD = 1e-20


@register
class MultinomialLogisticLossLayer(Layer):
    type = "MultinomialLogisticLoss"
    is_loss = True
    num_bottom = (2, 2)
    num_top = (1, 1)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.num, self.dim = reshape_per_item(self, bottom, top)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        prob = bottom[0].data.reshape(self.num, self.dim)
        self.labels, _ = class_labels(self, bottom[1], self.num, 1, self.dim, None)
        p = xp.take_along_axis(prob, self.labels, axis=1)
        self.p = xp.maximum(p, p.dtype.type(LOG_THRESHOLD))
        top[0].data[...] = -xp.sum(xp.log(self.p), dtype=np.float64) / self.num

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        if propagate_down[1]:
            bottom[1].diff[...] = 0  # labels are constants
        if not propagate_down[0]:
            return
        scale = -top[0].diff.reshape(-1)[0] / self.num
        grad = xp.zeros((self.num, self.dim), bottom[0].dtype)
        grad[xp.arange(self.num), self.labels[:, 0]] = (scale / self.p[:, 0]).astype(grad.dtype)
        bottom[0].diff[...] = grad.reshape(bottom[0].shape)

"""Softmax along `softmax_param.axis`, shifted by the maximum for numerical stability."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis
from pipeline_lib.engine.layers.base import Layer, register


def softmax(xp, x, axis: int):
    """exp(x) / sum(exp(x)) along `axis`, computed as exp(x - max) to avoid overflow."""
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


@register
class SoftmaxLayer(Layer):
    type = "Softmax"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.axis = canonical_axis(self, self.param.softmax_param.axis, len(bottom[0].shape))
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].data[...] = softmax(self.xp, bottom[0].data, self.axis)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            y, dy = top[0].data, top[0].diff
            bottom[0].diff[...] = y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))

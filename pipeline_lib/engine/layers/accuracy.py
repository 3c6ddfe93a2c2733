"""Accuracy: the fraction of positions whose label is among the top_k scores.

As in Caffe, a class scoring the same as the true class counts as ranked above it,
so ties count against the prediction. An optional second top holds the accuracy of
each class (0 for a class with no labels). Positions labelled ignore_label are skipped.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis, count
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.softmax_loss import check_label_count, class_labels


@register
class AccuracyLayer(Layer):
    type = "Accuracy"
    num_bottom = (2, 2)
    num_top = (1, 2)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ap = self.param.accuracy_param
        self.top_k = int(ap.top_k)
        self.ignore_label = ap.ignore_label if ap.HasField("ignore_label") else None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        self.axis = canonical_axis(self, self.param.accuracy_param.axis, len(shape))
        self.outer = count(shape, 0, self.axis)
        self.inner = count(shape, self.axis + 1)
        self.classes = shape[self.axis]
        check_label_count(self, bottom[1], self.outer * self.inner)
        if self.top_k > self.classes:
            raise self.error(f"top_k {self.top_k} is more than the {self.classes} classes")
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((self.classes,))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        scores = bottom[0].data.reshape(self.outer, self.classes, self.inner)
        labels, valid = class_labels(self, bottom[1], self.outer, self.inner, self.classes,
                                     self.ignore_label)
        true_score = xp.take_along_axis(scores, labels[:, None, :], axis=1)
        # classes scoring at least the true one, the true class itself excluded
        rank = (scores >= true_score).sum(axis=1) - 1
        hit = (rank < self.top_k) & valid
        n_valid = valid.sum()
        top[0].data[...] = xp.where(n_valid > 0, hit.sum() / xp.maximum(n_valid, 1), 0)
        if len(top) > 1:
            onehot = xp.arange(self.classes)[None, :, None] == labels[:, None, :]
            per_class = (onehot & valid[:, None, :]).sum(axis=(0, 2))
            hits = (onehot & hit[:, None, :]).sum(axis=(0, 2))
            top[1].data[...] = xp.where(per_class > 0, hits / xp.maximum(per_class, 1), 0)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        # Accuracy contributes nothing to any loss: a zero gradient if one is asked for.
        for blob, down in zip(bottom, propagate_down):
            if down:
                blob.diff[...] = 0

"""SoftmaxWithLoss: softmax followed by the multinomial logistic loss of the labels.

Labels are class indices stored as floats (Caffe's convention), one per position
outside the softmax axis. Positions whose label equals loss_param.ignore_label add
nothing to the loss and receive a zero gradient. The sum is divided by a normalizer
chosen by loss_param.normalization (or the legacy `normalize` flag), never below 1.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis, count
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.loss_norm import Norm, normalization_mode, normalizer
from pipeline_lib.engine.layers.softmax import softmax

#: Caffe clamps probabilities to FLT_MIN before the log, for both precisions.
FLT_MIN = float(np.finfo(np.float32).tiny)


def class_labels(layer: Layer, label_blob: Blob, outer: int, inner: int, num_classes: int,
                 ignore_label: int | None):
    """The labels as an (outer, inner) integer array and a mask of the positions that count.

    Raises the layer's error when the label count does not match the predictions
    or a counted label is not a class index.
    """
    xp = layer.xp
    check_label_count(layer, label_blob, outer * inner)
    labels = label_blob.data.reshape(outer, inner).astype(np.int64)  # truncates, like C
    if ignore_label is None:  # every label counts: two reductions tell whether one is bad
        valid = xp.ones(labels.shape, bool)
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            _bad_label(layer, labels, valid, num_classes)
        return labels, valid
    valid = labels != ignore_label
    _bad_label(layer, labels, valid, num_classes)
    return xp.where(valid, labels, 0), valid


def _bad_label(layer: Layer, labels, valid, num_classes: int) -> None:
    """Raise the layer's error naming the first counted label that is not a class index."""
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        first = int(labels[bad].reshape(-1)[0])
        raise layer.error(f"label {first} is not a class index in [0, {num_classes})")


def check_label_count(layer: Layer, label_blob: Blob, num_predictions: int) -> None:
    """One label per prediction, or the layer's error saying what was expected."""
    if label_blob.count != num_predictions:
        raise layer.error(
            f"label count {label_blob.count} (shape {label_blob.shape}) must equal the number "
            f"of predictions {num_predictions}: with predictions (N, C, H, W) and axis 1, "
            f"labels must be N*H*W integers in [0, C)")


def check_same_num(layer: Layer, bottom: list[Blob]) -> None:
    """Caffe's loss layers want predictions and labels with the same first dimension."""
    a, b = bottom[0].shape, bottom[1].shape
    if (a[:1] or (1,)) != (b[:1] or (1,)):
        raise layer.error(f"bottoms must have the same first dimension: "
                          f"bottom[0] {a} vs bottom[1] {b}")


def reshape_per_item(layer: Layer, bottom: list[Blob], top: list[Blob]) -> tuple[int, int]:
    """For a loss of N items with one label each, bottom[0] read as (N x dim) (its later axes
    flattened): checks the bottoms' first dimensions agree, makes the top a scalar and
    returns (N, dim)."""
    check_same_num(layer, bottom)
    num = bottom[0].shape[0]
    top[0].reshape(())
    return num, bottom[0].count // max(num, 1)


@register
class SoftmaxWithLossLayer(Layer):
    type = "SoftmaxWithLoss"
    is_loss = True
    num_bottom = (2, 2)
    num_top = (1, 2)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        lp = self.param.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = normalization_mode(self, Norm.VALID)
        self.prob = None

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        check_same_num(self, bottom)
        shape = bottom[0].shape
        self.axis = canonical_axis(self, self.param.softmax_param.axis, len(shape))
        self.outer = count(shape, 0, self.axis)
        self.inner = count(shape, self.axis + 1)
        self.classes = shape[self.axis]
        check_label_count(self, bottom[1], self.outer * self.inner)
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(shape)

    def _normalizer(self, valid_count):
        """Caffe's normalizer; `valid_count` may be an array (kept on the device)."""
        counted = valid_count if self.ignore_label is not None else None
        return normalizer(self, self.normalization, self.outer, self.inner, counted)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        self.prob = softmax(xp, bottom[0].data, self.axis)
        prob3 = self.prob.reshape(self.outer, self.classes, self.inner)
        labels, valid = class_labels(self, bottom[1], self.outer, self.inner, self.classes,
                                     self.ignore_label)
        self.labels, self.valid = labels, valid
        p = xp.take_along_axis(prob3, labels[:, None, :], axis=1)[:, 0, :]
        logp = xp.log(xp.maximum(p, p.dtype.type(FLT_MIN)))
        if self.ignore_label is not None:
            logp = xp.where(valid, logp, 0)
        loss = -xp.sum(logp, dtype=np.float64)
        self.valid_count = valid.sum() if self.ignore_label is not None else None
        top[0].data[...] = loss / self._normalizer(self.valid_count)
        if len(top) > 1:
            top[1].data[...] = self.prob

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        if len(propagate_down) > 1 and propagate_down[1]:
            bottom[1].diff[...] = 0  # labels are constants: no gradient flows to them
        if not propagate_down[0]:
            return
        prob3 = self.prob.reshape(self.outer, self.classes, self.inner)
        onehot = xp.arange(self.classes)[None, :, None] == self.labels[:, None, :]
        grad = prob3 - onehot
        if self.ignore_label is not None:
            grad *= self.valid[:, None, :]
        scale = top[0].diff.reshape(-1)[0] / self._normalizer(self.valid_count)
        grad *= xp.asarray(scale, dtype=grad.dtype)
        bottom[0].diff[...] = grad.reshape(bottom[0].shape)

"""InfogainLoss: softmax, then the cross-entropy weighted by an infogain matrix H (K x K).

A position with label y costs -sum_k H[y, k] log p_k, where p is the softmax of
bottom 0 along infogain_loss_param.axis (default 1) and p_k is taken no smaller
than 1e-20 (Caffe's kLOG_THRESHOLD); with H the identity this is SoftmaxWithLoss.
H is bottom 2 when there is one (it may change between passes; no gradient
flows to it), else the BlobProto in infogain_loss_param.source (a .binaryproto of
K*K values, any shape; a relative path is to the working directory). Labels,
ignore_label and loss_param.normalization (default VALID) as in SoftmaxWithLoss;
the legacy `normalize` flag is refused, as Caffe does for this layer. An
optional second top holds the probabilities.
"""

from __future__ import annotations

import os

import numpy as np
from google.protobuf.message import DecodeError

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import canonical_axis, count
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.loss_norm import Norm, normalization_mode, normalizer
from pipeline_lib.engine.layers.multinomial_logistic_loss import LOG_THRESHOLD
from pipeline_lib.engine.layers.softmax import softmax
from pipeline_lib.engine.layers.softmax_loss import check_label_count, check_same_num, class_labels
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import BlobShapeError, blob_proto_to_array


@register
class InfogainLossLayer(Layer):
    type = "InfogainLoss"
    is_loss = True
    num_bottom = (2, 3)
    num_top = (1, 2)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        lp = self.param.loss_param
        self.ignore_label = lp.ignore_label if lp.HasField("ignore_label") else None
        self.normalization = normalization_mode(self, Norm.VALID, legacy_normalize=False)
        self.infogain = None if len(bottom) > 2 else self._read_matrix()

    def _read_matrix(self):
        source = self.param.infogain_loss_param.source
        if not source:
            raise self.error("give the infogain matrix H as a third bottom or in "
                             "infogain_loss_param.source (a .binaryproto)")
        path = os.path.abspath(source)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise self.error(f"infogain_loss_param.source {source!r}: cannot read "
                             f"{path!r} ({exc.strerror or exc})") from None
        bp = caffe_pb2.BlobProto()
        try:
            bp.ParseFromString(raw)
            values = blob_proto_to_array(bp)
        except (DecodeError, BlobShapeError) as exc:
            raise self.error(f"infogain_loss_param.source {source!r} is not a binary "
                             f"BlobProto ({exc})") from None
        return self.xp.asarray(values, dtype=self.dtype)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        check_same_num(self, bottom)
        shape = bottom[0].shape
        self.axis = canonical_axis(self, self.param.infogain_loss_param.axis, len(shape))
        self.outer = count(shape, 0, self.axis)
        self.inner = count(shape, self.axis + 1)
        self.classes = shape[self.axis]
        check_label_count(self, bottom[1], self.outer * self.inner)
        h_count = bottom[2].count if len(bottom) > 2 else int(self.infogain.size)
        if h_count != self.classes ** 2:
            where = "bottom[2]" if len(bottom) > 2 else "infogain_loss_param.source"
            raise self.error(f"the infogain matrix ({where}) holds {h_count} values; "
                             f"{self.classes} classes need {self.classes}x{self.classes}")
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(shape)

    def _matrix(self, bottom: list[Blob]):
        h = bottom[2].data if len(bottom) > 2 else self.infogain
        return h.reshape(self.classes, self.classes)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        self.prob = softmax(xp, bottom[0].data, self.axis)
        prob3 = self.prob.reshape(self.outer, self.classes, self.inner)
        self.labels, self.valid = class_labels(self, bottom[1], self.outer, self.inner,
                                               self.classes, self.ignore_label)
        rows = self._matrix(bottom)[self.labels]  # (outer, inner, K): H[y] at each position
        logp = xp.log(xp.maximum(prob3, prob3.dtype.type(LOG_THRESHOLD)))
        per = (rows * xp.moveaxis(logp, 1, 2)).sum(axis=2)
        loss = -xp.sum(xp.where(self.valid, per, 0), dtype=np.float64)
        self.norm = normalizer(self, self.normalization, self.outer, self.inner,
                               self.valid.sum())
        top[0].data[...] = loss / self.norm
        if len(top) > 1:
            top[1].data[...] = self.prob

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        for i in range(1, len(bottom)):
            if propagate_down[i]:
                bottom[i].diff[...] = 0  # labels and H are constants here
        if not propagate_down[0]:
            return
        rows = self._matrix(bottom)[self.labels]  # (outer, inner, K)
        prob3 = self.prob.reshape(self.outer, self.classes, self.inner)
        grad = prob3 * xp.moveaxis(rows.sum(axis=2, keepdims=True), 2, 1) \
            - xp.moveaxis(rows, 2, 1)
        grad = grad * self.valid[:, None, :]
        scale = top[0].diff.reshape(-1)[0] / self.norm
        bottom[0].diff[...] = (grad * xp.asarray(scale, dtype=grad.dtype)).reshape(
            bottom[0].shape)

"""Dropout: at TRAIN, zero each input with probability dropout_ratio and scale the
kept ones by 1 / (1 - dropout_ratio); at TEST, the identity. Works in place.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer
from pipeline_lib.proto import caffe_pb2


@register
class DropoutLayer(NeuronLayer):
    type = "Dropout"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.ratio = float(self.param.dropout_param.dropout_ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise self.error(f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.scale = 1.0 / (1.0 - self.ratio)
        self.mask = None  # kept/scale factors of the last TRAIN forward

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        if self.phase != caffe_pb2.TRAIN:
            if top[0] is not bottom[0]:
                top[0].data[...] = x
            return
        # Draw on the host from the layer's Generator so CPU and GPU runs drop the
        # same units for the same seed.
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.ratio
        self.mask = self.xp.asarray(keep.astype(x.dtype) * x.dtype.type(self.scale))
        top[0].data[...] = x * self.mask

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        if self.phase != caffe_pb2.TRAIN:
            if top[0] is not bottom[0]:
                bottom[0].diff[...] = top[0].diff
            return
        bottom[0].diff[...] = top[0].diff * self.mask

"""Threshold: 1 where x > threshold, else 0. Forward only: as in Caffe, asking it for a
gradient is an error (its derivative is zero almost everywhere and undefined at the step)."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.neuron import NeuronLayer


@register
class ThresholdLayer(NeuronLayer):
    type = "Threshold"
    has_backward = False

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.threshold = float(self.param.threshold_param.threshold)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        x = bottom[0].data
        top[0].data[...] = x > self.dtype.type(self.threshold)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            raise NotImplementedError(
                f"layer {self.name!r} (Threshold) has no backward, as in Caffe; set "
                "propagate_down: false on it or keep it off the path to a loss")

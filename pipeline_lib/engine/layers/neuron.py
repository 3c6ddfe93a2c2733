"""NeuronLayer: the base of the elementwise layers (Caffe's NeuronLayer).

One bottom, one top shaped like it. The work is elementwise, so the layer may
run in place (top is bottom) and may read channels-last blobs, as long as it
never writes through a reshape of them. A neuron layer registers a subclass
with its `forward` and `backward` (and a `setup` if it has parameters).
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer


class NeuronLayer(Layer):
    """One bottom, one top of the same shape, elementwise."""

    num_bottom = (1, 1)
    num_top = (1, 1)
    accepts_channels_last = True

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(bottom[0].shape)

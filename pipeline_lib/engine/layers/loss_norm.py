"""Caffe's loss normalization: what a loss layer divides its sum by (loss_param).

Shared by the loss layers that honour `loss_param.normalization`; the default
when the net says nothing differs by layer (VALID for most, BATCH_SIZE for
SigmoidCrossEntropyLoss), so each layer passes its own.
"""

from __future__ import annotations

from pipeline_lib.engine.layers.base import Layer
from pipeline_lib.proto import caffe_pb2

Norm = caffe_pb2.LossParameter


def normalization_mode(layer: Layer, default: int, legacy_normalize: bool = True) -> int:
    """The layer's mode: `normalization` if set, else the legacy `normalize` flag
    (true = VALID, false = BATCH_SIZE) where the layer still reads it, else `default`."""
    lp = layer.param.loss_param
    if lp.HasField("normalization"):
        return lp.normalization
    if lp.HasField("normalize"):
        if not legacy_normalize:
            raise layer.error("loss_param.normalize is not read by this layer; "
                              "use loss_param.normalization (FULL, VALID, BATCH_SIZE or NONE)")
        return Norm.VALID if lp.normalize else Norm.BATCH_SIZE
    return default


def normalizer(layer: Layer, mode: int, outer: int, inner: int, valid_count=None):
    """The divisor, never below 1. `valid_count` (the positions not ignored; an array
    stays on the device) counts for VALID; None means every position counts."""
    if mode == Norm.FULL:
        n = outer * inner
    elif mode == Norm.VALID:
        if valid_count is not None:
            return layer.xp.maximum(valid_count, 1)
        n = outer * inner
    elif mode == Norm.BATCH_SIZE:
        n = outer
    elif mode == Norm.NONE:
        n = 1
    else:
        raise layer.error(f"unknown loss_param.normalization {mode}")
    return max(n, 1)

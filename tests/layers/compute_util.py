"""Helpers for the convolution, pooling, inner-product and LRN tests."""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, layer_class
from pipeline_lib.proto import caffe_pb2


def make(text: str, xp=np, dtype=np.float64, seed: int = 0) -> Layer:
    """The registered layer for a LayerParameter in prototxt text."""
    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    return layer_class(param.type)(param, caffe_pb2.TRAIN, xp, np.random.default_rng(seed), dtype)


def to_blob(array, xp=np, dtype=np.float64, channels_last: bool = False) -> Blob:
    """A Blob holding a copy of `array`, kept channels-last in memory if asked (4-D)."""
    array = np.asarray(array)
    b = Blob((), xp, dtype)
    b.channels_last = channels_last
    b.reshape(array.shape)
    b.data[...] = xp.asarray(array.astype(dtype))
    return b


def forward(layer: Layer, bottom: list[Blob], num_top: int = 1,
            channels_last: bool = False) -> list[Blob]:
    """setup + reshape + forward into new tops (channels-last ones if asked)."""
    top = [Blob((), layer.xp, layer.dtype) for _ in range(num_top)]
    for t in top:
        t.channels_last = channels_last
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return top


def backward(layer: Layer, top: list[Blob], bottom: list[Blob], top_diffs) -> None:
    """Set top diffs, zero param diffs, run backward for every bottom."""
    for t, d in zip(top, top_diffs):
        t.diff[...] = layer.xp.asarray(d)
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(top, [True] * len(bottom), bottom)


def host(array) -> np.ndarray:
    return to_host(array)

"""Helpers for the layer tests: build a layer from prototxt text, make blobs, run it."""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, layer_class
from pipeline_lib.proto import caffe_pb2


def make_layer(text: str, xp=np, dtype=np.float64, phase=caffe_pb2.TRAIN, seed: int = 0) -> Layer:
    """The registered layer for a LayerParameter written in prototxt text."""
    param = text_format.Parse(text, caffe_pb2.LayerParameter())
    return layer_class(param.type)(param, phase, xp, np.random.default_rng(seed), dtype)


def blob(array, xp=np, dtype=np.float64, name: str = "") -> Blob:
    """A Blob holding a copy of `array`."""
    array = np.asarray(array)
    b = Blob(array.shape, xp, dtype, name)
    b.data[...] = xp.asarray(array.astype(dtype))
    return b


def run(layer: Layer, bottom: list[Blob], num_top: int | None = None) -> list[Blob]:
    """setup + reshape + forward; tops are new blobs named after the layer's tops."""
    n = len(layer.param.top) if num_top is None else num_top
    top = [Blob((), layer.xp, layer.dtype, name) for name in list(layer.param.top)[:n]]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return top


def host(array) -> np.ndarray:
    return to_host(array)

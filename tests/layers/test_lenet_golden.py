"""Conformance: Caffe's trained LeNet, run through our layers, gives Caffe's activations.

The model's own LayerParameters and blobs (tests/data/golden/lenet_iter_10000.caffemodel)
drive Convolution, Pooling and InnerProduct on the first 100 MNIST test images;
every activation is compared with what Caffe's extract_features wrote.
"""

from pathlib import Path

import numpy as np
import pytest
from compute_util import host

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import layer_class
from pipeline_lib.proto import caffe_pb2

GOLDEN = Path(__file__).parents[1] / "data" / "golden"


@pytest.fixture(scope="module")
def model():
    net = caffe_pb2.NetParameter()
    net.ParseFromString((GOLDEN / "lenet_iter_10000.caffemodel").read_bytes())
    return {layer.name: layer for layer in net.layer}


@pytest.fixture(scope="module")
def caffe_blobs():
    with np.load(GOLDEN / "caffe_lenet_test100_blobs.npz") as blobs:
        return dict(blobs)


def build(param: caffe_pb2.LayerParameter, xp):
    """Our layer for a LayerParameter of the model, holding the model's blobs."""
    layer = layer_class(param.type)(param, caffe_pb2.TEST, xp, np.random.default_rng(0),
                                    np.float32)
    for proto in param.blobs:
        blob = Blob(tuple(proto.shape.dim), xp, np.float32)
        blob.data[...] = xp.asarray(np.asarray(proto.data, np.float32).reshape(blob.shape))
        layer.blobs.append(blob)
    return layer


def run(layer, bottom: Blob) -> Blob:
    top = Blob((), layer.xp, np.float32)
    layer.setup([bottom], [top])
    layer.reshape([bottom], [top])
    layer.forward([bottom], [top])
    return top


def test_lenet_forward_matches_caffe(xp, model, caffe_blobs):
    data = caffe_blobs["data"].astype(np.float32)[:, None] * np.float32(0.00390625)
    blob = Blob(data.shape, xp, np.float32)
    blob.data[...] = xp.asarray(data)
    for name in ("conv1", "pool1", "conv2", "pool2", "ip1", "ip2"):
        layer = build(model[name], xp)
        blob = run(layer, blob)
        if name == "ip1":  # relu1 works in place on ip1 in the model; Caffe saved it after
            xp.maximum(blob.data, 0, out=blob.data)
        want = caffe_blobs[name]
        got = host(blob.data).reshape(want.shape)
        assert got.dtype == np.float32
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(got - want).max() <= 2e-5 * scale, name
    np.testing.assert_array_equal(host(blob.data).argmax(axis=1), caffe_blobs["label"])

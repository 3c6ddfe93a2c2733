"""Parameter: a zero blob of parameter_param.shape as the top, learnable in a net (its
diff fed by the consumer), kept apart from the top's memory, gradients."""

import numpy as np
from basic_layer_util import host, make_layer, run
from google.protobuf import text_format
from gradient_check import check_gradient

from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2

TEXT = ('name: "w" type: "Parameter" top: "w" '
        'parameter_param { shape { dim: 2 dim: 3 } }')


def test_top_is_the_blob(xp):
    layer = make_layer(TEXT, xp)
    (top,) = run(layer, [])
    assert layer.blobs[0].shape == top.shape == (2, 3)
    np.testing.assert_array_equal(host(top.data), 0)
    layer.blobs[0].data[...] = 4
    layer.forward([], [top])
    top.data[...] = 1  # an in-place consumer must not change the weights
    assert float(layer.blobs[0].data.sum()) == 24


def test_learned_in_a_net():
    net_text = f"""
    layer {{ {TEXT} }}
    layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
    layer {{ name: "d" type: "EuclideanLoss" bottom: "w" bottom: "x" top: "loss" }}
    """
    net = Net(text_format.Parse(net_text, caffe_pb2.NetParameter()), dtype=np.float64)
    assert net.params_lr == [1.0]
    net.blobs["x"].data[...] = np.arange(6.0).reshape(2, 3)
    net.params["w"][0].data[...] = 1.0
    net.clear_param_diffs()
    loss = net.forward_backward()
    assert loss == ((np.arange(6.0) - 1) ** 2).sum() / 4  # Caffe's 1/(2N), N = 2
    np.testing.assert_allclose(net.params["w"][0].diff, (1 - np.arange(6.0).reshape(2, 3)) / 2)


def test_gradient():
    layer = make_layer(TEXT)
    check_gradient(layer, [])

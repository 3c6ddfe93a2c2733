"""Every neuron layer (a NeuronLayer): top shaped like the bottom, and in place the same
values and gradients as with a top of its own (or, for AbsVal, in place refused); and a
net that chains every elementwise type builds, runs forward and backward."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from google.protobuf import text_format

import pipeline_lib.engine.layers  # noqa: F401  (registers every layer type)
from pipeline_lib.engine.layers.base import LAYER_TYPES, LayerSetupError
from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2

NEURONS = sorted(t for t, cls in LAYER_TYPES.items()
                 if issubclass(cls, pipeline_lib.engine.layers.neuron.NeuronLayer))
POSITIVE_INPUT = {"Log"}  # its default, ln(x), needs x > 0


def test_the_elementwise_layers_are_neurons():
    assert {"ReLU", "Sigmoid", "TanH", "Dropout", "AbsVal", "BNLL", "ELU", "Exp", "Log",
            "Power", "Swish", "Threshold", "Clip", "PReLU"} <= set(NEURONS)


@pytest.mark.parametrize("type_name", NEURONS)
def test_in_place_matches_a_separate_top(xp, type_name):
    cls = LAYER_TYPES[type_name]
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 3, 4, 5))
    x = np.sign(u) * (0.1 + np.abs(u))  # away from ReLU's kink
    if type_name in POSITIVE_INPUT:
        x = np.abs(x)
    dy = rng.standard_normal(x.shape)
    backward = getattr(cls, "has_backward", True)

    layer = make_layer(f'name: "n" type: "{type_name}" bottom: "x" top: "y"', xp)
    bottom = [blob(x, xp)]
    (top,) = run(layer, bottom)
    assert top.shape == x.shape
    if backward:
        top.diff[...] = xp.asarray(dy)
        layer.backward([top], [True], bottom)

    in_place = make_layer(f'name: "n" type: "{type_name}" bottom: "x" top: "x"', xp)
    b = blob(x, xp)
    if not getattr(cls, "in_place", True):
        with pytest.raises(LayerSetupError, match="in-place"):
            in_place.setup([b], [b])
        return
    in_place.setup([b], [b])
    in_place.reshape([b], [b])
    in_place.forward([b], [b])
    np.testing.assert_array_equal(host(b.data), host(top.data))
    if backward:
        b.diff[...] = xp.asarray(dy)
        in_place.backward([b], [True], [b])
        np.testing.assert_allclose(host(b.diff), host(bottom[0].diff), rtol=1e-15, atol=0)


CHAIN = """
name: "elementwise"
layer { name: "in" type: "Input" top: "x" top: "target"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 }
                      shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "prelu" type: "PReLU" bottom: "x" top: "p" param { lr_mult: 1 decay_mult: 0 } }
layer { name: "shared" type: "PReLU" bottom: "p" top: "p"
        prelu_param { channel_shared: true } }
layer { name: "abs" type: "AbsVal" bottom: "p" top: "a" }
layer { name: "bnll" type: "BNLL" bottom: "a" top: "a" }
layer { name: "log" type: "Log" bottom: "a" top: "a" log_param { base: 2 shift: 1 } }
layer { name: "elu" type: "ELU" bottom: "a" top: "a" elu_param { alpha: 0.5 } }
layer { name: "exp" type: "Exp" bottom: "a" top: "a" exp_param { scale: -0.5 } }
layer { name: "power" type: "Power" bottom: "a" top: "a"
        power_param { power: 1.5 scale: 2 shift: 0.1 } }
layer { name: "swish" type: "Swish" bottom: "a" top: "a" swish_param { beta: 2 } }
layer { name: "clip" type: "Clip" bottom: "a" top: "a" clip_param { min: 0.2 max: 3 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "target" top: "loss" }
layer { name: "step" type: "Threshold" bottom: "x" top: "step" propagate_down: false
        threshold_param { threshold: 0.5 } }
"""


def test_a_net_of_every_elementwise_type_builds_and_learns(tmp_path):
    param = text_format.Parse(CHAIN, caffe_pb2.NetParameter())
    net = Net(param, caffe_pb2.TRAIN, dtype=np.float64)
    types = [layer.type for layer in net.layers]
    assert {"AbsVal", "BNLL", "ELU", "Exp", "Log", "Power", "Swish", "Threshold", "Clip",
            "PReLU"} <= set(types)
    assert [b.shape for b in net.learnable_params] == [(3,), ()]
    assert net.output_blob_names == ["loss", "step"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4))
    net.blobs["x"].data[...] = x
    net.blobs["target"].data[...] = rng.standard_normal((2, 3, 4, 4))
    net.clear_param_diffs()
    loss = net.forward_backward()
    assert np.isfinite(loss) and loss > 0
    np.testing.assert_array_equal(net.blobs["step"].data, (x > 0.5).astype(float))
    # no force_backward: Caffe's Threshold has no backward and the input needs no gradient
    assert net.bottom_needs_backward[types.index("Threshold")] == [False]
    assert all(np.isfinite(p.diff).all() and np.any(p.diff != 0) for p in net.learnable_params)

    # the 0-axis shared slope survives a caffemodel round trip
    saved = net.to_proto()
    net.learnable_params[1].data[...] = 0.9
    net.copy_trained_layers_from(saved)
    assert float(net.learnable_params[1].data) == 0.25

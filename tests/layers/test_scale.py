"""Scale: Caffe's broadcast cases (an operand bottom of the whole shape, of leading, middle
and trailing axes, a scalar), the learned scale (num_axes, filler, default 1), bias_term
with bias_filler for one and two bottoms, in place (the bottom kept for the gradient),
channels-last, errors, gradients; and ResNet's BatchNorm + Scale(bias_term) block in a net."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from compute_util import to_blob
from google.protobuf import text_format
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError
from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2

SHAPE = (2, 3, 4, 5)
CASES = [
    (0, (2, 3, 4, 5), (2, 3, 4, 5)),  # elementwise
    (0, (2, 3), (2, 3, 1, 1)),        # begin
    (1, (3, 4), (1, 3, 4, 1)),        # middle
    (2, (4, 5), (1, 1, 4, 5)),        # end
    (-3, (3,), (1, 3, 1, 1)),
    (2, (), (1, 1, 1, 1)),            # scalar: axis ignored
]
GAUSS = 'filler { type: "gaussian" } bias_filler { type: "gaussian" }'


def text(param="", bottoms=2, top="y"):
    b = 'bottom: "x" ' + ('bottom: "s" ' if bottoms == 2 else "")
    body = f"scale_param {{ {param} }}" if param else ""
    return f'name: "scale" type: "Scale" {b}top: "{top}" {body}'


@pytest.mark.parametrize("axis, shape, view", CASES)
def test_forward_with_an_operand_bottom(xp, axis, shape, view):
    rng = np.random.default_rng(0)
    x, s = rng.standard_normal(SHAPE), rng.uniform(1, 10, shape)
    (y,) = run(make_layer(text(f"axis: {axis}"), xp), [blob(x, xp), blob(s, xp)])
    np.testing.assert_allclose(host(y.data), x * s.reshape(view), rtol=1e-15)


def test_hand_computed_with_bias():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    layer = make_layer(text("axis: 0 bias_term: true "
                            'bias_filler { type: "constant" value: 0.5 }'))
    (y,) = run(layer, [blob(x), blob([10.0, -1.0])])
    np.testing.assert_array_equal(y.data, [[10.5, 20.5], [-2.5, -3.5]])
    assert [b.shape for b in layer.blobs] == [(2,)]  # the bias only: the scale is a bottom


@pytest.mark.parametrize("param, shape", [("", (3,)), ("num_axes: 2", (3, 4)),
                                          ("num_axes: -1", (3, 4, 5)), ("num_axes: 0", ()),
                                          ("axis: -1", (5,))])
def test_learned_scale_shape_and_default_one(param, shape):
    layer = make_layer(text(param + " bias_term: true", bottoms=1))
    x = np.random.default_rng(1).standard_normal(SHAPE)
    (y,) = run(layer, [blob(x)])
    assert [b.shape for b in layer.blobs] == [shape, shape]
    np.testing.assert_array_equal(layer.blobs[0].data, 1)
    np.testing.assert_array_equal(layer.blobs[1].data, 0)
    np.testing.assert_array_equal(y.data, x)


def test_learned_scale_and_bias_forward(xp):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(SHAPE)
    layer = make_layer(text("axis: 1 num_axes: 2 bias_term: true " + GAUSS, bottoms=1), xp)
    (y,) = run(layer, [blob(x, xp)])
    s, b = host(layer.blobs[0].data), host(layer.blobs[1].data)
    assert s.shape == b.shape == (3, 4) and np.abs(b).sum() > 0
    want = x * s[None, :, :, None] + b[None, :, :, None]
    np.testing.assert_allclose(host(y.data), want, rtol=1e-14)


@pytest.mark.parametrize("param, bottoms, message", [
    ("num_axes: -2", [SHAPE], "num_axes must be -1"),
    ("axis: 3 num_axes: 2", [SHAPE], "reaches past"),
    ("axis: -5", [SHAPE], "out of range"),
    ("axis: 1", [SHAPE, (4,)], "does not fit"),
    ("axis: 2", [SHAPE, (4, 5, 1)], "reaches past"),
])
def test_bad_parameters_and_shapes(param, bottoms, message):
    layer = make_layer(text(param, bottoms=len(bottoms)))
    with pytest.raises(LayerSetupError, match=message):
        run(layer, [blob(np.zeros(s)) for s in bottoms])


@pytest.mark.parametrize("bias", [False, True])
def test_in_place_and_channels_last_match(bias, channels_last):
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    param = GAUSS + (" bias_term: true" if bias else "")
    results = []
    for in_place in (False, True):
        layer = make_layer(text(param, bottoms=1, top="x" if in_place else "y"))
        b = to_blob(x, channels_last=channels_last and in_place)
        t = b if in_place else Blob((), np, np.float64)
        layer.setup([b], [t])
        layer.reshape([b], [t])
        layer.forward([b], [t])
        y = t.data.copy()
        t.diff[...] = dy
        layer.backward([t], [True], [b])
        results.append((y, b.diff.copy(), *(p.diff.copy() for p in layer.blobs)))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    np.testing.assert_allclose(results[0][2], (dy * x).sum(axis=(0, 2, 3)), rtol=1e-12)


def test_scale_diff_accumulates_operand_bottom_diff_is_overwritten():
    x = np.full((2, 3), 2.0)
    layer = make_layer(text(bottoms=1))
    bottom = [blob(x)]
    (y,) = run(layer, bottom)
    y.diff[...] = 1
    layer.backward([y], [True], bottom)
    layer.backward([y], [True], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, [8, 8, 8])
    two = make_layer(text("axis: 1"))
    bottom = [blob(x), blob(np.ones(3))]
    (y,) = run(two, bottom)
    y.diff[...] = 1
    two.backward([y], [True, True], bottom)
    two.backward([y], [True, True], bottom)
    np.testing.assert_array_equal(bottom[1].diff, [4, 4, 4])


@pytest.mark.parametrize("axis, shape, _", CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_gradient_with_an_operand_bottom(axis, shape, _, bias):
    rng = np.random.default_rng(4)
    param = f"axis: {axis}" + (' bias_term: true bias_filler { type: "gaussian" }'
                               if bias else "")
    check_gradient(make_layer(text(param)),
                   [blob(rng.standard_normal(SHAPE)), blob(rng.standard_normal(shape))])


@pytest.mark.parametrize("param", ["", "axis: 0 num_axes: -1", "num_axes: 0",
                                   "axis: 1 num_axes: 2 bias_term: true"])
def test_gradient_with_a_learned_scale(param):
    x = np.random.default_rng(5).standard_normal(SHAPE)
    check_gradient(make_layer(text(param + " " + GAUSS, bottoms=1)), [blob(x)])


RESNET_BLOCK = """
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 5 dim: 5 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 bias_term: false
                      weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1"
  batch_norm_param { use_global_stats: true } }
layer { name: "scale_conv1" type: "Scale" bottom: "conv1" top: "conv1"
  scale_param { bias_term: true } }
layer { name: "conv1_relu" type: "ReLU" bottom: "conv1" top: "conv1" }
"""


def test_resnet_batchnorm_scale_block_in_a_net():
    """ResNet-50 deploy's conv -> BatchNorm -> Scale(bias_term) -> ReLU, all in place."""
    from pipeline_lib.engine.layers import reference

    net = Net(text_format.Parse(RESNET_BLOCK, caffe_pb2.NetParameter()), caffe_pb2.TEST,
              dtype=np.float64)
    rng = np.random.default_rng(6)
    mean, var, factor = rng.standard_normal(4), rng.uniform(0.5, 2, 4), 3.0
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    bn, scale = net.params["bn_conv1"], net.params["scale_conv1"]
    assert [b.shape for b in bn] == [(4,), (4,), (1,)]
    assert [b.shape for b in scale] == [(4,), (4,)]
    bn[0].data[...], bn[1].data[...], bn[2].data[...] = mean * factor, var * factor, factor
    scale[0].data[...], scale[1].data[...] = gamma, beta
    x = rng.standard_normal((2, 3, 5, 5))
    net.blobs["data"].data[...] = x
    net.forward()

    c = reference.conv_forward(x, np.asarray(net.params["conv1"][0].data), pad=(1, 1))
    col = (slice(None), None, None)
    want = np.maximum((c - mean[col]) / np.sqrt(var[col] + 1e-5) * gamma[col] + beta[col], 0)
    assert net.blobs["conv1"].channels_last  # the chain keeps the convolution's layout
    np.testing.assert_allclose(net.blobs["conv1"].data, want, rtol=1e-10, atol=1e-12)
    # the statistics do not learn; the scale and bias do
    assert net.params_lr == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]

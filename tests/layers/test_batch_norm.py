"""BatchNorm: batch statistics (Caffe's own zero-mean/unit-variance check), the three stored
blobs and their moving-average update with the m/(m-1) correction, global statistics (the
TEST default) divided by the scale factor, lr_mult forced to 0 in a net, in place,
channels-last, gradients in both modes."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from compute_util import to_blob
from google.protobuf import text_format
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError
from pipeline_lib.engine.net import Net, NetError
from pipeline_lib.proto import caffe_pb2

EPS = 1e-5


def text(param="", top="y"):
    body = f"batch_norm_param {{ {param} }}" if param else ""
    return f'name: "bn" type: "BatchNorm" bottom: "x" top: "{top}" {body}'


def test_caffe_forward_check_zero_mean_unit_variance(xp):
    # Caffe's TestForward: a 5x2x3x4 Gaussian bottom; per channel mean 0 and variance 1 (1e-3)
    x = np.random.default_rng(0).standard_normal((5, 2, 3, 4))
    (y,) = run(make_layer(text(), xp), [blob(x, xp)])
    y = host(y.data)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-3)
    np.testing.assert_allclose((y * y).mean(axis=(0, 2, 3)), 1, atol=1e-3)


def test_hand_computed_values_and_stored_statistics():
    # channel 0: 1, 2, 3, 4 (mean 2.5, variance 1.25); channel 1: 0, 0, 6, 6 (mean 3, var 9)
    x = np.array([[[1, 2], [0, 0]], [[3, 4], [6, 6]]], dtype=float)  # (N=2, C=2, 2)
    layer = make_layer(text())
    (y,) = run(layer, [blob(x)])
    want = np.array([[[-1.5, -0.5], [-3, -3]], [[0.5, 1.5], [3, 3]]])
    want /= np.sqrt(np.array([1.25, 9.0]) + EPS)[None, :, None]
    np.testing.assert_allclose(y.data, want, rtol=1e-12)
    mean_sum, var_sum, factor = (b.data for b in layer.blobs)
    np.testing.assert_allclose(mean_sum, [2.5, 3.0])
    np.testing.assert_allclose(var_sum, [1.25 * 4 / 3, 9.0 * 4 / 3])  # m/(m-1), m = 4
    np.testing.assert_allclose(factor, [1.0])

    # a second forward decays the sums by moving_average_fraction (0.999) and adds again
    x2 = x + 1
    layer.forward([blob(x2)], [y])
    np.testing.assert_allclose(layer.blobs[2].data, [1.999])
    np.testing.assert_allclose(layer.blobs[0].data, [0.999 * 2.5 + 3.5, 0.999 * 3 + 4])
    np.testing.assert_allclose(layer.blobs[1].data, 1.999 * np.array([1.25, 9.0]) * 4 / 3)


def test_test_phase_uses_the_stored_estimates_divided_by_the_factor(xp):
    x = np.random.default_rng(1).standard_normal((3, 2, 2))
    layer = make_layer(text(), xp, phase=caffe_pb2.TEST)
    bottom = [blob(x, xp)]
    top = [Blob((), xp, np.float64)]
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = xp.asarray([1.0, -2.0])
    layer.blobs[1].data[...] = xp.asarray([8.0, 0.5])
    layer.blobs[2].data[...] = 2.0
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    mean, var = np.array([0.5, -1.0]), np.array([4.0, 0.25])
    want = (x - mean[:, None]) / np.sqrt(var[:, None] + EPS)
    np.testing.assert_allclose(host(top[0].data), want, rtol=1e-12)
    assert host(layer.blobs[2].data)[0] == 2.0  # not updated with global statistics


def test_a_zero_factor_means_zero_estimates():
    layer = make_layer(text("use_global_stats: true eps: 0.25"))
    (y,) = run(layer, [blob(np.full((2, 3), 3.0))])
    np.testing.assert_allclose(y.data, 3.0 / 0.5)


@pytest.mark.parametrize("phase, param, global_stats", [
    (caffe_pb2.TRAIN, "", False), (caffe_pb2.TEST, "", True),
    (caffe_pb2.TRAIN, "use_global_stats: true", True),
    (caffe_pb2.TEST, "use_global_stats: false", False)])
def test_use_global_stats_defaults_by_phase(phase, param, global_stats):
    layer = make_layer(text(param), phase=phase)
    run(layer, [blob(np.arange(12.0).reshape(3, 2, 2))])
    assert layer.use_global_stats is global_stats
    assert layer.blobs[2].data[0] == (0.0 if global_stats else 1.0)


def test_parameters_and_blob_shapes():
    layer = make_layer(text("moving_average_fraction: 0.5 eps: 0.01"))
    run(layer, [blob(np.ones((2, 4, 3, 3)))])
    assert (layer.fraction, layer.eps) == (0.5, pytest.approx(0.01))
    assert [b.shape for b in layer.blobs] == [(4,), (4,), (1,)]


def test_lr_mult_is_forced_to_zero_in_a_net():
    net_text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 '
                'dim: 3 } } } layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
                'param { lr_mult: 0 decay_mult: 0 } }')
    net = Net(text_format.Parse(net_text, caffe_pb2.NetParameter()))
    assert net.params_lr == [0.0, 0.0, 0.0]
    assert len(net.params["bn"]) == 3
    bad = net_text.replace("lr_mult: 0 ", "")
    with pytest.raises(NetError, match="param 0 has lr_mult 1.*not learnable"):
        Net(text_format.Parse(bad, caffe_pb2.NetParameter()))


def test_bad_shapes_are_errors():
    with pytest.raises(LayerSetupError, match="at least 2 axes"):
        run(make_layer(text()), [blob(np.ones(4))])
    layer = make_layer(text())
    run(layer, [blob(np.ones((2, 3)))])
    with pytest.raises(LayerSetupError, match="3 channels"):
        layer.reshape([blob(np.ones((2, 4)))], [Blob()])
    given = make_layer(text())
    given.blobs = [Blob((3,)), Blob((3,)), Blob((2,))]
    with pytest.raises(LayerSetupError, match="statistics blobs have shapes"):
        run(given, [blob(np.ones((2, 3)))])


@pytest.mark.parametrize("global_stats", [False, True])
def test_in_place_and_channels_last_match(global_stats, channels_last):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 2, 3))
    dy = rng.standard_normal(x.shape)
    param = f"use_global_stats: {str(global_stats).lower()}"

    def stats(layer):
        layer.blobs[0].data[...] = [0.1, 0.2, -0.3, 0.4]
        layer.blobs[1].data[...] = [1.0, 2.0, 0.5, 3.0]
        layer.blobs[2].data[...] = 1.5

    separate = make_layer(text(param))
    bottom = [blob(x)]
    top = [Blob((), np, np.float64)]
    separate.setup(bottom, top)
    stats(separate)
    separate.reshape(bottom, top)
    separate.forward(bottom, top)
    top[0].diff[...] = dy
    separate.backward(top, [True], bottom)

    in_place = make_layer(text(param, top="x"))
    b = to_blob(x, channels_last=channels_last)
    in_place.setup([b], [b])
    stats(in_place)
    in_place.reshape([b], [b])
    in_place.forward([b], [b])
    np.testing.assert_allclose(b.data, top[0].data, rtol=1e-13)
    b.data[...] = 0  # a later in-place layer may overwrite it; backward must not care
    b.diff[...] = dy
    in_place.backward([b], [True], [b])
    np.testing.assert_allclose(b.diff, bottom[0].diff, rtol=1e-12, atol=1e-14)
    for p, q in zip(in_place.blobs, separate.blobs):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-13)


@pytest.mark.parametrize("shape", [(5, 2, 3, 4), (4, 3)])
def test_gradient_with_batch_statistics(shape):
    x = np.random.default_rng(3).standard_normal(shape)
    check_gradient(make_layer(text()), [blob(x)])


def test_gradient_with_global_statistics():
    x = np.random.default_rng(4).standard_normal((2, 3, 2, 2))
    layer = make_layer(text("use_global_stats: true"))
    layer.setup([blob(x)], [Blob()])
    layer.blobs[1].data[...] = [0.5, 1.0, 2.0]
    layer.blobs[2].data[...] = 1.0
    # the statistics are not learned: Caffe gives them no gradient
    check_gradient(layer, [blob(x)], check_params=False)


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_solver_steps_leave_the_statistics_to_the_layer(solver_type):
    """With weight decay and momentum, an update moves the learned weights but not the
    statistics (lr_mult 0): only the forward's moving average changes them."""
    from pipeline_lib.engine.solvers import make_update_rule

    net_text = ('layer { name: "in" type: "Input" top: "x" top: "t" input_param { '
                'shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } } '
                'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" } '
                'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
                '{ num_output: 2 weight_filler { type: "gaussian" } } } '
                'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }')
    net = Net(text_format.Parse(net_text, caffe_pb2.NetParameter()), dtype=np.float64)
    rng = np.random.default_rng(5)
    sp = caffe_pb2.SolverParameter(type=solver_type, momentum=0.9, weight_decay=0.1)
    rule = make_update_rule(sp, net.learnable_params, net.params_lr, net.params_weight_decay)
    for it in range(2):
        net.blobs["x"].data[...] = rng.standard_normal((4, 3))
        net.blobs["t"].data[...] = rng.standard_normal((4, 2))
        net.clear_param_diffs()
        net.forward_backward()
        stats = [b.data.copy() for b in net.params["bn"]]
        weights = net.params["ip"][0].data.copy()
        rule.apply(0.1, it)
        for before, stat in zip(stats, net.params["bn"]):
            np.testing.assert_array_equal(stat.data, before)
        assert np.abs(net.params["ip"][0].data - weights).max() > 1e-4
    assert float(net.params["bn"][2].data[0]) == pytest.approx(1.999)

"""PReLU: the slope blob (per channel or shared, filler default 0.25), forward against
NumPy on 2-D and 4-D bottoms and channels-last blobs, backward to the bottom and the slope
(accumulated), in place (the input kept for backward), gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError


def layer_text(param="", top="y"):
    return f'name: "p" type: "PReLU" bottom: "x" top: "{top}" {param}'


def prelu(x, a):
    a = np.asarray(a).reshape((1, -1) + (1,) * (x.ndim - 2)) if np.ndim(a) else a
    return np.where(x > 0, x, a * x)


def test_slope_blob_defaults_to_a_constant_quarter_per_channel():
    layer = make_layer(layer_text())
    run(layer, [blob(np.zeros((2, 3, 4, 4)))])
    assert [b.shape for b in layer.blobs] == [(3,)]
    np.testing.assert_array_equal(layer.blobs[0].data, [0.25] * 3)


def test_channel_shared_has_one_zero_axis_slope():
    layer = make_layer(layer_text("prelu_param { channel_shared: true }"))
    run(layer, [blob(np.zeros((2, 3, 4)))])
    assert [b.shape for b in layer.blobs] == [()]
    assert float(layer.blobs[0].data) == 0.25


@pytest.mark.parametrize("shared", [False, True])
def test_filler_is_used(shared):
    param = (f"prelu_param {{ channel_shared: {str(shared).lower()} "
             "filler { type: \"uniform\" min: -0.5 max: -0.1 } }")
    layer = make_layer(layer_text(param), seed=3)
    run(layer, [blob(np.zeros((2, 5)))])
    a = layer.blobs[0].data
    assert a.shape == (() if shared else (5,))
    assert np.all((a >= -0.5) & (a <= -0.1))


def test_given_slope_of_the_wrong_size_is_refused():
    layer = make_layer(layer_text())
    layer.blobs = [Blob((4,), np, np.float64)]
    with pytest.raises(LayerSetupError, match="slope blob has 4 values, expected 3"):
        run(layer, [blob(np.zeros((2, 3)))])


def test_a_bottom_needs_two_axes():
    with pytest.raises(LayerSetupError, match="at least 2 axes"):
        run(make_layer(layer_text()), [blob(np.zeros(5))])


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4, 5), (2, 3, 4)])
@pytest.mark.parametrize("shared", [False, True])
def test_forward_matches_numpy(xp, shape, shared):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    layer = make_layer(layer_text(f"prelu_param {{ channel_shared: {str(shared).lower()} }}"),
                       xp)
    bottom = [blob(x, xp)]
    top = [Blob((), xp, np.float64)]
    layer.setup(bottom, top)
    a = rng.uniform(-1, 1, layer.blobs[0].shape)
    layer.blobs[0].data[...] = xp.asarray(a)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_allclose(host(top[0].data), prelu(x, a), rtol=1e-15)


def test_channels_last_bottom_and_top_give_the_same_values():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    a = np.array([0.1, -0.2, 0.7])
    results = []
    for last in (False, True):
        layer = make_layer(layer_text())
        b = Blob((), np, np.float64)
        b.channels_last = last
        b.reshape(x.shape)
        b.data[...] = x
        t = Blob((), np, np.float64)
        t.channels_last = last
        layer.setup([b], [t])
        layer.blobs[0].data[...] = a
        layer.reshape([b], [t])
        layer.forward([b], [t])
        t.diff[...] = x[::-1]
        layer.backward([t], [True], [b])
        results.append((np.array(t.data), np.array(b.diff), np.array(layer.blobs[0].diff)))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    np.testing.assert_allclose(results[0][0], prelu(x, a))


@pytest.mark.parametrize("shared", [False, True])
def test_backward_values_and_slope_diff_accumulates(xp, shared):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 4))
    x[0, 0, 0] = 0.0  # x <= 0 takes the slope branch, as in Caffe
    dy = rng.standard_normal(x.shape)
    layer = make_layer(layer_text(f"prelu_param {{ channel_shared: {str(shared).lower()} }}"),
                       xp)
    bottom = [blob(x, xp)]
    (top,) = run(layer, bottom)
    a = host(layer.blobs[0].data)
    top.diff[...] = xp.asarray(dy)
    layer.backward([top], [True], bottom)
    layer.backward([top], [False], bottom)  # the slope still learns; its diff adds up
    neg = x <= 0
    np.testing.assert_allclose(host(bottom[0].diff), dy * np.where(neg, 0.25, 1.0))
    per_channel = (dy * x * neg).sum(axis=(0, 2))
    want = 2 * (per_channel.sum() if shared else per_channel)
    np.testing.assert_allclose(host(layer.blobs[0].diff), want, rtol=1e-14)
    assert a.shape == (() if shared else (2,))


@pytest.mark.parametrize("shared", [False, True])
def test_in_place_matches_a_separate_top(xp, shared):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 2, 2))
    dy = rng.standard_normal(x.shape)
    param = f"prelu_param {{ channel_shared: {str(shared).lower()} }}"

    layer = make_layer(layer_text(param), xp)
    bottom = [blob(x, xp)]
    (top,) = run(layer, bottom)
    top.diff[...] = xp.asarray(dy)
    layer.backward([top], [True], bottom)

    in_place = make_layer(layer_text(param, top="x"), xp)
    b = blob(x, xp)
    in_place.setup([b], [b])
    in_place.reshape([b], [b])
    in_place.forward([b], [b])
    np.testing.assert_array_equal(host(b.data), host(top.data))
    b.diff[...] = xp.asarray(dy)
    in_place.backward([b], [True], [b])
    np.testing.assert_array_equal(host(b.diff), host(bottom[0].diff))
    np.testing.assert_array_equal(host(in_place.blobs[0].diff), host(layer.blobs[0].diff))


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (4, 3)])
def test_gradient(shared, shape):
    rng = np.random.default_rng(5)
    u = rng.standard_normal(shape)
    x = np.sign(u) * (0.1 + np.abs(u))
    param = (f"prelu_param {{ channel_shared: {str(shared).lower()} "
             "filler { type: \"uniform\" min: -0.8 max: 0.8 } }")
    check_gradient(make_layer(layer_text(param)), [blob(x)])

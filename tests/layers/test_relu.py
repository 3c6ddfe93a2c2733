"""ReLU: forward against NumPy, in-place use, finite-difference gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def away_from_zero(rng, shape):
    u = rng.standard_normal(shape)
    return np.sign(u) * (0.1 + np.abs(u))


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_forward_matches_numpy(xp, slope):
    x = away_from_zero(np.random.default_rng(0), (2, 3, 4, 5))
    layer = make_layer(f'name: "r" type: "ReLU" bottom: "x" top: "y" '
                       f'relu_param {{ negative_slope: {slope} }}', xp, np.float32)
    (y,) = run(layer, [blob(x, xp, np.float32)])
    assert y.data.dtype == np.float32
    np.testing.assert_allclose(host(y.data), np.where(x > 0, x, slope * x), rtol=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_in_place_forward_and_backward(xp, slope):
    x = away_from_zero(np.random.default_rng(1), (3, 7))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer(f'name: "r" type: "ReLU" bottom: "x" top: "x" '
                       f'relu_param {{ negative_slope: {slope} }}', xp)
    b = blob(x, xp)
    top = b  # in place: the layer's bottom and top are one Blob
    layer.setup([b], [top])
    layer.reshape([b], [top])
    layer.forward([b], [top])
    np.testing.assert_allclose(host(b.data), np.where(x > 0, x, slope * x))
    b.diff[...] = xp.asarray(dy)
    layer.backward([top], [True], [b])
    np.testing.assert_allclose(host(b.diff), np.where(x > 0, dy, slope * dy))


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_gradient(slope):
    x = away_from_zero(np.random.default_rng(3), (2, 3, 3, 2))
    layer = make_layer(f'name: "r" type: "ReLU" bottom: "x" top: "y" '
                       f'relu_param {{ negative_slope: {slope} }}')
    check_gradient(layer, [blob(x)])


"""Sigmoid: forward against NumPy (no overflow), in place, gradients."""

import numpy as np
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def test_forward_matches_numpy(xp):
    x = np.random.default_rng(0).standard_normal((2, 3, 4)) * 3
    (y,) = run(make_layer('name: "s" type: "Sigmoid" bottom: "x" top: "y"', xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), 1 / (1 + np.exp(-x)), rtol=1e-12)


def test_extreme_inputs_saturate_without_nan(xp):
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    layer = make_layer('name: "s" type: "Sigmoid" bottom: "x" top: "y"', xp, np.float32)
    (y,) = run(layer, [blob(x, xp, np.float32)])
    np.testing.assert_allclose(host(y.data), [0, 0, 0.5, 1, 1], atol=1e-7)


def test_in_place(xp):
    x = np.random.default_rng(1).standard_normal((4, 5))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer('name: "s" type: "Sigmoid" bottom: "x" top: "x"', xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(host(b.data), s)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_allclose(host(b.diff), dy * s * (1 - s))


def test_gradient():
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 2)) * 2
    check_gradient(make_layer('name: "s" type: "Sigmoid" bottom: "x" top: "y"'), [blob(x)])

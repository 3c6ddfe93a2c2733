"""Swish: x * sigmoid(beta * x) for the default and other betas, no NaN at extremes,
in place, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def layer_text(beta, top="y"):
    param = "" if beta is None else f" swish_param {{ beta: {beta} }}"
    return f'name: "s" type: "Swish" bottom: "x" top: "{top}"{param}'


def swish(x, beta):
    beta = float(np.float32(beta))  # the parameter is a float in caffe.proto
    return x / (1 + np.exp(-beta * x))


@pytest.mark.parametrize("beta", [None, 0.5, 2.0, -1.0])
def test_forward_matches_numpy(xp, beta):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 3
    (y,) = run(make_layer(layer_text(beta), xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), swish(x, 1.0 if beta is None else beta),
                               rtol=1e-12, atol=1e-15)


def test_extreme_inputs_give_no_nan(xp):
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    layer = make_layer(layer_text(None), xp, np.float32)
    bottom = [blob(x, xp, np.float32)]
    (y,) = run(layer, bottom)
    np.testing.assert_allclose(host(y.data), [0, 0, 0, 50, 1000], atol=1e-6)
    y.diff[...] = 1
    layer.backward([y], [True], bottom)
    np.testing.assert_allclose(host(bottom[0].diff), [0, 0, 0.5, 1, 1], atol=1e-6)


@pytest.mark.parametrize("beta", [1.0, 1.7])
def test_in_place(xp, beta):
    x = np.random.default_rng(1).standard_normal((4, 5)) * 2
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer(layer_text(beta, top="x"), xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_allclose(host(b.data), swish(x, beta), rtol=1e-12, atol=1e-15)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    beta = float(np.float32(beta))
    s = 1 / (1 + np.exp(-beta * x))
    np.testing.assert_allclose(host(b.diff), dy * (s + beta * x * s * (1 - s)), rtol=1e-11)


@pytest.mark.parametrize("beta", [1.0, 0.5, 3.0])
def test_gradient(beta):
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 2)) * 2
    check_gradient(make_layer(layer_text(beta)), [blob(x)])

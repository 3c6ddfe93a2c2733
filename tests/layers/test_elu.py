"""ELU: forward against NumPy for the default and other alphas, in place, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def layer_text(alpha, top="y"):
    param = "" if alpha is None else f" elu_param {{ alpha: {alpha} }}"
    return f'name: "e" type: "ELU" bottom: "x" top: "{top}"{param}'


def elu(x, alpha):
    alpha = float(np.float32(alpha))  # the parameter is a float in caffe.proto
    return np.where(x > 0, x, alpha * (np.exp(x) - 1))


@pytest.mark.parametrize("alpha", [None, 0.5, 2.0])
def test_forward_matches_numpy(xp, alpha):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 2
    (y,) = run(make_layer(layer_text(alpha), xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), elu(x, 1.0 if alpha is None else alpha),
                               rtol=1e-13, atol=1e-15)


def test_backward_at_zero_uses_the_negative_branch():
    layer = make_layer(layer_text(0.5))
    bottom = [blob(np.array([0.0, 1e-300]))]
    (top,) = run(layer, bottom)
    top.diff[...] = 1
    layer.backward([top], [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0.5, 1.0])


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_in_place(xp, alpha):
    x = np.random.default_rng(1).standard_normal((4, 5)) * 2
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer(layer_text(alpha, top="x"), xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_allclose(host(b.data), elu(x, alpha), rtol=1e-13, atol=1e-15)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_allclose(host(b.diff), dy * np.where(x > 0, 1, np.float32(alpha) * np.exp(x)),
                               rtol=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0])
def test_gradient(alpha):
    u = np.random.default_rng(3).standard_normal((2, 3, 2, 2))
    x = np.sign(u) * (0.1 + np.abs(u))
    check_gradient(make_layer(layer_text(alpha)), [blob(x)])

"""TanH: forward against NumPy, in place, gradients."""

import numpy as np
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def test_forward_matches_numpy(xp):
    x = np.random.default_rng(0).standard_normal((2, 3, 4)) * 3
    (y,) = run(make_layer('name: "t" type: "TanH" bottom: "x" top: "y"', xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), np.tanh(x), rtol=1e-12)


def test_in_place(xp):
    x = np.random.default_rng(1).standard_normal((4, 5))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer('name: "t" type: "TanH" bottom: "x" top: "x"', xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_allclose(host(b.data), np.tanh(x))
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_allclose(host(b.diff), dy * (1 - np.tanh(x) ** 2))


def test_gradient():
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 2))
    check_gradient(make_layer('name: "t" type: "TanH" bottom: "x" top: "y"'), [blob(x)])

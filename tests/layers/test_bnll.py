"""BNLL: forward against NumPy's softplus, no overflow at extremes, in place, gradients."""

import numpy as np
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

LAYER = 'name: "b" type: "BNLL" bottom: "x" top: "y"'


def test_forward_matches_numpy(xp):
    x = np.random.default_rng(0).standard_normal((2, 3, 4)) * 4
    (y,) = run(make_layer(LAYER, xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), np.log1p(np.exp(x)), rtol=1e-13)


def test_extreme_inputs_do_not_overflow(xp):
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    layer = make_layer(LAYER, xp, np.float32)
    bottom = [blob(x, xp, np.float32)]
    (y,) = run(layer, bottom)
    np.testing.assert_allclose(host(y.data), [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1000.0],
                               rtol=1e-6, atol=0)
    y.diff[...] = 1
    layer.backward([y], [True], bottom)
    np.testing.assert_allclose(host(bottom[0].diff), [0.0, np.exp(-50.0), 0.5, 1.0, 1.0],
                               rtol=1e-6, atol=0)


def test_in_place(xp):
    x = np.random.default_rng(1).standard_normal((4, 5)) * 3
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer('name: "b" type: "BNLL" bottom: "x" top: "x"', xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_allclose(host(b.data), np.logaddexp(0, x), rtol=1e-13)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_allclose(host(b.diff), dy / (1 + np.exp(-x)), rtol=1e-12)


def test_gradient():
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 2)) * 3
    check_gradient(make_layer(LAYER), [blob(x)])

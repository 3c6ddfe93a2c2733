"""Softmax: forward against NumPy along several axes, stability, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def ref_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_forward_matches_numpy(xp, axis):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    layer = make_layer(f'name: "s" type: "Softmax" bottom: "x" top: "y" '
                       f'softmax_param {{ axis: {axis} }}', xp)
    (y,) = run(layer, [blob(x, xp)])
    out = host(y.data)
    np.testing.assert_allclose(out, ref_softmax(x, axis), rtol=1e-12)
    np.testing.assert_allclose(out.sum(axis=axis), 1.0)


def test_large_inputs_are_stable(xp):
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]])
    layer = make_layer('name: "s" type: "Softmax" bottom: "x" top: "y"', xp, np.float32)
    (y,) = run(layer, [blob(x, xp, np.float32)])
    out = host(y.data)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref_softmax(x, 1), rtol=1e-5)


def test_bad_axis_is_an_error():
    layer = make_layer('name: "s" type: "Softmax" bottom: "x" top: "y" softmax_param { axis: 2 }')
    with pytest.raises(ValueError, match="axis 2"):
        run(layer, [blob(np.ones((2, 3)))])


@pytest.mark.parametrize("axis", [1, 2])
def test_gradient(axis):
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    layer = make_layer(f'name: "s" type: "Softmax" bottom: "x" top: "y" '
                       f'softmax_param {{ axis: {axis} }}')
    check_gradient(layer, [blob(x)])

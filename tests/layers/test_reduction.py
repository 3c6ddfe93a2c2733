"""Reduction: SUM, ASUM, SUMSQ and MEAN with axis and coeff against hand values and NumPy,
the kept leading axes (a 0-axis top for axis 0), gradients of every operation."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

OPS = {"SUM": lambda r: r.sum(1), "ASUM": lambda r: np.abs(r).sum(1),
       "SUMSQ": lambda r: (r * r).sum(1), "MEAN": lambda r: r.mean(1)}


def text(param=""):
    body = f"reduction_param {{ {param} }}" if param else ""
    return f'name: "red" type: "Reduction" bottom: "x" top: "y" {body}'


def test_hand_computed():
    x = np.array([[1.0, -2.0], [3.0, -4.0]])
    for op, want in [("SUM", -2), ("ASUM", 10), ("SUMSQ", 30), ("MEAN", -0.5)]:
        (y,) = run(make_layer(text(f"operation: {op}")), [blob(x)])
        assert y.shape == () and float(y.data) == want
    (y,) = run(make_layer(text("operation: ASUM axis: 1 coeff: 0.5")), [blob(x)])
    np.testing.assert_array_equal(y.data, [1.5, 3.5])


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_forward_matches_numpy(xp, op, axis):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    (y,) = run(make_layer(text(f"operation: {op} axis: {axis} coeff: -1.5"), xp),
               [blob(x, xp)])
    a = axis % 4
    assert y.shape == x.shape[:a]
    want = -1.5 * OPS[op](x.reshape(int(np.prod(x.shape[:a])), -1)).reshape(x.shape[:a])
    np.testing.assert_allclose(host(y.data), want, rtol=1e-12)


def test_default_is_sum_of_everything():
    x = np.arange(6.0).reshape(2, 3)
    (y,) = run(make_layer(text()), [blob(x)])
    assert y.shape == () and float(y.data) == 15


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("axis", [0, 2])
def test_gradient(op, axis):
    u = np.random.default_rng(1).standard_normal((2, 3, 2, 2))
    x = np.sign(u) * (0.1 + np.abs(u))  # away from ASUM's kink at 0
    check_gradient(make_layer(text(f"operation: {op} axis: {axis} coeff: 0.7")), [blob(x)])

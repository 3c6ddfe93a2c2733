"""Slice: slice points, equal split, legacy slice_dim, checks, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def text(param="", tops=3):
    return ('name: "sl" type: "Slice" bottom: "x" '
            + " ".join(f'top: "t{i}"' for i in range(tops))
            + (f" slice_param {{ {param} }}" if param else ""))


X = np.arange(2 * 6 * 2 * 3, dtype=float).reshape(2, 6, 2, 3)


def test_slice_points(xp):
    tops = run(make_layer(text("slice_point: 1 slice_point: 4"), xp), [blob(X, xp)])
    for got, want in zip(tops, np.split(X, [1, 4], axis=1)):
        np.testing.assert_array_equal(host(got.data), want)


@pytest.mark.parametrize(("param", "axis"), [("", 1), ("axis: -1", 3), ("slice_dim: 0", 0)])
def test_equal_split(xp, param, axis):
    n = X.shape[axis] if axis != 1 else 3
    tops = run(make_layer(text(param, tops=n), xp), [blob(X, xp)])
    for got, want in zip(tops, np.split(X, n, axis=axis)):
        np.testing.assert_array_equal(host(got.data), want)


def test_gradient():
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    check_gradient(make_layer(text("axis: 1 slice_point: 2 slice_point: 3")), [blob(x)])


@pytest.mark.parametrize("points", ["slice_point: 4 slice_point: 1", "slice_point: 2 "
                                    "slice_point: 6"])
def test_bad_points_are_an_error(points):
    with pytest.raises(ValueError, match="slice_point"):
        run(make_layer(text(points)), [blob(X)])


def test_wrong_number_of_points_is_an_error():
    with pytest.raises(ValueError, match="expected 2"):
        run(make_layer(text("slice_point: 2")), [blob(X)])


def test_uneven_equal_split_is_an_error():
    with pytest.raises(ValueError, match="evenly divide"):
        run(make_layer(text(tops=4)), [blob(X)])

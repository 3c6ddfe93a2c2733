"""Reshape: 0 copies a dim, -1 is inferred, axis/num_axes select the replaced range."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def text(dims, extra=""):
    shape = " ".join(f"dim: {d}" for d in dims)
    return (f'name: "rs" type: "Reshape" bottom: "x" top: "y" '
            f"reshape_param {{ shape {{ {shape} }} {extra} }}")


@pytest.mark.parametrize(("dims", "extra", "want"), [
    ((0, -1), "", (2, 60)),
    ((0, 0, 10, 2), "", (2, 3, 10, 2)),
    ((-1, 4, 5), "", (6, 4, 5)),
    ((3, 2, 2), "axis: 1 num_axes: 2", (2, 3, 2, 2, 5)),  # axes 1..2 (3 x 4) -> 3 x 2 x 2
    ((-1,), "axis: 2", (2, 3, 20)),
])
def test_shapes(xp, dims, extra, want):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    (y,) = run(make_layer(text(dims, extra), xp), [blob(x, xp)])
    assert y.shape == want
    np.testing.assert_array_equal(host(y.data), x.reshape(want))


def test_insert_axes_with_num_axes_zero():
    # Caffe's doc example: axis 1, num_axes 0, shape {dim: 1} inserts a singleton axis.
    x = np.arange(24.0).reshape(2, 3, 4)
    (y,) = run(make_layer(text((1,), "axis: 1 num_axes: 0")), [blob(x)])
    assert y.shape == (2, 1, 3, 4)


def test_negative_axis_counts_from_the_end():
    x = np.arange(24.0).reshape(2, 3, 4)
    (y,) = run(make_layer(text((2, 2), "axis: -2")), [blob(x)])  # replaces the last axis
    assert y.shape == (2, 3, 2, 2)


def test_gradient():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    check_gradient(make_layer(text((0, -1, 2))), [blob(x)])


@pytest.mark.parametrize(("dims", "match"), [((-1, -1), "more than one -1"),
                                             ((7, -1), "not divisible"),
                                             ((5, 5), "has 25 elements"),
                                             ((0, 0, 0, 0), "no axis 3")])
def test_bad_shapes_are_errors(dims, match):
    with pytest.raises(ValueError, match=match):
        run(make_layer(text(dims)), [blob(np.zeros((2, 3, 4)))])

"""Concat: forward against numpy.concatenate on several axes, legacy concat_dim, checks,
gradients.
"""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def text(param=""):
    return ('name: "cat" type: "Concat" bottom: "a" bottom: "b" bottom: "c" top: "y" '
            + (f"concat_param {{ {param} }}" if param else ""))


def inputs(axis, seed=0):
    rng = np.random.default_rng(seed)
    shapes = []
    for size in (1, 2, 3):
        s = [2, 3, 2, 2]
        s[axis] = size
        shapes.append(s)
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.parametrize(("param", "axis"), [("", 1), ("axis: 0", 0), ("axis: -1", 3),
                                             ("concat_dim: 2", 2)])
def test_forward_matches_numpy(xp, param, axis):
    arrays = inputs(axis)
    (y,) = run(make_layer(text(param), xp), [blob(a, xp) for a in arrays])
    np.testing.assert_array_equal(host(y.data), np.concatenate(arrays, axis=axis))


@pytest.mark.parametrize(("param", "axis"), [("", 1), ("axis: 3", 3)])
def test_gradient(param, axis):
    check_gradient(make_layer(text(param)), [blob(a) for a in inputs(axis, seed=1)])


def test_shape_mismatch_off_the_axis_is_an_error():
    bottoms = [blob(np.zeros((2, 1, 3))), blob(np.zeros((2, 2, 3))), blob(np.zeros((2, 1, 4)))]
    want = r"'cat'.*bottom\[0\] \(2, 1, 3\) vs bottom\[2\] \(2, 1, 4\)"
    with pytest.raises(ValueError, match=want):
        run(make_layer(text()), bottoms)


def test_axis_and_concat_dim_together_is_an_error():
    with pytest.raises(ValueError, match="not both"):
        run(make_layer(text("axis: 1 concat_dim: 1")), [blob(a) for a in inputs(1)])

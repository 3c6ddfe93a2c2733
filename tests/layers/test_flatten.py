"""Flatten: output shapes for axis/end_axis, data kept in order, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob


def text(param=""):
    return ('name: "fl" type: "Flatten" bottom: "x" top: "y" '
            + (f"flatten_param {{ {param} }}" if param else ""))


@pytest.mark.parametrize(("param", "shape"), [("", (2, 60)), ("axis: 0", (120,)),
                                              ("axis: 1 end_axis: 2", (2, 12, 5)),
                                              ("axis: -2", (2, 3, 20))])
def test_shapes_and_data(xp, param, shape):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    (y,) = run(make_layer(text(param), xp), [blob(x, xp)])
    assert y.shape == shape
    np.testing.assert_array_equal(host(y.data), x.reshape(shape))


def test_top_is_a_copy_not_a_view():
    x = blob(np.ones((2, 3, 2)))
    (y,) = run(make_layer(text()), [x])
    y.data[...] = 5  # e.g. an in-place layer on the top
    assert (x.data == 1).all()


def test_gradient():
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    check_gradient(make_layer(text("axis: 1 end_axis: 2")), [blob(x)])


def test_in_place_is_an_error():
    b = Blob((2, 3))
    with pytest.raises(ValueError, match="in place"):
        make_layer(text()).setup([b], [b])

"""Bias: Caffe's broadcast cases (an operand bottom of the whole shape, of leading, middle
and trailing axes, a scalar), the learned blob (num_axes, filler, default 0), in place,
channels-last, errors, gradients to both bottoms and to the learned blob."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from compute_util import to_blob
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError

SHAPE = (2, 3, 4, 5)
# (axis, operand shape, the operand as it broadcasts against SHAPE)
CASES = [
    (0, (2, 3, 4, 5), (2, 3, 4, 5)),  # elementwise
    (0, (2, 3), (2, 3, 1, 1)),        # begin
    (1, (3, 4), (1, 3, 4, 1)),        # middle
    (2, (4, 5), (1, 1, 4, 5)),        # end
    (-2, (4, 5), (1, 1, 4, 5)),
    (1, (), (1, 1, 1, 1)),            # scalar: axis ignored
]


def text(param="", bottoms=2, top="y"):
    b = 'bottom: "x" ' + ('bottom: "b" ' if bottoms == 2 else "")
    body = f"bias_param {{ {param} }}" if param else ""
    return f'name: "bias" type: "Bias" {b}top: "{top}" {body}'


@pytest.mark.parametrize("axis, shape, view", CASES)
def test_forward_with_an_operand_bottom(xp, axis, shape, view):
    rng = np.random.default_rng(0)
    x, b = rng.standard_normal(SHAPE), rng.standard_normal(shape)
    (y,) = run(make_layer(text(f"axis: {axis}"), xp), [blob(x, xp), blob(b, xp)])
    np.testing.assert_allclose(host(y.data), x + b.reshape(view), rtol=1e-15)


def test_hand_computed():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    (y,) = run(make_layer(text("axis: 0")), [blob(x), blob([10.0, 20.0])])
    np.testing.assert_array_equal(y.data, [[11, 12], [23, 24]])


@pytest.mark.parametrize("param, shape", [("", (3,)), ("num_axes: 2", (3, 4)),
                                          ("num_axes: -1", (3, 4, 5)), ("num_axes: 0", ()),
                                          ("axis: 0 num_axes: -1", SHAPE)])
def test_learned_blob_shape_and_default_zero(param, shape):
    layer = make_layer(text(param, bottoms=1))
    x = np.random.default_rng(1).standard_normal(SHAPE)
    (y,) = run(layer, [blob(x)])
    assert [b.shape for b in layer.blobs] == [shape]
    np.testing.assert_array_equal(layer.blobs[0].data, 0)
    np.testing.assert_array_equal(y.data, x)


def test_filler_fills_the_learned_blob():
    layer = make_layer(text('filler { type: "constant" value: 2.5 }', bottoms=1))
    (y,) = run(layer, [blob(np.ones((2, 3)))])
    np.testing.assert_array_equal(y.data, 3.5)


@pytest.mark.parametrize("param, bottoms, message", [
    ("num_axes: -2", [SHAPE], "num_axes must be -1"),
    ("axis: 2 num_axes: 3", [SHAPE], "reaches past"),
    ("axis: 4", [SHAPE], "out of range"),
    ("axis: 1", [SHAPE, (3, 5)], "does not fit"),
    ("axis: 3", [SHAPE, (5, 1)], "does not fit"),
])
def test_bad_parameters_and_shapes(param, bottoms, message):
    layer = make_layer(text(param, bottoms=len(bottoms)))
    with pytest.raises(LayerSetupError, match=message):
        run(layer, [blob(np.zeros(s)) for s in bottoms])


def test_in_place_and_channels_last_match(channels_last):
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    results = []
    for in_place in (False, True):
        layer = make_layer(text('filler { type: "gaussian" }', bottoms=1,
                                top="x" if in_place else "y"))
        b = to_blob(x, channels_last=channels_last and in_place)
        t = b if in_place else Blob((), np, np.float64)
        layer.setup([b], [t])
        layer.reshape([b], [t])
        layer.forward([b], [t])
        y = t.data.copy()
        t.diff[...] = dy
        layer.backward([t], [True], [b])
        results.append((y, b.diff.copy(), layer.blobs[0].diff.copy()))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    np.testing.assert_allclose(results[0][2], dy.sum(axis=(0, 2, 3)), rtol=1e-13)


def test_learned_diff_accumulates_operand_bottom_diff_is_overwritten():
    x = np.ones((2, 3))
    layer = make_layer(text(bottoms=1))
    bottom = [blob(x)]
    (y,) = run(layer, bottom)
    y.diff[...] = 1
    layer.backward([y], [True], bottom)
    layer.backward([y], [True], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, [4, 4, 4])
    two = make_layer(text("axis: 1"))
    bottom = [blob(x), blob(np.zeros(3))]
    (y,) = run(two, bottom)
    y.diff[...] = 1
    two.backward([y], [True, True], bottom)
    two.backward([y], [True, True], bottom)
    np.testing.assert_array_equal(bottom[1].diff, [2, 2, 2])


@pytest.mark.parametrize("axis, shape, _", CASES)
def test_gradient_with_an_operand_bottom(axis, shape, _):
    rng = np.random.default_rng(3)
    check_gradient(make_layer(text(f"axis: {axis}")),
                   [blob(rng.standard_normal(SHAPE)), blob(rng.standard_normal(shape))])


@pytest.mark.parametrize("param", ["", "axis: 2 num_axes: 2", "num_axes: 0"])
def test_gradient_with_a_learned_blob(param):
    x = np.random.default_rng(4).standard_normal(SHAPE)
    check_gradient(make_layer(text(param + ' filler { type: "gaussian" }', bottoms=1)),
                   [blob(x)])

"""Tile: whole-block copies along an axis (numpy.tile), hand values, Caffe's shapes,
errors, gradients (the copies' diffs summed)."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError


def text(param):
    return f'name: "tile" type: "Tile" bottom: "x" top: "y" tile_param {{ {param} }}'


def test_hand_computed():
    (y,) = run(make_layer(text("axis: 1 tiles: 2")), [blob([[1.0, 2.0], [3.0, 4.0]])])
    np.testing.assert_array_equal(y.data, [[1, 2, 1, 2], [3, 4, 3, 4]])


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
def test_forward_matches_numpy_tile(xp, axis):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    (y,) = run(make_layer(text(f"axis: {axis} tiles: 3"), xp), [blob(x, xp)])
    reps = [1, 1, 1, 1]
    reps[axis] = 3
    np.testing.assert_array_equal(host(y.data), np.tile(x, reps))


@pytest.mark.parametrize("axis", [0, 1, 3])
def test_gradient(axis):
    x = np.random.default_rng(1).standard_normal((2, 3, 2, 2))
    check_gradient(make_layer(text(f"axis: {axis} tiles: 3")), [blob(x)])


@pytest.mark.parametrize("param, message", [("axis: 1", "tiles"), ("tiles: 0", "tiles"),
                                            ("tiles: 2 axis: 4", "out of range")])
def test_errors(param, message):
    with pytest.raises(LayerSetupError, match=message):
        run(make_layer(text(param)), [blob(np.zeros((2, 3, 4, 5)))])

"""Clip: min(max(x, min), max); the gradient passes on [min, max], both ends included
(Caffe's rule), also in place where the output cannot tell; gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def layer_text(lo, hi, top="y"):
    return (f'name: "c" type: "Clip" bottom: "x" top: "{top}" '
            f'clip_param {{ min: {lo} max: {hi} }}')


@pytest.mark.parametrize("lo,hi", [(-1.0, 2.0), (0.0, 6.0), (0.5, 0.5)])
def test_forward_matches_numpy(xp, lo, hi):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 3
    (y,) = run(make_layer(layer_text(lo, hi), xp, np.float32), [blob(x, xp, np.float32)])
    np.testing.assert_array_equal(host(y.data), np.clip(x.astype(np.float32), lo, hi))


def test_min_above_max_gives_min_everywhere_as_caffe():
    (y,) = run(make_layer(layer_text(1, -1)), [blob(np.array([-5.0, 0.0, 5.0]))])
    np.testing.assert_array_equal(y.data, [1.0, 1.0, 1.0])


X = np.array([-3.0, -1.0, -0.5, 0.0, 2.0, 2.5])
PASSES = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # min and max themselves pass


def test_backward_passes_on_the_closed_interval(xp):
    dy = np.arange(1.0, 7.0)
    layer = make_layer(layer_text(-1, 2), xp)
    bottom = [blob(X, xp)]
    (top,) = run(layer, bottom)
    top.diff[...] = xp.asarray(dy)
    layer.backward([top], [True], bottom)
    np.testing.assert_array_equal(host(bottom[0].diff), dy * PASSES)


def test_in_place_tells_a_clipped_input_from_one_on_the_boundary(xp):
    dy = np.arange(1.0, 7.0)
    layer = make_layer(layer_text(-1, 2, top="x"), xp)
    b = blob(X, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_array_equal(host(b.data), [-1.0, -1.0, -0.5, 0.0, 2.0, 2.0])
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_array_equal(host(b.diff), dy * PASSES)


def test_gradient():
    rng = np.random.default_rng(3)
    x = rng.choice([-1, 1], (2, 3, 2, 2)) * rng.uniform(0.1, 0.9, (2, 3, 2, 2)) * 3
    x[np.abs(np.abs(x) - 1.0) < 0.05] = 0.3  # away from the kinks at -1 and 1
    check_gradient(make_layer(layer_text(-1, 1)), [blob(x)])

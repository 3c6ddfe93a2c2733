"""AbsVal: forward against NumPy, sign(0) = 0 in backward, in place refused, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError

LAYER = 'name: "a" type: "AbsVal" bottom: "x" top: "y"'


def test_forward_matches_numpy(xp):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    (y,) = run(make_layer(LAYER, xp, np.float32), [blob(x, xp, np.float32)])
    assert y.data.dtype == np.float32
    np.testing.assert_array_equal(host(y.data), np.abs(x.astype(np.float32)))


def test_backward_is_sign_times_dy_with_zero_at_zero(xp):
    x = np.array([[-2.0, -0.0, 0.0, 0.5, 3.0]])
    dy = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    layer = make_layer(LAYER, xp)
    bottom = [blob(x, xp)]
    (top,) = run(layer, bottom)
    top.diff[...] = xp.asarray(dy)
    layer.backward([top], [True], bottom)
    np.testing.assert_array_equal(host(bottom[0].diff), [[-1.0, 0.0, 0.0, 4.0, 5.0]])


def test_in_place_is_refused_as_in_caffe():
    b = blob(np.ones((2, 2)))
    layer = make_layer('name: "a" type: "AbsVal" bottom: "x" top: "x"')
    with pytest.raises(LayerSetupError, match="in-place"):
        layer.setup([b], [b])


def test_gradient():
    u = np.random.default_rng(3).standard_normal((2, 3, 2, 2))
    x = np.sign(u) * (0.1 + np.abs(u))  # away from the kink at 0
    check_gradient(make_layer(LAYER), [blob(x)])

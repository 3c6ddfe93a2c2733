"""Threshold: 1 where x > threshold (strictly), else 0, for the default and other
thresholds, in place; forward only, as in Caffe."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run


def layer_text(threshold, top="y"):
    param = "" if threshold is None else f" threshold_param {{ threshold: {threshold} }}"
    return f'name: "t" type: "Threshold" bottom: "x" top: "{top}"{param}'


@pytest.mark.parametrize("threshold", [None, 0.5, -1.25])
def test_forward_is_a_strict_step(xp, threshold):
    t = 0.0 if threshold is None else threshold
    x = np.concatenate([np.random.default_rng(0).standard_normal(20) * 2, [t, t + 1e-6]])
    (y,) = run(make_layer(layer_text(threshold), xp, np.float32), [blob(x, xp, np.float32)])
    assert y.data.dtype == np.float32
    want = (x.astype(np.float32) > np.float32(t)).astype(np.float32)
    np.testing.assert_array_equal(host(y.data), want)
    assert host(y.data)[-2] == 0 and host(y.data)[-1] == 1  # x == threshold gives 0


def test_in_place(xp):
    x = np.random.default_rng(1).standard_normal((3, 4))
    layer = make_layer(layer_text(0.2, top="x"), xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_array_equal(host(b.data), (x > 0.2).astype(float))


def test_no_backward_when_a_gradient_is_asked_for():
    layer = make_layer(layer_text(None))
    bottom = [blob(np.ones((2, 2)))]
    (top,) = run(layer, bottom)
    layer.backward([top], [False], bottom)  # nothing asked: nothing done
    with pytest.raises(NotImplementedError, match="no backward"):
        layer.backward([top], [True], bottom)

"""LSTMUnit: one step by hand, cont = 0 dropping the previous cell, shape checks, and
finite-difference gradients to c_prev and X (cont 0 and 1)."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient
from recurrent_util import sigmoid

TEXT = ('name: "unit" type: "LSTMUnit" bottom: "c_prev" bottom: "x" bottom: "cont" '
        'top: "c" top: "h"')


def test_one_step_by_hand(xp):
    c_prev = np.array([[[0.5, -1.0]]])
    x = np.array([[[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]])  # i i f f o o g g
    c, h = run(make_layer(TEXT, xp), [blob(c_prev, xp), blob(x, xp), blob([[1.0]], xp)])
    i, f = sigmoid(np.array([0.1, 0.2])), sigmoid(np.array([0.3, 0.4]))
    o, g = sigmoid(np.array([0.5, 0.6])), np.tanh([0.7, 0.8])
    want_c = f * c_prev[0, 0] + i * g
    np.testing.assert_allclose(host(c.data)[0, 0], want_c, rtol=1e-12)
    np.testing.assert_allclose(host(h.data)[0, 0], o * np.tanh(want_c), rtol=1e-12)


def test_cont_zero_drops_the_previous_cell():
    rng = np.random.default_rng(0)
    c_prev, x = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 12))
    c, _ = run(make_layer(TEXT), [blob(c_prev), blob(x), blob([[0.0, 1.0]])])
    fresh, _ = run(make_layer(TEXT), [blob(np.zeros((1, 2, 3))), blob(x), blob([[0.0, 1.0]])])
    np.testing.assert_allclose(c.data[0, 0], fresh.data[0, 0], rtol=1e-12)
    assert not np.allclose(c.data[0, 1], fresh.data[0, 1])


def test_gradient_cont_one_and_zero():
    rng = np.random.default_rng(1)
    c_prev, x = rng.standard_normal((1, 3, 2)), rng.standard_normal((1, 3, 8))
    check_gradient(make_layer(TEXT), [blob(c_prev), blob(x), blob([[1.0, 0.0, 1.0]])],
                   check_bottom=[0, 1])


def test_gate_width_is_checked():
    with pytest.raises(ValueError, match=r"'unit'.*must be 1 x 2 x 12"):
        run(make_layer(TEXT), [blob(np.zeros((1, 2, 3))), blob(np.zeros((1, 2, 8))),
                               blob(np.zeros((1, 2)))])

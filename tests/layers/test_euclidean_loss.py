"""EuclideanLoss: forward against NumPy, gradients to both bottoms, shape checks."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

TEXT = 'name: "l2" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"'


def test_forward_matches_numpy(xp):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2))
    (loss,) = run(make_layer(TEXT, xp), [blob(a, xp), blob(b, xp)])
    assert loss.shape == ()
    np.testing.assert_allclose(float(host(loss.data)), ((a - b) ** 2).sum() / 5 / 2, rtol=1e-12)


def test_backward_signs_and_loss_weight(xp):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    bottom = [blob(a, xp), blob(b, xp)]
    layer = make_layer(TEXT, xp)
    (loss,) = run(layer, bottom)
    loss.diff[...] = 3.0
    layer.backward([loss], [True, True], bottom)
    np.testing.assert_allclose(host(bottom[0].diff), 3.0 * (a - b) / 4)
    np.testing.assert_allclose(host(bottom[1].diff), -3.0 * (a - b) / 4)


def test_gradient_both_bottoms():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    check_gradient(make_layer(TEXT), [blob(a), blob(b)])


def test_differently_shaped_bottoms_with_equal_counts():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((3, 2, 1, 1)), rng.standard_normal((3, 2))
    (loss,) = run(make_layer(TEXT), [blob(a), blob(b)])
    np.testing.assert_allclose(float(loss.data), ((a.reshape(3, 2) - b) ** 2).sum() / 6)
    check_gradient(make_layer(TEXT), [blob(a), blob(b)])


def test_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"'l2'.*\(3, 4\).*\(3, 5\)"):
        run(make_layer(TEXT), [blob(np.zeros((3, 4))), blob(np.zeros((3, 5)))])

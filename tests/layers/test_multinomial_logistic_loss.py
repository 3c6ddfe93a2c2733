"""MultinomialLogisticLoss: -log p by hand, the 1e-20 clip, gradients (by hand and by
finite differences), label checks."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

TEXT = 'name: "mlr" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label" top: "loss"'


def test_hand_computed_value(xp):
    p = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    label = np.array([1.0, 0.0, 1.0])
    (loss,) = run(make_layer(TEXT, xp), [blob(p, xp), blob(label, xp)])
    want = -(np.log(0.8) + np.log(0.5) + np.log(0.1)) / 3
    assert float(host(loss.data)) == pytest.approx(want, rel=1e-12)


def test_zero_probability_is_clipped_at_1e_20():
    p = np.array([[1.0, 0.0]])
    layer = make_layer(TEXT, dtype=np.float32)
    bottom = [blob(p, dtype=np.float32), blob(np.array([1.0]), dtype=np.float32)]
    (loss,) = run(layer, bottom)
    assert float(loss.data) == pytest.approx(-np.log(1e-20), rel=1e-6)
    loss.diff[...] = 1
    layer.backward([loss], [True, False], bottom)
    assert np.isfinite(bottom[0].diff).all()
    assert bottom[0].diff[0, 1] == pytest.approx(-1e20, rel=1e-6)


def test_backward_by_hand_with_loss_weight():
    p = np.array([[0.25, 0.75], [0.4, 0.6]])
    layer = make_layer(TEXT)
    bottom = [blob(p), blob(np.array([0.0, 1.0]))]
    (loss,) = run(layer, bottom)
    loss.diff[...] = 3.0
    layer.backward([loss], [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, [[-3 / 2 / 0.25, 0], [0, -3 / 2 / 0.6]])


def test_gradient():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.1, 1.0, (4, 3, 2, 1))
    label = rng.integers(0, 6, 4).astype(float)
    check_gradient(make_layer(TEXT), [blob(p), blob(label)], check_bottom=[0])


def test_label_count_is_checked():
    with pytest.raises(ValueError, match=r"'mlr'.*label count 4"):
        run(make_layer(TEXT), [blob(np.ones((2, 3))), blob(np.zeros((2, 2)))])


def test_probabilities_and_labels_must_have_the_same_first_dimension():
    with pytest.raises(ValueError, match=r"'mlr'.*bottoms must have the same first dimension: "
                                         r"bottom\[0\] \(2, 3\) vs bottom\[1\] \(4,\)"):
        run(make_layer(TEXT), [blob(np.full((2, 3), 1 / 3)), blob(np.zeros(4))])

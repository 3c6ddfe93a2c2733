"""HingeLoss: L1 and L2 by hand, loss weight, label checks, finite-difference gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def text(norm=None):
    t = 'name: "hinge" type: "HingeLoss" bottom: "x" bottom: "label" top: "loss"'
    return t + (f" hinge_loss_param {{ norm: {norm} }}" if norm else "")


X = np.array([[0.5, -2.0, 0.2], [1.5, 0.3, -0.1]])
LABEL = np.array([0.0, 1.0])
# margins max(0, 1 + s x), s = -1 at the label: [0.5, 0, 1.2] and [2.5, 0.7, 0.9]
MARGINS = np.array([[0.5, 0.0, 1.2], [2.5, 0.7, 0.9]])


def test_l1_is_the_default(xp):
    (loss,) = run(make_layer(text(), xp), [blob(X, xp), blob(LABEL, xp)])
    assert float(host(loss.data)) == pytest.approx(MARGINS.sum() / 2, rel=1e-12)


def test_l2():
    (loss,) = run(make_layer(text("L2")), [blob(X), blob(LABEL)])
    assert float(loss.data) == pytest.approx((MARGINS ** 2).sum() / 2, rel=1e-12)


def test_backward_l1_by_hand():
    layer = make_layer(text())
    bottom = [blob(X), blob(LABEL)]
    (loss,) = run(layer, bottom)
    loss.diff[...] = 2.0
    layer.backward([loss], [True, False], bottom)
    sign = np.array([[-1, 1, 1], [1, -1, 1]])
    np.testing.assert_allclose(bottom[0].diff, 2.0 / 2 * sign * (MARGINS > 0))


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_gradient(norm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 1, 1))
    # keep scores away from the kink at margin 0
    x = np.where(np.abs(np.abs(x) - 1) < 0.05, x + 0.2, x)
    label = rng.integers(0, 5, 4).astype(float)
    check_gradient(make_layer(text(norm)), [blob(x), blob(label)], check_bottom=[0])


def test_label_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"'hinge'.*label 3 is not a class index in \[0, 3\)"):
        run(make_layer(text()), [blob(X), blob(np.array([0.0, 3.0]))])


def test_scores_and_labels_must_have_the_same_first_dimension():
    with pytest.raises(ValueError, match=r"'hinge'.*bottoms must have the same first dimension: "
                                         r"bottom\[0\] \(2, 3\) vs bottom\[1\] \(3,\)"):
        run(make_layer(text()), [blob(X), blob(np.zeros(3))])


def test_later_axes_are_flattened_into_the_classes():
    (loss,) = run(make_layer(text()), [blob(X.reshape(2, 3, 1, 1)), blob(LABEL)])
    assert float(loss.data) == pytest.approx(MARGINS.sum() / 2, rel=1e-12)

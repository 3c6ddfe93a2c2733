"""ContrastiveLoss: hand-computed pairs in both versions, the margin, loss weight, shape
checks and finite-difference gradients to both feature bottoms."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient


def text(param=""):
    t = ('name: "siamese" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "sim" '
         'top: "loss"')
    return t + (f" contrastive_loss_param {{ {param} }}" if param else "")


def pairs():
    # distances: 5 (similar), 0.6 (dissimilar, inside margin 1), 3 (dissimilar, outside)
    a = np.array([[3.0, 4.0], [0.6, 0.0], [0.0, 3.0]])
    b = np.zeros((3, 2))
    return a, b, np.array([1.0, 0.0, 0.0])


def test_hand_computed_value(xp):
    a, b, y = pairs()
    (loss,) = run(make_layer(text(), xp), [blob(a, xp), blob(b, xp), blob(y, xp)])
    # (25 + (1 - 0.6)^2 + 0) / (2 * 3)
    assert float(host(loss.data)) == pytest.approx((25 + 0.16) / 6, rel=1e-12)


def test_legacy_version_and_margin():
    a, b, y = pairs()
    layer = make_layer(text("margin: 2 legacy_version: true"))
    (loss,) = run(layer, [blob(a), blob(b), blob(y)])
    # dissimilar pairs cost max(2 - d^2, 0): 2 - 0.36 and 0
    assert float(loss.data) == pytest.approx((25 + 1.64) / 6, rel=1e-12)


def test_4d_features_and_backward_by_hand():
    a, b, y = pairs()
    layer = make_layer(text())
    bottom = [blob(a.reshape(3, 2, 1, 1)), blob(b.reshape(3, 2, 1, 1)), blob(y.reshape(3, 1, 1, 1))]
    (loss,) = run(layer, bottom)
    loss.diff[...] = 3.0
    layer.backward([loss], [True, True, False], bottom)
    want = np.zeros((3, 2))
    want[0] = 3.0 / 3 * a[0]  # similar: (a - b) / N
    want[1] = 3.0 / 3 * -(1 - 0.6) / (0.6 + 1e-4) * a[1]  # Caffe's d + 1e-4
    np.testing.assert_allclose(bottom[0].diff.reshape(3, 2), want, rtol=1e-12)
    np.testing.assert_allclose(bottom[1].diff.reshape(3, 2), -want, rtol=1e-12)


@pytest.mark.parametrize("param", ["", "legacy_version: true margin: 3", "margin: 2.5"])
def test_gradient(param):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    y = np.array([1, 0, 1, 0, 0, 0], float)
    # rtol 1e-3 (check_gradient's 1e-4 times 10) covers Caffe's d + 1e-4 for distances ~1
    check_gradient(make_layer(text(param)), [blob(a), blob(b), blob(y)], check_bottom=[0, 1])


def test_mismatched_features_are_an_error():
    with pytest.raises(ValueError, match=r"'siamese'.*\(2, 3\) vs bottom\[1\] \(2, 4\)"):
        run(make_layer(text()), [blob(np.zeros((2, 3))), blob(np.zeros((2, 4))),
                                 blob(np.zeros(2))])


def test_label_count_is_checked():
    with pytest.raises(ValueError, match=r"one value per pair \(2\)"):
        run(make_layer(text()), [blob(np.zeros((2, 3))), blob(np.zeros((2, 3))),
                                 blob(np.zeros(3))])


def test_force_backward_reaches_both_features_not_the_label():
    from pipeline_lib.engine.layers.base import LAYER_TYPES
    from pipeline_lib.proto import caffe_pb2

    param = caffe_pb2.LayerParameter(name="c", type="ContrastiveLoss")
    layer = LAYER_TYPES["ContrastiveLoss"](param)
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, True, False]

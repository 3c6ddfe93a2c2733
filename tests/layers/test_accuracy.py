"""Accuracy: hand-made top-1/top-k examples, ties, ignore_label, per-class top."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run

SCORES = np.array([
    [0.1, 0.7, 0.2, 0.0],   # label 1: top-1 hit
    [0.5, 0.1, 0.3, 0.1],   # label 2: 2nd best -> top-2 hit only
    [0.4, 0.3, 0.2, 0.1],   # label 3: last -> never a hit for k <= 3
    [0.2, 0.2, 0.5, 0.1],   # label 0: tied with class 1 for 2nd -> rank 2, top-3 hit
])
LABELS = np.array([1.0, 2.0, 3.0, 0.0])


def acc_text(params="", per_class=False):
    text = 'name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "accuracy"'
    if per_class:
        text += ' top: "per_class"'
    return text + (f" accuracy_param {{ {params} }}" if params else "")


@pytest.mark.parametrize(("top_k", "expected"), [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)])
def test_top_k_hand_example(xp, top_k, expected):
    layer = make_layer(acc_text(f"top_k: {top_k}"), xp, np.float32)
    (acc,) = run(layer, [blob(SCORES, xp, np.float32), blob(LABELS, xp, np.float32)])
    assert acc.shape == ()
    assert float(host(acc.data)) == pytest.approx(expected)


def test_ignore_label_is_skipped():
    layer = make_layer(acc_text("ignore_label: 3"))
    (acc,) = run(layer, [blob(SCORES), blob(LABELS)])
    assert float(acc.data) == pytest.approx(1 / 3)


def test_per_class_top(xp):
    layer = make_layer(acc_text("top_k: 2", per_class=True), xp)
    scores = np.vstack([SCORES, [[0.0, 0.0, 1.0, 0.0]]])
    labels = np.append(LABELS, 1.0)  # a second class-1 item, missed
    acc, per_class = run(layer, [blob(scores, xp), blob(labels, xp)])
    assert float(host(acc.data)) == pytest.approx(2 / 5)
    np.testing.assert_allclose(host(per_class.data), [0.0, 0.5, 1.0, 0.0])


def test_per_class_absent_class_is_zero():
    scores = np.eye(3)
    labels = np.array([0.0, 1.0, 1.0])
    acc, per_class = run(make_layer(acc_text(per_class=True)), [blob(scores), blob(labels)])
    assert float(acc.data) == pytest.approx(2 / 3)
    np.testing.assert_allclose(per_class.data, [1.0, 0.5, 0.0])


def test_spatial_labels_on_axis_1():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((2, 3, 4, 5))
    labels = rng.integers(0, 3, (2, 1, 4, 5)).astype(float)
    (acc,) = run(make_layer(acc_text()), [blob(scores), blob(labels)])
    expected = (scores.argmax(axis=1) == labels[:, 0]).mean()
    assert float(acc.data) == pytest.approx(expected)


def test_top_k_more_than_classes_is_an_error():
    with pytest.raises(ValueError, match="top_k 5"):
        run(make_layer(acc_text("top_k: 5")), [blob(SCORES), blob(LABELS)])


def test_label_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="label count 3"):
        run(make_layer(acc_text()), [blob(SCORES), blob(LABELS[:3])])


def test_caffe_lenet_scores_are_all_right():
    # Caffe's ip2 outputs for the first 100 MNIST test images (tests/data/golden/SOURCE.md):
    # the tutorial model classifies every one of them right.
    from conftest import DATA

    golden = np.load(DATA / "golden" / "caffe_lenet_test100_blobs.npz")
    bottom = [blob(golden["ip2"], dtype=np.float32), blob(golden["label"], dtype=np.float32)]
    acc, per_class = run(make_layer(acc_text(per_class=True), dtype=np.float32), bottom)
    assert float(acc.data) == 1.0
    present = np.isin(np.arange(10), golden["label"])
    np.testing.assert_array_equal(per_class.data, present.astype(np.float32))


def test_gradient_is_zero_as_finite_differences_say():
    """Accuracy is piecewise constant in the scores: away from ties its gradient is 0."""
    from gradient_check import check_gradient

    rng = np.random.default_rng(3)
    layer = make_layer('name: "acc" type: "Accuracy" bottom: "s" bottom: "l" top: "a"')
    scores = blob(rng.standard_normal((5, 4)))
    labels = blob(rng.integers(0, 4, 5).astype(float))
    check_gradient(layer, [scores, labels], check_bottom=[0])

"""SoftmaxWithLoss: each normalization mode, ignore_label, the probability top,
loss-weight scaling, label checks and finite-difference gradients.
"""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

IGNORE = -1


def layer_text(loss_param="", tops=("loss",), axis=None):
    text = 'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" '
    text += " ".join(f'top: "{t}"' for t in tops)
    if loss_param:
        text += f" loss_param {{ {loss_param} }}"
    if axis is not None:
        text += f" softmax_param {{ axis: {axis} }}"
    return text


def example(shape=(4, 5, 2, 3), ignore_some=True, seed=0):
    """Logits (N, C, H, W) and labels (N, 1, H, W), some equal to IGNORE."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    n, c, *spatial = shape
    labels = rng.integers(0, c, (n, 1, *spatial)).astype(float)
    if ignore_some:
        labels.reshape(-1)[[1, 4, 5]] = IGNORE
    return x, labels


def ref_loss(x, labels, mode, ignore=None):
    """Caffe's formula with a naive loop over every (n, h, w) position."""
    n, c = x.shape[:2]
    inner = int(np.prod(x.shape[2:]))
    xs = x.reshape(n, c, inner)
    lab = labels.reshape(n, inner)
    total, valid = 0.0, 0
    for i in range(n):
        for j in range(inner):
            k = int(lab[i, j])
            if ignore is not None and k == ignore:
                continue
            z = xs[i, :, j]
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            total -= np.log(p[k])
            valid += 1
    norm = {"FULL": n * inner, "VALID": valid if ignore is not None else n * inner,
            "BATCH_SIZE": n, "NONE": 1}[mode]
    return total / max(norm, 1)


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_forward_each_normalization_with_ignore_label(xp, mode):
    x, labels = example()
    layer = make_layer(layer_text(f"normalization: {mode} ignore_label: {IGNORE}"), xp)
    (loss,) = run(layer, [blob(x, xp), blob(labels, xp)])
    assert loss.shape == ()
    np.testing.assert_allclose(float(host(loss.data)), ref_loss(x, labels, mode, IGNORE),
                               rtol=1e-10)


def test_default_is_valid_and_counts_every_label_without_ignore(xp):
    x, labels = example(ignore_some=False)
    (loss,) = run(make_layer(layer_text(), xp), [blob(x, xp), blob(labels, xp)])
    np.testing.assert_allclose(float(host(loss.data)), ref_loss(x, labels, "VALID"), rtol=1e-10)


@pytest.mark.parametrize(("normalize", "mode"), [("true", "VALID"), ("false", "BATCH_SIZE")])
def test_legacy_normalize_flag(normalize, mode):
    x, labels = example()
    layer = make_layer(layer_text(f"normalize: {normalize} ignore_label: {IGNORE}"))
    (loss,) = run(layer, [blob(x), blob(labels)])
    np.testing.assert_allclose(float(loss.data), ref_loss(x, labels, mode, IGNORE), rtol=1e-10)


def test_normalization_wins_over_legacy_normalize():
    x, labels = example()
    layer = make_layer(layer_text(f"normalize: false normalization: NONE ignore_label: {IGNORE}"))
    (loss,) = run(layer, [blob(x), blob(labels)])
    np.testing.assert_allclose(float(loss.data), ref_loss(x, labels, "NONE", IGNORE), rtol=1e-10)


def test_all_ignored_gives_zero_not_nan():
    x, labels = example(shape=(2, 3), ignore_some=False)
    labels[:] = IGNORE
    layer = make_layer(layer_text(f"ignore_label: {IGNORE}"))
    (loss,) = run(layer, [blob(x), blob(labels)])
    assert float(loss.data) == 0.0


def test_second_top_is_the_probabilities(xp):
    x, labels = example(shape=(3, 4), ignore_some=False)
    layer = make_layer(layer_text(tops=("loss", "prob")), xp, np.float32)
    loss, prob = run(layer, [blob(x, xp, np.float32), blob(labels, xp, np.float32)])
    assert loss.data.dtype == np.float32
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(host(prob.data), e / e.sum(axis=1, keepdims=True), rtol=1e-5)


def test_other_axis():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5))  # classes on the last axis
    labels = rng.integers(0, 5, (3, 2)).astype(float)
    (loss,) = run(make_layer(layer_text(axis=2)), [blob(x), blob(labels)])
    moved = np.moveaxis(x, 2, 1)
    np.testing.assert_allclose(float(loss.data), ref_loss(moved, labels, "VALID"), rtol=1e-10)


def test_extreme_logits_stay_finite(xp):
    x = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    labels = np.array([1.0, 0.0])  # both maximally wrong
    layer = make_layer(layer_text(), xp, np.float32)
    (loss,) = run(layer, [blob(x, xp, np.float32), blob(labels, xp, np.float32)])
    value = float(host(loss.data))
    assert np.isfinite(value)
    np.testing.assert_allclose(value, -np.log(np.finfo(np.float32).tiny), rtol=1e-5)


def test_backward_scales_by_loss_weight_and_skips_label(xp):
    x, labels = example(shape=(3, 4), ignore_some=False)
    layer = make_layer(layer_text(), xp)
    bottom = [blob(x, xp), blob(labels, xp)]
    (loss,) = run(layer, bottom)
    bottom[1].diff[...] = 7
    loss.diff[...] = 2.5  # the loss weight, put there by the net
    layer.backward([loss], [True, False], bottom)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(3), labels.astype(int).ravel()] -= 1
    np.testing.assert_allclose(host(bottom[0].diff), 2.5 * p / 3, rtol=1e-10)
    assert (host(bottom[1].diff) == 7).all()


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_gradient_each_normalization(mode):
    x, labels = example(shape=(3, 4, 2, 2))
    layer = make_layer(layer_text(f"normalization: {mode} ignore_label: {IGNORE}"))
    check_gradient(layer, [blob(x), blob(labels)], check_bottom=[0])


def test_ignored_positions_get_zero_gradient():
    x, labels = example()
    layer = make_layer(layer_text(f"ignore_label: {IGNORE}"))
    bottom = [blob(x), blob(labels)]
    (loss,) = run(layer, bottom)
    loss.diff[...] = 1
    layer.backward([loss], [True, False], bottom)
    ignored = np.broadcast_to(labels == IGNORE, x.shape)
    assert (bottom[0].diff[ignored] == 0).all()
    assert (bottom[0].diff[~ignored] != 0).all()


def test_label_count_mismatch_is_an_error():
    layer = make_layer(layer_text())
    with pytest.raises(ValueError, match=r"'loss'.*label count 4.*number of predictions 8"):
        run(layer, [blob(np.zeros((4, 5, 2))), blob(np.zeros((4,)))])


def test_first_dimension_mismatch_is_an_error():
    layer = make_layer(layer_text())
    with pytest.raises(ValueError, match="same first dimension"):
        run(layer, [blob(np.zeros((4, 5))), blob(np.zeros((1, 4)))])


@pytest.mark.parametrize("bad", [5.0, -2.0])
def test_label_out_of_range_is_an_error(bad):
    layer = make_layer(layer_text(f"ignore_label: {IGNORE}"))
    with pytest.raises(ValueError, match=f"label {int(bad)} is not a class index in \\[0, 5\\)"):
        run(layer, [blob(np.zeros((2, 5))), blob(np.array([1.0, bad]))])

"""SigmoidCrossEntropyLoss: the loss by hand, its default BATCH_SIZE normalization and the
others, ignore_label, extreme scores, loss-weight scaling and finite-difference gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

IGNORE = -1


def text(loss_param=""):
    t = 'name: "xent" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss"'
    return t + (f" loss_param {{ {loss_param} }}" if loss_param else "")


def example(seed=0, shape=(3, 4, 2)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) * 3, rng.uniform(0, 1, shape)


def naive(x, t, norm, mask=None):
    s = 1 / (1 + np.exp(-x))
    per = -(t * np.log(s) + (1 - t) * np.log(1 - s))
    if mask is not None:
        per = per * mask
    return per.sum() / norm


def test_hand_computed_value():
    # x = 0: s = 1/2, each element costs log 2 whatever the target; x = 2, t = 1: log(1+e^-2)
    x = np.array([[0.0, 2.0]])
    t = np.array([[0.3, 1.0]])
    (loss,) = run(make_layer(text()), [blob(x), blob(t)])
    assert float(loss.data) == pytest.approx(np.log(2) + np.log1p(np.exp(-2.0)), rel=1e-12)


def test_default_normalization_is_batch_size(xp):
    x, t = example()
    (loss,) = run(make_layer(text(), xp), [blob(x, xp), blob(t, xp)])
    np.testing.assert_allclose(float(host(loss.data)), naive(x, t, 3), rtol=1e-10)


@pytest.mark.parametrize(("mode", "norm"), [("FULL", 24), ("BATCH_SIZE", 3), ("NONE", 1)])
def test_other_modes(mode, norm):
    x, t = example()
    (loss,) = run(make_layer(text(f"normalization: {mode}")), [blob(x), blob(t)])
    np.testing.assert_allclose(float(loss.data), naive(x, t, norm), rtol=1e-10)


def test_ignore_label_with_valid_normalization(xp):
    x, t = example()
    t.reshape(-1)[[0, 5, 7]] = IGNORE
    layer = make_layer(text(f"ignore_label: {IGNORE} normalization: VALID"), xp)
    bottom = [blob(x, xp), blob(t, xp)]
    (loss,) = run(layer, bottom)
    mask = (t != IGNORE).astype(float)
    np.testing.assert_allclose(float(host(loss.data)), naive(x, t, 21, mask), rtol=1e-10)
    loss.diff[...] = 1
    layer.backward([loss], [True, False], bottom)
    assert (host(bottom[0].diff)[t == IGNORE] == 0).all()


def test_legacy_normalize_true_means_valid():
    x, t = example()
    (loss,) = run(make_layer(text("normalize: true")), [blob(x), blob(t)])
    np.testing.assert_allclose(float(loss.data), naive(x, t, 24), rtol=1e-10)


def test_extreme_scores_stay_finite():
    x = np.array([[1000.0, -1000.0]])
    t = np.array([[0.0, 1.0]])  # both maximally wrong: 1000 each
    (loss,) = run(make_layer(text(), dtype=np.float32), [blob(x, dtype=np.float32),
                                                          blob(t, dtype=np.float32)])
    assert float(loss.data) == pytest.approx(2000.0)


def test_backward_is_sigmoid_minus_target_times_loss_weight():
    x, t = example(1)
    layer = make_layer(text())
    bottom = [blob(x), blob(t)]
    (loss,) = run(layer, bottom)
    loss.diff[...] = 2.0
    layer.backward([loss], [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, 2.0 * (1 / (1 + np.exp(-x)) - t) / 3, rtol=1e-10)


@pytest.mark.parametrize("param", ["", f"ignore_label: {IGNORE} normalization: VALID",
                                   "normalization: FULL"])
def test_gradient(param):
    x, t = example(2, (2, 3, 2))
    t.reshape(-1)[[1, 4]] = IGNORE if param.startswith("ignore") else t.reshape(-1)[[1, 4]]
    check_gradient(make_layer(text(param)), [blob(x), blob(t)], check_bottom=[0])


def test_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"'xent'.*same count"):
        run(make_layer(text()), [blob(np.zeros((2, 3))), blob(np.zeros((2, 4)))])

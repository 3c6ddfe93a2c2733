"""MVN: Caffe's zero-mean/unit-variance checks (per channel, across channels, mean only),
hand-computed values with eps added to the standard deviation, the legacy 4-D top,
in place, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError


def text(param="", top="y"):
    body = f"mvn_param {{ {param} }}" if param else ""
    return f'name: "mvn" type: "MVN" bottom: "x" top: "{top}" {body}'


@pytest.mark.parametrize("param, axes, unit_var", [
    ("", (2, 3), True), ("across_channels: true", (1, 2, 3), True),
    ("normalize_variance: false", (2, 3), False)])
def test_caffe_forward_checks(xp, param, axes, unit_var):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 3 + 1
    (y,) = run(make_layer(text(param), xp), [blob(x, xp)])
    y = host(y.data)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-3)
    if unit_var:
        np.testing.assert_allclose((y * y).mean(axis=axes), 1, atol=1e-3)
    else:
        np.testing.assert_allclose(y, x - x.mean(axis=axes, keepdims=True), atol=1e-12)


def test_hand_computed_eps_is_added_to_the_standard_deviation():
    # values 1, 3 -> mean 2, std 1; eps 0.5 -> (x - 2) / 1.5
    layer = make_layer(text("eps: 0.5"))
    (y,) = run(layer, [blob(np.array([[[[1.0, 3.0]]]]))])
    np.testing.assert_allclose(y.data, [[[[-1 / 1.5, 1 / 1.5]]]])


def test_top_is_the_legacy_4d_shape():
    x = np.random.default_rng(1).standard_normal((3, 4))
    (y,) = run(make_layer(text("across_channels: true")), [blob(x)])
    assert y.shape == (3, 4, 1, 1)
    want = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-9)
    np.testing.assert_allclose(y.data[:, :, 0, 0], want, rtol=1e-10)
    with pytest.raises(LayerSetupError, match="1 to 4 axes"):
        run(make_layer(text()), [blob(np.zeros((1, 2, 3, 4, 5)))])


def test_in_place_matches():
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal((2, 3, 2, 2))
    layer = make_layer(text())
    bottom = [blob(x)]
    (y,) = run(layer, bottom)
    y.diff[...] = dy
    layer.backward([y], [True], bottom)
    same = make_layer(text(top="x"))
    b = blob(x)
    same.setup([b], [b])
    same.reshape([b], [b])
    same.forward([b], [b])
    np.testing.assert_allclose(b.data, y.data, rtol=1e-14)
    b.diff[...] = dy
    same.backward([b], [True], [b])
    np.testing.assert_allclose(b.diff, bottom[0].diff, rtol=1e-12)


@pytest.mark.parametrize("param", ["", "across_channels: true", "normalize_variance: false",
                                   "normalize_variance: false across_channels: true"])
def test_gradient(param):
    x = np.random.default_rng(3).standard_normal((2, 3, 3, 2))
    check_gradient(make_layer(text(param)), [blob(x)])

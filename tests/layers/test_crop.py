"""Crop: Caffe's cases on a 2x4x5x4 bottom cut to 2x3x4x2 (axis 0 with four offsets, the
default axis 2, axis -1, the uncropped axes free to differ), a 5-D crop, offset rules and
their errors, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError

DATA, LIKE = (2, 4, 5, 4), (2, 3, 4, 2)


def text(param=""):
    body = f"crop_param {{ {param} }}" if param else ""
    return f'name: "crop" type: "Crop" bottom: "x" bottom: "like" top: "y" {body}'


def bottoms(data=DATA, like=LIKE, xp=np, seed=0):
    x = np.random.default_rng(seed).standard_normal(data)
    return x, [blob(x, xp), blob(np.zeros(like), xp)]


@pytest.mark.parametrize("param, shape, index", [
    ("axis: 0", LIKE, np.s_[:2, :3, :4, :2]),                                   # CropAll
    ("axis: 0 offset: 0 offset: 1 offset: 1 offset: 2", LIKE,
     np.s_[:2, 1:4, 1:5, 2:4]),                                                  # CropAllOffset
    ("axis: 2 offset: 1 offset: 2", (2, 4, 4, 2), np.s_[:, :, 1:5, 2:4]),        # CropHW
    ("", (2, 4, 4, 2), np.s_[:, :, :4, :2]),                                     # default axis 2
    ("axis: -1", (2, 4, 5, 2), np.s_[..., :2]),                                  # negative axis
    ("axis: 1 offset: 1", LIKE, np.s_[:, 1:4, 1:5, 1:3]),                        # one for all
])
def test_forward_matches_caffe_cases(xp, param, shape, index):
    x, b = bottoms(xp=xp)
    (y,) = run(make_layer(text(param), xp), b)
    assert y.shape == shape
    np.testing.assert_array_equal(host(y.data), x[index])


def test_uncropped_axes_may_differ():
    # Caffe's TestDimensionsCheck: bottom[1] has 5 channels, but channels are not cropped
    x, b = bottoms(like=(2, 5, 4, 2))
    (y,) = run(make_layer(text()), b)
    assert y.shape == (2, 4, 4, 2)


def test_5d_crop():
    x, b = bottoms(data=(2, 3, 4, 5, 6), like=(2, 3, 2, 3, 4), seed=1)
    (y,) = run(make_layer(text("axis: 2 offset: 1 offset: 2 offset: 0")), b)
    np.testing.assert_array_equal(y.data, x[:, :, 1:3, 2:5, 0:4])


@pytest.mark.parametrize("param, like, message", [
    ("axis: 2 offset: 1 offset: 1 offset: 1", LIKE, "3 offsets given for the 2 axes"),
    ("axis: 2 offset: 2", LIKE, "axis 2: a crop of 4 at offset 2 does not fit.* size 5"),
    ("axis: 0", (3, 3, 4, 2), "axis 0: a crop of 3"),
    ("axis: 4", LIKE, "out of range"),
    ("", (2, 3, 4), "needs the 4 axes"),
])
def test_bad_offsets_and_shapes(param, like, message):
    _, b = bottoms(like=like)
    with pytest.raises(LayerSetupError, match=message):
        run(make_layer(text(param)), b)


def test_backward_puts_the_diff_back_at_the_offsets():
    _, b = bottoms()
    layer = make_layer(text("offset: 1 offset: 2"))
    (y,) = run(layer, b)
    b[0].diff[...] = 7
    y.diff[...] = 1
    layer.backward([y], [True, False], b)
    want = np.zeros(DATA)
    want[:, :, 1:5, 2:4] = 1
    np.testing.assert_array_equal(b[0].diff, want)


@pytest.mark.parametrize("param", ["axis: 0", "offset: 1 offset: 2",
                                   "axis: 0 offset: 0 offset: 1 offset: 1 offset: 2"])
def test_gradient(param):
    _, b = bottoms(seed=2)
    check_gradient(make_layer(text(param)), b, check_bottom=[0])

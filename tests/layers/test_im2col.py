"""Im2col: Caffe's shape (dilation) and top-left-column checks (square and rectangular
kernels), all columns against the reference convolution's patches, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError


def text(param):
    return f'name: "i2c" type: "Im2col" bottom: "x" top: "y" convolution_param {{ {param} }}'


def test_caffe_setup_shape_with_dilation():
    (y,) = run(make_layer(text("kernel_size: 3 stride: 2 dilation: 3")),
               [blob(np.zeros((2, 3, 10, 11)))])
    assert y.shape == (2, 27, 2, 3)


@pytest.mark.parametrize("param, kh, kw", [("kernel_size: 3 stride: 2", 3, 3),
                                            ("kernel_h: 5 kernel_w: 3 stride: 2", 5, 3)])
def test_caffe_top_left_column(xp, param, kh, kw):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5))
    (y,) = run(make_layer(text(param), xp), [blob(x, xp)])
    y = host(y.data)
    for c in range(3 * kh * kw):
        assert y[0, c, 0, 0] == x[0, c // (kh * kw), (c // kw) % kh, c % kw]


def test_every_column_is_a_padded_dilated_window(xp):
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 6))
    (y,) = run(make_layer(text("kernel_h: 2 kernel_w: 3 stride: 2 pad: 1 dilation: 2"), xp),
               [blob(x, xp)])
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = (5 + 2 - 3) // 2 + 1, (6 + 2 - 5) // 2 + 1
    want = np.empty((2, 2, 2, 3, oh, ow))
    for i in range(2):
        for j in range(3):
            want[:, :, i, j] = padded[:, :, 2 * i:2 * i + 2 * oh - 1:2, 2 * j:2 * j + 2 * ow - 1:2]
    np.testing.assert_array_equal(host(y.data), want.reshape(2, 12, oh, ow))


@pytest.mark.parametrize("param", ["kernel_size: 3 stride: 2", "kernel_h: 5 kernel_w: 3 "
                                   "stride: 2", "kernel_size: 3 pad: 1 dilation: 2"])
def test_gradient(param):
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 5))
    check_gradient(make_layer(text(param)), [blob(x)])


def test_errors():
    with pytest.raises(LayerSetupError, match="4-D"):
        run(make_layer(text("kernel_size: 3")), [blob(np.zeros((2, 3, 4)))])
    with pytest.raises(LayerSetupError, match="does not fit"):
        run(make_layer(text("kernel_size: 7")), [blob(np.zeros((1, 1, 4, 4)))])

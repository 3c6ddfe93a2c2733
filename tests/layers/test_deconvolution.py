"""Deconvolution: Caffe's shape and overlap checks (TestSetup, TestSimpleDeconvolution),
forward and backward as the adjoint of the reference convolution (stride, pad, dilation,
groups, bias, two bottoms, channels-last), finite-difference gradients, errors."""

import numpy as np
import pytest
from compute_util import backward, forward, host, make, to_blob
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers import reference
from pipeline_lib.engine.layers.base import LayerSetupError

CASES = {
    # name: (conv_param body, bottom shape, pad, stride, dilation, group)
    "plain": ("num_output: 3 kernel_size: 3", (2, 2, 4, 3), (0, 0), (1, 1), (1, 1), 1),
    "stride_pad": ("num_output: 2 kernel_size: 4 stride: 2 pad: 1", (2, 3, 3, 4),
                   (1, 1), (2, 2), (1, 1), 1),
    "non_square": ("num_output: 2 kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 3 pad_h: 1",
                   (1, 2, 3, 3), (1, 0), (1, 3), (1, 1), 1),
    "dilation": ("num_output: 2 kernel_size: 3 dilation: 2 stride: 2", (2, 2, 3, 3),
                 (0, 0), (2, 2), (2, 2), 1),
    "group": ("num_output: 4 kernel_size: 3 group: 2 stride: 2 pad: 1", (2, 6, 3, 3),
              (1, 1), (2, 2), (1, 1), 2),
}


def deconv(body, xp=np, dtype=np.float64, bias=True, bottoms=1):
    fill = ('weight_filler { type: "gaussian" std: 1 } '
            'bias_filler { type: "uniform" min: -1 max: 1 }')
    names = "".join(f'bottom: "x{i}" top: "y{i}" ' for i in range(bottoms))
    return make(f'name: "up" type: "Deconvolution" {names}convolution_param {{ {body} {fill}'
                f'{"" if bias else " bias_term: false"} }}', xp, dtype)


def expected_forward(x, w, b, pad, stride, dil, group, out_hw):
    """The adjoint of a convolution from the top's shape to the bottom's, plus the bias."""
    n = x.shape[0]
    zeros = np.zeros((n, w.shape[1] * group) + out_hw)
    y, _, _ = reference.conv_backward(zeros, w, x, stride, pad, dil, group)
    return y + (b[None, :, None, None] if b is not None else 0)


def test_caffe_setup_shapes():
    # Caffe's TestSetup: 2x3x6x4, kernel 3, stride 2 -> 13x9, with or without groups
    for body, channels in [("num_output: 4", 4), ("num_output: 3 group: 3", 3)]:
        layer = deconv(f"{body} kernel_size: 3 stride: 2", bottoms=2)
        top = forward(layer, [to_blob(np.zeros((2, 3, 6, 4)))] * 2, num_top=2)
        assert [t.shape for t in top] == [(2, channels, 13, 9)] * 2
        assert layer.blobs[0].shape == (3, channels // (3 if "group" in body else 1), 3, 3)


def test_caffe_simple_deconvolution_overlaps():
    # Caffe's TestSimpleDeconvolution: ones in, weights 1, bias 0.1, kernel 3, stride 2:
    # 3.1 everywhere, +3 where two windows overlap along one axis, +9 along both
    layer = make('name: "up" type: "Deconvolution" bottom: "a" bottom: "b" top: "p" top: "q" '
                 'convolution_param { num_output: 4 kernel_size: 3 stride: 2 '
                 'weight_filler { type: "constant" value: 1 } '
                 'bias_filler { type: "constant" value: 0.1 } }')
    top = forward(layer, [to_blob(np.ones((2, 3, 6, 4)))] * 2, num_top=2)
    h_over = (np.arange(13) % 2 == 0) & (np.arange(13) > 0) & (np.arange(13) < 12)
    w_over = (np.arange(9) % 2 == 0) & (np.arange(9) > 0) & (np.arange(9) < 8)
    both, either = h_over[:, None] & w_over, h_over[:, None] | w_over
    want = 3.1 + np.where(both, 9, np.where(either, 3, 0))
    for t in top:  # 0.1 is a float32 in the prototxt
        np.testing.assert_allclose(t.data, np.broadcast_to(want, (2, 4, 13, 9)), atol=1e-8)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_backward_are_the_convolution_adjoint(xp, case, channels_last):
    if channels_last and xp is not np:
        pytest.skip("channels-last blobs are a NumPy layout")
    body, shape, pad, stride, dil, group = CASES[case]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    layer = deconv(body, xp)
    bottom = [to_blob(x, xp, channels_last=channels_last)]
    top = forward(layer, bottom, channels_last=channels_last)
    w, b = host(layer.blobs[0].data), host(layer.blobs[1].data)
    want = expected_forward(x, w, b, pad, stride, dil, group, top[0].shape[2:])
    np.testing.assert_allclose(host(top[0].data), want, rtol=1e-10, atol=1e-10)

    dy = rng.standard_normal(top[0].shape)
    backward(layer, top, bottom, [dy])
    dx = reference.conv_forward(dy, w, None, stride, pad, dil, group)
    _, dw, _ = reference.conv_backward(dy, w, x, stride, pad, dil, group)
    np.testing.assert_allclose(host(bottom[0].diff), dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(host(layer.blobs[0].diff), dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(host(layer.blobs[1].diff), dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_float32_matches_float64():
    body, shape, *_ = CASES["group"]
    x = np.random.default_rng(2).standard_normal(shape)
    y64 = forward(deconv(body), [to_blob(x)])[0].data
    y32 = forward(deconv(body, dtype=np.float32), [to_blob(x, dtype=np.float32)])[0].data
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_finite_differences(case):
    body, shape, *_ = CASES[case]
    x = np.random.default_rng(3).standard_normal(shape)
    check_gradient(deconv(body), [to_blob(x)])


def test_gradient_two_bottoms_without_bias():
    rng = np.random.default_rng(4)
    layer = deconv("num_output: 2 kernel_size: 2 stride: 2", bias=False, bottoms=2)
    check_gradient(layer, [to_blob(rng.standard_normal((2, 2, 2, 3))) for _ in range(2)])
    assert len(layer.blobs) == 1


def test_param_diffs_accumulate_bottom_diff_is_overwritten():
    layer = deconv("num_output: 2 kernel_size: 3 stride: 2")
    bottom = [to_blob(np.random.default_rng(5).standard_normal((1, 2, 3, 3)))]
    top = forward(layer, bottom)
    backward(layer, top, bottom, [np.ones(top[0].shape)])
    once = [p.diff.copy() for p in layer.blobs] + [bottom[0].diff.copy()]
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * once[0])
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * once[1])
    np.testing.assert_allclose(bottom[0].diff, once[2])


def test_bilinear_upsampling_as_fcn_uses_it():
    # FCN's upscore: group = channels, bilinear weights, stride 2, kernel 4, pad 1: x2 size
    layer = make('name: "up" type: "Deconvolution" convolution_param { num_output: 3 '
                 'group: 3 kernel_size: 4 stride: 2 pad: 1 bias_term: false '
                 'weight_filler { type: "bilinear" } }')
    x = np.ones((1, 3, 4, 4))
    (y,) = forward(layer, [to_blob(x)])
    assert y.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(y.data[:, :, 1:-1, 1:-1], 1.0)  # constant stays constant


@pytest.mark.parametrize("body, message", [
    ("num_output: 3 kernel_size: 3 group: 2", "group"),
    ("kernel_size: 3", "num_output"),
    ("num_output: 2", "kernel_size"),
    ("num_output: 2 kernel_size: 3 axis: 2", "axis"),
    ("num_output: 2 kernel_size: 1 pad: 2", "padding"),
])
def test_bad_parameters_are_errors(body, message):
    layer = make(f'name: "bad" type: "Deconvolution" convolution_param {{ {body} }}')
    with pytest.raises(LayerSetupError, match=message):
        forward(layer, [Blob((1, 4, 3, 3))])

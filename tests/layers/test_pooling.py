"""Pooling: forward, mask and backward against the reference kernels (fixed cases and random
configurations), shape rules, finite-difference gradients."""

import numpy as np
import pytest
from compute_util import backward, forward, host, make, to_blob
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers import reference
from pipeline_lib.engine.layers.base import LayerSetupError
from pipeline_lib.engine.layers.conv_utils import pool_out_size

CASES = {
    # name: (pooling_param body without pool, bottom shape, kernel, stride, pad, ceil)
    "lenet_2x2": ("kernel_size: 2 stride: 2", (2, 3, 8, 8), (2, 2), (2, 2), (0, 0), True),
    "overlap_3x3s2": ("kernel_size: 3 stride: 2", (2, 2, 7, 8), (3, 3), (2, 2), (0, 0), True),
    "ceil_overhang": ("kernel_size: 3 stride: 2", (1, 2, 6, 6), (3, 3), (2, 2), (0, 0), True),
    "pad_clip": ("kernel_size: 2 stride: 2 pad: 1", (2, 2, 5, 5), (2, 2), (2, 2), (1, 1), True),
    "pad_3x3s2": ("kernel_size: 3 stride: 2 pad: 1", (1, 2, 6, 7), (3, 3), (2, 2), (1, 1), True),
    "non_square": ("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0",
                   (2, 2, 5, 7), (3, 2), (1, 2), (1, 0), True),
    "floor": ("kernel_size: 3 stride: 2 round_mode: FLOOR", (1, 2, 8, 8),
              (3, 3), (2, 2), (0, 0), False),
    "gaps": ("kernel_size: 2 stride: 3", (1, 2, 8, 8), (2, 2), (3, 3), (0, 0), True),
    "stride1": ("kernel_size: 2", (1, 3, 4, 5), (2, 2), (1, 1), (0, 0), True),
}


def reference_pool(x, method, k, s, p, ceil=True):
    """(top, mask or None) from the reference kernels."""
    if method == "MAX":
        return reference.max_pool_forward(x, k, s, p, ceil)
    return reference.ave_pool_forward(x, k, s, p, ceil), None


def pool_layer(method, body, xp=np, dtype=np.float64, tops=1):
    top = ' top: "y"' + (' top: "mask"' if tops > 1 else "")
    return make(f'name: "pool" type: "Pooling" bottom: "x"{top} '
                f'pooling_param {{ pool: {method} {body} }}', xp, dtype)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_matches_the_reference(xp, case, method, dtype, channels_last):
    body, shape, k, s, p, ceil = CASES[case]
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    layer = pool_layer(method, body, xp, dtype)
    (y,) = forward(layer, [to_blob(x, xp, dtype, channels_last)], channels_last=channels_last)
    want, _ = reference_pool(x, method, k, s, p, ceil)
    assert y.shape == want.shape and y.data.dtype == dtype
    np.testing.assert_allclose(host(y.data), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mask_top_is_caffes_bottom_index(xp, case, channels_last):
    body, shape, k, s, p, ceil = CASES[case]
    x = np.random.default_rng(2).standard_normal(shape)
    layer = pool_layer("MAX", body, xp, tops=2)
    y, mask = forward(layer, [to_blob(x, xp, channels_last=channels_last)], num_top=2,
                      channels_last=channels_last)
    _, want = reference_pool(x, "MAX", k, s, p, ceil)
    assert mask.shape == y.shape
    np.testing.assert_array_equal(host(mask.data), want)


def test_ties_go_to_the_first_maximum(xp, channels_last):
    x = np.zeros((1, 2, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = 5.0   # both in the first window; (1, 0) comes first
    x[0, 0, 2:, 2:] = -1.0                # a window of equal values
    x[0, 1] = 7.0                         # another channel, all equal
    layer = pool_layer("MAX", "kernel_size: 2 stride: 2", xp, tops=2)
    bottom = [to_blob(x, xp, channels_last=channels_last)]
    y, mask = forward(layer, bottom, num_top=2, channels_last=channels_last)
    _, want = reference_pool(x, "MAX", (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(host(mask.data), want)
    backward(layer, [y, mask], bottom, [np.ones(y.shape), np.zeros(y.shape)])
    dx = host(bottom[0].diff)[0, 0]
    assert dx[1, 0] == 1 and dx[1, 1] == 0 and dx[2, 2] == 1 and dx.sum() == 4
    assert (host(bottom[0].diff)[0, 1] == np.kron(np.ones((2, 2)), [[1, 0], [0, 0]])).all()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_gradients_match_finite_differences(case, method, channels_last):
    body, shape, *_ = CASES[case]
    # distinct values, far apart relative to eps: no ties for MAX
    rng = np.random.default_rng(3)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + 0.1
    check_gradient(pool_layer(method, body), [to_blob(x, channels_last=channels_last)],
                   check_params=False, channels_last=channels_last)


@pytest.mark.parametrize("case", ["overlap_3x3s2", "pad_3x3s2", "lenet_2x2"])
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_backward_matches_the_reference(xp, case, method, channels_last):
    body, shape, k, s, p, ceil = CASES[case]
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    layer = pool_layer(method, body, xp)
    bottom = [to_blob(x, xp, channels_last=channels_last)]
    top = forward(layer, bottom, channels_last=channels_last)
    dy = rng.standard_normal(top[0].shape)
    bottom[0].diff[...] = 9  # must be overwritten
    backward(layer, top, bottom, [dy])
    if method == "MAX":
        _, mask = reference.max_pool_forward(x, k, s, p, ceil)
        want = reference.max_pool_backward(dy, mask, x.shape)
    else:
        want = reference.ave_pool_backward(dy, x.shape, k, s, p)
    np.testing.assert_allclose(host(bottom[0].diff), want, atol=1e-12)


RANDOM_CONFIGURATIONS = 80


def random_pooling(seed: int, gpu: bool) -> dict:
    """A random layer and input: MAX (half of them on small integers, so full of ties, some
    with the mask top) or AVE, every window parameter, ceil or floor, global pooling, dtype
    and (on NumPy, as the net sets them) channels-last bottoms and tops."""
    rng = np.random.default_rng(seed)
    method = "MAX" if rng.random() < 0.5 else "AVE"
    n, c = (int(v) for v in rng.integers(1, 4, 2))
    if rng.random() < 0.15:
        hw = rng.integers(1, 7, 2)
        body, kernel, stride, pad, ceil = ("global_pooling: true", tuple(hw), (1, 1), (0, 0),
                                           True)
    else:
        kernel, stride = rng.integers(1, 5, 2), rng.integers(1, 4, 2)
        pad = np.array([rng.integers(0, k) for k in kernel])
        hw = np.maximum(kernel - 2 * pad, 1) + rng.integers(0, 7, 2)
        ceil = bool(rng.random() < 0.8)
        body = (f"kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} "
                f"stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]}"
                + ("" if ceil else " round_mode: FLOOR"))
        kernel, stride, pad = tuple(kernel), tuple(stride), tuple(pad)
    bottom_last, top_last = (False, False) if gpu else tuple(bool(v) for v in rng.random(2) < 0.5)
    return dict(method=method, body=body, shape=(n, c, int(hw[0]), int(hw[1])),
                window=(kernel, stride, pad, ceil), ties=bool(rng.random() < 0.5),
                tops=2 if method == "MAX" and rng.random() < 0.5 else 1,
                dtype=np.float32 if rng.random() < 0.3 else np.float64,
                bottom_last=bottom_last, top_last=top_last)


@pytest.mark.parametrize("seed", range(RANDOM_CONFIGURATIONS))
def test_random_configurations_match_the_reference(xp, seed):
    cfg = random_pooling(seed, gpu=xp is not np)
    dtype, method, shape = cfg["dtype"], cfg["method"], cfg["shape"]
    kernel, stride, pad, ceil = cfg["window"]
    rng = np.random.default_rng(1000 + seed)
    if cfg["ties"]:
        x = rng.integers(-2, 3, shape).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    layer = pool_layer(method, cfg["body"], xp, dtype, tops=cfg["tops"])
    bottom = [to_blob(x, xp, dtype, cfg["bottom_last"])]
    top = forward(layer, bottom, cfg["tops"], channels_last=cfg["top_last"])
    want, mask = reference_pool(x, method, kernel, stride, pad, ceil)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(host(top[0].data), want, **tol)
    if cfg["tops"] == 2:
        np.testing.assert_array_equal(host(top[1].data), mask)

    dy = rng.standard_normal(want.shape)
    bottom[0].diff[...] = 9  # overwritten, not added to
    backward(layer, top, bottom, [dy] + [np.zeros(want.shape)] * (cfg["tops"] - 1))
    if method == "MAX":
        dx = reference.max_pool_backward(dy, mask, shape)
    else:
        dx = reference.ave_pool_backward(dy, shape, kernel, stride, pad)
    np.testing.assert_allclose(host(bottom[0].diff), dx, **tol)


def test_global_pooling(xp):
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 5))
    for method, want in (("MAX", x.max(axis=(2, 3))), ("AVE", x.mean(axis=(2, 3)))):
        layer = pool_layer(method, "global_pooling: true", xp)
        bottom = [to_blob(x, xp)]
        (y,) = forward(layer, bottom)
        assert y.shape == (2, 3, 1, 1)
        np.testing.assert_allclose(host(y.data)[:, :, 0, 0], want, atol=1e-12)
        check_gradient(pool_layer(method, "global_pooling: true"), [to_blob(x)],
                       check_params=False)


@pytest.mark.parametrize("sizes", [(55, 27), (27, 13), (13, 6)])
def test_caffenet_shapes_round_up(sizes):
    h, out = sizes
    layer = pool_layer("MAX", "kernel_size: 3 stride: 2")
    top = [Blob(())]
    layer.setup([Blob((1, 2, h, h))], top)
    layer.reshape([Blob((1, 2, h, h))], top)
    assert top[0].shape == (1, 2, out, out)


def test_output_size_rules():
    assert pool_out_size(6, 3, 0, 2) == 3            # ceil(1.5) + 1
    assert pool_out_size(6, 3, 0, 2, False) == 2     # FLOOR
    assert pool_out_size(5, 2, 1, 2) == 3            # ceil gives 4; the 4th starts in padding
    assert pool_out_size(5, 2, 1, 2, False) == 3
    assert pool_out_size(24, 2, 0, 2) == 12
    assert pool_out_size(5, 1, 0, 3) == 3            # the 3rd window starts at 6, past the image
    assert pool_out_size(5, 1, 0, 3, clip=True) == 2  # ... dropped if the other side is padded


@pytest.mark.parametrize("body, out_hw", [
    # shapes real Caffe gave for a 6 x 9 bottom: padding on one side clips both
    ("kernel_size: 2 stride: 3 pad_h: 1 pad_w: 0", (3, 3)),
    ("kernel_size: 2 stride: 3 pad_h: 0 pad_w: 1", (2, 4)),
    ("kernel_size: 2 stride: 3", (3, 4)),  # unpadded: the 4th column window is past W
])
def test_padding_on_one_side_clips_both(body, out_hw):
    x = np.random.default_rng(7).standard_normal((2, 2, 6, 9))
    kernel, stride = (2, 2), (3, 3)
    pad = (1, 0) if "pad_h: 1" in body else (0, 1) if "pad_w: 1" in body else (0, 0)
    for method in ("MAX", "AVE"):
        (y,) = forward(pool_layer(method, body), [to_blob(x)])
        assert y.shape == (2, 2) + out_hw
        np.testing.assert_allclose(y.data, reference_pool(x, method, kernel, stride, pad)[0])


def test_windows_past_the_image(xp, channels_last):
    """Caffe's values for windows that start past the image (ceil rounding, stride > kernel,
    no padding): MAX -FLT_MAX and mask -1, AVE 0 over the signed clipped size."""
    x = np.arange(1.0, 61.0).reshape(1, 2, 6, 5)
    # rows: windows at 0, 3, 6 (6 is past the 6 rows: clipped size 0);
    # columns: at 0, 3, 6 (past the 5 columns: clipped size -1)
    body = "kernel_h: 2 kernel_w: 1 stride: 3"
    bottom = [to_blob(x, xp, channels_last=channels_last)]
    layer = pool_layer("MAX", body, xp, tops=2)
    top = forward(layer, bottom, num_top=2, channels_last=channels_last)
    y, m = host(top[0].data), host(top[1].data)
    past = np.zeros((3, 3), bool)
    past[2, :] = past[:, 2] = True
    assert (y[:, :, past] == -np.finfo(np.float32).max).all() and (m[:, :, past] == -1).all()
    np.testing.assert_array_equal(y[0, 0, :2, :2], [[6, 9], [21, 24]])   # the lower row wins
    np.testing.assert_array_equal(m[0, 1, :2, :2], [[5, 8], [20, 23]])
    backward(layer, top, bottom, [np.ones(y.shape), np.zeros(y.shape)])
    dx = host(bottom[0].diff)  # past windows route nowhere
    assert dx.sum() == 8 and (dx[0, :, [1, 1, 4, 4], [0, 3, 0, 3]] == 1).all()

    layer = pool_layer("AVE", body, xp)
    (y,) = forward(layer, bottom, channels_last=channels_last)
    y = host(y.data)
    np.testing.assert_array_equal(y[0, 0, :2, :2], [[3.5, 6.5], [18.5, 21.5]])
    assert np.isnan(y[:, :, 2, :]).all()                  # 0 / (0 * width): NaN
    assert (y[:, :, :2, 2] == 0).all() and np.signbit(y[:, :, :2, 2]).all()  # 0 / (2 * -1)
    dy = np.ones(y.shape)
    backward(layer, [to_blob(y, xp, channels_last=channels_last)], bottom, [dy])
    np.testing.assert_array_equal(host(bottom[0].diff), reference.ave_pool_backward(
        dy, x.shape, (2, 1), (3, 3)))
    # both sizes negative: 0 / (-1 * -1) is +0
    layer = pool_layer("AVE", "kernel_size: 1 stride: 3", xp)
    (y,) = forward(layer, [to_blob(x[:, :, :5], xp, channels_last=channels_last)],
                   channels_last=channels_last)
    corner = host(y.data)[:, :, 2, 2]
    assert (corner == 0).all() and not np.signbit(corner).any()


def test_padded_clip_shape_in_the_layer():
    layer = pool_layer("AVE", "kernel_size: 2 stride: 2 pad: 1")
    (y,) = forward(layer, [to_blob(np.ones((1, 1, 5, 5)))])
    assert y.shape == (1, 1, 3, 3)
    # corner windows hold one real pixel and three of padding: Caffe divides by 4
    assert y.data[0, 0, 0, 0] == 0.25 and y.data[0, 0, 1, 1] == 1.0


@pytest.mark.parametrize("body, message", [
    ("pool: STOCHASTIC kernel_size: 2", "STOCHASTIC"),
    ("kernel_size: 2 kernel_h: 2 kernel_w: 2", "not both"),
    ("kernel_h: 2", "kernel_h and kernel_w"),
    ("stride: 2", "kernel_size"),
    ("global_pooling: true kernel_size: 2", "global_pooling"),
    ("global_pooling: true stride: 2", "stride 1"),
    ("kernel_size: 2 pad: 2", "smaller than the kernel"),
    ("kernel_size: 2 pad_h: 1", "pad_h and pad_w"),
    ("kernel_size: 2 stride: 2 stride_h: 1 stride_w: 1", "not both"),
])
def test_bad_parameters_are_errors(body, message):
    layer = make(f'name: "bad" type: "Pooling" pooling_param {{ {body} }}')
    with pytest.raises(LayerSetupError, match=message):
        layer.setup([Blob((1, 1, 6, 6))], [Blob(())])


def test_mask_top_only_for_max():
    layer = pool_layer("AVE", "kernel_size: 2", tops=2)
    with pytest.raises(LayerSetupError, match="second top"):
        layer.setup([Blob((1, 1, 4, 4))], [Blob(()), Blob(())])


def test_reshape_to_new_sizes():
    rng = np.random.default_rng(6)
    layer = pool_layer("MAX", "kernel_size: 3 stride: 2 pad: 1")
    top = forward(layer, [to_blob(rng.standard_normal((2, 2, 7, 7)))])
    x = rng.standard_normal((3, 2, 10, 6))
    bottom = [to_blob(x)]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, reference_pool(x, "MAX", (3, 3), (2, 2), (1, 1))[0])

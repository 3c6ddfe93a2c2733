"""SPP: Caffe's shape checks (63 and 1023 values per image), each level's bins against
a direct max/average over Caffe's kernel and padding, pyramid height 1 as a plain 4-D
pooling, gradients (MAX and AVE)."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError
from pipeline_lib.engine.layers.spp import level_pooling


def text(param):
    return f'name: "spp" type: "SPP" bottom: "x" top: "y" spp_param {{ {param} }}'


@pytest.mark.parametrize("shape, height, values", [((2, 3, 9, 8), 3, 63),
                                                    ((4, 3, 1024, 765), 5, 1023),
                                                    ((10, 3, 7, 7), 3, 63)])
def test_caffe_output_sizes(shape, height, values):
    layer = make_layer(text(f"pyramid_height: {height}"))
    y = Blob()
    layer.setup([Blob(shape)], [y])
    layer.reshape([Blob(shape)], [y])
    assert y.shape == (shape[0], values)


def test_level_pooling_follows_caffe():
    # 9 rows in 4 bins: kernel 3, 3*4 - 9 = 3 rows short, pad (3 + 1) // 2 = 2
    p = level_pooling(2, 9, 8, 0)
    assert (p.kernel_h, p.stride_h, p.pad_h) == (3, 3, 2)
    assert (p.kernel_w, p.stride_w, p.pad_w) == (2, 2, 0)


def direct(x, level, method):
    """Each bin's max or average, computed with loops over Caffe's windows."""
    n, c, h, w = x.shape
    p = level_pooling(level, h, w, 0)
    bins = 2 ** level
    out = np.empty((n, c, bins, bins))
    for i in range(bins):
        for j in range(bins):
            r0, c0 = i * p.stride_h - p.pad_h, j * p.stride_w - p.pad_w
            r1, c1 = min(r0 + p.kernel_h, h + p.pad_h), min(c0 + p.kernel_w, w + p.pad_w)
            area = (r1 - r0) * (c1 - c0)
            win = x[:, :, max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)]
            out[:, :, i, j] = win.max(axis=(2, 3)) if method == "MAX" else \
                win.sum(axis=(2, 3)) / area
    return out.reshape(n, -1)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_forward_levels_in_order(xp, method):
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8))
    (y,) = run(make_layer(text(f"pyramid_height: 3 pool: {method}"), xp), [blob(x, xp)])
    want = np.concatenate([direct(x, level, method) for level in range(3)], axis=1)
    np.testing.assert_allclose(host(y.data), want, rtol=1e-12)


def test_pyramid_height_one_is_a_4d_global_pooling():
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 4))
    (y,) = run(make_layer(text("pyramid_height: 1")), [blob(x)])
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(y.data[:, :, 0, 0], x.max(axis=(2, 3)))


def test_a_new_image_size_rebuilds_the_levels():
    layer = make_layer(text("pyramid_height: 2 pool: AVE"))
    run(layer, [blob(np.zeros((1, 2, 4, 4)))])
    x = np.random.default_rng(2).standard_normal((1, 2, 7, 5))
    (y,) = run(layer, [blob(x)])
    want = np.concatenate([direct(x, 0, "AVE"), direct(x, 1, "AVE")], axis=1)
    np.testing.assert_allclose(y.data, want, rtol=1e-12)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_gradient(method):
    x = np.random.default_rng(3).permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0
    check_gradient(make_layer(text(f"pyramid_height: 3 pool: {method}")), [blob(x)])


def test_errors():
    with pytest.raises(LayerSetupError, match="pyramid_height"):
        run(make_layer('name: "spp" type: "SPP" bottom: "x" top: "y"'),
            [blob(np.zeros((1, 1, 4, 4)))])
    with pytest.raises(LayerSetupError, match="STOCHASTIC"):
        run(make_layer(text("pyramid_height: 2 pool: STOCHASTIC")), [blob(np.zeros((1, 1, 4, 4)))])

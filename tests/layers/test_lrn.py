"""LRN: both norm regions against naive loops, gradients, Caffe's parameter rules."""

import numpy as np
import pytest
from compute_util import forward, host, make, to_blob
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError


def naive_lrn(x, region, size, alpha, beta, k):
    n, c, h, w = x.shape
    alpha, beta, k = (float(np.float32(v)) for v in (alpha, beta, k))  # the proto's floats
    pre = (size - 1) // 2
    y = np.empty_like(x)
    for ni, ci, hi, wi in np.ndindex(x.shape):
        if region == "ACROSS_CHANNELS":
            lo, hi_c = max(ci - pre, 0), min(ci + pre + 1, c)
            s = k + alpha / size * np.sum(x[ni, lo:hi_c, hi, wi] ** 2)
        else:  # Caffe: AVE pooling of x^2 over size x size (divisor size^2), then 1 + alpha * .
            win = x[ni, ci, max(hi - pre, 0):hi + pre + 1, max(wi - pre, 0):wi + pre + 1]
            s = 1 + alpha * np.sum(win ** 2) / size ** 2
        y[ni, ci, hi, wi] = x[ni, ci, hi, wi] * s ** -beta
    return y


PARAMS = [
    ("ACROSS_CHANNELS", 5, 0.0001, 0.75, 1.0),   # CaffeNet's norm1/norm2
    ("ACROSS_CHANNELS", 3, 2.0, 0.6, 2.0),
    ("ACROSS_CHANNELS", 7, 1.5, 0.75, 0.5),      # window wider than the 5 channels
    ("WITHIN_CHANNEL", 3, 1.0, 0.75, 1.0),       # CIFAR-10 quick's norm
    ("WITHIN_CHANNEL", 5, 3.0, 0.4, 7.0),        # k is not used within a channel
]


def lrn_layer(region, size, alpha, beta, k, xp=np, dtype=np.float64):
    return make(f'name: "norm" type: "LRN" bottom: "x" top: "y" lrn_param {{ '
                f'norm_region: {region} local_size: {size} alpha: {alpha} beta: {beta} '
                f'k: {k} }}', xp, dtype)


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"{p[0]}-{p[1]}-{p[3]}")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_matches_naive_loop(xp, params, dtype):
    x = (np.random.default_rng(0).standard_normal((2, 5, 4, 3)) * 2).astype(dtype)
    (y,) = forward(lrn_layer(*params, xp, dtype), [to_blob(x, xp, dtype)])
    want = naive_lrn(x.astype(np.float64), *params)
    assert y.data.dtype == dtype
    np.testing.assert_allclose(host(y.data), want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"{p[0]}-{p[1]}-{p[3]}")
def test_gradients_match_finite_differences(params):
    x = np.random.default_rng(1).standard_normal((2, 5, 4, 3))
    check_gradient(lrn_layer(*params), [to_blob(x)], check_params=False)


def test_defaults_are_caffes():
    layer = make('name: "n" type: "LRN"')
    forward(layer, [to_blob(np.ones((1, 3, 2, 2)))])
    assert (layer.size, layer.alpha, layer.beta, layer.k, layer.across) == (5, 1.0, 0.75, 1.0,
                                                                            True)


def test_even_local_size_is_an_error():
    layer = make('name: "n" type: "LRN" lrn_param { local_size: 4 }')
    with pytest.raises(LayerSetupError, match="odd"):
        layer.setup([Blob((1, 3, 2, 2))], [Blob(())])


def test_in_place_is_an_error():
    layer = make('name: "n" type: "LRN"')
    b = Blob((1, 3, 2, 2))
    with pytest.raises(LayerSetupError, match="in place"):
        layer.setup([b], [b])

"""InnerProduct: forward against NumPy, axis and transpose, blob layout, gradients."""

import numpy as np
import pytest
from compute_util import backward, forward, host, make, to_blob
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError


def ip_layer(body="", xp=np, dtype=np.float64, bias=True):
    extra = "" if bias else " bias_term: false"
    return make('name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { '
                f'num_output: 4 {body}{extra} weight_filler {{ type: "gaussian" std: 1 }} '
                'bias_filler { type: "uniform" min: -1 max: 1 } }', xp, dtype)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_flattens_from_axis_1(xp, transpose, dtype):
    x = np.random.default_rng(0).standard_normal((3, 2, 3, 2)).astype(dtype)
    layer = ip_layer(f"transpose: {str(transpose).lower()}", xp, dtype)
    (y,) = forward(layer, [to_blob(x, xp, dtype)])
    w, b = host(layer.blobs[0].data), host(layer.blobs[1].data)
    assert w.shape == ((12, 4) if transpose else (4, 12)) and b.shape == (4,)
    want = x.reshape(3, 12) @ (w if transpose else w.T) + b
    assert y.shape == (3, 4) and y.data.dtype == dtype
    np.testing.assert_allclose(host(y.data), want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("axis, top_shape", [(2, (2, 3, 4)), (-1, (2, 3, 4, 4)), (0, (4,))])
def test_axis_keeps_leading_axes(axis, top_shape):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    layer = make('name: "ip" type: "InnerProduct" inner_product_param { num_output: 4 '
                 f'axis: {axis} weight_filler {{ type: "gaussian" }} }}')
    (y,) = forward(layer, [to_blob(x)])
    assert y.shape == top_shape
    k = layer.blobs[0].shape[1]
    want = x.reshape(-1, k) @ layer.blobs[0].data.T
    np.testing.assert_allclose(y.data.reshape(-1, 4), want, atol=1e-12)


@pytest.mark.parametrize("body", ["", "transpose: true", "axis: 2", "axis: 2 transpose: true"])
def test_gradients_match_finite_differences(body):
    x = np.random.default_rng(2).standard_normal((2, 3, 2, 2))
    check_gradient(ip_layer(body), [to_blob(x)])


def test_gradient_without_bias():
    x = np.random.default_rng(3).standard_normal((3, 5))
    layer = ip_layer(bias=False)
    check_gradient(layer, [to_blob(x)])
    assert len(layer.blobs) == 1


def test_backward_formulas_and_accumulation(xp):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6))
    layer = ip_layer("", xp)
    bottom = [to_blob(x, xp)]
    top = forward(layer, bottom)
    dy = rng.standard_normal((5, 4))
    backward(layer, top, bottom, [dy])
    w = host(layer.blobs[0].data)
    np.testing.assert_allclose(host(bottom[0].diff), dy @ w, atol=1e-12)
    np.testing.assert_allclose(host(layer.blobs[0].diff), dy.T @ x, atol=1e-12)
    np.testing.assert_allclose(host(layer.blobs[1].diff), dy.sum(axis=0), atol=1e-12)
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(host(layer.blobs[0].diff), 2 * dy.T @ x, atol=1e-12)
    np.testing.assert_allclose(host(bottom[0].diff), dy @ w, atol=1e-12)


def test_xavier_uses_k_as_fan_in():
    layer = make('name: "ip" type: "InnerProduct" inner_product_param { num_output: 500 '
                 'weight_filler { type: "xavier" } }', dtype=np.float32)
    layer.setup([Blob((2, 50, 4, 4))], [Blob(())])
    w = layer.blobs[0].data
    assert w.shape == (500, 800) and w.dtype == np.float32
    assert np.abs(w).max() <= np.sqrt(3 / 800)
    assert not layer.blobs[1].data.any()   # default bias filler: constant 0


def test_changed_input_size_is_an_error():
    layer = ip_layer()
    layer.setup([Blob((2, 6))], [Blob(())])
    layer.reshape([Blob((7, 6))], [Blob(())])   # batch may change
    with pytest.raises(LayerSetupError, match="expect 6"):
        layer.reshape([Blob((2, 5))], [Blob(())])


def test_missing_num_output_is_an_error():
    layer = make('name: "ip" type: "InnerProduct"')
    with pytest.raises(LayerSetupError, match="num_output"):
        layer.setup([Blob((2, 3))], [Blob(())])

"""Embed: rows of the weight table by index (hand values), the bias, shapes, the one clear
error for non-integer or out-of-range inputs, weight gradients added per use (repeated
indices twice), finite differences for the weights and bias."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError


def text(param):
    return f'name: "emb" type: "Embed" bottom: "x" top: "y" embed_param {{ {param} }}'


GAUSS = 'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" }'


def test_hand_computed_rows_plus_bias():
    layer = make_layer(text("num_output: 2 input_dim: 3 "
                            'bias_filler { type: "constant" value: 0.5 }'))
    bottom = [blob([[2.0, 0.0], [1.0, 2.0]])]
    top = [blob(np.zeros(0))]
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = [[1, 2], [3, 4], [5, 6]]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (2, 2, 2)
    np.testing.assert_array_equal(top[0].data, [[[5.5, 6.5], [1.5, 2.5]],
                                                [[3.5, 4.5], [5.5, 6.5]]])


def test_forward_matches_numpy_indexing(xp):
    idx = np.random.default_rng(0).integers(0, 7, (3, 4))
    layer = make_layer(text("num_output: 5 input_dim: 7 " + GAUSS), xp)
    (y,) = run(layer, [blob(idx, xp)])
    w, b = host(layer.blobs[0].data), host(layer.blobs[1].data)
    assert [p.shape for p in layer.blobs] == [(7, 5), (5,)]
    np.testing.assert_allclose(host(y.data), w[idx] + b, rtol=1e-15)


def test_without_bias():
    layer = make_layer(text("num_output: 3 input_dim: 4 bias_term: false " + GAUSS))
    (y,) = run(layer, [blob([3.0, 1.0])])
    assert len(layer.blobs) == 1
    np.testing.assert_array_equal(y.data, layer.blobs[0].data[[3, 1]])


@pytest.mark.parametrize("value, shown", [(1.5, "1.5"), (-1.0, "-1.0"), (4.0, "4.0")])
def test_bad_inputs_are_one_clear_error(xp, value, shown):
    layer = make_layer(text("num_output: 2 input_dim: 4"), xp)
    with pytest.raises(LayerSetupError, match=rf"'emb' \(Embed\): bottom value {shown} at flat "
                                              r"index 2 is not an integer index in \[0, 4\)"):
        run(layer, [blob([0.0, 3.0, value], xp)])


@pytest.mark.parametrize("param, message", [("input_dim: 3", "num_output"),
                                            ("num_output: 3", "input_dim")])
def test_missing_sizes_are_errors(param, message):
    with pytest.raises(LayerSetupError, match=message):
        run(make_layer(text(param)), [blob([0.0])])


def test_backward_adds_to_used_rows(xp):
    layer = make_layer(text("num_output: 2 input_dim: 4"), xp)
    bottom = [blob([1.0, 3.0, 1.0], xp)]
    (y,) = run(layer, bottom)
    y.diff[...] = xp.asarray([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    layer.backward([y], [False], bottom)
    np.testing.assert_array_equal(host(layer.blobs[0].diff),
                                  [[0, 0], [11, 22], [0, 0], [3, 4]])
    np.testing.assert_array_equal(host(layer.blobs[1].diff), [14, 26])


def test_gradient_of_weights_and_bias():
    idx = np.array([[0, 2, 2], [4, 1, 0]], dtype=float)
    layer = make_layer(text("num_output: 3 input_dim: 5 " + GAUSS))
    check_gradient(layer, [blob(idx)], check_bottom=[])

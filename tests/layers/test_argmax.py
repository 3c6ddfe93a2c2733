"""ArgMax: Caffe's shapes (per instance, with values, along an axis), indices and values
against NumPy for top_k 1 and 3, ties to the larger index, errors."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run

from pipeline_lib.engine.layers.base import LayerSetupError


def text(param=""):
    body = f"argmax_param {{ {param} }}" if param else ""
    return f'name: "am" type: "ArgMax" bottom: "x" top: "y" {body}'


def top_k_desc(x, k, axis):
    """Indices of the k largest along axis, the larger index first on ties."""
    flipped = np.flip(x, axis)
    order = np.argsort(-flipped, axis=axis, kind="stable")
    return x.shape[axis] - 1 - np.take(order, range(k), axis=axis)


@pytest.mark.parametrize("param, shape", [
    ("", (10, 1, 1, 1)), ("out_max_val: true", (10, 2, 1, 1)), ("top_k: 3", (10, 1, 3, 1)),
    ("axis: 0", (1, 3, 4, 5)), ("axis: -2 top_k: 2", (10, 3, 2, 5)),
    ("axis: 2 out_max_val: true", (10, 3, 1, 5))])
def test_caffe_shapes(param, shape):
    (y,) = run(make_layer(text(param)), [blob(np.zeros((10, 3, 4, 5)))])
    assert y.shape == shape


@pytest.mark.parametrize("k", [1, 3])
def test_per_instance_indices_and_values(xp, k):
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 5))
    flat = x.reshape(4, -1)
    (y,) = run(make_layer(text(f"top_k: {k} out_max_val: true"), xp), [blob(x, xp)])
    y = host(y.data)
    idx = top_k_desc(flat, k, 1)
    np.testing.assert_array_equal(y[:, 0, :, 0], idx)
    np.testing.assert_array_equal(y[:, 1, :, 0], np.take_along_axis(flat, idx, 1))
    assert (np.diff(y[:, 1, :, 0], axis=1) <= 0).all()


@pytest.mark.parametrize("values", [False, True])
def test_along_an_axis(xp, values):
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    param = f"axis: 1 top_k: 2 out_max_val: {str(values).lower()}"
    (y,) = run(make_layer(text(param), xp), [blob(x, xp)])
    idx = top_k_desc(x, 2, 1)
    want = np.take_along_axis(x, idx, 1) if values else idx
    np.testing.assert_array_equal(host(y.data), want)


def test_hand_computed_ties_go_to_the_larger_index():
    x = np.array([[1.0, 5.0, 2.0, 5.0, 0.0]])
    (y,) = run(make_layer(text("top_k: 3 out_max_val: true")), [blob(x)])
    assert y.shape == (1, 2, 3)  # at least 3 axes
    np.testing.assert_array_equal(y.data[0, 0], [3, 1, 2])
    np.testing.assert_array_equal(y.data[0, 1], [5, 5, 2])


@pytest.mark.parametrize("param, message", [("top_k: 0", "top_k must be"),
                                            ("top_k: 7", "top_k 7 is more than the 6"),
                                            ("axis: 1 top_k: 3", "more than the 2"),
                                            ("axis: 3", "out of range")])
def test_errors(param, message):
    with pytest.raises(LayerSetupError, match=message):
        run(make_layer(text(param)), [blob(np.zeros((2, 2, 3)))])

"""Input: tops shaped by input_param, data set by the user and kept through forward."""

import pytest
from basic_layer_util import make_layer, run

from pipeline_lib.core.blob import Blob


def test_one_shape_for_all_tops():
    layer = make_layer('name: "in" type: "Input" top: "a" top: "b" '
                       'input_param { shape { dim: 10 dim: 1 dim: 28 dim: 28 } }')
    a, b = run(layer, [])
    assert a.shape == b.shape == (10, 1, 28, 28)


def test_one_shape_per_top_and_user_data_kept(xp):
    layer = make_layer('name: "in" type: "Input" top: "data" top: "label" '
                       'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } }', xp)
    data, label = run(layer, [])
    assert (data.shape, label.shape) == ((2, 3), (2,))
    data.data[...] = 7
    layer.reshape([], [data, label])
    layer.forward([], [data, label])
    assert (data.data == 7).all()


def test_shape_count_mismatch_is_an_error():
    layer = make_layer('name: "in" type: "Input" top: "a" top: "b" top: "c" '
                       'input_param { shape { dim: 1 } shape { dim: 2 } }')
    with pytest.raises(ValueError, match="'in'.*2 shapes for 3 tops"):
        layer.setup([], [Blob(()), Blob(()), Blob(())])

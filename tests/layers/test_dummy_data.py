"""DummyData: shapes (new and legacy fields), constant fillers filled once, others
refilled on every forward.
"""

import numpy as np
import pytest
from basic_layer_util import host, make_layer, run

from pipeline_lib.core.blob import Blob


def test_default_filler_is_constant_zero(xp):
    layer = make_layer('name: "dd" type: "DummyData" top: "a" '
                       'dummy_data_param { shape { dim: 2 dim: 3 } }', xp)
    (a,) = run(layer, [])
    assert a.shape == (2, 3)
    assert (host(a.data) == 0).all()


def test_constant_filler_is_filled_once_per_top(xp):
    layer = make_layer('name: "dd" type: "DummyData" top: "a" top: "b" '
                       'dummy_data_param { shape { dim: 2 } shape { dim: 3 dim: 1 } '
                       'data_filler { type: "constant" value: 4 } '
                       'data_filler { type: "constant" value: -1 } }', xp)
    a, b = run(layer, [])
    assert (a.shape, b.shape) == ((2,), (3, 1))
    assert (host(a.data) == 4).all() and (host(b.data) == -1).all()
    a.data[...] = 9  # a constant top is not refilled: Caffe fills it only at setup
    layer.forward([], [a, b])
    assert (host(a.data) == 9).all()


def test_random_filler_is_refilled_each_forward(xp):
    layer = make_layer('name: "dd" type: "DummyData" top: "a" top: "b" '
                       'dummy_data_param { shape { dim: 50 dim: 40 } '
                       'data_filler { type: "gaussian" std: 2 } '
                       'data_filler { type: "constant" value: 3 } }', xp)
    a, b = run(layer, [])
    first = host(a.data).copy()
    assert abs(first.std() - 2) < 0.1
    layer.forward([], [a, b])
    assert not np.array_equal(first, host(a.data))
    assert (host(b.data) == 3).all()


def test_legacy_dims_once_or_per_top():
    layer = make_layer('name: "dd" type: "DummyData" top: "a" top: "b" '
                       'dummy_data_param { num: 5 num: 6 channels: 2 height: 3 width: 4 }')
    a, b = run(layer, [])
    assert (a.shape, b.shape) == ((5, 2, 3, 4), (6, 2, 3, 4))


@pytest.mark.parametrize(("param", "match"), [
    ("shape { dim: 1 } num: 1 channels: 1 height: 1 width: 1", "not both"),
    ("num: 1 num: 2 num: 3 channels: 1 height: 1 width: 1", "num once or once per top"),
    ("shape { dim: 1 } shape { dim: 1 } shape { dim: 1 }", "shape once or once per top"),
    ("shape { dim: 1 } data_filler { } data_filler { } data_filler { }", "3 data_filler"),
])
def test_bad_parameters_are_errors(param, match):
    layer = make_layer(f'name: "dd" type: "DummyData" top: "a" top: "b" '
                       f"dummy_data_param {{ {param} }}")
    with pytest.raises(ValueError, match=match):
        layer.setup([], [Blob(()), Blob(())])

"""MemoryData: consecutive batches that wrap around, state for resuming, checks."""

import numpy as np
import pytest
from basic_layer_util import host, make_layer, run

from pipeline_lib.core.blob import Blob

TEXT = ('name: "mem" type: "MemoryData" top: "data" top: "label" '
        'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 }')


def arrays(n=6):
    return np.arange(n * 6, dtype=np.uint8).reshape(n, 1, 2, 3), np.arange(n) % 4


def set_up(layer):
    tops = [Blob((), layer.xp, layer.dtype), Blob((), layer.xp, layer.dtype)]
    layer.setup([], tops)
    return tops


def forward(layer, tops):
    layer.reshape([], tops)
    layer.forward([], tops)
    return host(tops[0].data).copy(), host(tops[1].data).copy()


def test_serves_batches_in_order_and_wraps(xp):
    data, labels = arrays()
    layer = make_layer(TEXT, xp, np.float32)
    tops = set_up(layer)
    assert tops[0].shape == (2, 1, 2, 3) and tops[1].shape == (2,)
    layer.set_arrays(data, labels)
    for start in (0, 2, 4, 0, 2):
        got_data, got_labels = forward(layer, tops)
        assert got_data.dtype == np.float32
        np.testing.assert_array_equal(got_data, data[start:start + 2])
        np.testing.assert_array_equal(got_labels, labels[start:start + 2])


def test_state_resumes_at_the_same_batch():
    data, labels = arrays()
    first = make_layer(TEXT)
    tops = set_up(first)
    first.set_arrays(data, labels)
    forward(first, tops)
    state = first.get_state()
    expected = forward(first, tops)

    # resumed: state restored before the arrays are handed over
    second = make_layer(TEXT)
    tops2 = set_up(second)
    second.set_state(state)
    second.set_arrays(data, labels)
    got = forward(second, tops2)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])

    # or restored after the arrays are there
    third = make_layer(TEXT)
    tops3 = set_up(third)
    third.set_arrays(data, labels)
    third.set_state(state)
    np.testing.assert_array_equal(forward(third, tops3)[0], expected[0])


def test_new_arrays_start_from_the_first_batch():
    data, labels = arrays()
    layer = make_layer(TEXT)
    tops = set_up(layer)
    layer.set_arrays(data, labels)
    forward(layer, tops)
    layer.set_arrays(data + 1, labels)
    np.testing.assert_array_equal(forward(layer, tops)[0], data[:2] + 1)


def test_forward_before_set_arrays_is_an_error():
    with pytest.raises(ValueError, match="set_arrays"):
        run(make_layer(TEXT), [])


@pytest.mark.parametrize(("n", "shape", "match"), [(5, (1, 2, 3), "multiple of batch_size 2"),
                                                   (4, (3, 2, 3), "1 x 2 x 3")])
def test_bad_arrays_are_errors(n, shape, match):
    layer = make_layer(TEXT)
    set_up(layer)
    with pytest.raises(ValueError, match=match):
        layer.set_arrays(np.zeros((n, *shape)), np.zeros(n))


def test_label_count_mismatch_is_an_error():
    layer = make_layer(TEXT)
    set_up(layer)
    with pytest.raises(ValueError, match="one value per item"):
        layer.set_arrays(np.zeros((4, 1, 2, 3)), np.zeros(3))


def test_missing_dimensions_are_an_error():
    layer = make_layer('name: "mem" type: "MemoryData" top: "data" top: "label" '
                       'memory_data_param { batch_size: 2 channels: 1 }')
    with pytest.raises(ValueError, match="positive batch_size"):
        set_up(layer)

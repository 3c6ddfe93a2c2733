"""Filter: Caffe's case (data 4x3x6x4 and labels filtered by selector 0, 1, 1, 0), the
batch size following the selector from one forward to the next, the first reshape's full
batch, shape errors, backward (zeros for items left out), gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError

TEXT = ('name: "f" type: "Filter" bottom: "data" bottom: "label" bottom: "sel" '
        'top: "fdata" top: "flabel"')


def caffe_bottoms(xp=np, selector=(0, 1, 1, 0)):
    rng = np.random.default_rng(0)
    data, labels = rng.standard_normal((4, 3, 6, 4)), rng.integers(0, 5, (4, 1, 1, 1))
    sel = np.array(selector, dtype=float).reshape(4, 1, 1, 1)
    return data, labels, [blob(data, xp), blob(labels, xp), blob(sel, xp)]


def setup(layer, bottom):
    top = [Blob((), layer.xp, layer.dtype), Blob((), layer.xp, layer.dtype)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    return top


def test_caffe_forward_and_first_reshape(xp):
    data, labels, bottom = caffe_bottoms(xp)
    layer = make_layer(TEXT, xp)
    top = setup(layer, bottom)
    assert top[0].shape == (4, 3, 6, 4)  # Caffe's first reshape: the whole batch
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (2, 3, 6, 4) and top[1].shape == (2, 1, 1, 1)
    np.testing.assert_array_equal(host(top[0].data), data[[1, 2]])
    np.testing.assert_array_equal(host(top[1].data), labels[[1, 2]])


def test_batch_size_follows_the_selector():
    _, _, bottom = caffe_bottoms()
    layer = make_layer(TEXT)
    top = setup(layer, bottom)
    for sel, n in [((1, 1, 1, 1), 4), ((0, 0, 0, 0), 0), ((0, 0, 0, 2.5), 1)]:
        bottom[2].data[...] = np.array(sel).reshape(4, 1, 1, 1)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        assert top[0].shape[0] == top[1].shape[0] == n


def test_backward_scatters_and_zeroes_the_rest():
    _, _, bottom = caffe_bottoms()
    layer = make_layer(TEXT)
    top = setup(layer, bottom)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    bottom[0].diff[...] = 7
    layer.backward(top, [True, False, False], bottom)
    np.testing.assert_array_equal(bottom[0].diff[:, 0, 0, 0], [0, 1, 1, 0])


@pytest.mark.parametrize("shapes, message", [
    ([(4, 2), (4, 2, 1)], "selector .* must be"),
    ([(3, 2), (4,)], "bottom\\[0\\] has shape \\(3, 2\\)"),
])
def test_shape_errors(shapes, message):
    layer = make_layer('name: "f" type: "Filter" bottom: "a" bottom: "s" top: "b"')
    with pytest.raises(LayerSetupError, match=message):
        layer.setup([blob(np.zeros(s)) for s in shapes], [Blob()])
        layer.reshape([blob(np.zeros(s)) for s in shapes], [Blob()])


def test_top_count_must_match():
    layer = make_layer('name: "f" type: "Filter" bottom: "a" bottom: "s" top: "b" top: "c"')
    with pytest.raises(LayerSetupError, match="one top per filtered bottom"):
        layer.setup([blob(np.zeros(2)), blob(np.zeros(2))], [Blob(), Blob()])


def test_gradient():
    rng = np.random.default_rng(3)
    sel = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    layer = make_layer('name: "f" type: "Filter" bottom: "a" bottom: "s" top: "b"')
    first = [blob(rng.standard_normal((5, 3))), blob(sel)]
    layer.setup(first, [Blob()])
    layer.reshape(first, [Blob()])
    layer.setup = lambda bottom, top: None  # stay past the first (whole-batch) reshape
    check_gradient(layer, first, check_bottom=[0])

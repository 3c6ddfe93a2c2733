"""BatchReindex: Caffe's permutation (4, 0, 4, 0, 1, 2) of a batch of 5, repeated items
adding up in backward, the index checks, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError

TEXT = 'name: "ri" type: "BatchReindex" bottom: "x" bottom: "idx" top: "y"'
PERM = [4, 0, 4, 0, 1, 2]


def test_caffe_permutation_forward_and_backward(xp):
    x = np.random.default_rng(0).standard_normal((5, 4, 3, 2))
    layer = make_layer(TEXT, xp)
    bottom = [blob(x, xp), blob(PERM, xp)]
    (y,) = run(layer, bottom)
    assert y.shape == (6, 4, 3, 2)
    np.testing.assert_array_equal(host(y.data), x[PERM])
    dy = np.random.default_rng(1).standard_normal(y.shape)
    y.diff[...] = xp.asarray(dy)
    bottom[0].diff[...] = 9  # overwritten
    layer.backward([y], [True, False], bottom)
    want = np.zeros_like(x)
    for i, p in enumerate(PERM):
        want[p] += dy[i]
    np.testing.assert_allclose(host(bottom[0].diff), want, rtol=1e-15)
    assert not want[3].any()  # item 3 was not used


def test_hand_computed():
    (y,) = run(make_layer(TEXT), [blob([[1.0, 2.0], [3.0, 4.0]]), blob([1.0, 1.0, 0.0])])
    np.testing.assert_array_equal(y.data, [[3, 4], [3, 4], [1, 2]])


@pytest.mark.parametrize("idx, message", [([0.0, 5.0], r"index 5.0 at position 1 .*\[0, 5\)"),
                                          ([-1.0], "index -1.0 at position 0"),
                                          ([0.5], "index 0.5")])
def test_bad_indices(idx, message):
    with pytest.raises(LayerSetupError, match=message):
        run(make_layer(TEXT), [blob(np.zeros((5, 2))), blob(idx)])


def test_index_must_be_1d():
    with pytest.raises(LayerSetupError, match="1-D"):
        run(make_layer(TEXT), [blob(np.zeros((5, 2))), blob([[0.0]])])


def test_gradient():
    x = np.random.default_rng(2).standard_normal((5, 3, 2))
    check_gradient(make_layer(TEXT), [blob(x), blob(PERM)], check_bottom=[0])

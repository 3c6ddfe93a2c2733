"""Split: every top a copy of the bottom; backward sums the top diffs."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob

TEXT = 'name: "sp" type: "Split" bottom: "x" top: "x_0" top: "x_1" top: "x_2"'


def test_forward_copies_and_backward_sums(xp):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    diffs = rng.standard_normal((3, 2, 3, 4))
    layer = make_layer(TEXT, xp)
    bottom = [blob(x, xp)]
    tops = run(layer, bottom)
    for t, d in zip(tops, diffs):
        np.testing.assert_array_equal(host(t.data), x)
        t.diff[...] = xp.asarray(d)
    bottom[0].diff[...] = 99  # must be overwritten, not added to
    layer.backward(tops, [True], bottom)
    np.testing.assert_allclose(host(bottom[0].diff), diffs.sum(axis=0))


def test_tops_do_not_share_memory():
    tops = run(make_layer(TEXT), [blob(np.ones(4))])
    tops[0].data[...] = 0  # e.g. an in-place ReLU on one branch
    assert (tops[1].data == 1).all()


def test_gradient():
    check_gradient(make_layer(TEXT), [blob(np.random.default_rng(1).standard_normal((3, 2)))])


def test_in_place_is_an_error():
    b = Blob((2,))
    with pytest.raises(ValueError, match="in place"):
        make_layer(TEXT).setup([b], [Blob(()), b, Blob(())])

"""Silence: no tops, and a zero gradient for each bottom asked for."""

import numpy as np
from basic_layer_util import blob, host, make_layer, run

TEXT = 'name: "quiet" type: "Silence" bottom: "a" bottom: "b"'


def test_backward_writes_zeros(xp):
    bottom = [blob(np.ones((2, 3)), xp), blob(np.ones(4), xp)]
    layer = make_layer(TEXT, xp)
    assert run(layer, bottom) == []
    for b in bottom:
        b.diff[...] = 5
    layer.backward([], [True, False], bottom)
    assert (host(bottom[0].diff) == 0).all()
    assert (host(bottom[1].diff) == 5).all()  # not asked for: left alone
    assert (host(bottom[0].data) == 1).all()


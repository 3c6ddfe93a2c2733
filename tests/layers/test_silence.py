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



def test_gradient_matches_finite_differences():
    """No tops, so nothing depends on the bottoms: the gradient Silence writes is 0."""
    from gradient_check import check_gradient

    rng = np.random.default_rng(0)
    check_gradient(make_layer(TEXT), [blob(rng.standard_normal((2, 3))), blob(rng.random(4))])

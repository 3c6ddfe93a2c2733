"""Log: log_base(shift + scale * x) for its parameters and defaults, bad bases, in place
(the input kept for backward), gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError

CASES = [  # (log_param text, the function); inputs are in [0.5, 2.5]
    ("", np.log),
    ("log_param { base: -1 scale: 2 shift: 1 }", lambda x: np.log(1 + 2 * x)),
    ("log_param { base: 2 }", np.log2),
    ("log_param { base: 10 scale: -0.5 shift: 3 }", lambda x: np.log10(3 - 0.5 * x)),
    ("log_param { base: 0.5 scale: 3 }", lambda x: np.log(3 * x) / np.log(0.5)),
]


def layer_text(param, top="y"):
    return f'name: "l" type: "Log" bottom: "x" top: "{top}" {param}'


def positive(seed, shape):
    return np.random.default_rng(seed).uniform(0.5, 2.5, shape)


@pytest.mark.parametrize("param,f", CASES)
def test_forward_matches_numpy(xp, param, f):
    x = positive(0, (2, 3, 4))
    (y,) = run(make_layer(layer_text(param), xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), f(x), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("base", [0, -2, 1])
def test_base_must_be_positive_and_not_one(base):
    layer = make_layer(layer_text(f"log_param {{ base: {base} }}"))
    with pytest.raises(LayerSetupError, match="base"):
        run(layer, [blob(np.ones(3))])


@pytest.mark.parametrize("param,f", CASES[1:4])
def test_in_place(xp, param, f):
    x = positive(1, (4, 5))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer(layer_text(param, top="x"), xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_allclose(host(b.data), f(x), rtol=1e-13, atol=1e-15)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    h = 1e-6  # the gradient of the input, not of the output it was overwritten with
    np.testing.assert_allclose(host(b.diff), dy * (f(x + h) - f(x - h)) / (2 * h), rtol=1e-7)


@pytest.mark.parametrize("param", [c[0] for c in CASES])
def test_gradient(param):
    x = positive(3, (2, 3, 2, 2))
    check_gradient(make_layer(layer_text(param)), [blob(x)])

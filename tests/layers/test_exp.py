"""Exp: base^(shift + scale * x) for its parameters and defaults, bad bases, in place,
gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.engine.layers.base import LayerSetupError

F = np.float32  # the parameters are floats in caffe.proto
CASES = [  # (exp_param text, the function)
    ("", np.exp),
    ("exp_param { base: -1 scale: 0.5 shift: 1 }", lambda x: np.exp(1 + 0.5 * x)),
    ("exp_param { base: 2 }", lambda x: 2.0 ** x),
    ("exp_param { base: 10 scale: -0.7 shift: -0.2 }",
     lambda x: 10.0 ** (float(F(-0.2)) + float(F(-0.7)) * x)),
    ("exp_param { base: 0.5 scale: 2 }", lambda x: 0.5 ** (2 * x)),
]


def layer_text(param, top="y"):
    return f'name: "e" type: "Exp" bottom: "x" top: "{top}" {param}'


@pytest.mark.parametrize("param,f", CASES)
def test_forward_matches_numpy(xp, param, f):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    (y,) = run(make_layer(layer_text(param), xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), f(x), rtol=1e-13)


@pytest.mark.parametrize("base", [0, -2])
def test_base_must_be_positive_or_minus_one(base):
    layer = make_layer(layer_text(f"exp_param {{ base: {base} }}"))
    with pytest.raises(LayerSetupError, match="base"):
        run(layer, [blob(np.ones(3))])


@pytest.mark.parametrize("param,f", CASES[1:3])
def test_in_place(xp, param, f):
    x = np.random.default_rng(1).standard_normal((4, 5))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    separate = make_layer(layer_text(param), xp)
    bottom = [blob(x, xp)]
    (top,) = run(separate, bottom)
    top.diff[...] = xp.asarray(dy)
    separate.backward([top], [True], bottom)

    layer = make_layer(layer_text(param, top="x"), xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_allclose(host(b.data), f(x), rtol=1e-13)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_allclose(host(b.diff), host(bottom[0].diff), rtol=1e-15)


@pytest.mark.parametrize("param", [c[0] for c in CASES])
def test_gradient(param):
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 2))
    check_gradient(make_layer(layer_text(param)), [blob(x)])

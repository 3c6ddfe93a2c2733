"""Power: (shift + scale * x)^power for its parameters and defaults, Caffe's special cases
(constant output, constant gradient), the gradient where the base is 0, in place,
gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

CASES = [  # (power_param text, the function); inputs are in [0.5, 2.5]
    ("", lambda x: x),
    ("power_param { scale: -2 shift: 1 }", lambda x: 1 - 2 * x),
    ("power_param { power: 2 scale: 0.5 shift: -1 }", lambda x: (0.5 * x - 1) ** 2),
    ("power_param { power: 3 scale: 1.5 }", lambda x: (1.5 * x) ** 3),
    ("power_param { power: 0.5 scale: 2 shift: 0.25 }", lambda x: np.sqrt(0.25 + 2 * x)),
    ("power_param { power: -1.5 shift: 1 }", lambda x: (1 + x) ** -1.5),
]


def layer_text(param, top="y"):
    return f'name: "p" type: "Power" bottom: "x" top: "{top}" {param}'


def positive(seed, shape):
    return np.random.default_rng(seed).uniform(0.5, 2.5, shape)


def forward_backward(param, x, dy, xp=np):
    layer = make_layer(layer_text(param), xp)
    bottom = [blob(x, xp)]
    (top,) = run(layer, bottom)
    top.diff[...] = xp.asarray(dy)
    layer.backward([top], [True], bottom)
    return host(top.data), host(bottom[0].diff)


@pytest.mark.parametrize("param,f", CASES)
def test_forward_matches_numpy(xp, param, f):
    x = positive(0, (2, 3, 4))
    (y,) = run(make_layer(layer_text(param), xp), [blob(x, xp)])
    np.testing.assert_allclose(host(y.data), f(x), rtol=1e-13)


@pytest.mark.parametrize("param,value", [
    ("power_param { power: 0 scale: 3 shift: -2 }", 1.0),
    ("power_param { power: 3 scale: 0 shift: -2 }", -8.0),
    ("power_param { power: 0.5 scale: 0 shift: -2 }", np.nan),
])
def test_power_or_scale_zero_gives_a_constant_and_no_gradient(xp, param, value):
    x = np.array([-1.0, 0.0, 2.0])
    y, dx = forward_backward(param, x, np.array([1.0, np.inf, -3.0]), xp)
    np.testing.assert_array_equal(y, [value] * 3)
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0])


def test_power_one_has_the_constant_gradient_scale(xp):
    _, dx = forward_backward("power_param { scale: -2.5 shift: 7 }", np.array([-1.0, 0.0, 9.0]),
                             np.array([1.0, 2.0, -1.0]), xp)
    np.testing.assert_array_equal(dx, [-2.5, -5.0, 2.5])


@pytest.mark.parametrize("param,x,want", [
    ("power_param { power: 2 shift: 1 }", -1.0, 0.0),             # Caffe: 2 * base
    ("power_param { power: 3 }", 0.0, 0.0),                       # Caffe: y / x = 0 / 0
    ("power_param { power: 2.5 scale: 2 shift: 2 }", -1.0, 0.0),  # Caffe: y / base = 0 / 0
    ("power_param { power: 0.5 }", 0.0, np.inf),                  # Caffe: 0 / 0; the limit
])
def test_gradient_where_the_base_is_zero(param, x, want):
    with np.errstate(divide="ignore"):
        _, dx = forward_backward(param, np.array([x]), np.ones(1))
    np.testing.assert_array_equal(dx, [want])


@pytest.mark.parametrize("param,f", CASES[2:])
def test_in_place_keeps_the_input_for_backward(xp, param, f):
    x = positive(1, (4, 5))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    y, dx = forward_backward(param, x, dy, xp)
    layer = make_layer(layer_text(param, top="x"), xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    np.testing.assert_array_equal(host(b.data), y)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_array_equal(host(b.diff), dx)


@pytest.mark.parametrize("param", [c[0] for c in CASES])
def test_gradient(param):
    check_gradient(make_layer(layer_text(param)), [blob(positive(3, (2, 3, 2, 2)))])


def test_gradient_of_a_square_through_negative_bases():
    x = np.random.default_rng(4).standard_normal((3, 4)) * 2
    check_gradient(make_layer(layer_text("power_param { power: 2 scale: -1.5 shift: 0.5 }")),
                   [blob(x)])

"""Eltwise: PROD, SUM with coefficients, MAX with Caffe's tie rule; gradients; checks."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.core.blob import Blob


def text(param, n=3):
    return ('name: "el" type: "Eltwise" ' + " ".join(f'bottom: "b{i}"' for i in range(n))
            + f' top: "y" eltwise_param {{ {param} }}')


def inputs(n=3, seed=0, shape=(2, 3, 4)):
    rng = np.random.default_rng(seed)
    # away from 0 so PROD's division form and MAX's comparisons are well defined
    return [np.sign(u) * (0.5 + np.abs(u)) for u in rng.standard_normal((n, *shape))]


def test_prod(xp):
    a = inputs()
    (y,) = run(make_layer(text("operation: PROD"), xp), [blob(v, xp) for v in a])
    np.testing.assert_allclose(host(y.data), a[0] * a[1] * a[2])


def test_sum_with_coefficients(xp):
    a = inputs()
    layer = make_layer(text("operation: SUM coeff: 1 coeff: -2 coeff: 0.5"), xp)
    (y,) = run(layer, [blob(v, xp) for v in a])
    np.testing.assert_allclose(host(y.data), a[0] - 2 * a[1] + 0.5 * a[2])


def test_sum_is_the_default(xp):
    a = inputs(n=2)
    (y,) = run(make_layer(text("", n=2), xp), [blob(v, xp) for v in a])
    np.testing.assert_allclose(host(y.data), a[0] + a[1])


def test_max(xp):
    a = inputs()
    (y,) = run(make_layer(text("operation: MAX"), xp), [blob(v, xp) for v in a])
    np.testing.assert_array_equal(host(y.data), np.maximum.reduce(a))


def test_max_ties_go_as_in_caffe():
    # bottom[1] wins a tie with bottom[0]; bottom[2] must be strictly greater to win
    a = [np.array([1.0, 1.0]), np.array([1.0, 0.0]), np.array([1.0, 1.0])]
    bottom = [blob(v) for v in a]
    layer = make_layer(text("operation: MAX"))
    (y,) = run(layer, bottom)
    y.diff[...] = [10.0, 20.0]
    layer.backward([y], [True] * 3, bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0, 20])
    np.testing.assert_array_equal(bottom[1].diff, [10, 0])
    np.testing.assert_array_equal(bottom[2].diff, [0, 0])


@pytest.mark.parametrize("param", ["operation: PROD", "operation: PROD stable_prod_grad: false",
                                   "operation: SUM coeff: 2 coeff: -1 coeff: 0.5",
                                   "operation: MAX"])
def test_gradient(param):
    check_gradient(make_layer(text(param)), [blob(v) for v in inputs(seed=1)])


def test_shape_mismatch_names_both_shapes():
    bottoms = [Blob((2, 3), name="a"), Blob((2, 3), name="b"), Blob((3, 2), name="c")]
    with pytest.raises(ValueError, match=r"bottom\[0\] 'a' \(2, 3\) vs bottom\[2\] 'c' \(3, 2\)"):
        run(make_layer(text("operation: SUM")), bottoms)


@pytest.mark.parametrize(("param", "match"), [("operation: SUM coeff: 1", "one per bottom"),
                                              ("operation: PROD coeff: 1 coeff: 1 coeff: 1",
                                               "only allowed with operation SUM")])
def test_bad_coefficients_are_errors(param, match):
    with pytest.raises(ValueError, match=match):
        run(make_layer(text(param)), [blob(v) for v in inputs()])

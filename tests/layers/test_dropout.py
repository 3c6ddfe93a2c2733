"""Dropout: TRAIN drops and rescales, TEST is the identity, in place, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.proto import caffe_pb2

TEXT = 'name: "d" type: "Dropout" bottom: "x" top: "{top}" dropout_param {{ dropout_ratio: {p} }}'


def test_train_drops_about_ratio_and_scales_the_rest(xp):
    x = np.random.default_rng(0).uniform(1, 2, (50, 40, 10))
    layer = make_layer(TEXT.format(top="y", p=0.3), xp, np.float32)
    (y,) = run(layer, [blob(x, xp, np.float32)])
    out = host(y.data)
    dropped = out == 0
    assert abs(dropped.mean() - 0.3) < 0.01
    np.testing.assert_allclose(out[~dropped], x[~dropped] / 0.7, rtol=1e-6)


def test_same_seed_same_mask_and_new_mask_each_forward():
    x = np.ones((20, 30))
    a, b = make_layer(TEXT.format(top="y", p=0.5), seed=7), make_layer(TEXT.format(top="y", p=0.5),
                                                                       seed=7)
    (ya,), (yb,) = run(a, [blob(x)]), run(b, [blob(x)])
    np.testing.assert_array_equal(ya.data, yb.data)
    first = ya.data.copy()
    a.forward([blob(x)], [ya])
    assert not np.array_equal(first, ya.data)


def test_test_phase_is_identity(xp):
    x = np.random.default_rng(1).standard_normal((4, 6))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    layer = make_layer(TEXT.format(top="y", p=0.5), xp, phase=caffe_pb2.TEST)
    bottom = [blob(x, xp)]
    (y,) = run(layer, bottom)
    np.testing.assert_array_equal(host(y.data), x)
    y.diff[...] = xp.asarray(dy)
    layer.backward([y], [True], bottom)
    np.testing.assert_array_equal(host(bottom[0].diff), dy)


def test_in_place_train(xp):
    x = np.random.default_rng(3).uniform(1, 2, (8, 9))
    dy = np.random.default_rng(4).standard_normal(x.shape)
    layer = make_layer(TEXT.format(top="x", p=0.4), xp)
    b = blob(x, xp)
    layer.setup([b], [b])
    layer.reshape([b], [b])
    layer.forward([b], [b])
    out = host(b.data)
    kept = out != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(out[kept], x[kept] / 0.6)
    b.diff[...] = xp.asarray(dy)
    layer.backward([b], [True], [b])
    np.testing.assert_allclose(host(b.diff), np.where(kept, dy / 0.6, 0))


def test_gradient():
    x = np.random.default_rng(5).standard_normal((3, 4, 2))
    check_gradient(make_layer(TEXT.format(top="y", p=0.5)), [blob(x)])


@pytest.mark.parametrize("p", [1.0, -0.1])
def test_bad_ratio_is_an_error(p):
    layer = make_layer(TEXT.format(top="y", p=p))
    with pytest.raises(ValueError, match="dropout_ratio"):
        run(layer, [blob(np.ones(3))])

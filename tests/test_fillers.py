"""Fillers: statistics per type, Caffe's fan rules, determinism, errors."""

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.engine.fillers import FillerError, fill
from pipeline_lib.proto import caffe_pb2


def filler(text: str) -> caffe_pb2.FillerParameter:
    return text_format.Parse(text, caffe_pb2.FillerParameter())


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_default_is_constant_zero():
    out = fill(caffe_pb2.FillerParameter(), (3, 4), rng())
    assert out.dtype == np.float32 and out.shape == (3, 4)
    assert not out.any()


def test_constant():
    out = fill(filler('type: "constant" value: 0.25'), (5,), rng(), np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.full(5, 0.25))


def test_uniform_bounds_and_moments():
    out = fill(filler('type: "uniform" min: -2 max: 3'), (200, 500), rng())
    assert out.min() >= -2 and out.max() <= 3
    assert abs(out.mean() - 0.5) < 0.02
    assert abs(out.std() - 5 / np.sqrt(12)) < 0.02


def test_gaussian_moments():
    out = fill(filler('type: "gaussian" mean: 1 std: 0.5'), (400, 250), rng(), np.float64)
    assert abs(out.mean() - 1) < 0.01
    assert abs(out.std() - 0.5) < 0.01


def test_gaussian_sparse_keeps_sparse_over_num_outputs():
    # 10 outputs, sparse 2: each weight survives with probability 0.2
    out = fill(filler('type: "gaussian" std: 1 sparse: 2'), (10, 20000), rng(), np.float64)
    assert abs((out != 0).mean() - 0.2) < 0.01
    assert abs(out[out != 0].std() - 1) < 0.02


def test_positive_unitball_rows_sum_to_one():
    out = fill(filler('type: "positive_unitball"'), (6, 2, 3, 3), rng(), np.float64)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out.reshape(6, -1).sum(axis=1), np.ones(6))


@pytest.mark.parametrize("norm, n", [("FAN_IN", 20 * 25), ("FAN_OUT", 50 * 25),
                                     ("AVERAGE", (20 * 25 + 50 * 25) / 2)])
def test_xavier_scale_follows_variance_norm(norm, n):
    # conv2 of LeNet: 50 x 20 x 5 x 5, fan_in 500, fan_out 1250
    out = fill(filler(f'type: "xavier" variance_norm: {norm}'), (50, 20, 5, 5), rng(1),
               np.float64)
    scale = np.sqrt(3 / n)
    assert out.min() >= -scale and out.max() <= scale
    assert out.max() > 0.95 * scale and out.min() < -0.95 * scale
    assert abs(out.std() - scale / np.sqrt(3)) < 0.03 * scale


@pytest.mark.parametrize("norm, n", [("FAN_IN", 800), ("FAN_OUT", 500), ("AVERAGE", 650)])
def test_msra_std_follows_variance_norm(norm, n):
    out = fill(filler(f'type: "msra" variance_norm: {norm}'), (500, 800), rng(2), np.float64)
    assert abs(out.mean()) < 0.002
    assert abs(out.std() / np.sqrt(2 / n) - 1) < 0.01


def test_xavier_on_a_1d_blob_uses_count_for_fan_out():
    out = fill(filler('type: "xavier" variance_norm: FAN_OUT'), (7,), rng())
    assert np.abs(out).max() <= np.sqrt(3 / 7)


def test_bilinear_kernel():
    out = fill(filler('type: "bilinear"'), (2, 1, 4, 4), rng(), np.float64)
    ramp = np.array([0.25, 0.75, 0.75, 0.25])  # f = 2, c = 0.75
    np.testing.assert_allclose(out[1, 0], np.outer(ramp, ramp))
    np.testing.assert_array_equal(out[0], out[1])
    odd = fill(filler('type: "bilinear"'), (1, 1, 3, 3), rng(), np.float64)
    ramp3 = np.array([0.5, 1.0, 0.5])  # f = 2, c = 0.5
    np.testing.assert_allclose(odd[0, 0], np.outer(ramp3, ramp3))


def test_bilinear_needs_square_4d():
    with pytest.raises(FillerError, match="4-D"):
        fill(filler('type: "bilinear"'), (3, 3), rng())
    with pytest.raises(FillerError, match="square"):
        fill(filler('type: "bilinear"'), (1, 1, 3, 4), rng())


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "xavier", "msra", "positive_unitball"])
def test_same_seed_same_values_other_seed_other_values(kind):
    f = filler(f'type: "{kind}"')
    a = fill(f, (20, 3, 5, 5), rng(7))
    b = fill(f, (20, 3, 5, 5), rng(7))
    c = fill(f, (20, 3, 5, 5), rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_float32_is_float64_rounded():
    f = filler('type: "xavier"')
    a = fill(f, (10, 10), rng(3), np.float32)
    b = fill(f, (10, 10), rng(3), np.float64)
    np.testing.assert_array_equal(a, b.astype(np.float32))


def test_unknown_type_lists_known_ones():
    with pytest.raises(FillerError, match="'nope'.*known types:.*gaussian.*xavier"):
        fill(filler('type: "nope"'), (2, 2), rng())


def test_sparse_only_for_gaussian():
    with pytest.raises(FillerError, match="sparse"):
        fill(filler('type: "xavier" sparse: 3'), (4, 4), rng())


def test_empty_blob_is_an_error():
    with pytest.raises(FillerError, match="shape"):
        fill(filler('type: "constant"'), (0, 3), rng())

"""DataTransformer: Caffe's crop / mirror / mean / scale order, vectorised per batch."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.data.transform import DataTransformer, TransformError
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import write_mean_binaryproto

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def tp(**fields) -> caffe_pb2.TransformationParameter:
    mean_value = fields.pop("mean_value", [])
    p = caffe_pb2.TransformationParameter(**fields)
    p.mean_value.extend(mean_value)
    return p


def images(n=16, c=3, h=7, w=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def naive(batch, h_off, w_off, mirror, crop, mean=None, mean_values=(), scale=1.0):
    """Caffe's per-pixel loop, written out literally."""
    n, c, h, w = batch.shape
    ch, cw = (crop, crop) if crop else (h, w)
    out = np.zeros((n, c, ch, cw), np.float32)
    values = list(mean_values) * (c if len(mean_values) == 1 else 1)
    for i in range(n):
        for k in range(c):
            for y in range(ch):
                for x in range(cw):
                    sy, sx = h_off[i] + y, w_off[i] + x
                    tx = cw - 1 - x if mirror[i] else x
                    v = np.float32(batch[i, k, sy, sx])
                    if mean is not None:
                        v = np.float32(v - mean[k, sy, sx])
                    elif values:
                        v = np.float32(v - np.float32(values[k]))
                    out[i, k, y, tx] = np.float32(v * np.float32(scale))
    return out


def test_test_phase_crop_is_centred():
    batch = images(n=4, h=7, w=8)
    t = DataTransformer(tp(crop_size=3), TEST, np.random.default_rng(0))
    out = t.transform(batch)
    assert out.shape == (4, 3, 3, 3) and out.dtype == np.float32
    # (7 - 3) // 2 = 2 rows, (8 - 3) // 2 = 2 columns
    np.testing.assert_array_equal(out, batch[:, :, 2:5, 2:5].astype(np.float32))


def test_train_crop_random_per_image_and_reproducible_per_seed():
    batch = images(n=32, c=1, h=10, w=10)
    outs = [DataTransformer(tp(crop_size=4), TRAIN, np.random.default_rng(s)).transform(batch)
            for s in (5, 5, 6)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    h_off, w_off, mirror = DataTransformer(tp(crop_size=4), TRAIN,
                                           np.random.default_rng(5)).draw(32, 10, 10)
    assert not mirror.any()
    assert len(set(zip(h_off.tolist(), w_off.tolist(), strict=True))) > 5
    assert h_off.min() >= 0 and h_off.max() <= 6 and w_off.max() <= 6
    for i in range(32):
        window = batch[i, :, h_off[i]:h_off[i] + 4, w_off[i]:w_off[i] + 4]
        np.testing.assert_array_equal(outs[0][i], window)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_mirror_flips_about_half_of_the_images(phase):
    # Caffe's DataTransformer flips a coin per image whenever mirror is set.
    batch = images(n=64, c=2, h=5, w=6)
    t = DataTransformer(tp(mirror=True), phase, np.random.default_rng(1))
    out = t.transform(batch)
    flipped = [np.array_equal(out[i], batch[i, :, :, ::-1]) for i in range(64)]
    kept = [np.array_equal(out[i], batch[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
    _, _, mirror = DataTransformer(tp(mirror=True), phase, np.random.default_rng(1)).draw(64, 5, 6)
    np.testing.assert_array_equal(np.array(flipped), mirror)


def test_mean_file_is_cropped_and_mirrored_with_the_image():
    batch = images(n=12, c=3, h=9, w=9)
    mean = np.random.default_rng(3).uniform(0, 255, size=(3, 9, 9)).astype(np.float32)
    t = DataTransformer(tp(crop_size=5, mirror=True, scale=0.25), TRAIN,
                        np.random.default_rng(7), mean=mean)
    out = t.transform(batch)
    h_off, w_off, mirror = DataTransformer(tp(crop_size=5, mirror=True), TRAIN,
                                           np.random.default_rng(7)).draw(12, 9, 9)
    assert mirror.any() and not mirror.all()
    np.testing.assert_array_equal(out, naive(batch, h_off, w_off, mirror, 5, mean=mean,
                                             scale=0.25))


def test_mean_values_per_channel_and_single():
    batch = images(n=3, c=3, h=4, w=4)
    t = DataTransformer(tp(mean_value=[10, 20, 30], scale=0.5), TEST, np.random.default_rng(0))
    zeros = np.zeros(3, np.int64)
    np.testing.assert_array_equal(
        t.transform(batch),
        naive(batch, zeros, zeros, zeros.astype(bool), 0, mean_values=[10, 20, 30], scale=0.5))
    one = DataTransformer(tp(mean_value=[10]), TEST, np.random.default_rng(0)).transform(batch)
    np.testing.assert_array_equal(one, batch.astype(np.float32) - 10)


def test_mean_file_and_equal_mean_values_agree(tmp_path):
    batch = images(n=4, c=3, h=6, w=6)
    values = [104.0, 117.0, 123.0]
    mean = np.broadcast_to(np.array(values, np.float32)[:, None, None], (3, 6, 6))
    path = tmp_path / "mean.binaryproto"
    write_mean_binaryproto(mean, path)
    from_file = DataTransformer(tp(mean_file=str(path), crop_size=4, scale=0.1), TEST,
                                np.random.default_rng(0)).transform(batch)
    from_values = DataTransformer(tp(mean_value=values, crop_size=4, scale=0.1), TEST,
                                  np.random.default_rng(0)).transform(batch)
    np.testing.assert_array_equal(from_file, from_values)


def test_mean_is_subtracted_before_scaling():
    batch = np.full((1, 1, 2, 2), 10, np.uint8)
    out = DataTransformer(tp(mean_value=[4], scale=0.5), TEST,
                          np.random.default_rng(0)).transform(batch)
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 3.0))  # (10-4)*0.5, not 10*0.5-4


def test_float_input_and_float64_output():
    batch = np.random.default_rng(0).normal(size=(2, 1, 3, 3))
    t = DataTransformer(tp(scale=2.0), TEST, np.random.default_rng(0), dtype=np.float64)
    out = t.transform(batch)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, batch * 2.0)
    assert out is not batch


def test_output_shape():
    t = DataTransformer(tp(crop_size=227), TRAIN, np.random.default_rng(0))
    assert t.output_shape((3, 256, 256), 50) == (50, 3, 227, 227)
    assert DataTransformer(tp(), TEST, np.random.default_rng(0)).output_shape(
        (1, 28, 28), 64) == (64, 1, 28, 28)
    with pytest.raises(TransformError, match="crop_size 227 is larger"):
        t.output_shape((3, 200, 256), 1)


def test_bad_parameters_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(TransformError, match="mean_file and mean_value"):
        DataTransformer(tp(mean_file="m.binaryproto", mean_value=[1]), TRAIN, rng)
    with pytest.raises(TransformError, match="force_color and force_gray"):
        DataTransformer(tp(force_color=True, force_gray=True), TRAIN, rng)
    with pytest.raises(TransformError, match="as many as channels"):
        DataTransformer(tp(mean_value=[1, 2]), TRAIN, rng).transform(images(c=3))
    with pytest.raises(TransformError, match="mean image has shape 3x5x5"):
        DataTransformer(tp(), TRAIN, rng, mean=np.zeros((3, 5, 5))).transform(images(h=7, w=8))
    with pytest.raises(FileNotFoundError, match="nope.binaryproto"):
        DataTransformer(tp(mean_file=str(tmp_path / "nope.binaryproto")), TRAIN, rng)


def test_decode_color_follows_force_flags():
    rng = np.random.default_rng(0)
    assert DataTransformer(tp(force_gray=True), TRAIN, rng).decode_color is False
    assert DataTransformer(tp(force_color=True), TRAIN, rng).decode_color is True
    assert DataTransformer(tp(), TRAIN, rng).decode_color is None

"""compute_image_mean: NumPy's mean of the images, both backends, encoded records, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.data.db import open_db
from pipeline_lib.data.images import encode_image
from pipeline_lib.data.mean import MeanError, compute_image_mean, write_image_mean
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import read_mean_binaryproto
from pipeline_lib.proto.datum import array_to_datum, encoded_datum


def _images(n=7, shape=(3, 5, 6), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _write_db(path, datums, backend="lmdb"):
    with open_db(path, "w", backend) as writer:
        for i, datum in enumerate(datums):
            writer.put(b"%08d_x" % i, datum.SerializeToString())


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_mean_equals_numpy_mean(tmp_path, backend):
    images = _images()
    _write_db(tmp_path / "db", [array_to_datum(im, i % 3) for i, im in enumerate(images)],
              backend)
    result = compute_image_mean(tmp_path / "db")
    assert result.count == len(images)
    np.testing.assert_array_equal(result.mean, images.mean(axis=0, dtype=np.float64))
    np.testing.assert_allclose(result.channel_means, images.mean(axis=(0, 2, 3)), rtol=1e-12)

    write_image_mean(tmp_path / "db", tmp_path / "mean.binaryproto")
    stored = read_mean_binaryproto(tmp_path / "mean.binaryproto")
    np.testing.assert_array_equal(stored, images.mean(axis=0).astype(np.float32))
    blob = caffe_pb2.BlobProto.FromString((tmp_path / "mean.binaryproto").read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 5, 6)  # Caffe's fields


def test_large_sums_stay_exact(tmp_path):
    # 3000 images of 255 then one of 0: a float32 running sum would drift; float64 does not
    full = np.full((1, 2, 2), 255, np.uint8)
    datums = [array_to_datum(full, 0)] * 3000 + [array_to_datum(np.zeros_like(full), 0)]
    _write_db(tmp_path / "db", datums)
    result = compute_image_mean(tmp_path / "db")
    assert result.mean.dtype == np.float64
    np.testing.assert_array_equal(result.mean, np.full((1, 2, 2), 255 * 3000 / 3001))


def test_encoded_records_are_decoded(tmp_path):
    from PIL import Image

    images = _images(n=4, shape=(3, 8, 9), seed=1)
    datums = []
    for im in images:  # PNG is lossless; Datum images are BGR, Pillow wants RGB
        png = encode_image(Image.fromarray(im[::-1].transpose(1, 2, 0)), "PNG")
        datums.append(encoded_datum(png, 0))
    _write_db(tmp_path / "db", datums)
    np.testing.assert_array_equal(compute_image_mean(tmp_path / "db").mean,
                                  images.mean(axis=0, dtype=np.float64))


def test_float_records_are_averaged(tmp_path):
    values = np.random.default_rng(2).normal(size=(3, 1, 2, 2)).astype(np.float32)
    _write_db(tmp_path / "db", [array_to_datum(v, 0) for v in values])
    np.testing.assert_allclose(compute_image_mean(tmp_path / "db").mean,
                               values.astype(np.float64).mean(axis=0), rtol=1e-12)


def test_a_record_of_another_size_is_named(tmp_path):
    images = _images(n=3)
    other = np.zeros((3, 5, 7), np.uint8)
    _write_db(tmp_path / "db", [array_to_datum(images[0], 0), array_to_datum(images[1], 0),
                                array_to_datum(other, 0)])
    with pytest.raises(MeanError, match=r"key 00000002_x: image is 3x5x7, earlier records 3x5x6"):
        compute_image_mean(tmp_path / "db")


def test_empty_database_is_an_error(tmp_path):
    _write_db(tmp_path / "db", [])
    with pytest.raises(MeanError, match="holds no records"):
        compute_image_mean(tmp_path / "db")

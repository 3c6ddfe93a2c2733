"""Mean binaryproto: round trip, both shape forms, clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import (
    MeanFileError,
    read_mean_binaryproto,
    write_mean_binaryproto,
)


def test_round_trip_sets_shape_and_legacy_fields(tmp_path):
    mean = np.random.default_rng(0).uniform(0, 255, size=(3, 4, 5)).astype(np.float32)
    path = tmp_path / "mean.binaryproto"
    write_mean_binaryproto(mean, path)
    np.testing.assert_array_equal(read_mean_binaryproto(path), mean)

    blob = caffe_pb2.BlobProto.FromString(path.read_bytes())
    assert list(blob.shape.dim) == [1, 3, 4, 5]
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 4, 5)
    assert len(blob.data) == 60 and len(blob.diff) == 0
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_reads_legacy_only_and_shape_only_blobs(tmp_path):
    values = np.arange(2 * 3 * 3, dtype=np.float32)
    legacy = caffe_pb2.BlobProto(num=1, channels=2, height=3, width=3)  # compute_image_mean
    legacy.data.extend(values.tolist())
    modern = caffe_pb2.BlobProto()
    modern.shape.dim.extend([1, 2, 3, 3])
    modern.double_data.extend(values.tolist())
    for name, blob in (("legacy", legacy), ("modern", modern)):
        path = tmp_path / f"{name}.binaryproto"
        path.write_bytes(blob.SerializeToString())
        got = read_mean_binaryproto(path)
        assert got.dtype == np.float32 and got.shape == (2, 3, 3)
        np.testing.assert_array_equal(got.ravel(), values)


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "mean.binaryproto"
    write_mean_binaryproto(np.ones((3, 8, 8), np.float32), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MeanFileError, match=r"mean\.binaryproto.*(truncated|corrupt)"):
        read_mean_binaryproto(path)


def test_wrong_shape_and_missing_file(tmp_path):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 1, 2, 2])
    blob.data.extend([0.0] * 8)
    path = tmp_path / "two.binaryproto"
    path.write_bytes(blob.SerializeToString())
    with pytest.raises(MeanFileError, match=r"two\.binaryproto.*1 x C x H x W.*\(2, 1, 2, 2\)"):
        read_mean_binaryproto(path)
    empty = tmp_path / "empty.binaryproto"
    empty.write_bytes(b"")
    with pytest.raises(MeanFileError, match="empty.binaryproto"):
        read_mean_binaryproto(empty)
    with pytest.raises(FileNotFoundError, match="absent.binaryproto"):
        read_mean_binaryproto(tmp_path / "absent.binaryproto")
    with pytest.raises(ValueError, match="C x H x W"):
        write_mean_binaryproto(np.zeros((4, 4)), tmp_path / "bad.binaryproto")

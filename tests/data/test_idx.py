"""IDX files: reading, writing, and the errors for bad, truncated and mismatched files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.data.idx import (
    IdxError,
    read_idx,
    read_images,
    read_labels,
    read_mnist_pair,
    write_idx,
)

GOLDEN = Path(__file__).parent / "golden"


def _images(n=3, rows=4, cols=5):
    return np.arange(n * rows * cols, dtype=np.uint8).reshape(n, rows, cols)


def test_write_then_read_images_and_labels(tmp_path):
    images, labels = _images(), np.array([7, 0, 9], dtype=np.uint8)
    write_idx(images, tmp_path / "img")
    write_idx(labels, tmp_path / "lab")
    raw = (tmp_path / "img").read_bytes()
    assert raw[:16] == struct.pack(">IIII", 2051, 3, 4, 5)
    assert (tmp_path / "lab").read_bytes()[:8] == struct.pack(">II", 2049, 3)
    got_images, got_labels = read_mnist_pair(tmp_path / "img", tmp_path / "lab")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8
    got_images[0, 0, 0] = 1  # callers may modify what they get


def test_golden_train100_files():
    images, labels = read_mnist_pair(
        GOLDEN / "train100-images-idx3-ubyte", GOLDEN / "train100-labels-idx1-ubyte"
    )
    assert images.shape == (100, 28, 28)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_bad_magic_names_file_and_expectation(tmp_path):
    path = tmp_path / "labels"
    write_idx(np.zeros(4, np.uint8), path)
    with pytest.raises(
        IdxError, match=r"labels: bad magic number 2049: expected .*images \(2051\)"
    ):
        read_images(path)
    path.write_bytes(b"\x12\x34\x56\x78" + b"\x00" * 8)
    with pytest.raises(IdxError, match="bad magic number 305419896"):
        read_idx(path)


def test_gzipped_file_gets_a_hint(tmp_path):
    path = tmp_path / "img.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 12))
    with pytest.raises(IdxError, match="looks like a gzip file: decompress it first"):
        read_images(path)


def test_truncated_data(tmp_path):
    path = tmp_path / "img"
    write_idx(_images(), path)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(IdxError, match=r"img: truncated: header says shape \(3, 4, 5\) \(60 bytes"):
        read_images(path)


def test_truncated_header_and_empty_file(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(struct.pack(">II", 2051, 3))
    with pytest.raises(IdxError, match="truncated header: 8 bytes, expected 16"):
        read_images(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(IdxError, match="truncated"):
        read_images(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "lab"
    write_idx(np.zeros(4, np.uint8), path)
    path.write_bytes(path.read_bytes() + b"\x01")
    with pytest.raises(IdxError, match="1 unexpected trailing bytes"):
        read_labels(path)


def test_count_mismatch_names_both_files(tmp_path):
    write_idx(_images(n=3), tmp_path / "img")
    write_idx(np.zeros(2, np.uint8), tmp_path / "lab")
    with pytest.raises(IdxError, match=r"img holds 3 images but .*lab holds 2 labels"):
        read_mnist_pair(tmp_path / "img", tmp_path / "lab")


def test_missing_file(tmp_path):
    with pytest.raises(IdxError, match="nope: no such IDX file"):
        read_idx(tmp_path / "nope")


def test_write_rejects_non_uint8_and_leaves_nothing(tmp_path):
    with pytest.raises(IdxError, match="uint8"):
        write_idx(np.zeros(3, np.float32), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []

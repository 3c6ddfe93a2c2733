"""IDX pair -> database (Caffe's convert_mnist_data), through the API and the command line."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.data.__main__ import main
from pipeline_lib.data.convert import convert_mnist
from pipeline_lib.data.db import open_db
from pipeline_lib.data.idx import IdxError, write_idx
from pipeline_lib.proto.datum import datum_to_array, read_datum

GOLDEN = Path(__file__).parent / "golden"
TRAIN100 = (GOLDEN / "train100-images-idx3-ubyte", GOLDEN / "train100-labels-idx1-ubyte")


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_convert_train100_equals_caffes_database(tmp_path, backend):
    assert convert_mnist(*TRAIN100, tmp_path / "ours", backend) == 100
    caffe = shutil.copytree(GOLDEN / f"caffe_train100_{backend}", tmp_path / "caffe")
    with open_db(tmp_path / "ours", "r", backend) as ours, open_db(caffe, "r") as theirs:
        assert list(ours) == list(theirs)


def test_convert_small_pair_records(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(images, tmp_path / "img")
    write_idx(np.array([2, 0, 9], np.uint8), tmp_path / "lab")
    convert_mnist(tmp_path / "img", tmp_path / "lab", tmp_path / "db", "lmdb")
    with open_db(tmp_path / "db", "r") as reader:
        assert reader.keys() == [b"00000000", b"00000001", b"00000002"]
        datum = read_datum(reader, 2)
        assert datum.label == 9
        np.testing.assert_array_equal(datum_to_array(datum), images[2][None])
    with pytest.raises(FileExistsError):
        convert_mnist(tmp_path / "img", tmp_path / "lab", tmp_path / "db", "lmdb")


@pytest.mark.leveldb
def test_cli_convert_and_inspect(tmp_path, capsys):
    out = tmp_path / "db"
    assert main(["convert-mnist", *map(str, TRAIN100), str(out), "--backend", "leveldb"]) == 0
    assert f"{out}: 100 records (leveldb)" in capsys.readouterr().out
    assert main(["inspect", str(out), "--show", "2"]) == 0
    printed = capsys.readouterr().out
    assert "leveldb, 100 records" in printed
    assert "00000000: label 5, 1x28x28 uint8" in printed


def test_cli_reports_errors(tmp_path, capsys):
    write_idx(np.zeros((2, 3, 3), np.uint8), tmp_path / "img")
    write_idx(np.zeros(3, np.uint8), tmp_path / "lab")
    assert main(["convert-mnist", str(tmp_path / "img"), str(tmp_path / "lab"), "x"]) == 1
    assert main(["inspect", str(tmp_path / "none")]) == 1
    assert not (tmp_path / "x").exists()


def _gzip_to(src: Path, dst: Path, extra: bytes = b"", cut: int = 0) -> Path:
    data = src.read_bytes() + extra
    dst.write_bytes(gzip.compress(data[: len(data) - cut]))
    return dst


@pytest.mark.parametrize("which", ["both", "images", "labels"])
def test_gzipped_idx_files_give_caffes_database(tmp_path, capsys, which):
    images, labels = TRAIN100
    if which in ("both", "images"):
        images = _gzip_to(images, tmp_path / "images.gz")
    if which in ("both", "labels"):
        labels = _gzip_to(labels, tmp_path / "labels.gz")
    out = tmp_path / "db"
    assert main(["convert-mnist", str(images), str(labels), str(out)]) == 0
    assert f"{out}: 100 records (lmdb)" in capsys.readouterr().out
    with open_db(out, "r") as ours, open_db(GOLDEN / "caffe_train100_lmdb", "r") as caffe:
        assert list(ours) == list(caffe)


@pytest.mark.parametrize(("extra", "cut", "message"), [
    (b"", 5, r"images\.gz: truncated: the decompressed data ends inside item 100 "),
    (b"\0", 0, r"images\.gz: unexpected trailing bytes after the data announced by the header"),
])
def test_bad_gzipped_idx_is_named_and_nothing_written(tmp_path, extra, cut, message):
    images = _gzip_to(TRAIN100[0], tmp_path / "images.gz", extra, cut)
    with pytest.raises(IdxError, match=message):
        convert_mnist(images, TRAIN100[1], tmp_path / "db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.gz"]


def test_gzip_that_is_not_one_is_named(tmp_path):
    bad = tmp_path / "images.gz"
    bad.write_bytes(gzip.compress(TRAIN100[0].read_bytes())[:40] + b"\xff" * 100)
    with pytest.raises(IdxError, match=r"images\.gz: not a valid gzip file"):
        convert_mnist(bad, TRAIN100[1], tmp_path / "db")

"""IDX pair -> database (Caffe's convert_mnist_data), through the API and the command line."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.data.__main__ import main
from pipeline_lib.data.convert import convert_mnist
from pipeline_lib.data.db import open_db
from pipeline_lib.data.idx import write_idx
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

"""HDF5Data layer: rows in file order, wrap-around, shuffle per epoch, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.core import backend as xp_backend
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError, layer_class
from pipeline_lib.proto import caffe_pb2


def write_h5(path: Path, first: int, rows: int) -> None:
    """Rows numbered `first..first+rows-1`: data row r is all r, label is r."""
    ids = np.arange(first, first + rows)
    with h5py.File(path, "w") as f:
        f["data"] = np.broadcast_to(ids[:, None, None, None], (rows, 2, 3, 3)).astype(np.float32)
        f["label"] = ids.astype(np.int32)


@pytest.fixture
def two_files(tmp_path):
    """train.txt listing a.h5 (rows 0..6) and b.h5 (rows 100..104) by relative name."""
    (tmp_path / "sub").mkdir()
    write_h5(tmp_path / "sub" / "a.h5", 0, 7)
    write_h5(tmp_path / "sub" / "b.h5", 100, 5)
    (tmp_path / "sub" / "train.txt").write_text("a.h5\n\nb.h5\n")
    return tmp_path / "sub" / "train.txt"


def hdf5_layer(source, batch=4, shuffle=False, seed=0, xp=np, dtype=np.float32,
               tops=("data", "label"), extra=""):
    text = (f'name: "h5" type: "HDF5Data" {" ".join(f"top: {chr(34)}{t}{chr(34)}" for t in tops)}'
            f' hdf5_data_param {{ source: "{source}" batch_size: {batch} '
            f'shuffle: {str(shuffle).lower()} }} {extra}')
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    layer = layer_class("HDF5Data")(lp, caffe_pb2.TRAIN, xp, np.random.default_rng(seed), dtype)
    blobs = [Blob((), xp, dtype, name=t) for t in tops]
    layer.check_counts([], blobs)
    layer.setup([], blobs)
    layer.reshape([], blobs)
    return layer, blobs


def ids_of(layer, blobs, n):
    """The row ids of `n` batches, checked to agree between data and label."""
    out = []
    for _ in range(n):
        layer.forward([], blobs)
        data, label = (xp_backend.to_host(b.data) for b in blobs)
        np.testing.assert_array_equal(data[:, 1, 2, 0], label)
        out.append(label.astype(int).tolist())
    return out


def test_rows_in_file_order_across_files_and_wrap_around(two_files, xp):
    layer, blobs = hdf5_layer(two_files, batch=5, xp=xp)
    assert blobs[0].shape == (5, 2, 3, 3) and blobs[1].shape == (5,)
    assert ids_of(layer, blobs, 3) == [
        [0, 1, 2, 3, 4], [5, 6, 100, 101, 102], [103, 104, 0, 1, 2]]
    assert blobs[0].data.dtype == np.float32 and blobs[1].data.dtype == np.float32


def test_shuffle_is_a_per_epoch_permutation_reproducible_per_seed(two_files):
    def epochs(seed):
        layer, blobs = hdf5_layer(two_files, batch=3, shuffle=True, seed=seed)
        return sum(ids_of(layer, blobs, 16), [])  # 48 rows = 4 epochs of 12

    a, b, c = epochs(3), epochs(3), epochs(4)
    assert a == b and a != c
    everything = list(range(7)) + list(range(100, 105))
    orders = [a[12 * k:12 * (k + 1)] for k in range(4)]
    for epoch in orders:
        assert sorted(epoch) == everything
        # rows stay grouped by file: one file's rows, then the other's
        head = epoch[:7] if epoch[0] < 100 else epoch[:5]
        assert len({r < 100 for r in head}) == 1
    assert len({tuple(e) for e in orders}) == 4  # a fresh order every epoch
    assert any(e[0] >= 100 for e in orders)  # the file order is shuffled too


def test_single_file_reshuffles_rows_each_epoch(tmp_path):
    write_h5(tmp_path / "only.h5", 0, 6)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'only.h5'}\n")
    layer, blobs = hdf5_layer(tmp_path / "list.txt", batch=6, shuffle=True, seed=1)
    e1, e2, e3 = ids_of(layer, blobs, 3)
    assert sorted(e1) == sorted(e2) == sorted(e3) == list(range(6))
    assert len({tuple(e1), tuple(e2), tuple(e3)}) > 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_matches_an_uninterrupted_run(two_files, shuffle):
    whole, blobs = hdf5_layer(two_files, batch=5, shuffle=shuffle, seed=8)
    want = ids_of(whole, blobs, 10)
    first, blobs = hdf5_layer(two_files, batch=5, shuffle=shuffle, seed=8)
    ids_of(first, blobs, 3)
    state = json.loads(json.dumps(first.get_state()))
    resumed, blobs = hdf5_layer(two_files, batch=5, shuffle=shuffle, seed=77)
    resumed.set_state(state)
    assert ids_of(resumed, blobs, 7) == want[3:]


def test_list_relative_to_cwd_first(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    write_h5(tmp_path / "data" / "x.h5", 0, 4)   # named from the cwd
    write_h5(tmp_path / "data" / "y.h5", 50, 4)
    (tmp_path / "data" / "data").mkdir()
    write_h5(tmp_path / "data" / "data" / "x.h5", 900, 4)  # would match relative to the list
    (tmp_path / "data" / "list.txt").write_text("data/x.h5\ny.h5\n")
    monkeypatch.chdir(tmp_path)
    layer, blobs = hdf5_layer("data/list.txt", batch=8)
    assert ids_of(layer, blobs, 1) == [[0, 1, 2, 3, 50, 51, 52, 53]]


def test_errors_name_the_files(tmp_path, two_files):
    with pytest.raises(LayerSetupError, match="'nope.txt' does not exist"):
        hdf5_layer("nope.txt")
    (tmp_path / "missing.txt").write_text("gone.h5\n")
    with pytest.raises(LayerSetupError, match=r"missing.txt' line 1: HDF5 file 'gone.h5' not"):
        hdf5_layer(tmp_path / "missing.txt")
    with pytest.raises(LayerSetupError, match=r"a.h5' has no dataset 'feat'.*data, label"):
        hdf5_layer(two_files, tops=("feat",))
    with pytest.raises(LayerSetupError, match="does not transform data"):
        hdf5_layer(two_files, extra="transform_param { scale: 0.5 }")
    write_h5(tmp_path / "odd.h5", 0, 3)
    with h5py.File(tmp_path / "odd.h5", "a") as f:
        del f["label"]
        f["label"] = np.zeros(4, np.float32)
    (tmp_path / "odd.txt").write_text(str(tmp_path / "odd.h5"))
    with pytest.raises(LayerSetupError, match="'label' has 4 rows, 'data' has 3"):
        hdf5_layer(tmp_path / "odd.txt")
    layer, _ = hdf5_layer(two_files)
    with pytest.raises(LayerSetupError, match="lacks file_order"):
        layer.set_state({"row": 1})

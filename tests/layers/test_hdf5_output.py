"""HDF5Output: the datasets Caffe writes (names, 4-D shapes, values), each forward replacing
the file atomically, reading back through HDF5Data, and the errors."""

import os

import h5py
import numpy as np
import pytest
from basic_layer_util import blob, make_layer, run


def text(path):
    return (f'name: "out" type: "HDF5Output" bottom: "data" bottom: "label" '
            f'hdf5_output_param {{ file_name: "{path}" }}')


def test_writes_data_and_label_with_caffes_4d_shapes(tmp_path, xp):
    rng = np.random.default_rng(0)
    data, label = rng.standard_normal((3, 2, 4)), np.array([1.0, 0.0, 2.0])
    path = tmp_path / "out.h5"
    run(make_layer(text(path), xp, np.float32), [blob(data, xp, np.float32),
                                                 blob(label, xp, np.float32)])
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["data", "label"]
        assert f["data"].shape == (3, 2, 4, 1) and f["data"].dtype == np.float32
        assert f["label"].shape == (3, 1, 1, 1)
        np.testing.assert_allclose(f["data"][...].reshape(3, 2, 4), data, rtol=1e-6)
        np.testing.assert_array_equal(f["label"][...].reshape(3), label)


def test_a_scalar_such_as_a_loss_is_one_by_one_by_one_by_one(tmp_path):
    # Caffe's legacy shape reads missing axes as 1, so a loss top can be dumped
    path = tmp_path / "loss.h5"
    run(make_layer(text(path)), [blob(np.array(2.5)), blob(np.array(-1.0))])
    with h5py.File(path, "r") as f:
        assert f["data"].shape == (1, 1, 1, 1) and f["data"][0, 0, 0, 0] == 2.5
        assert f["label"][0, 0, 0, 0] == -1.0


def test_each_forward_replaces_the_file_and_hdf5data_reads_it(tmp_path):
    path = tmp_path / "out.h5"
    layer = make_layer(text(path))
    bottom = [blob(np.zeros((2, 3))), blob(np.zeros(2))]
    run(layer, bottom)
    bottom[0].data[...] = 7
    bottom[1].data[...] = [4, 5]
    layer.forward(bottom, [])
    assert [p for p in os.listdir(tmp_path) if p != "out.h5"] == []  # no temp file left
    (tmp_path / "list.txt").write_text(f"{path}\n")
    reader = make_layer('name: "in" type: "HDF5Data" top: "data" top: "label" '
                        f'hdf5_data_param {{ source: "{tmp_path / "list.txt"}" batch_size: 2 }}')
    data, label = run(reader, [])
    assert (data.data == 7).all() and data.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(label.data.reshape(2), [4, 5])


def test_nothing_is_written_before_a_forward(tmp_path):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"the user's file")
    layer = make_layer(text(path))
    layer.setup([blob(np.zeros((1, 1))), blob(np.zeros(1))], [])
    assert path.read_bytes() == b"the user's file"


def test_errors_name_the_layer(tmp_path):
    with pytest.raises(ValueError, match=r"'out'.*same first dimension"):
        run(make_layer(text(tmp_path / "o.h5")), [blob(np.zeros((2, 3))), blob(np.zeros(3))])
    with pytest.raises(ValueError, match=r"'out'.*folder .*does not exist"):
        run(make_layer(text(tmp_path / "no" / "o.h5")), [blob(np.zeros(1)), blob(np.zeros(1))])
    with pytest.raises(ValueError, match=r"'out'.*file_name is not set"):
        run(make_layer('name: "out" type: "HDF5Output" bottom: "a" bottom: "b"'),
            [blob(np.zeros(1)), blob(np.zeros(1))])

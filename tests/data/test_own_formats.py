"""CIFAR-10 batches, HDF5 lists and the lock file of dataset hashes (tiny files made here)."""

import hashlib
import threading

import numpy as np
import pytest
import yaml

from pipeline_lib.data.cifar import CifarError, convert_cifar
from pipeline_lib.data.db import open_db
from pipeline_lib.data.hdf5_list import Hdf5ListError, write_hdf5_list
from pipeline_lib.data.lockfile import LockFileError, read_lock, record
from pipeline_lib.data.mnist_sources import FILE_NAMES, fetch_idx_dataset
from pipeline_lib.proto.datum import datum_to_array, read_datum


def _batch(path, labels, seed):
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 3, 32, 32), np.uint8)
    path.write_bytes(b"".join(bytes([lab]) + im.tobytes() for lab, im in zip(labels, images)))
    return images


def test_cifar_records_are_caffes(tmp_path):
    first = _batch(tmp_path / "b1.bin", [6, 9], 0)
    second = _batch(tmp_path / "b2.bin", [1], 1)
    assert convert_cifar([tmp_path / "b1.bin", tmp_path / "b2.bin"], tmp_path / "db") == 3
    with open_db(tmp_path / "db", "r") as reader:
        assert reader.keys() == [b"00000", b"00001", b"00002"]  # %05d across the batches
        datums = [read_datum(reader, i) for i in range(3)]
    assert [d.label for d in datums] == [6, 9, 1]
    assert {(d.channels, d.height, d.width, d.encoded) for d in datums} == {(3, 32, 32, False)}
    np.testing.assert_array_equal(datum_to_array(datums[2]), second[0])  # C x H x W, as stored
    assert datums[1].data == first[1].tobytes()


def test_cifar_file_of_partial_records_is_named_before_writing(tmp_path):
    _batch(tmp_path / "b1.bin", [0], 0)
    (tmp_path / "b2.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(CifarError, match=r"b2\.bin: 3000 bytes is not a whole number of "
                                         r"CIFAR-10 records \(3073 bytes each"):
        convert_cifar([tmp_path / "b1.bin", tmp_path / "b2.bin"], tmp_path / "db")
    assert not (tmp_path / "db").exists()


def test_hdf5_list_checks_every_file(tmp_path):
    import h5py

    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5["data"] = np.zeros((1, 2), np.float32)
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    (tmp_path / "text.h5").write_text("not hdf5")
    good = str(tmp_path / "a.h5")
    assert write_hdf5_list([good, good], tmp_path / "list.txt", "w") == 2
    assert (tmp_path / "list.txt").read_text() == f"{good}\n{good}\n"
    for bad, message in ((tmp_path / "none.h5", "no such file"),
                         (tmp_path / "text.h5", "not an HDF5 file"),
                         (tmp_path / "empty.h5", "holds no datasets")):
        with pytest.raises(Hdf5ListError, match=rf"^cfg\[1\]: {bad}: {message}"):
            write_hdf5_list([good, str(bad)], tmp_path / "other.txt", "cfg")
        assert not (tmp_path / "other.txt").exists()


def test_lock_file_keeps_every_datasets_entries(tmp_path):
    lock = tmp_path / "datasets.lock.yaml"
    assert read_lock(lock) == {}
    threads = [threading.Thread(target=record, args=(lock, f"d{i}", {"f": f"{i}" * 64}))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record(lock, "d0", {"g": "a" * 64})
    assert read_lock(lock) == {"d0": {"f": "0" * 64, "g": "a" * 64},
                               **{f"d{i}": {"f": f"{i}" * 64} for i in range(1, 8)}}
    assert lock.read_text().startswith("# Written by the pipeline")
    assert [p.name for p in tmp_path.iterdir()] == ["datasets.lock.yaml"]  # no temp files
    lock.write_text("datasets:\n  d0:\n    f: nothex\n")
    with pytest.raises(LockFileError, match=r"datasets\.lock\.yaml: datasets\.d0\.f: 'nothex' "
                                            r"is not a sha256"):
        read_lock(lock)


def test_unpinned_local_files_are_recorded_then_verified(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(FILE_NAMES):
        (src / name).write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, i]))
    entry = {"format": "idx", "sources": [{"type": "local", "path": str(src)}]}
    lock = tmp_path / "datasets.lock.yaml"
    got = fetch_idx_dataset(entry, tmp_path / "out", name="own", lock_path=lock)
    recorded = yaml.safe_load(lock.read_text())["datasets"]["own"]
    assert recorded == {n: hashlib.sha256((src / n).read_bytes()).hexdigest()
                        for n in FILE_NAMES}
    assert sorted(got) == sorted(FILE_NAMES)
    fetch_idx_dataset(entry, tmp_path / "out", name="own", lock_path=lock)  # same content
    (src / FILE_NAMES[1]).write_bytes(b"changed")
    found = hashlib.sha256(b"changed").hexdigest()
    with pytest.raises(ValueError) as info:
        fetch_idx_dataset(entry, tmp_path / "out", name="own", lock_path=lock)
    assert str(info.value).startswith(
        f"{src / FILE_NAMES[1]}: sha256 {found} found, {recorded[FILE_NAMES[1]]} expected "
        f"(recorded in {lock} on first use)")
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "out").iterdir())  # a failed fetch keeps no outputs

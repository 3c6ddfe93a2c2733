"""LMDB and LevelDB: round trips, Caffe's databases, map growth, atomic output, errors."""

import shutil
from pathlib import Path

import numpy as np
import plyvel
import pytest

from pipeline_lib.data.db import DatabaseError, DatabaseReader, DatabaseWriter, detect_backend

GOLDEN = Path(__file__).parent / "golden"
BACKENDS = ["lmdb", "leveldb"]


def _records(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(b"%08d" % i, rng.bytes(size)) for i in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_in_key_order(tmp_path, backend):
    records = _records(25)
    with DatabaseWriter(tmp_path / "db", backend, batch_size=4) as writer:
        for key, value in reversed(records):  # written out of order, read in key order
            writer.put(key, value)
        assert writer.count == 25
    assert not [p for p in tmp_path.iterdir() if p.name != "db"]  # no temp dir left
    assert detect_backend(tmp_path / "db") == backend
    with DatabaseReader(tmp_path / "db", backend) as reader:
        assert len(reader) == 25
        assert reader.keys() == [k for k, _ in records]
        assert list(reader) == records
        assert reader.value(17) == records[17][1]
        assert reader.value(-1) == records[-1][1]
        assert reader.key(3) == b"00000003"
        with pytest.raises(IndexError, match="record 25 out of range"):
            reader.value(25)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_caffes_databases(tmp_path, backend):
    copy = shutil.copytree(GOLDEN / f"caffe_train100_{backend}", tmp_path / "db")
    with DatabaseReader(copy) as reader:
        assert reader.backend == backend
        assert len(reader) == 100
        assert reader.keys()[0] == b"00000000" and reader.keys()[-1] == b"00000099"
        assert reader.value(0).startswith(b"\x08\x01\x10\x1c\x18\x1c")  # channels 1, 28 x 28


def test_lmdb_reader_creates_no_lock_file(tmp_path):
    copy = shutil.copytree(GOLDEN / "caffe_train100_lmdb", tmp_path / "db")
    before = sorted(p.name for p in copy.iterdir())
    with DatabaseReader(copy, "lmdb") as reader:
        assert len(list(reader)) == 100
    assert sorted(p.name for p in copy.iterdir()) == before == ["data.mdb"]


def test_lmdb_map_grows_as_needed(tmp_path):
    records = _records(200, size=4096)  # ~800 KiB of values into a 32 KiB map
    with DatabaseWriter(tmp_path / "db", "lmdb", map_size=32 << 10, batch_size=50) as writer:
        for key, value in records:
            writer.put(key, value)
        assert writer.map_size > 800 << 10
    with DatabaseReader(tmp_path / "db") as reader:
        assert list(reader) == records


def test_lmdb_map_grows_within_one_batch(tmp_path):
    records = _records(100, size=4096)
    with DatabaseWriter(tmp_path / "db", "lmdb", map_size=32 << 10, batch_size=1000) as writer:
        for key, value in records:
            writer.put(key, value)
    with DatabaseReader(tmp_path / "db") as reader:
        assert len(reader) == 100 and reader.value(99) == records[99][1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_leaves_no_partial_output(tmp_path, backend):
    with pytest.raises(RuntimeError, match="boom"):
        with DatabaseWriter(tmp_path / "db", backend, batch_size=2) as writer:
            for key, value in _records(7):
                writer.put(key, value)  # some batches are committed already
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_refuses_to_overwrite_unless_asked(tmp_path, backend):
    target = tmp_path / "db"
    with DatabaseWriter(target, backend) as writer:
        writer.put(b"a", b"old")
    with pytest.raises(FileExistsError, match="db: output database already exists"):
        DatabaseWriter(target, backend)
    with DatabaseWriter(target, backend, overwrite=True) as writer:
        writer.put(b"b", b"new")
    with DatabaseReader(target) as reader:
        assert list(reader) == [(b"b", b"new")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_failed_overwrite_keeps_the_old_database(tmp_path):
    target = tmp_path / "db"
    with DatabaseWriter(target, "lmdb") as writer:
        writer.put(b"a", b"old")
    with pytest.raises(ValueError):
        with DatabaseWriter(target, "lmdb", overwrite=True) as writer:
            writer.put(b"b", b"new")
            raise ValueError
    with DatabaseReader(target) as reader:
        assert list(reader) == [(b"a", b"old")]


def test_put_checks_types_and_backend_name(tmp_path):
    with pytest.raises(ValueError, match="unknown database backend 'rocksdb'"):
        DatabaseWriter(tmp_path / "x", "rocksdb")
    with DatabaseWriter(tmp_path / "db", "lmdb") as writer:
        with pytest.raises(TypeError, match="bytes"):
            writer.put("00000000", b"v")
        writer.put(b"k", b"v")


def test_reader_errors_name_the_path(tmp_path):
    with pytest.raises(DatabaseError, match="missing: no such database"):
        DatabaseReader(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(DatabaseError, match="file: not a database directory"):
        DatabaseReader(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatabaseError, match="empty: not a database: no data.mdb"):
        DatabaseReader(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "data.mdb").write_bytes(b"\x00" * 100)
    with pytest.raises(DatabaseError, match="bad: cannot open LMDB database"):
        DatabaseReader(tmp_path / "bad")
    copy = shutil.copytree(GOLDEN / "caffe_train100_lmdb", tmp_path / "db")
    with pytest.raises(DatabaseError, match="db: expected a leveldb database, found lmdb"):
        DatabaseReader(copy, "leveldb")


def test_corrupt_leveldb_block_names_db_and_key(tmp_path):
    records = _records(100, size=1000)  # random bytes: not compressible
    with DatabaseWriter(tmp_path / "db", "leveldb") as writer:
        for key, value in records:
            writer.put(key, value)
    db = plyvel.DB(str(tmp_path / "db"))
    db.compact_range()  # move the records from the log into a checksummed table
    db.close()
    (table,) = (tmp_path / "db").glob("*.ldb")
    raw = bytearray(table.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    table.write_bytes(bytes(raw))
    with DatabaseReader(tmp_path / "db") as reader:
        with pytest.raises(DatabaseError, match=r"db: corrupt record after key \d{8} .*checksum"):
            reader.keys()
        reader._keys = [k for k, _ in records]  # as if listed before the damage
        errors = []
        for i in range(100):
            try:
                reader.value(i)
            except DatabaseError as exc:
                errors.append(str(exc))
    assert errors and all("db key 000000" in e and "checksum mismatch" in e for e in errors)

"""LMDB and LevelDB: round trips, Caffe's databases, map growth, atomic output, errors."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.data.db import (
    DatabaseError,
    RecordOutOfRange,
    detect_backend,
    open_db,
)

GOLDEN = Path(__file__).parent / "golden"
BACKENDS = ["lmdb", "leveldb"]


def _records(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(b"%08d" % i, rng.bytes(size)) for i in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_in_key_order(tmp_path, backend):
    records = _records(25)
    with open_db(tmp_path / "db", "w", backend, batch_size=4) as writer:
        for key, value in reversed(records):  # written out of order, read in key order
            writer.put(key, value)
        assert writer.count == 25
    assert not [p for p in tmp_path.iterdir() if p.name != "db"]  # no temp dir left
    assert detect_backend(tmp_path / "db") == backend
    with open_db(tmp_path / "db", "r", backend) as reader:
        assert len(reader) == 25
        assert reader.keys() == [k for k, _ in records]
        assert list(reader) == records
        assert reader.value(17) == records[17][1]
        assert reader.value(-1) == records[-1][1]
        assert reader.key(3) == b"00000003"
        with pytest.raises(IndexError, match="record 25 out of range"):
            reader.value(25)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cursor_reads_in_key_order_and_wraps_around(tmp_path, backend):
    records = _records(7)
    with open_db(tmp_path / "db", "w", backend) as writer:
        for key, value in reversed(records):
            writer.put(key, value)
    with open_db(tmp_path / "db", "r") as reader:
        cursor = reader.cursor()
        assert not cursor.empty and cursor.index == 0 and cursor.peek() == records[0]
        assert cursor.read(5) == records[:5] and cursor.index == 5
        assert cursor.read(4) == records[5:] + records[:2]  # past the end: the first again
        assert cursor.index == 2 and cursor.key == b"00000002"
        cursor.skip(6)  # 2 + 6 = 8, wrapped to 1
        assert cursor.index == 1 and cursor.peek() == records[1]
        assert cursor.read(16) == records[1:] + records + records[:3]  # wraps twice
        assert cursor.index == 3 and cursor.key == b"00000003"
        assert cursor.read(4) == records[3:]  # ends on the last record: the first is next
        assert cursor.index == 0 and cursor.peek() == records[0]
        assert cursor.read(7) == records and cursor.index == 0
        cursor.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cursor_seeks_by_key_or_by_stepping(tmp_path, backend):
    records = _records(10)
    with open_db(tmp_path / "db", "w", backend) as writer:
        for key, value in records:
            writer.put(key, value)
    with open_db(tmp_path / "db", "r") as reader:
        cursor = reader.cursor()
        cursor.seek(6)  # no key: stepped to from the first record
        assert cursor.index == 6 and cursor.read(1) == [records[6]]
        # with a key, the cursor goes straight to it (a mismatched index shows which won)
        cursor.seek(3, key=b"00000008")
        assert cursor.index == 3 and cursor.read(1) == [records[8]]
        cursor.seek(4, key=b"gone")  # a key that is not there: stepped to instead
        assert cursor.index == 4 and cursor.read(1) == [records[4]]
        for bad in (10, -1):
            with pytest.raises(RecordOutOfRange, match=f"record {bad} out of range"):
                cursor.seek(bad)
        with pytest.raises(RecordOutOfRange) as info:
            cursor.seek(12)
        assert info.value.count == 10
        assert reader._keys is None  # the cursor never listed the keys


def test_lmdb_cursor_keeps_its_place_when_the_file_is_mapped_afresh(tmp_path):
    records = _records(9, size=100)
    with open_db(tmp_path / "db", "w", "lmdb") as writer:
        for key, value in records:
            writer.put(key, value)
    with open_db(tmp_path / "db", "r") as reader:
        remaps = []
        remap = reader.remap
        reader.remap = lambda: remaps.append(cursor.index) or remap()
        cursor = reader.cursor(unmap_every=250)  # a new map after 300 bytes of values
        got = []
        for _ in range(6):
            got += cursor.read(2)
        assert got == records + records[:3] and cursor.index == 3
        assert remaps == [4, 8, 3]


def test_lmdb_structure_check_runs_again_only_for_a_changed_file(tmp_path, monkeypatch):
    import pipeline_lib.data.db.lmdb as db_module

    with open_db(tmp_path / "db", "w", "lmdb") as writer:
        for key, value in _records(3):
            writer.put(key, value)
    checked = []
    check = db_module.check_lmdb_file
    monkeypatch.setattr(db_module, "check_lmdb_file", lambda path: checked.append(path) or
                        check(path))
    with open_db(tmp_path / "db", "r") as reader:
        reader.remap()
        reader.remap()
        assert len(checked) == 1  # a remap of the same file does not walk it again
        data = tmp_path / "db" / "data.mdb"
        data.write_bytes(data.read_bytes()[:4096])  # truncated under the reader
        with pytest.raises(DatabaseError, match="corrupt"):
            reader.remap()
        assert len(checked) == 2


def test_cursor_on_an_empty_database(tmp_path):
    open_db(tmp_path / "db", "w", "lmdb").close()
    with open_db(tmp_path / "db", "r") as reader:
        cursor = reader.cursor()
        assert cursor.empty
        with pytest.raises(DatabaseError, match="holds no records"):
            cursor.read(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_caffes_databases(tmp_path, backend):
    copy = shutil.copytree(GOLDEN / f"caffe_train100_{backend}", tmp_path / "db")
    with open_db(copy, "r") as reader:
        assert reader.backend == backend
        assert len(reader) == 100
        assert reader.keys()[0] == b"00000000" and reader.keys()[-1] == b"00000099"
        assert reader.value(0).startswith(b"\x08\x01\x10\x1c\x18\x1c")  # channels 1, 28 x 28


def test_lmdb_reader_creates_no_lock_file(tmp_path):
    copy = shutil.copytree(GOLDEN / "caffe_train100_lmdb", tmp_path / "db")
    before = sorted(p.name for p in copy.iterdir())
    with open_db(copy, "r", "lmdb") as reader:
        assert len(list(reader)) == 100
    assert sorted(p.name for p in copy.iterdir()) == before == ["data.mdb"]


def test_lmdb_map_grows_as_needed(tmp_path):
    records = _records(200, size=4096)  # ~800 KiB of values into a 32 KiB map
    with open_db(tmp_path / "db", "w", "lmdb", map_size=32 << 10, batch_size=50) as writer:
        for key, value in records:
            writer.put(key, value)
        assert writer.map_size > 800 << 10
    with open_db(tmp_path / "db", "r") as reader:
        assert list(reader) == records


def test_lmdb_map_grows_within_one_batch(tmp_path):
    records = _records(100, size=4096)
    with open_db(tmp_path / "db", "w", "lmdb", map_size=32 << 10, batch_size=1000) as writer:
        for key, value in records:
            writer.put(key, value)
    with open_db(tmp_path / "db", "r") as reader:
        assert len(reader) == 100 and reader.value(99) == records[99][1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_leaves_no_partial_output(tmp_path, backend):
    with pytest.raises(RuntimeError, match="boom"):
        with open_db(tmp_path / "db", "w", backend, batch_size=2) as writer:
            for key, value in _records(7):
                writer.put(key, value)  # some batches are committed already
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_refuses_to_overwrite_unless_asked(tmp_path, backend):
    target = tmp_path / "db"
    with open_db(target, "w", backend) as writer:
        writer.put(b"a", b"old")
    with pytest.raises(FileExistsError, match="db: output database already exists"):
        open_db(target, "w", backend)
    with open_db(target, "w", backend, overwrite=True) as writer:
        writer.put(b"b", b"new")
    with open_db(target, "r") as reader:
        assert list(reader) == [(b"b", b"new")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_failed_overwrite_keeps_the_old_database(tmp_path):
    target = tmp_path / "db"
    with open_db(target, "w", "lmdb") as writer:
        writer.put(b"a", b"old")
    with pytest.raises(ValueError):
        with open_db(target, "w", "lmdb", overwrite=True) as writer:
            writer.put(b"b", b"new")
            raise ValueError
    with open_db(target, "r") as reader:
        assert list(reader) == [(b"a", b"old")]


def test_put_checks_types_and_backend_name(tmp_path):
    with pytest.raises(ValueError, match="unknown database backend 'rocksdb'"):
        open_db(tmp_path / "x", "w", "rocksdb")
    with open_db(tmp_path / "db", "w", "lmdb") as writer:
        with pytest.raises(TypeError, match="bytes"):
            writer.put("00000000", b"v")
        writer.put(b"k", b"v")


def test_reader_errors_name_the_path(tmp_path):
    with pytest.raises(DatabaseError, match="missing: no such database"):
        open_db(tmp_path / "missing", "r")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(DatabaseError, match="file: not a database directory"):
        open_db(tmp_path / "file", "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatabaseError, match="empty: not a database: no data.mdb"):
        open_db(tmp_path / "empty", "r")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "data.mdb").write_bytes(b"\x00" * 100)
    with pytest.raises(DatabaseError, match="bad: cannot open LMDB database"):
        open_db(tmp_path / "bad", "r")
    copy = shutil.copytree(GOLDEN / "caffe_train100_lmdb", tmp_path / "db")
    with pytest.raises(DatabaseError, match="db: expected a leveldb database, found lmdb"):
        open_db(copy, "r", "leveldb")


def test_corrupt_leveldb_block_names_db_and_key(tmp_path):
    records = _records(100, size=1000)  # random bytes: not compressible
    with open_db(tmp_path / "db", "w", "leveldb") as writer:
        for key, value in records:
            writer.put(key, value)
    import plyvel

    db = plyvel.DB(str(tmp_path / "db"))
    db.compact_range()  # move the records from the log into a checksummed table
    db.close()
    (table,) = (tmp_path / "db").glob("*.ldb")
    raw = bytearray(table.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    table.write_bytes(bytes(raw))
    with open_db(tmp_path / "db", "r") as reader:
        with pytest.raises(DatabaseError, match=r"db: corrupt record after key \d{8} .*checksum"):
            reader.keys()
        with pytest.raises(DatabaseError, match=r"db: corrupt record after key \d{8} .*checksum"):
            reader.cursor().read(100)
        reader._keys = [k for k, _ in records]  # as if listed before the damage
        errors = []
        for i in range(100):
            try:
                reader.value(i)
            except DatabaseError as exc:
                errors.append(str(exc))
    assert errors and all("db key 000000" in e and "checksum mismatch" in e for e in errors)


@pytest.mark.parametrize("mode", ["r", "w"])
def test_without_plyvel_the_error_names_the_extra(tmp_path, monkeypatch, mode):
    if mode == "r":
        (tmp_path / "db").mkdir()
        (tmp_path / "db" / "CURRENT").write_text("MANIFEST-000001\n")
    monkeypatch.setitem(__import__("sys").modules, "plyvel", None)  # import fails
    with pytest.raises(DatabaseError) as info:
        open_db(tmp_path / "db", mode, "leveldb")
    assert str(info.value) == (
        f"{tmp_path / 'db'}: LevelDB databases need the plyvel package, which is not installed; "
        "install the [leveldb] extra: pip install 'pipeline-lib[leveldb]' (or use backend lmdb)")
    if mode == "w":
        assert list(tmp_path.iterdir()) == []  # nothing half-written

"""Key/value databases in Caffe's two formats: LMDB and LevelDB (via plyvel).

`DatabaseWriter` builds a database in a temporary directory beside the
target, commits in batches, and renames it into place only when closed
without error, so a failed run leaves nothing half-written. The LMDB map
doubles whenever it fills up. `DatabaseReader` gives keys in key order and
random access to values; it opens LMDB read-only without a lock file. A
reader may move between threads but serves one thread at a time.
`RecordCursor` reads records one after another, wrapping at the end, as
Caffe's DataLayer does; unlike `keys()`, it touches only what it reads, so a
large LMDB is not paged into memory at start.
LevelDB has no read-only mode: it takes a LOCK file and may fold its log
into a table on open, so open a copy of any database you must not change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pipeline_lib.core.fsutil import make_temp_dir_beside, replace_dir
from pipeline_lib.data.lmdb_check import LmdbCorrupt, check_lmdb_file

BACKENDS = ("lmdb", "leveldb")
DEFAULT_BATCH = 1000  # records per transaction, as Caffe's converters commit
INITIAL_MAP_SIZE = 1 << 26  # 64 MiB; grows by doubling
MAX_MAP_SIZE = 1 << 40
LOW_DISK_BYTES = 64 << 20  # a write error with less free than this is blamed on a full disk


class DatabaseError(RuntimeError):
    """A database that is missing, of the wrong kind, locked or corrupt."""


class RecordOutOfRange(IndexError):
    """A record position before the start or past the end of the database."""

    def __init__(self, path: Path, index: int, count: int | None) -> None:
        self.index = index
        self.count = count  # records in the database, when known
        held = "" if count is None else f" ({count} records)"
        super().__init__(f"{path}: record {index} out of range{held}")


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown database backend {backend!r}: expected one of {BACKENDS}")
    return backend


def detect_backend(path: str | os.PathLike) -> str:
    """Return "lmdb" or "leveldb", from the files in the database directory."""
    path = Path(path)
    if not path.exists():
        raise DatabaseError(f"{path}: no such database")
    if not path.is_dir():
        raise DatabaseError(f"{path}: not a database directory (LMDB and LevelDB are folders)")
    if (path / "data.mdb").is_file():
        return "lmdb"
    if (path / "CURRENT").is_file():
        return "leveldb"
    raise DatabaseError(f"{path}: not a database: no data.mdb (LMDB) and no CURRENT file (LevelDB)")


class DatabaseWriter:
    """Write (key, value) records into a new LMDB or LevelDB database at `path`."""

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str = "lmdb",
        overwrite: bool = False,
        batch_size: int = DEFAULT_BATCH,
        map_size: int = INITIAL_MAP_SIZE,
    ) -> None:
        self.path = Path(path)
        self.backend = _check_backend(backend)
        self.overwrite = overwrite
        self.batch_size = max(1, int(batch_size))
        self.count = 0
        self._pending: list[tuple[bytes, bytes]] = []
        self._closed = False
        if (self.path.exists() or self.path.is_symlink()) and not overwrite:
            raise FileExistsError(
                f"{self.path}: output database already exists (remove it, or pass "
                "overwrite=True / --overwrite to replace it)"
            )
        self._tmp = make_temp_dir_beside(self.path)
        try:
            if backend == "lmdb":
                import lmdb

                self._lmdb = lmdb
                self._write_errors: tuple[type[BaseException], ...] = (lmdb.Error,)
                self._env = lmdb.open(
                    str(self._tmp), map_size=int(map_size), subdir=True, meminit=True
                )
            else:
                import plyvel

                self._write_errors = (plyvel.Error,)
                self._db = plyvel.DB(
                    str(self._tmp),
                    create_if_missing=True,
                    error_if_exists=True,
                    write_buffer_size=64 << 20,
                )
        except BaseException as exc:
            shutil.rmtree(self._tmp, ignore_errors=True)
            if isinstance(exc, getattr(self, "_write_errors", ())):
                raise self._write_failed(exc) from None
            raise

    def __enter__(self) -> DatabaseWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def map_size(self) -> int:
        """The current LMDB map size in bytes (0 for LevelDB)."""
        return self._env.info()["map_size"] if self.backend == "lmdb" else 0

    def put(self, key: bytes, value: bytes) -> None:
        if self._closed:
            raise DatabaseError(f"{self.path}: put() after close()")
        if not isinstance(key, bytes) or not isinstance(value, bytes):
            raise TypeError(f"{self.path}: keys and values must be bytes")
        self._pending.append((key, value))
        self.count += 1
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Commit the pending records as one transaction."""
        if not self._pending:
            return
        try:
            if self.backend == "lmdb":
                self._commit_lmdb()
            else:
                with self._db.write_batch() as batch:
                    for key, value in self._pending:
                        batch.put(key, value)
        except self._write_errors as exc:
            raise self._write_failed(exc) from None
        self._pending.clear()

    def _write_failed(self, exc: BaseException) -> DatabaseError:
        """The library's write error as one naming the output (and a full disk, if it is)."""
        name = "LMDB" if self.backend == "lmdb" else "LevelDB"
        reason = _reason(exc)
        for temporary in (f"{self._tmp}: ", f"{self._tmp}{os.sep}", str(self._tmp)):
            reason = reason.replace(temporary, "")  # the work folder's name tells nothing
        hint = ""
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(self._tmp.parent).free
            if free < LOW_DISK_BYTES:
                hint = f"; the disk is full ({free // 1024} KiB free)"
        return DatabaseError(f"{self.path}: cannot write the {name} database ({reason}){hint}; "
                             "nothing was written there, and what was there before is kept")

    def _commit_lmdb(self) -> None:
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
                return
            except self._lmdb.MapFullError:
                # The transaction was aborted; grow the map and replay the batch.
                size = self._env.info()["map_size"]
                if size >= MAX_MAP_SIZE:
                    raise DatabaseError(
                        f"{self.path}: LMDB map reached {size} bytes and is still full"
                    ) from None
                self._env.set_mapsize(min(2 * size, MAX_MAP_SIZE))

    def close(self) -> None:
        """Commit what is pending and move the finished database into place."""
        if self._closed:
            return
        try:
            self.flush()
            try:
                self._close_handle()
            except self._write_errors as exc:
                raise self._write_failed(exc) from None
            replace_dir(self._tmp, self.path, self.overwrite)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Drop everything written; the target path is left as it was."""
        self._closed = True
        self._pending.clear()
        with contextlib.suppress(Exception):
            self._close_handle()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _close_handle(self) -> None:
        if self.backend == "lmdb":
            if getattr(self, "_env", None) is not None:
                self._env.sync(True)
                self._env.close()
                self._env = None
        elif getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None


class DatabaseReader:
    """Read an LMDB or LevelDB database: keys in key order, values by index."""

    def __init__(self, path: str | os.PathLike, backend: str | None = None) -> None:
        self.path = Path(path)
        found = detect_backend(self.path)
        if backend is not None and _check_backend(backend) != found:
            raise DatabaseError(f"{self.path}: expected a {backend} database, found {found}")
        self.backend = found
        self._keys: list[bytes] | None = None
        if found == "lmdb":
            import lmdb

            self._errors: tuple[type[BaseException], ...] = (lmdb.Error,)
            self._open_lmdb()
        else:
            import plyvel

            self._errors = (plyvel.Error,)
            try:
                self._db = plyvel.DB(str(self.path), create_if_missing=False, paranoid_checks=True)
            except plyvel.IOError as exc:
                raise DatabaseError(
                    f"{self.path}: cannot open LevelDB database ({_reason(exc)}); LevelDB "
                    "allows one open handle at a time and needs write access to the folder"
                ) from None
            except plyvel.Error as exc:
                raise DatabaseError(
                    f"{self.path}: cannot open LevelDB database ({_reason(exc)})"
                ) from None

    def _open_lmdb(self) -> None:
        import lmdb

        data = self.path / "data.mdb"
        try:  # the LMDB library would crash (SIGBUS, assertion) on a damaged file
            # checked once per file version: a remap of an unchanged file skips the pass
            stat = data.stat()
            version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if version != getattr(self, "_checked_version", None):
                check_lmdb_file(data)
                self._checked_version = version
        except LmdbCorrupt as exc:
            raise DatabaseError(f"{self.path}: cannot open LMDB database: data.mdb: "
                                f"{exc.reason} (the database is corrupt; rebuild it)"
                                ) from None
        except OSError as exc:
            raise DatabaseError(f"{self.path}: cannot open LMDB database ({exc})") from None
        try:
            self._env = lmdb.open(str(self.path), readonly=True, lock=False, subdir=True)
            self._txn = self._env.begin(buffers=False)
        except lmdb.Error as exc:
            raise DatabaseError(f"{self.path}: cannot open LMDB database ({exc})") from None

    def remap(self) -> None:
        """LMDB: map the file afresh, so the pages read so far no longer count in this
        process's memory (the kernel keeps them cached). Cursors on the old mapping stop
        working; a RecordCursor given `unmap_every` does this and moves itself over."""
        if self.backend != "lmdb":
            return
        if self._env is not None:
            self._txn.abort()
            self._env.close()
            self._env = None
        self._open_lmdb()

    def __enter__(self) -> DatabaseReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DatabaseReader({str(self.path)!r}, backend={self.backend!r})"

    def __len__(self) -> int:
        if self.backend == "lmdb" and self._keys is None:
            return int(self._env.stat()["entries"])
        return len(self.keys())

    def keys(self) -> list[bytes]:
        """All keys in key order (read once, then cached)."""
        if self._keys is None:
            self._keys = [key for key, _ in self._scan(values=False)]
        return self._keys

    def key(self, index: int) -> bytes:
        keys = self.keys()
        try:
            return keys[index]
        except IndexError:
            raise IndexError(f"{self.path}: record {index} out of range ({len(keys)})") from None

    def value(self, index: int) -> bytes:
        """The value of the `index`-th record in key order."""
        key = self.key(index)
        try:
            if self.backend == "lmdb":
                value = self._txn.get(key)
            else:
                value = self._db.get(key, verify_checksums=True)
        except self._errors as exc:
            raise DatabaseError(
                f"{self.path} key {_show(key)}: corrupt record ({_reason(exc)})"
            ) from None
        if value is None:
            raise DatabaseError(f"{self.path} key {_show(key)}: record listed but missing")
        return value

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self._scan(values=True)

    def _scan(self, values: bool) -> Iterator[tuple[bytes, bytes]]:
        last = None
        try:
            if self.backend == "lmdb":
                cursor = self._txn.cursor()
                if values:
                    for key, value in cursor.iternext(keys=True, values=True):
                        last = key
                        yield key, value
                else:
                    for key in cursor.iternext(keys=True, values=False):
                        last = key
                        yield key, b""
            else:
                it = self._db.iterator(include_value=values, verify_checksums=True)
                for item in it:
                    key, value = item if values else (item, b"")
                    last = key
                    yield key, value
        except self._errors as exc:
            where = "at the first record" if last is None else f"after key {_show(last)}"
            raise DatabaseError(f"{self.path}: corrupt record {where} ({_reason(exc)})") from None

    def cursor(self, unmap_every: int | None = None) -> RecordCursor:
        """A RecordCursor at the first record (see RecordCursor for `unmap_every`)."""
        return RecordCursor(self, unmap_every)

    def close(self) -> None:
        if self.backend == "lmdb":
            if getattr(self, "_env", None) is not None:
                self._txn.abort()
                self._env.close()
                self._env = None
        elif getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class RecordCursor:
    """Records in key order from a position, back to the first after the last.

    `index` is the position of the record `read` returns next; `seek` moves to
    a position, straight to its key when that is known. Only the records read
    or stepped over are touched: no list of keys is built. Serves one thread
    at a time, like its reader.

    An LMDB is read through a memory map, and every page read stays in the
    process's resident memory until the file is unmapped: a long sequential
    read would end up holding the whole file. With `unmap_every` (bytes), an
    LMDB cursor has its reader map the file afresh after reading that much
    (`DatabaseReader.remap`) and finds its place again by key.
    """

    def __init__(self, reader: DatabaseReader, unmap_every: int | None = None) -> None:
        self.reader = reader
        self.path = reader.path
        self._errors = reader._errors
        self._last: bytes | None = None  # the key last read, for error messages
        self._unmap_every = unmap_every if reader.backend == "lmdb" else None
        self._mapped = 0  # value bytes read since the file was mapped
        try:
            if reader.backend == "lmdb":
                self._bind_lmdb()
                self._count: int | None = len(reader)  # LMDB counts its records for free
            else:
                it = reader._db.raw_iterator(verify_checksums=True)

                def to_first() -> bool:
                    it.seek_to_first()
                    return it.valid()

                def to_next() -> bool:
                    it.next()
                    return it.valid()

                def to_key(key: bytes) -> bool:
                    it.seek(key)
                    return it.valid() and it.key() == key

                self._it = it
                self._to_first, self._to_next, self._to_key = to_first, to_next, to_key
                self._count = None
            self.index = 0
            self.empty = not self._to_first()
        except self._errors as exc:
            raise self._failed(exc) from None

    def _bind_lmdb(self) -> None:
        self._it = it = self.reader._txn.cursor()
        self._to_first, self._to_next, self._to_key = it.first, it.next, it.set_key

    def _unmap(self) -> None:
        """Map the LMDB afresh (see the class) and come back to the same record."""
        key = self.key
        self.reader.remap()
        self._bind_lmdb()
        self._mapped = 0
        try:
            found = self._to_key(key)
        except self._errors as exc:
            raise self._failed(exc) from None
        if not found:
            raise DatabaseError(f"{self.path}: key {_show(key)} is gone (was the database "
                                "replaced while it was read?)")

    @property
    def key(self) -> bytes:
        """The key of the record `read` returns next."""
        self._check_not_empty()
        try:
            return self._it.key()
        except self._errors as exc:
            raise self._failed(exc) from None

    def peek(self) -> tuple[bytes, bytes]:
        """The record `read` returns next, as (key, value); the cursor stays."""
        self._check_not_empty()
        try:
            return self._it.item()
        except self._errors as exc:
            raise self._failed(exc) from None

    def read(self, count: int) -> list[tuple[bytes, bytes]]:
        """The next `count` records as (key, value), wrapping to the first after the last."""
        self._check_not_empty()
        records = []
        item, to_next = self._it.item, self._to_next
        try:
            for _ in range(count):
                records.append(item())
                if to_next():
                    self.index += 1
                else:
                    self._first()
        except self._errors as exc:
            if records:
                self._last = records[-1][0]
            raise self._failed(exc) from None
        if records:
            self._last = records[-1][0]
        if self._unmap_every is not None:
            self._mapped += sum(len(value) for _, value in records)
            if self._mapped >= self._unmap_every:
                self._unmap()
        return records

    def skip(self, count: int) -> None:
        """Move `count` records on, wrapping at the end, without reading values."""
        self._check_not_empty()
        if self._count is not None:
            count %= self._count
        try:
            for _ in range(count):
                if self._to_next():
                    self.index += 1
                else:
                    self._first()
        except self._errors as exc:
            raise self._failed(exc) from None

    def seek(self, index: int, key: bytes | None = None) -> None:
        """Move to record `index`. Given `key` (that record's key, as `key` said) this is one
        lookup; without it, or when it is gone, the cursor steps there from the first
        record. Raises RecordOutOfRange past the end."""
        index = int(index)
        self._check_not_empty()
        if index < 0 or (self._count is not None and index >= self._count):
            raise RecordOutOfRange(self.path, index, self._count)
        try:
            if key is not None and self._to_key(key):
                self.index = index
                return
            self._first()
            for position in range(1, index + 1):
                if not self._to_next():
                    self._first()
                    raise RecordOutOfRange(self.path, index, position)
        except self._errors as exc:
            raise self._failed(exc) from None
        self.index = index

    def _first(self) -> None:
        self.index = 0
        self._to_first()

    def _check_not_empty(self) -> None:
        if self.empty:
            raise DatabaseError(f"{self.path}: the database holds no records")

    def _failed(self, exc: BaseException) -> DatabaseError:
        where = "at the first record" if self._last is None else f"after key {_show(self._last)}"
        return DatabaseError(f"{self.path}: corrupt record {where} ({_reason(exc)})")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._it.close()


def _reason(exc: BaseException) -> str:
    """An exception's message; plyvel gives bytes."""
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode(errors="replace")
    return str(exc)


def _show(key: bytes) -> str:
    text = key.decode("ascii", errors="replace")
    return text if text.isprintable() else repr(key)

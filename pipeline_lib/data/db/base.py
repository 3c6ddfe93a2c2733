"""The database interface (Caffe's db.hpp) and what every backend shares.

`open_db` opens a database for reading ("r") or creates one ("w") through the
backend registry; `detect_backend` tells the backends apart by their files.
A backend subclasses the three classes here and fills in the library calls:

- `DatabaseWriter` builds a database in a temporary directory beside the
  target, commits in batches, and renames it into place only when closed
  without error, so a failed run leaves nothing half-written.
- `DatabaseReader` gives keys in key order and random access to values. A
  reader may move between threads but serves one thread at a time.
- `RecordCursor` reads records one after another, wrapping at the end, as
  Caffe's DataLayer does; unlike `keys()`, it touches only what it reads.

The argument checks and the wording of errors live here, so every backend
says the same thing the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pipeline_lib.core.fsutil import make_temp_dir_beside, replace_dir

DEFAULT_BATCH = 1000  # records per transaction, as Caffe's converters commit
DEFAULT_WRITE_BACKEND = "lmdb"  # as Caffe's converters default
LOW_DISK_BYTES = 64 << 20  # a write error with less free than this is blamed on a full disk

# backend name -> class, in the order detect_backend tries them (the order registered)
READERS: dict[str, type[DatabaseReader]] = {}
WRITERS: dict[str, type[DatabaseWriter]] = {}


class DatabaseError(RuntimeError):
    """A database that is missing, of the wrong kind, locked or corrupt."""


class RecordOutOfRange(IndexError):
    """A record position before the start or past the end of the database."""

    def __init__(self, path: Path, index: int, count: int | None) -> None:
        self.index = index
        self.count = count  # records in the database, when known
        held = "" if count is None else f" ({count} records)"
        super().__init__(f"{path}: record {index} out of range{held}")


def register(reader: type[DatabaseReader], writer: type[DatabaseWriter]) -> None:
    """Add a backend's reader and writer to the registry, under their `backend` name."""
    READERS[reader.backend] = reader
    WRITERS[writer.backend] = writer


def open_db(path: str | os.PathLike, mode: str, backend: str | None = None,
            **options) -> DatabaseReader | DatabaseWriter:
    """Open the database at `path` to read (mode "r") or create it (mode "w").

    Reading, the backend is found from the files on disk; a `backend` given must match.
    Writing, `backend` defaults to LMDB; `options` go to the writer (`overwrite`,
    `batch_size`, and LMDB's `map_size`).
    """
    if mode == "r":
        found = detect_backend(path)
        if backend is not None and _known(backend) != found:
            raise DatabaseError(f"{Path(path)}: expected a {backend} database, found {found}")
        return READERS[found](path, **options)
    if mode == "w":
        return WRITERS[_known(backend or DEFAULT_WRITE_BACKEND)](path, **options)
    raise ValueError(f"unknown database mode {mode!r}: expected 'r' or 'w'")


def _known(backend: str) -> str:
    if backend not in READERS:
        raise ValueError(f"unknown database backend {backend!r}: expected one of "
                         f"{tuple(READERS)}")
    return backend


def detect_backend(path: str | os.PathLike) -> str:
    """Return the backend's name ("lmdb", "leveldb") from the files in the database folder."""
    path = Path(path)
    if not path.exists():
        raise DatabaseError(f"{path}: no such database")
    if not path.is_dir():
        raise DatabaseError(f"{path}: not a database directory (LMDB and LevelDB are folders)")
    for reader in READERS.values():
        if (path / reader.marker).is_file():
            return reader.backend
    missing = " and ".join(f"no {r.marker_words} ({r.title})" for r in READERS.values())
    raise DatabaseError(f"{path}: not a database: {missing}")


class DatabaseWriter(ABC):
    """Write (key, value) records into a new database at `path`.

    A backend sets `_write_errors` (its library's errors) in `_open` and implements
    `_open`, `_commit` (the pending records as one transaction) and `_close_handle`.
    """

    backend: ClassVar[str]  # the registry's name
    title: ClassVar[str]  # the name in messages
    _write_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, path: str | os.PathLike, overwrite: bool = False,
                 batch_size: int = DEFAULT_BATCH) -> None:
        self.path = Path(path)
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
            self._open()
        except BaseException as exc:
            shutil.rmtree(self._tmp, ignore_errors=True)
            if isinstance(exc, self._write_errors):
                raise self._write_failed(exc) from None
            raise

    @abstractmethod
    def _open(self) -> None:
        """Create the empty database in `self._tmp`."""

    @abstractmethod
    def _commit(self) -> None:
        """Write `self._pending` as one transaction."""

    @abstractmethod
    def _close_handle(self) -> None:
        """Close the library's handle, if open (called again after it is closed)."""

    def __enter__(self) -> DatabaseWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

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
            self._commit()
        except self._write_errors as exc:
            raise self._write_failed(exc) from None
        self._pending.clear()

    def _write_failed(self, exc: BaseException) -> DatabaseError:
        """The library's write error as one naming the output (and a full disk, if it is)."""
        reason = describe(exc)
        for temporary in (f"{self._tmp}: ", f"{self._tmp}{os.sep}", str(self._tmp)):
            reason = reason.replace(temporary, "")  # the work folder's name tells nothing
        hint = ""
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(self._tmp.parent).free
            if free < LOW_DISK_BYTES:
                hint = f"; the disk is full ({free // 1024} KiB free)"
        return DatabaseError(f"{self.path}: cannot write the {self.title} database ({reason})"
                             f"{hint}; nothing was written there, and what was there before "
                             "is kept")

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


class DatabaseReader(ABC):
    """Read a database: keys in key order, values by index.

    A backend sets `_errors` (its library's errors) in `_open` and implements `_open`,
    `_iterate`, `_get` and `close`; `cursor_class` is its RecordCursor.
    """

    backend: ClassVar[str]  # the registry's name
    title: ClassVar[str]  # the name in messages
    marker: ClassVar[str]  # the file in the database folder that says it is this backend
    marker_words: ClassVar[str]  # that file, as a message names it
    cursor_class: ClassVar[type[RecordCursor]]
    _errors: tuple[type[BaseException], ...]

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._keys: list[bytes] | None = None
        self._open()

    @abstractmethod
    def _open(self) -> None:
        """Open the database at `self.path`, raising DatabaseError when it cannot."""

    @abstractmethod
    def _iterate(self, values: bool) -> Iterator:
        """The library's iterator from the first record: (key, value) pairs, or keys."""

    @abstractmethod
    def _get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, None when there is none."""

    @abstractmethod
    def close(self) -> None:
        """Close the library's handle, if open (called again after it is closed)."""

    def __enter__(self) -> DatabaseReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self) -> list[bytes]:
        """All keys in key order (read once, then cached)."""
        if self._keys is None:
            self._keys = list(self._scan(values=False))
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
            value = self._get(key)
        except self._errors as exc:
            raise DatabaseError(
                f"{self.path} key {show(key)}: corrupt record ({describe(exc)})"
            ) from None
        if value is None:
            raise DatabaseError(f"{self.path} key {show(key)}: record listed but missing")
        return value

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self._scan(values=True)

    def _scan(self, values: bool) -> Iterator:
        last = None
        try:
            for item in self._iterate(values):
                last = item[0] if values else item
                yield item
        except self._errors as exc:
            where = "at the first record" if last is None else f"after key {show(last)}"
            raise DatabaseError(f"{self.path}: corrupt record {where} ({describe(exc)})"
                                ) from None

    def cursor(self, unmap_every: int | None = None) -> RecordCursor:
        """A RecordCursor at the first record (see RecordCursor for `unmap_every`)."""
        return self.cursor_class(self, unmap_every)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class RecordCursor(ABC):
    """Records in key order from a position, back to the first after the last.

    `index` is the position of the record `read` returns next; `seek` moves to
    a position, straight to its key when that is known. Only the records read
    or stepped over are touched: no list of keys is built. Serves one thread
    at a time, like its reader. `unmap_every` (bytes) is for a backend that maps
    its file (see LmdbCursor); others ignore it.

    A backend's `_open` binds `_it` (the library's cursor, with `key()` and
    `item()`), the moves `_to_first`, `_to_next` and `_to_key` (each saying whether
    it landed on a record; `_to_key` only on that exact key), and `_count` (the
    number of records, or None when counting would read them all).
    """

    def __init__(self, reader: DatabaseReader, unmap_every: int | None = None) -> None:
        self.reader = reader
        self.path = reader.path
        self._errors = reader._errors
        self._last: bytes | None = None  # the key last read, for error messages
        try:
            self._open(unmap_every)
            self.index = 0
            self.empty = not self._to_first()
        except self._errors as exc:
            raise self._failed(exc) from None

    @abstractmethod
    def _open(self, unmap_every: int | None) -> None:
        """Bind the library's cursor and moves (see the class)."""

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
        records: list[tuple[bytes, bytes]] = []
        try:
            while len(records) < count:
                wanted = count - len(records)
                got = self._run(records, wanted)
                self.index += got - 1  # the cursor is on the run's last record
                if got == wanted and self._to_next():
                    self.index += 1
                else:  # the run or its last record ended the database
                    self._first()
        except self._errors as exc:
            if records:
                self._last = records[-1][0]
            raise self._failed(exc) from None
        if records:
            self._last = records[-1][0]
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

    def _run(self, records: list[tuple[bytes, bytes]], count: int) -> int:
        """Append up to `count` records from the current one to `records` (one by one, so
        that an error leaves those read); fewer only where the database ends. Returns how
        many. The cursor is left on the last one (when the database ended first, the
        caller goes back to the first record)."""
        item, to_next = self._it.item, self._to_next
        records.append(item())
        got = 1
        while got < count and to_next():
            records.append(item())
            got += 1
        return got

    def _first(self) -> None:
        self.index = 0
        self._to_first()

    def _check_not_empty(self) -> None:
        if self.empty:
            raise DatabaseError(f"{self.path}: the database holds no records")

    def _failed(self, exc: BaseException) -> DatabaseError:
        where = "at the first record" if self._last is None else f"after key {show(self._last)}"
        return DatabaseError(f"{self.path}: corrupt record {where} ({describe(exc)})")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._it.close()


def describe(exc: BaseException) -> str:
    """An exception's message; plyvel gives bytes."""
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode(errors="replace")
    return str(exc)


def show(key: bytes) -> str:
    """A key as messages print it: as text when it is printable, else as a bytes literal."""
    text = key.decode("ascii", errors="replace")
    return text if text.isprintable() else repr(key)

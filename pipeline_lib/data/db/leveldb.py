"""LevelDB databases (Caffe's db_leveldb), through plyvel.

plyvel is the optional `[leveldb]` extra (it has no wheels for some platforms): it is
imported only when a LevelDB is opened, and its absence is one line naming the extra.
LevelDB has no read-only
mode: it takes a LOCK file and may fold its log into a table on open, so open
a copy of any database you must not change. Reads verify checksums.
"""

from __future__ import annotations

from pipeline_lib.data.db.base import (
    DatabaseError,
    DatabaseReader,
    DatabaseWriter,
    RecordCursor,
    describe,
)

INSTALL_HINT = "pip install 'pipeline-lib[leveldb]'"


def _plyvel(path):
    """The plyvel module, or a DatabaseError naming the extra that installs it."""
    try:
        import plyvel
    except ImportError:
        raise DatabaseError(
            f"{path}: LevelDB databases need the plyvel package, which is not installed; "
            f"install the [leveldb] extra: {INSTALL_HINT} (or use backend lmdb)"
        ) from None
    return plyvel


class LevelDbWriter(DatabaseWriter):
    """Write a new LevelDB, one write batch per commit."""

    backend, title = "leveldb", "LevelDB"

    def _open(self) -> None:
        plyvel = _plyvel(self.path)
        self._write_errors = (plyvel.Error,)
        self._db = plyvel.DB(
            str(self._tmp),
            create_if_missing=True,
            error_if_exists=True,
            write_buffer_size=64 << 20,
        )

    def _commit(self) -> None:
        with self._db.write_batch() as batch:
            for key, value in self._pending:
                batch.put(key, value)

    def _close_handle(self) -> None:
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None


class LevelDbCursor(RecordCursor):
    """A RecordCursor on a LevelDB (read with plain file reads: `unmap_every` does not apply)."""

    def _open(self, unmap_every: int | None) -> None:
        it = self.reader._db.raw_iterator(verify_checksums=True)

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
        self._count = None  # counting a LevelDB reads every record


class LevelDbReader(DatabaseReader):
    """Read a LevelDB (see the module: opening it may change its files)."""

    backend, title = "leveldb", "LevelDB"
    marker, marker_words = "CURRENT", "CURRENT file"
    cursor_class = LevelDbCursor

    def _open(self) -> None:
        plyvel = _plyvel(self.path)
        self._errors = (plyvel.Error,)
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=False, paranoid_checks=True)
        except plyvel.IOError as exc:
            raise DatabaseError(
                f"{self.path}: cannot open LevelDB database ({describe(exc)}); LevelDB "
                "allows one open handle at a time and needs write access to the folder"
            ) from None
        except plyvel.Error as exc:
            raise DatabaseError(
                f"{self.path}: cannot open LevelDB database ({describe(exc)})"
            ) from None

    def _iterate(self, values: bool):
        return self._db.iterator(include_value=values, verify_checksums=True)

    def _get(self, key: bytes) -> bytes | None:
        return self._db.get(key, verify_checksums=True)

    def close(self) -> None:
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None

"""Caffe's key/value databases, LMDB and LevelDB, behind one interface (Caffe's db.hpp).

`open_db(path, "r")` gives a `DatabaseReader` (and its `RecordCursor`),
`open_db(path, "w", backend)` a `DatabaseWriter`; see `base` for what each does.
"""

from pipeline_lib.data.db.base import (
    DEFAULT_BATCH,
    DatabaseError,
    DatabaseReader,
    DatabaseWriter,
    RecordCursor,
    RecordOutOfRange,
    detect_backend,
    open_db,
    register,
)
from pipeline_lib.data.db.leveldb import LevelDbReader, LevelDbWriter
from pipeline_lib.data.db.lmdb import LmdbReader, LmdbWriter

# detect_backend tries them in this order, and its error names them in it
register(LmdbReader, LmdbWriter)
register(LevelDbReader, LevelDbWriter)

__all__ = ["DEFAULT_BATCH", "DatabaseError", "DatabaseReader", "DatabaseWriter", "RecordCursor",
           "RecordOutOfRange", "detect_backend", "open_db"]

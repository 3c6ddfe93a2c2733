"""Content digests of a run's inputs, cached by file identity.

A file counts by its bytes; an LMDB directory by its `data.mdb` (`lock.mdb` is
reader bookkeeping); a LevelDB directory by its records, key and value in key
order: LevelDB rewrites its own files whenever it is opened (a new MANIFEST and
log, its log folded into a table, compactions), so the same records sit in
other files from one open to the next. Any other directory counts by its files.

Reading 50 MB takes about 0.1 s, and a digest is kept in a small JSON cache
(`DigestCache`) keyed by path, size, mtime, ctime, inode and device: an
unchanged file is not read again, a touched or copied one is read once and
found equal. LevelDB digests are not cached (their files change with every open).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_lib.core.fsutil import atomic_write_bytes, sha256_file

CACHE_VERSION = 1


class DigestCache:
    """Digests of files by identity, kept in a JSON file (`path`, or in memory only: None)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict[str, Any]] = {}
        self._changed = False
        self._records: dict[str, dict[str, Any]] = {}  # LevelDB digests, this process only
        if self.path is not None and self.path.is_file():
            try:
                saved = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = {}  # a damaged cache costs a re-read, nothing else
            if isinstance(saved, dict) and saved.get("version") == CACHE_VERSION:
                self._entries = saved.get("files", {})

    def sha256(self, path: Path) -> str:
        """sha256 of the file's bytes, read only when its identity changed."""
        st = path.stat()
        identity = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        key = str(path.resolve())
        entry = self._entries.get(key)
        if entry is not None and entry.get("identity") == identity:
            return entry["sha256"]
        digest = sha256_file(path)
        self._entries[key] = {"identity": identity, "sha256": digest}
        self._changed = True
        return digest

    def leveldb(self, path: Path) -> dict[str, Any]:
        """The record digest of a LevelDB, read once per cache (not kept on disk)."""
        key = str(path.resolve())
        if key not in self._records:
            self._records[key] = _leveldb_records(path)
        return self._records[key]

    def save(self) -> None:
        """Write the cache (when it has a file and learnt something); a cache that cannot
        be written (a full disk) costs a re-read next time, nothing else."""
        if self.path is not None and self._changed:
            text = json.dumps({"version": CACHE_VERSION, "files": self._entries}, indent=1,
                              sort_keys=True)
            with contextlib.suppress(OSError):
                atomic_write_bytes(self.path, (text + "\n").encode("utf-8"))
            self._changed = False


def hash_input(path: str | os.PathLike, cache: DigestCache | None = None) -> dict[str, Any]:
    """A digest record for one input: a file, an LMDB or a LevelDB directory."""
    p = Path(path)
    cache = cache if cache is not None else DigestCache()
    if p.is_file():
        return {"kind": "file", "sha256": cache.sha256(p), "size": p.stat().st_size}
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: input to hash does not exist")
    if (p / "data.mdb").is_file():
        data = p / "data.mdb"
        return {"kind": "lmdb", "sha256": cache.sha256(data), "size": data.stat().st_size,
                "hashed": ["data.mdb"]}
    if (p / "CURRENT").is_file():
        return cache.leveldb(p)
    files = {str(f.relative_to(p)): cache.sha256(f) for f in sorted(p.rglob("*")) if f.is_file()}
    return {"kind": "directory", "sha256": _digest_of(files), "files": files}


def _leveldb_records(path: Path) -> dict[str, Any]:
    """One sha256 over the records (length-prefixed key and value, in key order)."""
    from pipeline_lib.data.db import open_db

    h, count = hashlib.sha256(), 0
    with open_db(path, "r", backend="leveldb") as db:
        for key, value in db:
            for part in (key, value):
                h.update(len(part).to_bytes(8, "little"))
                h.update(part)
            count += 1
    return {"kind": "leveldb", "sha256": h.hexdigest(), "records": count}


def _digest_of(files: Mapping[str, str]) -> str:
    """One sha256 over sorted `name<TAB>sha256<LF>` lines."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\t{files[name]}\n".encode())
    return h.hexdigest()

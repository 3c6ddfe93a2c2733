"""Atomic file and directory writes, and file hashing.

A reader (or Snakemake) must never see a half-written output: files are
written under a temporary name in the same directory, flushed to disk and
renamed over the target; directories (databases) are built beside the
target and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual modes.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry (a rename inside it) to disk, where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary temp file beside `path`; on success it replaces `path`.

    On an exception the temp file is removed and `path` is left untouched; an
    OSError that names no file (a full disk) is raised again naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            raise _naming(e, path) from None
        raise
    fsync_dir(path.parent)


def _naming(error: OSError, path: Path) -> OSError:
    """`error` as an OSError of the same kind whose file is the output `path`."""
    return OSError(error.errno, error.strerror or str(error), str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_writer(path) as f:
        f.write(data)


def make_temp_dir_beside(path: str | os.PathLike) -> Path:
    """A new empty directory next to `path` (same filesystem, so rename is atomic)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise _naming(e, path) from None
    os.chmod(tmp, _DIR_MODE)
    return tmp


def replace_dir(tmp: str | os.PathLike, target: str | os.PathLike, overwrite: bool) -> None:
    """Rename the finished directory `tmp` to `target`.

    An existing `target` is an error unless `overwrite`; then it is moved
    aside first and deleted only after the new one is in place.
    """
    tmp, target = Path(tmp), Path(target)
    old: Path | None = None
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{target}: already exists (pass overwrite=True to replace it)")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()

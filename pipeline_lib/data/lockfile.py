"""The lock file of dataset hashes: sha256 recorded on first use, verified after.

A dataset file that the config gives no sha256 for (a local folder of your
own data) is hashed the first time it is used, and the hash is kept in
`datasets.lock.yaml` beside the config, so later runs use exactly that
content. The file is rewritten atomically, under an exclusive lock on its
folder, so that jobs recording different datasets at once keep each other's
entries.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from pipeline_lib.core.fsutil import atomic_write_bytes

LOCK_NAME = "datasets.lock.yaml"
_HEADER = (
    "# Written by the pipeline: the sha256 of dataset files that the config gives none\n"
    "# for, recorded on first use and verified on every later use. Delete an entry to\n"
    "# accept new content for that file.\n"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LockFileError(ValueError):
    """A lock file that cannot be read as ours."""


def read_lock(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """dataset -> file -> sha256 (empty when there is no lock file yet)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise LockFileError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    entries = doc.get("datasets", {}) if isinstance(doc, Mapping) else None
    if not isinstance(entries, Mapping):
        raise LockFileError(f"{path}: expected 'datasets:' mapping names to files and sha256")
    out: dict[str, dict[str, str]] = {}
    for name, files in entries.items():
        if not isinstance(files, Mapping):
            raise LockFileError(f"{path}: datasets.{name}: expected file: sha256 lines")
        for file, digest in files.items():
            if not (isinstance(digest, str) and _SHA256.match(digest)):
                raise LockFileError(f"{path}: datasets.{name}.{file}: {digest!r} is not a "
                                    "sha256 (64 lower-case hex digits)")
        out[str(name)] = {str(k): v for k, v in files.items()}
    return out


def record(path: str | os.PathLike, dataset: str, hashes: Mapping[str, str]) -> None:
    """Add `hashes` (file -> sha256) for `dataset`, keeping every other entry."""
    path = Path(path)
    with _folder_lock(path.parent):
        entries = read_lock(path)
        entries.setdefault(dataset, {}).update(hashes)
        body = yaml.safe_dump({"datasets": entries}, sort_keys=True)
        atomic_write_bytes(path, (_HEADER + body).encode())


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on `folder` (none where flock is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: jobs of one run record one after another
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

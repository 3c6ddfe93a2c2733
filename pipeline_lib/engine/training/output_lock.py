"""One run at a time per output stem: an exclusive lock in its snapshot folder.

`<stem>.snapshots/run.lock` is locked with flock for the whole run and holds
the pid of its holder. A second run into the same stem fails at once, naming
the stem and that pid. The kernel drops the lock when the holder ends in any
way (kill -9 included); the file is removed on release, and one left by a
killed run is simply locked again by the next. The snapshot folder is no rule
output, so Snakemake never sees the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "run.lock"


class OutputBusyError(RuntimeError):
    """Another run is writing to the same output stem."""


class OutputLock:
    """`with OutputLock(snapshot_dir, stem):` holds the stem's lock (the folder must exist)."""

    def __init__(self, snapshot_dir: Path, stem: Path):
        self.path = Path(snapshot_dir) / LOCK_NAME
        self.stem = stem
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                pid = f" (pid {holder})" if holder.isdigit() else ""
                raise OutputBusyError(
                    f"{self.stem}: another training run{pid} is writing to this output; wait "
                    "for it to end, or give another --output") from None
            # The holder before us may have removed the file between our open and our lock:
            # the lock counts only on the file that is still there.
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the file, then drop the lock (once; later calls do nothing)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

"""A run's snapshot folder `<stem>.snapshots/`: whose snapshots it holds, the newest one
to resume from, and the clean-up after a failed run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from pipeline_lib.core.fsutil import atomic_write_bytes


def latest_snapshot(snapshot_dir: Path, name: str) -> Path | None:
    """The newest `<name>_iter_<N>.solverstate` whose .caffemodel is beside it."""
    pattern = re.compile(rf"^{re.escape(name)}_iter_(\d+)\.solverstate$")
    best: tuple[int, Path] | None = None
    if not snapshot_dir.is_dir():
        return None
    for path in snapshot_dir.iterdir():
        m = pattern.match(path.name)
        if m and path.with_suffix(".caffemodel").is_file():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), path)
    return best[1] if best else None


def run_fingerprint(effective_text: str, inputs: list[str | os.PathLike]) -> str:
    """What makes snapshots of this run resumable: the effective solver (net inlined,
    weights named) and the size and time of its input files.

    An LMDB counts by its data.mdb (reading it writes nothing). A LevelDB rewrites
    its own files when opened, so it counts by path only: a rebuilt LevelDB with
    other content is not noticed here (Snakemake still reruns the job).
    """
    digest = hashlib.sha256(effective_text.encode("utf-8"))
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            path = path / "data.mdb" if (path / "data.mdb").is_file() else None
        st = path.stat() if path is not None and path.exists() else None
        signature = (st.st_size, st.st_mtime_ns) if st else None
        digest.update(f"{item}\0{signature}\n".encode())
    return digest.hexdigest()


def claim_snapshot_dir(snapshot_dir: Path, name: str, fingerprint: str) -> bool:
    """Make `snapshot_dir` hold snapshots of this run only; False when stale ones were removed.

    Snapshots left by a run with another solver, net or data (the workflow reruns a
    job when those change) must not be resumed: they are deleted, with the metrics
    that went with them, and the run starts from iteration 0.
    """
    marker = snapshot_dir / "run.fingerprint"
    previous = marker.read_text().strip() if marker.is_file() else None
    stale = previous != fingerprint and any(snapshot_dir.glob(f"{name}_iter_*"))
    if stale:
        for path in [*snapshot_dir.glob(f"{name}_iter_*"), snapshot_dir / f"{name}_metrics.csv"]:
            path.unlink(missing_ok=True)
    atomic_write_bytes(marker, (fingerprint + "\n").encode())
    return not stale


def discard_if_nothing_to_resume(snapshot_dir: Path, outputs: list[str | os.PathLike | None],
                                  created_dirs: list[Path]) -> None:
    """After a failed run: with no snapshot to resume from, remove what it wrote.

    A run that wrote snapshots (periodic ones, a `.diverged` one) keeps them,
    and its metrics with them. `created_dirs`, deepest
    first, are removed when empty.
    """
    if not snapshot_dir.is_dir() or any(snapshot_dir.glob("*.solverstate")):
        return
    for path in outputs:
        if path is not None:
            Path(path).unlink(missing_ok=True)
    for directory in created_dirs:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty

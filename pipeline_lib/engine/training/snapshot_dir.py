"""A run's snapshot folder `<stem>.snapshots/`: whose snapshots it holds (those of
another run are put aside, never deleted), the newest one to resume from, and the
clean-up after a failed run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from pathlib import Path

from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.engine.training.digests import DigestCache, hash_input


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


def run_fingerprint(effective_text: str, inputs: list[str | os.PathLike],
                    cache: DigestCache) -> str:
    """What makes snapshots of this run resumable: the effective solver (net inlined,
    weights named) and the content of its input files (digests.py: a touched or copied
    file with the same bytes is the same input)."""
    digest = hashlib.sha256(effective_text.encode("utf-8"))
    for item in inputs:
        try:
            content = hash_input(item, cache)["sha256"]
        except FileNotFoundError:
            content = None  # the layer that reads it says so
        digest.update(f"{item}\0{content}\n".encode())
    return digest.hexdigest()


def claim_snapshot_dir(snapshot_dir: Path, name: str, fingerprint: str,
                       keep: Path | None = None) -> Path | None:
    """Make `snapshot_dir` hold snapshots of this run only; returns where stale ones went.

    Snapshots left by a run with another solver, net or data must not be resumed, nor
    lost: they move, with the metrics that went with them, to a new folder
    `stale-<their fingerprint's start>/` inside `snapshot_dir`, and the run starts from
    iteration 0. `keep`, a .solverstate the user named to resume from, stays where it
    is with its .caffemodel (the metrics are then copied aside, not moved).
    """
    marker = snapshot_dir / "run.fingerprint"
    previous = marker.read_text().strip() if marker.is_file() else None
    kept = {keep.resolve(), keep.with_suffix(".caffemodel").resolve()} if keep else set()
    snapshots = [p for p in snapshot_dir.glob(f"{name}_iter_*") if p.resolve() not in kept]
    aside = None
    if previous != fingerprint and snapshots:
        aside = _new_folder(snapshot_dir, f"stale-{(previous or 'unmarked')[:12]}")
        metrics = snapshot_dir / f"{name}_metrics.csv"
        if metrics.is_file():
            (shutil.copy2 if kept else os.replace)(metrics, aside / metrics.name)
        for path in snapshots:
            os.replace(path, aside / path.name)
    atomic_write_bytes(marker, (fingerprint + "\n").encode())
    return aside


def _new_folder(parent: Path, name: str) -> Path:
    """Make and return `parent/name`, or `name-2`, `name-3`... when taken."""
    folder, n = parent / name, 1
    while True:
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1
            folder = parent / f"{name}-{n}"


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

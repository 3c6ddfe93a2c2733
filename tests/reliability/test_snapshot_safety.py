"""No ordinary action loses a snapshot: a `touch` or `cp -r` of unchanged data resumes, a
changed solver puts the old snapshots aside (never deletes them, nor a `--snapshot` the
user named), and a second run into the same `--output` is refused while the first runs."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

from reliability.rel_util import (
    clean_failure,
    make_run_dir,
    pcaffe,
    record,
    sha256,
    solver_with,
    start_pcaffe,
    wait_for_text,
)

ITERATIONS = 60
STEM = f"results/small_iter_{ITERATIONS}"
SNAPSHOTS = Path(f"{STEM}.snapshots")


def _train(run: Path, solver: str = "solver.prototxt", *extra) -> object:
    return pcaffe("train", "--solver", solver, "--iterations", ITERATIONS, "--output", STEM,
                  *extra, cwd=run)


def _as_if_killed_at_50(run: Path) -> None:
    """What a kill after iteration 40's snapshot leaves: snapshots 20 and 40, no final pair."""
    for suffix in (".caffemodel", ".solverstate"):
        (run / f"{STEM}{suffix}").unlink()
        (run / SNAPSHOTS / f"small_iter_{ITERATIONS}{suffix}").unlink(missing_ok=True)


def _finished(run: Path) -> dict[str, str]:
    done = _train(run)
    assert done.returncode == 0, done.stderr[-3000:]
    return {s: sha256(run / f"{STEM}{s}") for s in (".caffemodel", ".solverstate")}


def _resumed_from(stderr: str) -> str | None:
    found = re.search(r"Restoring previous solver status from (\S+)", stderr)
    return Path(found.group(1)).name if found else None


def test_touched_data_is_resumed_not_discarded(run_dir):
    whole = _finished(run_dir)
    _as_if_killed_at_50(run_dir)
    os.utime(run_dir / "db" / "train_lmdb" / "data.mdb")  # `touch`: same bytes, new time
    done = _train(run_dir, "solver.prototxt", "--snapshot", "auto")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _resumed_from(done.stderr) == "small_iter_40.solverstate"
    assert {s: sha256(run_dir / f"{STEM}{s}") for s in whole} == whole
    record("`touch` of the training data, then `--snapshot auto`",
           "resumed from small_iter_40.solverstate (data are compared by content); final "
           "files byte-identical", done.returncode)


def test_copied_run_folder_is_resumed(tmp_path):
    run = make_run_dir(tmp_path / "run")
    whole = _finished(run)
    _as_if_killed_at_50(run)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, copy_function=shutil.copy)  # `cp -r`: new times, new inodes
    done = _train(copy, "solver.prototxt", "--snapshot", "auto")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _resumed_from(done.stderr) == "small_iter_40.solverstate"
    assert {s: sha256(copy / f"{STEM}{s}") for s in whole} == whole
    record("`cp -r` of a run folder (new times), then `--snapshot auto` in the copy",
           "resumed from small_iter_40.solverstate; final files byte-identical",
           done.returncode)


def test_changed_solver_puts_old_snapshots_aside(run_dir):
    _finished(run_dir)
    _as_if_killed_at_50(run_dir)
    old = {p.name: sha256(p) for p in (run_dir / SNAPSHOTS).glob("small_*")}
    changed = solver_with(run_dir, "solver.prototxt", base_lr=0.02)
    done = _train(run_dir, changed, "--snapshot", "auto")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _resumed_from(done.stderr) is None  # another solver: started from iteration 0
    aside = [d for d in (run_dir / SNAPSHOTS).iterdir() if d.name.startswith("stale-")]
    assert len(aside) == 1
    assert {p.name: sha256(p) for p in aside[0].glob("small_*")} == old
    warning = next(line for line in done.stderr.splitlines() if "stale-" in line)
    assert str(aside[0].relative_to(run_dir)) in warning
    record("snapshots of a run whose solver has changed since", re.sub(r"^.*\] ", "", warning),
           done.returncode)
    # and again: a second change keeps both earlier sets
    again = solver_with(run_dir, "solver.prototxt", base_lr=0.03)
    (run_dir / f"{STEM}.caffemodel").unlink()
    assert _train(run_dir, again, "--snapshot", "auto").returncode == 0
    assert len([d for d in (run_dir / SNAPSHOTS).iterdir() if d.name.startswith("stale-")]) == 2


def test_named_snapshot_of_a_changed_solver_is_kept_and_resumed(run_dir):
    _finished(run_dir)
    _as_if_killed_at_50(run_dir)
    named = SNAPSHOTS / "small_iter_40.solverstate"
    kept = {p: sha256(run_dir / p) for p in (named, named.with_suffix(".caffemodel"))}
    changed = solver_with(run_dir, "solver.prototxt", base_lr=0.02)
    done = _train(run_dir, changed, "--snapshot", named)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _resumed_from(done.stderr) == "small_iter_40.solverstate"
    assert {p: sha256(run_dir / p) for p in kept} == kept
    aside = next((run_dir / SNAPSHOTS).glob("stale-*"))
    assert {p.name for p in aside.iterdir()} == {"small_iter_20.caffemodel",
                                                 "small_iter_20.solverstate", "small_metrics.csv"}
    record("`--snapshot FILE` in the output's snapshot folder, with a changed solver",
           "FILE is resumed and kept; the folder's other snapshots are put aside",
           done.returncode)


def test_second_run_into_the_same_output_is_refused(run_dir):
    long_solver = solver_with(run_dir, "long.prototxt", snapshot=100, display=20)
    stem = "results/small_iter_100000"
    snapshots = run_dir / f"{stem}.snapshots"
    first = start_pcaffe("train", "--solver", long_solver, "--iterations", 100000, "--output",
                         stem, cwd=run_dir, stderr_path=run_dir / "stderr.txt")
    try:
        wait_for_text(run_dir / "stderr.txt", "Iteration 120, lr", first)
        before = {p.name: sha256(p) for p in snapshots.glob("small_iter_*")}
        second = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 100000,
                        "--output", stem, cwd=run_dir)
        shown = clean_failure(second, "a second `pcaffe train` into the --output of a "
                              "running one", re.escape(stem), f"pid {first.pid}")
        assert "--output" in shown
        assert {p.name: sha256(p) for p in snapshots.glob("small_iter_*")
                if p.name in before} == before
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 3, (run_dir / "stderr.txt").read_text()[-3000:]


def test_lock_is_released_by_kill_9_and_leaves_no_file(run_dir):
    stem = "results/small_iter_600"
    args = ("train", "--solver", "solver.prototxt", "--iterations", 600, "--output", stem)
    proc = start_pcaffe(*args, cwd=run_dir, stderr_path=run_dir / "stderr.txt")
    wait_for_text(run_dir / "stderr.txt", "Iteration 40, lr", proc)
    proc.kill()
    proc.communicate(timeout=60)
    done = pcaffe(*args, "--snapshot", "auto", cwd=run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _resumed_from(done.stderr) is not None
    assert not list((run_dir / f"{stem}.snapshots").glob("*lock*"))
    record("kill -9 of a run, then the same command (its output's lock is left behind)",
           f"the lock died with the process: resumed from {_resumed_from(done.stderr)}",
           done.returncode)

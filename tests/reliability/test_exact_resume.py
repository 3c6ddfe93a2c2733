"""Exact resume at random moments: a training run is hit by SIGINT, SIGTERM, SIGHUP or
kill -9 at a moment drawn at random (in an iteration, a test pass, a snapshot being written),
resumed with `--snapshot auto` until done, and its final caffemodel, solverstate and metrics
(wall time aside) must be the bytes of a run that was never interrupted.

Each trial is seeded by its number. The suite runs a few; `EXACT_RESUME_TRIALS=50` runs
fifty (their signals cycle through the four, their moments are drawn).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from reliability.rel_util import make_run_dir, pcaffe, record, solver_with, start_pcaffe

ITERATIONS = 300
STEM = f"results/small_iter_{ITERATIONS}"
TRIALS = int(os.environ.get("EXACT_RESUME_TRIALS", "8"))
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]
# Ten test batches a pass (the database wraps), so a signal often lands inside one.
FIELDS = {"snapshot": 40, "display": 20, "test_interval": 50, "test_iter": 10}


def _moments() -> list[str]:
    """Log lines after which a signal may be sent: every phase of training before its end."""
    return ([f"Iteration {k}, lr" for k in range(0, 240, 20)]
            + [f"Iteration {k}, Testing net" for k in range(50, 250, 50)]
            + [f"Snapshotting to binary proto file {STEM}.snapshots/small_iter_{k}.caffemodel"
               for k in range(40, 240, 40)])


def _train(run: Path, *extra: str):
    return ("train", "--solver", solver_with(run, "exact.prototxt", **FIELDS), "--iterations",
            ITERATIONS, "--output", STEM, *extra)


def _final_files(run: Path) -> dict[str, bytes]:
    """The final pair's bytes and the metrics without their wall-time column."""
    rows = (run / f"{STEM}_metrics.csv").read_text().splitlines()
    columns = rows[0].split(",")
    assert columns[3] == "seconds"
    metrics = "\n".join(",".join(c for i, c in enumerate(r.split(",")) if i != 3) for r in rows)
    return {".caffemodel": (run / f"{STEM}.caffemodel").read_bytes(),
            ".solverstate": (run / f"{STEM}.solverstate").read_bytes(),
            "_metrics.csv": metrics.encode()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    run = make_run_dir(tmp_path_factory.mktemp("reference") / "run")
    done = pcaffe(*_train(run), cwd=run)
    assert done.returncode == 0, done.stderr[-3000:]
    return _final_files(run)


def _wait_for(path: Path, text: str, proc) -> bool:
    """Wait until `text` is in the log; False when the process ended first."""
    while proc.poll() is None:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("trial", range(TRIALS))
def test_interrupted_at_a_random_moment_resumes_exactly(run_dir, reference, trial):
    draw = random.Random(trial)
    signum = SIGNALS[trial % len(SIGNALS)]
    moment, delay = draw.choice(_moments()), draw.uniform(0.0, 0.03)
    log = run_dir / "stderr.txt"
    proc = start_pcaffe(*_train(run_dir), cwd=run_dir, stderr_path=log)
    try:
        assert _wait_for(log, moment, proc), log.read_text()[-3000:]
        time.sleep(delay)
        proc.send_signal(signum)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    ended = "Optimization Done." in text  # the signal came after training: nothing to check
    assert "Traceback" not in text, text[-3000:]
    if signum == signal.SIGHUP:
        assert proc.returncode == 0 or ended, text[-3000:]
    elif signum == signal.SIGKILL:
        assert proc.returncode in (0, -signal.SIGKILL)
    else:
        assert proc.returncode in (0, 3) or ended, text[-3000:]
        if proc.returncode == 3:
            assert "to continue, run the same command with --snapshot auto" in text
    resumes = 0
    if proc.returncode != 0:
        done = pcaffe(*_train(run_dir, "--snapshot", "auto"), cwd=run_dir)
        assert done.returncode == 0, done.stderr[-3000:]
        resumes += 1
    name = "kill -9" if signum == signal.SIGKILL else signal.Signals(signum).name
    final = _final_files(run_dir)
    for suffix, expected in reference.items():
        assert final[suffix] == expected, (f"{suffix} differs: {name} after {moment!r} "
                                           f"+{delay:.3f}s, {resumes} resume(s)")
    then = "runs on to the end" if signum == signal.SIGHUP else "`--snapshot auto` until done"
    record(f"{name} at a random moment of training (an iteration, a test pass, a snapshot "
           f"being written), then {then}",
           "final caffemodel, solverstate and metrics byte-identical to an uninterrupted run "
           "(every seeded trial)", 0)

"""Interruptions: SIGINT/SIGTERM stop with a snapshot, SIGHUP snapshots and goes on, kill -9
at any moment leaves complete snapshots only, and resuming gives the bytes of a run that was
never interrupted. Also what Snakemake makes of a killed training job."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from imagenet_tiny import make_tiny_imagenet

from pipeline_lib.proto.snapshot import load_caffemodel, load_solverstate
from reliability.rel_util import (
    ENV,
    GOLDEN,
    REPO,
    last_line,
    make_run_dir,
    pcaffe,
    record,
    sha256,
    solver_with,
    start_pcaffe,
    wait_for_text,
)

ITERATIONS = 1000
STEM = f"results/small_iter_{ITERATIONS}"
SNAPSHOTS = Path(f"{STEM}.snapshots")


def _solver(run: Path, snapshot: int = 100) -> str:
    return solver_with(run, "long.prototxt", snapshot=snapshot, display=20, test_interval=250)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """sha256 of the final caffemodel and solverstate of an uninterrupted run."""
    run = make_run_dir(tmp_path_factory.mktemp("reference") / "run")
    done = pcaffe("train", "--solver", _solver(run), "--iterations", ITERATIONS, "--output",
                  STEM, cwd=run)
    assert done.returncode == 0, done.stderr[-3000:]
    return {s: sha256(run / f"{STEM}{s}") for s in (".caffemodel", ".solverstate")}


def _start(run: Path, *extra: str, snapshot: int = 100) -> subprocess.Popen:
    return start_pcaffe("train", "--solver", _solver(run, snapshot), "--iterations", ITERATIONS,
                        "--output", STEM, *extra, cwd=run, stderr_path=run / "stderr.txt")


def _resume_and_compare(run: Path, reference: dict[str, str]) -> str:
    done = pcaffe("train", "--solver", "long.prototxt", "--iterations", ITERATIONS, "--output",
                  STEM, "--snapshot", "auto", cwd=run)
    assert done.returncode == 0, done.stderr[-3000:]
    for suffix, digest in reference.items():
        assert sha256(run / f"{STEM}{suffix}") == digest, f"{suffix} differs after the resume"
    restored = re.search(r"Restoring previous solver status from (\S+)", done.stderr)
    return restored.group(1) if restored else ""


def _check_snapshots_complete(run: Path) -> list[int]:
    """Every solverstate has its caffemodel, both parse; returns the iterations found."""
    found = []
    for state_path in sorted((run / SNAPSHOTS).glob("*.solverstate")):
        state = load_solverstate(state_path)
        assert state_path.name == f"small_iter_{state.iter}.solverstate"
        load_caffemodel(state_path.with_name(state.learned_net))
        found.append(state.iter)
    return sorted(found)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_snapshots_then_resume_is_exact(run_dir, reference, signum):
    proc = _start(run_dir)
    wait_for_text(run_dir / "stderr.txt", "Iteration 340, lr", proc)
    proc.send_signal(signum)
    stdout, _ = proc.communicate(timeout=120)
    stderr = (run_dir / "stderr.txt").read_text()
    assert proc.returncode == 3, stderr[-3000:]
    assert "Traceback" not in stderr
    message = last_line(stderr)
    stopped = int(re.search(r"stopped at iteration (\d+)", message).group(1))
    assert 340 < stopped < ITERATIONS
    assert "to continue, run the same command with --snapshot auto" in message
    assert stdout.split() == [f"{SNAPSHOTS}/small_iter_{stopped}.caffemodel",
                              f"{SNAPSHOTS}/small_iter_{stopped}.solverstate"]
    assert _check_snapshots_complete(run_dir) == sorted({*range(100, stopped + 1, 100),
                                                          stopped})
    assert not (run_dir / f"{STEM}.caffemodel").exists()  # no final-looking output
    record(f"{signal.Signals(signum).name} during training", message, proc.returncode)
    restored = _resume_and_compare(run_dir, reference)
    assert restored.endswith(f"small_iter_{stopped}.solverstate")


def test_resume_auto_without_an_output_stem(run_dir, reference):
    """Caffe's own layout (snapshots at <snapshot_prefix>_iter_<N>): auto finds them too."""
    proc = start_pcaffe("train", "--solver", _solver(run_dir), "--iterations", ITERATIONS,
                        cwd=run_dir, stderr_path=run_dir / "stderr.txt")
    wait_for_text(run_dir / "stderr.txt", "Iteration 240, lr", proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 3
    stopped = int(re.search(r"stopped at iteration (\d+)",
                            (run_dir / "stderr.txt").read_text()).group(1))
    done = pcaffe("train", "--solver", "long.prototxt", "--iterations", ITERATIONS,
                  "--snapshot", "auto", cwd=run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Restoring previous solver status from small_iter_{stopped}.solverstate" \
        in done.stderr
    for suffix, digest in reference.items():
        assert sha256(run_dir / f"small_iter_{ITERATIONS}{suffix}") == digest


@pytest.mark.parametrize("signum, flags", [
    (signal.SIGHUP, ()),
    (signal.SIGINT, ("--sigint-effect", "snapshot")),
], ids=["SIGHUP", "SIGINT-snapshot"])
def test_snapshot_signal_writes_a_snapshot_and_goes_on(run_dir, reference, signum, flags):
    proc = _start(run_dir, *flags)
    wait_for_text(run_dir / "stderr.txt", "Iteration 340, lr", proc)
    proc.send_signal(signum)
    proc.communicate(timeout=120)
    stderr = (run_dir / "stderr.txt").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    taken = _check_snapshots_complete(run_dir)
    extra = [i for i in taken if i % 100]
    assert len(extra) == 1 and 340 < extra[0] < ITERATIONS, taken
    # Snapshotting does not change the run: the final files are the uninterrupted ones.
    for suffix, digest in reference.items():
        assert sha256(run_dir / f"{STEM}{suffix}") == digest
    record(f"{signal.Signals(signum).name} during training ({' '.join(flags) or 'default'})",
           f"snapshot {SNAPSHOTS}/small_iter_{extra[0]}.* written; training goes on to the end",
           proc.returncode)


# The snapshot interval does not change the final files, so "before the first snapshot" uses
# a late one: the kill then lands before it however long the test takes to see the line (with
# snapshots every 100 iterations a loaded machine let the run pass 100 before the kill).
@pytest.mark.parametrize("moment, text, every", [
    ("before the first snapshot", "Iteration 40, lr", 900),
    ("between two snapshots", "Iteration 460, lr", 100),
    ("just as a snapshot is written", "Snapshotting to binary proto file "
                                    f"{SNAPSHOTS}/small_iter_600.caffemodel", 100),
])
def test_kill_9_at_any_moment_then_resume_is_exact(run_dir, reference, moment, text, every):
    proc = _start(run_dir, snapshot=every)
    wait_for_text(run_dir / "stderr.txt", text, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    taken = _check_snapshots_complete(run_dir)  # every solverstate has its caffemodel
    assert taken == list(range(every, every * len(taken) + 1, every))
    assert (taken == []) == (moment == "before the first snapshot")
    assert not (run_dir / f"{STEM}.caffemodel").exists()
    restored = _resume_and_compare(run_dir, reference)
    if taken:
        assert restored.endswith(f"small_iter_{taken[-1]}.solverstate")
    else:
        assert restored == ""  # nothing to resume: starts afresh, same result
    record(f"kill -9 {moment}, then `--snapshot auto`",
           f"resumed from {Path(restored).name or 'the start'}; final files byte-identical "
           "to an uninterrupted run", 0)


def test_torn_snapshot_is_passed_over(run_dir, reference):
    """What a kill in the middle of a snapshot can leave: a temp file, a caffemodel whose
    solverstate was not yet renamed. The previous complete pair is used."""
    proc = _start(run_dir)
    wait_for_text(run_dir / "stderr.txt", "Iteration 540, lr", proc)
    proc.kill()
    proc.communicate(timeout=60)
    snaps = run_dir / SNAPSHOTS
    model = (snaps / "small_iter_500.caffemodel").read_bytes()
    (snaps / ".small_iter_600.solverstate.x1y2z3.tmp").write_bytes(b"\x08\x01partial")
    (snaps / "small_iter_600.caffemodel").write_bytes(model)
    (snaps / ".small_iter_700.caffemodel.a1b2c3.tmp").write_bytes(model[:1000])
    restored = _resume_and_compare(run_dir, reference)
    assert restored.endswith("small_iter_500.solverstate")
    record("kill -9 between a snapshot's two renames (caffemodel without solverstate, "
           "temp files)", "the newest complete pair (iteration 500) is resumed; final files "
           "byte-identical", 0)


def _as_in_a_terminal() -> None:
    # A test run started in the background (`cmd &` in a script) inherits SIGINT ignored,
    # and Python then keeps ignoring it; a user at a terminal has the default action.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopped_conversion_leaves_nothing(tmp_path, signum):
    tiny = make_tiny_imagenet(tmp_path / "inet")
    lines = [f"{path} {label}" for path, label in tiny.train if "corrupt" not in path]
    (tmp_path / "many.txt").write_text("\n".join(lines * 2000) + "\n")
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline_lib.data", "convert-imageset",
                                 tiny.train_root, "many.txt", "db", "--resize", "64x64"],
                                cwd=tmp_path, env=ENV, stderr=stderr, text=True,
                                preexec_fn=_as_in_a_terminal)
    wait_for_text(err, "A total of", proc)
    time.sleep(0.5)
    proc.send_signal(signum)
    proc.wait(timeout=120)
    assert proc.returncode == 130, err.read_text()[-2000:]
    assert last_line(err.read_text()).endswith("ERROR pipeline_lib.data: interrupted")
    assert "Traceback" not in err.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inet", "many.txt", "stderr.txt"]
    record(f"{signal.Signals(signum).name} during convert-imageset",
           "interrupted (exit 130); no database and no temporary folder left", 130)


# -- Snakemake ------------------------------------------------------------------------------

SNAKE_SOLVER = """
net: "models/tiny/train_test.prototxt"
test_iter: 1
test_interval: 500
base_lr: 0.01
momentum: 0.9
lr_policy: "fixed"
display: 50
max_iter: 3
snapshot: 100
snapshot_prefix: "results/tiny"
solver_mode: CPU
random_seed: 1
"""


def _workflow_dir(root: Path) -> tuple[Path, Path]:
    """A run folder with a small LeNet and a config whose MNIST is 100 golden digits."""
    src = root / "src"
    src.mkdir(parents=True)
    files = {}
    for name, golden in (("train-images-idx3-ubyte", "train100-images-idx3-ubyte"),
                         ("train-labels-idx1-ubyte", "train100-labels-idx1-ubyte"),
                         ("t10k-images-idx3-ubyte", "train100-images-idx3-ubyte"),
                         ("t10k-labels-idx1-ubyte", "train100-labels-idx1-ubyte")):
        raw = (GOLDEN / golden).read_bytes()
        (src / f"{name}.gz").write_bytes(gzip.compress(raw))
        files[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    run = root / "run"
    (run / "models/tiny").mkdir(parents=True)
    net = (REPO / "models/lenet/lenet_train_test.prototxt").read_text()
    (run / "models/tiny/train_test.prototxt").write_text(
        net.replace("batch_size: 64", "batch_size: 8").replace("batch_size: 100",
                                                               "batch_size: 10"))
    (run / "models/tiny/solver.prototxt").write_text(SNAKE_SOLVER)
    config = {"datasets": {"mnist": {"format": "idx", "files": files,
                                     "sources": [{"type": "local", "path": str(src)}]}},
              "models": {"tiny": {"solver": "models/tiny/solver.prototxt"}}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return run, root / "config.yaml"


def _snakemake_cmd(run: Path, config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(run), "--configfile", str(config), "--cores", "1", *args]


TARGET = "results/tiny_iter_800.caffemodel"


@pytest.mark.slow
def test_snakemake_after_a_kill(tmp_path):
    run, config = _workflow_dir(tmp_path / "a")
    # The data first, so the kill below lands in training.
    prep = subprocess.run(_snakemake_cmd(run, config, "data/mnist/mnist_train_lmdb",
                                         "data/mnist/mnist_test_lmdb"),
                          env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert prep.returncode == 0, prep.stderr[-3000:]
    proc = subprocess.Popen(_snakemake_cmd(run, config, TARGET), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_text(run / "logs/train/tiny_iter_800.log", "Iteration 450, lr", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its job, as a power cut would
    proc.wait(timeout=60)

    # Nothing looks finished, and none of the job's outputs exists (they are written when
    # it finished), so once Snakemake's lock, which outlives a kill -9, is lifted, a plain
    # rerun resumes; no --rerun-incomplete is needed.
    assert [p.name for p in (run / "results").iterdir()] == ["tiny_iter_800.snapshots"]
    subprocess.run(_snakemake_cmd(run, config, "--unlock"), env=ENV, capture_output=True,
                   timeout=300, check=False)
    again = subprocess.run(_snakemake_cmd(run, config, TARGET), env=ENV,
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "IncompleteFilesException" not in again.stderr + again.stdout
    record("kill -9 of Snakemake and its training job, then `snakemake --unlock` and "
           "`snakemake` again", "Restoring previous solver status from results/"
           "tiny_iter_800.snapshots/tiny_iter_400.solverstate", again.returncode)
    log = (run / "logs/train/tiny_iter_800.log").read_text()
    assert "Restoring previous solver status from results/tiny_iter_800.snapshots/" \
           "tiny_iter_400.solverstate" in log

    # An uninterrupted run elsewhere gives the same bytes and the same metrics rows.
    other, other_config = _workflow_dir(tmp_path / "b")
    full = subprocess.run(_snakemake_cmd(other, other_config, TARGET), env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert full.returncode == 0, full.stderr[-3000:]
    assert sha256(run / TARGET) == sha256(other / TARGET)

    def rows(path: Path) -> list[tuple[str, ...]]:  # all but the wall-time column
        lines = path.read_text().splitlines()
        return [tuple(c for i, c in enumerate(line.split(",")) if i != 3) for line in lines]

    metrics = "results/tiny_iter_800_metrics.csv"
    assert rows(run / metrics) == rows(other / metrics)

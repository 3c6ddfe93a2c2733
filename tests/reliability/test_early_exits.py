"""Training that ends early: a failure or Ctrl-C before the first snapshot leaves nothing,
a run stopped by a signal leaves only its snapshot folder (no output beside the stem), and
in the workflow a plain rerun after Ctrl-C resumes. Also the workflow's targets whose
names hold a count that is no count."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability.rel_util import (
    ENV,
    clean_failure,
    last_line,
    pcaffe,
    record,
    start_pcaffe,
    tree,
    wait_for_text,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "workflow"))
from tiny_workflow import make_tiny_workflow, snakemake  # noqa: E402

STEM = "out/small_iter_100000"

# pcaffe with one step of the job made to raise `error` (a Ctrl-C, or a failure)
RAISING = """
import sys
from pipeline_lib.engine.training import provenance
def add_inputs(self, *args):
    raise {error}
provenance.RunRecord.add_inputs = add_inputs
from pipeline_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("error,status", [("KeyboardInterrupt()", 130),
                                          ("OSError(5, 'Input/output error', 'db')", 1)],
                         ids=["ctrl-c", "read-error"])
def test_an_early_end_leaves_nothing(run_dir, error, status):
    """While the inputs are hashed, before the solver's signal handler: before the fix the
    snapshot folder and the effective solver stayed."""
    before = tree(run_dir)
    done = subprocess.run([sys.executable, "-c", RAISING.format(error=error), "train",
                           "--solver", "solver.prototxt", "--iterations", "100000", "--output",
                           STEM], cwd=run_dir,
                          env=ENV, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == status, done.stderr[-3000:]
    assert tree(run_dir) == before, sorted(tree(run_dir) - before)
    if status == 1:
        clean_failure(done, "a read error before the first snapshot: nothing is left behind",
                      r"^pcaffe train: error: db: Input/output error$")
    else:
        record("Ctrl-C before the solver starts (while inputs are hashed): nothing is left "
               "behind", last_line(done.stderr), done.returncode)


def test_a_failing_net_leaves_nothing(run_dir):
    net = (run_dir / "small.prototxt").read_text()
    (run_dir / "small.prototxt").write_text(net.replace('"db/test_lmdb"', '"db/nope_lmdb"'))
    before = tree(run_dir)
    done = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 100000, "--output",
                  STEM, cwd=run_dir)
    clean_failure(done, "a data source that does not exist: nothing is left behind",
                  r"^pcaffe train: error: .*db/nope_lmdb")
    assert tree(run_dir) == before, sorted(tree(run_dir) - before)


def _settled(run: Path, before: set[str], status: int) -> None:
    """What a train run stopped by signals may leave: nothing, or a snapshot to resume."""
    # 3: stopped with a snapshot; 130: pcaffe's "interrupted"; -2: the second signal came
    # while Python was starting, or after pcaffe had said where its state is
    assert status in (3, 130, -signal.SIGINT), status
    left = tree(run) - before - {"stderr.txt"}
    assert not [p for p in left if Path(p).name.startswith(".")], left  # no temporary files
    snapshots = "out/small_iter_100000.snapshots"
    assert all(p in ("out", snapshots) or p.startswith(snapshots + "/") for p in left), left
    assert not left or any(p.endswith(".solverstate") for p in left), left
    assert left or status != 3, status


def test_two_quick_sigints_leave_a_snapshot_or_nothing(run_dir):
    """Ctrl-C twice at random moments of the start: each run ends with a resumable snapshot
    or, when the signals came before training began, with nothing; never with hidden
    temporary files or outputs beside the stem."""
    rng = random.Random(13)
    before = tree(run_dir)
    recorded = False
    for _ in range(8):
        proc = start_pcaffe("train", "--solver", "solver.prototxt", "--iterations", 100000,
                            "--output", STEM, cwd=run_dir, stderr_path=run_dir / "stderr.txt")
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGINT)
        time.sleep(rng.uniform(0.0, 0.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        _settled(run_dir, before, proc.returncode)
        if proc.returncode == 3 and not recorded:
            recorded = True
            record("two quick Ctrl-C during training: the snapshot only, nothing beside the "
                   "stem", last_line((run_dir / "stderr.txt").read_text()), proc.returncode)
        shutil.rmtree(run_dir / "out", ignore_errors=True)


def test_a_stopped_run_writes_nothing_beside_the_stem(run_dir):
    proc = start_pcaffe("train", "--solver", "solver.prototxt", "--iterations", 300,
                        "--output", "out/small_iter_300", cwd=run_dir,
                        stderr_path=run_dir / "stderr.txt")
    wait_for_text(run_dir / "stderr.txt", "Iteration 100,", proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert sorted(p.name for p in (run_dir / "out").iterdir()) == ["small_iter_300.snapshots"]
    done = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 300, "--output",
                  "out/small_iter_300", "--snapshot", "auto", cwd=run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in (run_dir / "out").iterdir()} >= {
        "small_iter_300.caffemodel", "small_iter_300.solverstate",
        "small_iter_300.solver.prototxt", "small_iter_300_metrics.csv",
        "small_iter_300.provenance.json"}


@pytest.fixture
def workflow(tmp_path) -> Path:
    return make_tiny_workflow(tmp_path / "wf")


@pytest.mark.parametrize("target,shown", [
    ("results/small_iter_99999999999999999999.caffemodel", "99999999999999999999"),
    ("results/small_iter_2147483648.caffemodel", "2147483648"),
    ("results/small_iter_1e3.caffemodel", "1e3"),
    ("results/small_iter_-5.caffemodel", "-5"),
    ("results/small_iter_0.caffemodel", "0"),
    ("results/small_iter_1e3_eval.json", "1e3"),
    ("results/caffenet_deploy_time_batch0.txt", "0"),
])
def test_a_target_whose_count_is_no_count(workflow, target, shown):
    """Before: Snakemake's PeriodicWildcardError, 'No rule to produce', a traceback ending
    in protobuf's 'Value out of range', or an untrained model for _iter_0."""
    done = snakemake(workflow, "-n", target, timeout=120)
    assert done.returncode != 0
    what = "batch size" if "batch" in target else "iteration count"
    line = f"ValueError: the {what} '{shown}' in the target's name must be a whole number " \
           "from 1 to 2147483647"
    assert line in done.stdout, done.stdout[-3000:]
    record(f"Snakemake target `{target}`", line, done.returncode)
    assert not (workflow / "results").exists()


@pytest.mark.slow
def test_snakemake_ctrl_c_then_a_plain_rerun_resumes(workflow):
    """Ctrl-C (SIGINT to Snakemake and its job): before, the rerun failed with
    IncompleteFilesException (the job had written some outputs); now none exists until the
    job finished, so `snakemake` again simply resumes."""
    target = "results/small_iter_3000.caffemodel"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", target]
    proc = subprocess.Popen(cmd, cwd=workflow, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for_text(workflow / "logs/train/small_iter_3000.log", "Iteration 100,", proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    out, _ = proc.communicate(timeout=120)
    said = [line for line in out.splitlines() if line.startswith("training stopped")]
    assert said and "run the same snakemake command again to resume" in said[0], out[-3000:]
    assert [p.name for p in (workflow / "results").iterdir()] == ["small_iter_3000.snapshots"]
    record("Ctrl-C of `snakemake` while it trains", said[0], proc.returncode)

    again = snakemake(workflow, target)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "IncompleteFilesException" not in again.stdout
    assert "Restoring previous solver status from results/small_iter_3000.snapshots/" \
           in again.stdout
    record("`snakemake` again after Ctrl-C: it resumes from the snapshot",
           "Restoring previous solver status from results/small_iter_3000.snapshots/"
           "small_iter_<N>.solverstate", again.returncode)

"""The SLURM profile on a real scheduler: a single-node cluster (tools/slurm-test-cluster.sh)
runs the tiny workflow through workflow/profiles/slurm.

- one sbatch job per rule, each COMPLETED in sacct, with the profile's memory and threads,
  the job ids named in Snakemake's log, and the bytes of a local run with the same threads;
- a training cancelled with scancel (SIGTERM: it snapshots and stops) resumes from that
  snapshot when the same command is run again and ends with the uninterrupted run's bytes;
- a training above its memory request is named with rule, job id and limit.

The cluster's daemons run as root; the tests skip in CI and where SLURM cannot be installed.
Run them alone with `python -m pytest -m cluster`.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from tiny_workflow import REPO, make_tiny_workflow, snakemake

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = REPO / "tools" / "slurm-test-cluster.sh"
PROFILE = str(REPO / "workflow" / "profiles" / "slurm")
PORT = "6917"  # not SLURM's defaults, so that a user's own test cluster can keep those
# Poll job states every few seconds instead of the plugin's 40 (the jobs here are short).
FAST = ("--slurm-init-seconds-before-status-checks", "2")
OUTPUTS = ("results/small_iter_{n}.caffemodel", "results/small_iter_{n}.solverstate")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node cluster (SLURM_CONF set for this module's commands)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.skip("CI is set: the SLURM cluster test installs packages and starts root "
                    "daemons (munged, MariaDB, slurmdbd, slurmctld, slurmd) for minutes; "
                    "run it locally with `python -m pytest -m cluster`")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (slurmd starts jobs as their user); "
                    f"try `sudo {SCRIPT} install` and run pytest as root")
    installed = subprocess.run([str(SCRIPT), "install"], capture_output=True, text=True,
                               check=False)
    if installed.returncode != 0:
        reason = (installed.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"slurm-wlm is not installed and could not be installed: {reason}")
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_TEST_PORT": PORT}
    started = subprocess.run([str(SCRIPT), "start", str(folder)], env=env,
                             capture_output=True, text=True, check=False)
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "etc" / "slurm.conf")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield folder
    finally:
        subprocess.run([str(SCRIPT), "stop", str(folder)], env=env, capture_output=True,
                       check=False)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


def digests(root: Path, iters: int) -> dict[str, str]:
    """sha256 of the model and solver state, and of the metrics without their wall times."""
    found = {name: hashlib.sha256((root / name.format(n=iters)).read_bytes()).hexdigest()
             for name in OUTPUTS}
    metrics = pd.read_csv(root / f"results/small_iter_{iters}_metrics.csv")
    found["metrics"] = hashlib.sha256(
        metrics.drop(columns="seconds").to_csv(index=False).encode()).hexdigest()
    return found


def job_ids(output: str) -> dict[str, str]:
    """SLURM job id -> rule, from Snakemake's submission lines (the job's log path names
    its rule: .snakemake/slurm_logs/rule_<name>/...)."""
    return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output))


def sacct(ids) -> dict[str, list[str]]:
    """Job id -> [State, ReqMem, AllocCPUS] of each job (not its steps)."""
    done = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o",
                           "JobID,State,ReqMem,AllocCPUS"], capture_output=True, text=True,
                          check=True)
    return {row[0]: row[1:] for row in (line.split("|") for line in done.stdout.split())}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The tiny workflow run locally with the profile's training threads (2)."""
    root = make_tiny_workflow(tmp_path_factory.mktemp("local") / "wf")
    done = snakemake(root, "results/small_iter_10_eval.json",
                     "results/small_iter_3000.caffemodel", cores=2)
    assert done.returncode == 0, done.stdout[-3000:]
    return root


def test_each_rule_is_one_completed_slurm_job_with_the_local_bytes(cluster, local_run,
                                                                    tmp_path):
    root = make_tiny_workflow(tmp_path / "wf")
    done = snakemake(root, "--profile", PROFILE, *FAST, "results/small_iter_10_curves.png",
                     "results/small_iter_10_eval.json", cores=None, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    ids = job_ids(done.stdout)
    assert sorted(ids.values()) == ["evaluate", "plot_curves", "train"]
    # Snakemake's log of the run names every job id.
    log = max((root / ".snakemake" / "log").glob("*.snakemake.log")).read_text()
    assert all(f"SLURM jobid {i} " in log for i in ids)
    accounting = sacct(ids)
    assert {i: accounting[i][0] for i in ids} == {i: "COMPLETED" for i in ids}
    train = next(i for i, rule in ids.items() if rule == "train")
    assert accounting[train][1:] == ["8000M", "2"]  # the profile's mem_mb and threads
    assert digests(root, 10) == digests(local_run, 10)
    assert (root / "results/small_iter_10_eval.json").read_bytes() == \
        (local_run / "results/small_iter_10_eval.json").read_bytes()


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_cancelled_training_resumes_with_the_uninterrupted_bytes(cluster, local_run,
                                                                    tmp_path):
    root = make_tiny_workflow(tmp_path / "wf")
    train_log = root / "logs/train/small_iter_3000.log"
    command = [sys.executable, "-m", "snakemake", "--profile", PROFILE, *FAST,
               "--retries", "0", "results/small_iter_3000.caffemodel"]
    run = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: train_log.is_file() and re.search(r"Iteration [1-9]\d\d, lr",
                                                           train_log.read_text()),
                 300, "the training to pass iteration 100")
        job = re.search(r"SLURM jobid (\d+)", max((root / ".snakemake/log").glob("*.log"))
                        .read_text()).group(1)
        subprocess.run(["scancel", job], check=True)
        output, _ = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode != 0
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in output
    snapshots = sorted((root / "results/small_iter_3000.snapshots").glob("*.solverstate"))
    assert snapshots, "no snapshot written on SLURM's SIGTERM"
    stopped_at = int(re.search(r"_iter_(\d+)\.", snapshots[-1].name).group(1))
    assert 100 <= stopped_at < 3000

    done = subprocess.run(command, cwd=root, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    assert f"Restoring previous solver status from {snapshots[-1].relative_to(root)}" \
        in train_log.read_text()
    assert digests(root, 3000) == digests(local_run, 3000)


BIG_NET = """name: "big"
layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 128 dim: 1 dim: 1024 dim: 1024 } shape { dim: 128 }
                           data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "constant" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_a_training_above_its_memory_request_is_named(cluster, tmp_path):
    import yaml

    root = make_tiny_workflow(tmp_path / "wf")
    (root / "big").mkdir()
    (root / "big/net.prototxt").write_text(BIG_NET)  # a 512 MB data blob
    (root / "big/solver.prototxt").write_text(
        'net: "big/net.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 2 snapshot: 0 '
        'solver_mode: CPU\n')
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["models"]["big"] = {"solver": "big/solver.prototxt"}
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = snakemake(root, "results/big_iter_2.caffemodel", "--profile", PROFILE, *FAST,
                     "--retries", "0", "--set-resources", "train:mem_mb=400", cores=None,
                     timeout=600)
    assert done.returncode != 0
    ids = job_ids(done.stdout)
    assert list(ids.values()) == ["train"], done.stdout[-3000:]
    job = next(iter(ids))
    assert re.search(rf"^rule train, SLURM job {job}: killed for memory: step {job}\.0 used "
                     r"\d+ MB, above the job's limit of 400 MB; raise mem_mb for rule train",
                     done.stdout, re.M), done.stdout[-3000:]

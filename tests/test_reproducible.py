"""Same config and seed, same bytes: reruns of a training give identical snapshot files."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA
from google.protobuf import text_format
from small_net import NET

from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.engine.training.job import train
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2

GOLDEN_LMDB = DATA / "golden" / "caffe_train100_lmdb"



SOLVER = """
net: "small.prototxt"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 power: 0.75
display: 5 max_iter: 30 test_iter: 2 test_interval: 15 snapshot: 0 random_seed: 7
solver_mode: CPU
"""


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_run_dir(root: Path, solver_text: str = SOLVER) -> Path:
    """A directory with the solver, the net and its own copies of the 100-image LMDB."""
    root.mkdir(parents=True)
    (root / "solver.prototxt").write_text(solver_text)
    (root / "small.prototxt").write_text(NET)
    for split in ("train", "test"):  # a copy each: LMDB opens an environment once per process
        shutil.copytree(GOLDEN_LMDB, root / "db" / f"{split}_lmdb")
    return root


def solve_in_process(run_dir: Path, monkeypatch, seed: int = 7) -> tuple[bytes, bytes]:
    """Train with a Solver built here; return the final (caffemodel, solverstate) bytes.

    Runs inside `run_dir` because a .caffemodel holds the net's layer parameters, data
    sources included: the same run from another directory with absolute paths would differ.
    """
    monkeypatch.chdir(run_dir)
    sp = text_format.Parse(SOLVER, caffe_pb2.SolverParameter())
    sp.random_seed = seed
    sp.ClearField("net")
    net = text_format.Parse(NET, caffe_pb2.NetParameter())
    solver = Solver(sp, net_param=net, log=GlogLogger(stream=io.StringIO()),
                    snapshot_prefix="small")
    try:
        solver.solve()
    finally:
        solver.close()
    model = run_dir / "small_iter_30.caffemodel"
    return model.read_bytes(), model.with_suffix(".solverstate").read_bytes()


def test_two_solver_runs_write_identical_bytes(tmp_path, monkeypatch):
    first = solve_in_process(make_run_dir(tmp_path / "a"), monkeypatch)
    second = solve_in_process(make_run_dir(tmp_path / "b"), monkeypatch)
    assert first[0] == second[0], "caffemodel bytes differ between identical runs"
    assert first[1] == second[1], "solverstate bytes differ between identical runs"


def test_another_seed_gives_other_weights(tmp_path, monkeypatch):
    # Guards the test above against passing trivially (e.g. nothing random, nothing trained).
    first = solve_in_process(make_run_dir(tmp_path / "a"), monkeypatch, seed=7)
    other = solve_in_process(make_run_dir(tmp_path / "b"), monkeypatch, seed=8)
    assert first[0] != other[0]


@pytest.fixture
def two_train_runs(tmp_path, monkeypatch):
    """train() twice, each in its own directory with relative paths as the workflow uses."""
    results = []
    for name in ("a", "b"):
        run = make_run_dir(tmp_path / name)
        monkeypatch.chdir(run)
        result = train("solver.prototxt", output_stem="results/small_iter_30", max_iter=30,
                       log_path="train.log", config={"model": "small"})
        results.append((run, result))
    return results


def test_train_function_twice_gives_identical_files(two_train_runs):
    (run_a, a), (run_b, b) = two_train_runs
    assert a.iterations == b.iterations == 30 and not a.stopped_early
    for suffix in (".caffemodel", ".solverstate", ".solver.prototxt"):
        path_a = run_a / f"results/small_iter_30{suffix}"
        path_b = run_b / f"results/small_iter_30{suffix}"
        assert sha256(path_a) == sha256(path_b), f"{suffix} differs between identical runs"


TRAIN_IN_SUBPROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
from pipeline_lib.engine.training.job import train
train("solver.prototxt", output_stem="results/small_iter_30", max_iter=30, log_path="train.log")
"""


def test_separate_processes_give_identical_bytes(tmp_path):
    # Across processes, string hashing (set/dict-of-set order) is randomized; the BLAS
    # thread count is pinned because a run without `threads` (as here) leaves BLAS its own
    # threads, and OpenBLAS's GEMM sums in another order with another count (a job with
    # `threads`, as the rule and pcaffe run it, keeps BLAS on one thread: core/threads).
    repo = Path(__file__).resolve().parents[1]
    digests = []
    for name, hash_seed in (("a", "1"), ("b", "2")):
        run = make_run_dir(tmp_path / name)
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OPENBLAS_NUM_THREADS": "2",
               "OMP_NUM_THREADS": "2"}
        done = subprocess.run([sys.executable, "-c", TRAIN_IN_SUBPROCESS, str(repo)], cwd=run,
                              env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        digests.append([sha256(run / f"results/small_iter_30{s}")
                        for s in (".caffemodel", ".solverstate")])
    assert digests[0] == digests[1]


def test_provenance_records_the_identical_outputs(two_train_runs):
    import json

    (run_a, a), (run_b, b) = two_train_runs
    rec_a = json.loads(a.provenance.read_text())
    rec_b = json.loads((run_b / "results/small_iter_30.provenance.json").read_text())
    assert rec_a["outputs"]["caffemodel"]["sha256"] == sha256(a.caffemodel)
    assert rec_a["outputs"]["caffemodel"]["sha256"] == rec_b["outputs"]["caffemodel"]["sha256"]
    assert rec_a["inputs"] == rec_b["inputs"]  # same LMDB bytes, same prototxt files
    assert rec_a["seed"] == 7

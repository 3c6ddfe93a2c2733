"""The training job reads its solver once; one device decision for training and evaluation."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_reproducible import SOLVER, make_run_dir

from pipeline_lib import evaluate
from pipeline_lib.core.backend import Device
from pipeline_lib.engine import model_files
from pipeline_lib.engine.training.device import run_device
from pipeline_lib.engine.training.job import TrainingJob
from pipeline_lib.proto import caffe_pb2, prototxt

REPO = Path(__file__).resolve().parents[1]


def count_reads(monkeypatch) -> dict[str, int]:
    """Count read_solver/read_net calls, under every name they are imported as."""
    calls = {"read_solver": 0, "read_net": 0}
    for name in calls:
        real = getattr(prototxt, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(prototxt, name, counting)
        monkeypatch.setattr(model_files, name, counting)
    return calls


def test_a_training_job_reads_the_solver_and_its_net_once(tmp_path, monkeypatch):
    monkeypatch.chdir(make_run_dir(tmp_path / "run", SOLVER))
    calls = count_reads(monkeypatch)
    job = TrainingJob.create("solver.prototxt", output_stem="results/small_iter_5", max_iter=5)
    result = job.run()
    assert result.caffemodel.is_file() and result.provenance.is_file()
    assert calls == {"read_solver": 1, "read_net": 1}


def test_the_job_derives_its_paths_from_the_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(make_run_dir(tmp_path / "run", SOLVER))
    job = TrainingJob.create("solver.prototxt", output_stem="results/small_iter_5", max_iter=5)
    assert job.prefix == "results/small_iter_5.snapshots/small"
    assert job.paths.effective_solver == Path("results/small_iter_5.solver.prototxt")
    assert job.paths.metrics == Path("results/small_iter_5_metrics.csv")
    assert job.provenance == Path("results/small_iter_5.provenance.json")
    assert job.solver_param().snapshot_prefix == job.prefix
    assert job.effective.snapshot_prefix == "solver"  # the effective solver keeps the user's
    assert job.effective.max_iter == 5 and job.device is Device.CPU


@pytest.mark.parametrize(("override", "mode", "want"), [
    ("GPU", caffe_pb2.SolverParameter.CPU, Device.GPU),
    ("cpu", caffe_pb2.SolverParameter.GPU, Device.CPU),
    ("", caffe_pb2.SolverParameter.GPU, Device.GPU),
    (None, caffe_pb2.SolverParameter.CPU, Device.CPU),
])
def test_an_override_wins_else_the_solver_decides(override, mode, want):
    assert run_device(override, caffe_pb2.SolverParameter(solver_mode=mode)) is want


def test_the_device_of_a_solver_file_is_read_only_without_an_override(tmp_path, monkeypatch):
    path = tmp_path / "solver.prototxt"
    path.write_text("solver_mode: GPU\n")
    calls = count_reads(monkeypatch)
    assert run_device("CPU", path) is Device.CPU and calls["read_solver"] == 0
    assert run_device("", path) is Device.GPU and calls["read_solver"] == 1
    with pytest.raises(ValueError, match="unknown solver_mode 'TPU'"):
        run_device("tpu", path)


@pytest.mark.parametrize(("override", "want"), [("", Device.GPU), ("CPU", Device.CPU)])
def test_evaluation_runs_on_the_device_the_training_used(tmp_path, monkeypatch, override, want):
    """The evaluate rule's script decides as the train rule's `gpu` resource and the job do."""
    solver = tmp_path / "solver.prototxt"
    solver.write_text("solver_mode: GPU\n")
    seen = {}

    def fake_evaluate_solver(solver_path, weights, **kwargs):
        seen.update(kwargs)
        raise StopIteration  # enough: the device is decided

    monkeypatch.setattr(evaluate, "evaluate_solver", fake_evaluate_solver)
    script = runpy.run_path(str(REPO / "workflow/scripts/evaluate.py"))
    smk = SimpleNamespace(input=SimpleNamespace(solver=str(solver), weights="w.caffemodel"),
                          params=SimpleNamespace(solver_mode=override, top_k=[1],
                                                 batch_size=None),
                          log=[str(tmp_path / "eval.log")], threads=2)
    with pytest.raises(StopIteration):
        script["main"](smk)
    assert seen["device"] is want
    assert run_device(override, solver) is want  # what the train rule's `gpu` resource asks


def test_the_evaluate_rule_gets_the_train_rules_override():
    rule = (REPO / "workflow/rules/evaluate.smk").read_text()
    assert "solver_mode=rules.train.params.solver_mode" in rule

"""Solver overrides from the config (engine/overrides.py) and where a solver's files are found
(model_files.locate): checked against caffe.proto, applied once, recorded in the effective
solver."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_reproducible import SOLVER, make_run_dir

from pipeline_lib.engine.model_files import SolverFiles, locate
from pipeline_lib.engine.overrides import OverrideError, apply_overrides, check_overrides
from pipeline_lib.engine.training.job import TrainingJob
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_solver

WHERE = "config models.x.overrides"


def test_values_become_the_fields_types():
    sp = caffe_pb2.SolverParameter(base_lr=0.05, stepvalue=[1, 2])
    batch = apply_overrides(sp, {"base_lr": 1, "momentum": 0.8, "random_seed": 3,
                                 "lr_policy": "step", "solver_mode": "GPU",
                                 "stepvalue": [10, 20, 30], "test_iter": 4,
                                 "train_state": "stage: 'big'", "batch_size": 16}, WHERE)
    assert batch == 16
    assert (sp.base_lr, sp.random_seed, sp.lr_policy) == (1.0, 3, "step")
    assert sp.momentum == pytest.approx(0.8)
    assert sp.solver_mode == caffe_pb2.SolverParameter.GPU
    assert list(sp.stepvalue) == [10, 20, 30] and list(sp.test_iter) == [4]
    assert list(sp.train_state.stage) == ["big"]


@pytest.mark.parametrize(("overrides", "says"), [
    ({"base_lrr": 0.1}, "'base_lrr' is not a SolverParameter field (did you mean base_lr?)"),
    ({"base_lr": "fast"}, "base_lr = 'fast' (str); base_lr takes a number"),
    ({"random_seed": 1.5}, "random_seed = 1.5 (float); random_seed takes a whole number"),
    ({"momentum": True}, "momentum takes a number"),
    ({"solver_mode": "TPU"}, "solver_mode takes one of CPU, GPU"),
    ({"stepvalue": [1, "x"]}, "stepvalue = 'x' (str)"),
    ({"train_state": "stage: 7 7"}, "train_state takes a NetState in prototxt text"),
    ({"batch_size": 0}, "batch_size = 0; batch_size (of the train net's data layers) takes"),
    ({"max_iter": 10}, "max_iter cannot be overridden: the target's name sets it"),
    ({"net": "other.prototxt"}, "net cannot be overridden"),
    ({"weights": "w.caffemodel"}, "use the model's `weights:` key"),
])
def test_a_bad_override_is_one_line_naming_where_and_what(overrides, says):
    with pytest.raises(OverrideError) as err:
        check_overrides(overrides, WHERE)
    message = str(err.value)
    assert message.startswith(f"{WHERE}: ") and says in message and "\n" not in message


def test_batch_size_reaches_the_train_nets_data_layers_only(tmp_path, monkeypatch):
    monkeypatch.chdir(make_run_dir(tmp_path / "run", SOLVER))
    files = SolverFiles.read("solver.prototxt", overrides={"batch_size": 7, "base_lr": 0.2})
    sizes = {tuple(rule.phase for rule in layer.include): layer.data_param.batch_size
             for layer in files.nets["small.prototxt"].layer if layer.type == "Data"}
    assert sizes == {(caffe_pb2.TRAIN,): 7, (caffe_pb2.TEST,): 20}
    assert files.param.base_lr == pytest.approx(0.2)


def test_the_effective_solver_records_the_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(make_run_dir(tmp_path / "run", SOLVER))
    job = TrainingJob.create("solver.prototxt", output_stem="results/small_iter_4", max_iter=4,
                             overrides={"base_lr": 0.01, "batch_size": 5, "random_seed": 9})
    job.run()
    written = read_solver("results/small_iter_4.solver.prototxt")
    assert (written.base_lr, written.random_seed, written.max_iter) == (
        pytest.approx(0.01), 9, 4)
    train_data = [layer for layer in written.net_param.layer
                  if layer.type == "Data" and layer.include[0].phase == caffe_pb2.TRAIN]
    assert train_data[0].data_param.batch_size == 5
    assert read_solver("solver.prototxt").base_lr == pytest.approx(0.05)  # the file untouched


def test_a_train_net_file_is_inlined_with_its_batch_size(tmp_path, monkeypatch):
    run = make_run_dir(tmp_path / "run", SOLVER.replace('net: "small.prototxt"',
                                                        'train_net: "small.prototxt"'
                                                        ' test_net: "small.prototxt"'))
    monkeypatch.chdir(run)
    job = TrainingJob.create("solver.prototxt", max_iter=2, overrides={"batch_size": 3})
    assert not job.effective.train_net and job.effective.HasField("train_net_param")
    sizes = [layer.data_param.batch_size for layer in job.effective.train_net_param.layer
             if layer.type == "Data" and layer.include[0].phase == caffe_pb2.TRAIN]
    assert sizes == [3]


def test_files_are_found_in_the_working_dir_then_in_the_workflows(tmp_path, monkeypatch):
    workflow = make_run_dir(tmp_path / "workflow", SOLVER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    files = SolverFiles.read("solver.prototxt", workflow_dir=workflow)
    assert files.path == str(workflow / "solver.prototxt")
    assert files.locations == {"small.prototxt": str(workflow / "small.prototxt")}
    assert files.files.nets == (str(workflow / "small.prototxt"),)
    # data stays the working directory's: the net names db/train_lmdb, relative
    assert "db/train_lmdb" in files.files.data_sources
    # a file of the working directory wins over the workflow's
    Path("small.prototxt").write_text((workflow / "small.prototxt").read_text())
    assert locate("small.prototxt", workflow) == "small.prototxt"
    assert locate("missing.prototxt", workflow) == "missing.prototxt"

"""Caffe's MNIST solver variants (SGD inv, multistep, Adam, RMSProp, AdaDelta) run as written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.engine.model_files import SolverFiles
from pipeline_lib.engine.training.job import effective_solver
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto.prototxt import read_net

REPO = Path(__file__).resolve().parents[1]
GOLDEN_LMDB = Path(__file__).parent / "data/golden/caffe_train100_lmdb"
SOLVERS = {
    "lenet_solver.prototxt": "SGD",
    "lenet_multistep_solver.prototxt": "SGD",
    "lenet_solver_adam.prototxt": "Adam",
    "lenet_solver_rmsprop.prototxt": "RMSProp",
    "lenet_adadelta_solver.prototxt": "AdaDelta",
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_solver_file_trains_lenet(name, tmp_path, monkeypatch):
    for split in ("train", "test"):  # the tutorial's net reads two databases
        shutil.copytree(GOLDEN_LMDB, tmp_path / f"mnist_{split}_lmdb")
    monkeypatch.chdir(REPO)
    sp = effective_solver(SolverFiles.read(REPO / "models/lenet" / name), max_iter=4)
    assert sp.type == SOLVERS[name] or (SOLVERS[name] == "SGD" and not sp.type)
    for layer in sp.net_param.layer:
        if layer.type == "Data":
            split = "test" if "test" in layer.data_param.source else "train"
            layer.data_param.source = str(tmp_path / f"mnist_{split}_lmdb")
            layer.data_param.batch_size = 16
    sp.test_iter[:] = [2]
    sp.test_interval = 2
    sp.snapshot = 0
    sp.snapshot_after_train = False
    sp.snapshot_prefix = str(tmp_path / "lenet")
    solver = Solver(sp, metrics=None, log=GlogLogger(None, stderr=False))
    before = [p.data.copy() for p in solver.net.learnable_params]
    solver.solve()
    results = solver.test()
    solver.close()
    assert solver.iter == 4
    assert all(np.isfinite(v) for v in results.values())
    changed = [not np.array_equal(b, p.data) for b, p in zip(before, solver.net.learnable_params)]
    assert all(changed)


def test_variant_nets_are_the_tutorial_net(monkeypatch):
    monkeypatch.chdir(REPO)
    base = read_net(REPO / "models/lenet/lenet_train_test.prototxt")
    for name in SOLVERS:
        sp = effective_solver(SolverFiles.read(REPO / "models/lenet" / name))
        assert [lp.name for lp in sp.net_param.layer] == [lp.name for lp in base.layer]

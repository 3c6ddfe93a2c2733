"""The tutorial's LeNet solver against files written by real Caffe."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from conftest import DATA

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto.blobproto import blob_proto_to_array
from pipeline_lib.proto.prototxt import read_net, read_solver
from pipeline_lib.proto.snapshot import load_caffemodel, load_solverstate

GOLDEN = DATA / "golden"
MODELS = DATA.parent.parent / "models" / "lenet"


@pytest.fixture
def lenet_solver(tmp_path):
    """The tutorial's solver and net, both data layers reading Caffe's 100-image LMDB."""
    sp = read_solver(MODELS / "lenet_solver.prototxt")
    net = read_net(MODELS / "lenet_train_test.prototxt")
    for layer in net.layer:
        if layer.type == "Data":  # a copy each: LMDB opens an environment once per process
            db = tmp_path / f"{layer.include[0].phase}_lmdb"
            shutil.copytree(GOLDEN / "caffe_train100_lmdb", db)
            layer.data_param.source = str(db)
    sp.ClearField("net")
    sp.test_iter[0] = 1
    log = GlogLogger(stream=io.StringIO())
    solver = Solver(sp, net_param=net, snapshot_prefix=str(tmp_path / "lenet"), log=log)
    yield solver
    solver.close()


def test_restores_caffes_lenet_solverstate(lenet_solver):
    golden = load_solverstate(GOLDEN / "lenet_iter_10000.solverstate")
    lenet_solver.restore(GOLDEN / "lenet_iter_10000.solverstate")
    assert lenet_solver.iter == 10000 and lenet_solver.current_step == 0
    assert len(lenet_solver.history) == 8
    for ours, bp in zip(lenet_solver.history, golden.history):
        np.testing.assert_array_equal(to_host(ours), blob_proto_to_array(bp))
    model = load_caffemodel(GOLDEN / "lenet_iter_10000.caffemodel")
    blobs = [blob_proto_to_array(bp) for layer in model.layer for bp in layer.blobs]
    for ours, theirs in zip(lenet_solver.net.learnable_params, blobs, strict=True):
        np.testing.assert_array_equal(to_host(ours.data), theirs)
    # Caffe's trained weights classify its training images; the test net shares them
    scores = lenet_solver.test(0)
    assert scores["accuracy"] >= 0.97 and scores["loss"] < 0.1


def test_continues_caffes_run_and_snapshots_a_caffe_readable_pair(lenet_solver, tmp_path):
    lenet_solver.restore(GOLDEN / "lenet_iter_10000.solverstate")
    before = to_host(lenet_solver.net.learnable_params[0].data).copy()
    lenet_solver.step(1)
    assert lenet_solver.iter == 10001
    assert not np.array_equal(before, to_host(lenet_solver.net.learnable_params[0].data))
    model, state = lenet_solver.snapshot()
    ours = load_solverstate(state)
    assert ours.iter == 10001 and ours.learned_net == "lenet_iter_10001.caffemodel"
    golden = load_solverstate(GOLDEN / "lenet_iter_10000.solverstate")
    assert [h.shape.dim for h in ours.history] == [h.shape.dim for h in golden.history]
    assert [layer.name for layer in load_caffemodel(model).layer if layer.blobs] == \
        ["conv1", "conv2", "ip1", "ip2"]

"""models/lenet/*: every file parses, and says what the tutorial says."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_binary, read_net, read_solver

ROOT = Path(__file__).parents[2]
LENET = ROOT / "models" / "lenet"
GOLDEN_MODEL = ROOT / "tests" / "data" / "golden" / "lenet_iter_10000.caffemodel"
TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST

SOLVERS = {
    "lenet_solver.prototxt": "SGD",
    "lenet_multistep_solver.prototxt": "SGD",
    "lenet_solver_adam.prototxt": "Adam",
    "lenet_solver_rmsprop.prototxt": "RMSProp",
    "lenet_adadelta_solver.prototxt": "AdaDelta",
}
NETS = ["lenet_train_test.prototxt", "lenet.prototxt"]


def test_every_file_is_known():
    assert sorted(p.name for p in LENET.glob("*.prototxt")) == sorted([*SOLVERS, *NETS])


@pytest.mark.parametrize("name", NETS)
def test_nets_parse_without_upgrade(name, caplog):
    with caplog.at_level("INFO", logger="pipeline_lib"):
        net = read_net(LENET / name)
    assert net.name == "LeNet"
    assert not net.layers and not net.input
    assert "upgraded" not in caplog.text


@pytest.mark.parametrize(("name", "solver_type"), sorted(SOLVERS.items()))
def test_solvers_parse(name, solver_type):
    solver = read_solver(LENET / name)
    assert (solver.type or "SGD") == solver_type
    assert solver.net == "models/lenet/lenet_train_test.prototxt"
    assert (ROOT / solver.net).is_file()
    assert list(solver.test_iter) == [100] and solver.test_interval == 500
    assert (solver.max_iter, solver.snapshot, solver.display) == (10000, 5000, 100)
    assert solver.solver_mode == caffe_pb2.SolverParameter.CPU
    assert solver.random_seed == 1701
    assert solver.snapshot_prefix.startswith("results/lenet")


def test_solver_prefixes_are_distinct():
    prefixes = [read_solver(LENET / name).snapshot_prefix for name in SOLVERS]
    assert len(set(prefixes)) == len(prefixes)


def test_tutorial_solver_values():
    s = read_solver(LENET / "lenet_solver.prototxt")
    assert (s.base_lr, s.momentum, s.weight_decay) == pytest.approx((0.01, 0.9, 0.0005))
    assert (s.lr_policy, s.gamma, s.power) == ("inv", pytest.approx(1e-4), pytest.approx(0.75))
    assert s.snapshot_prefix == "results/lenet"
    assert not s.HasField("type")  # SGD by default, as in the tutorial


def test_solver_variant_values():
    multistep = read_solver(LENET / "lenet_multistep_solver.prototxt")
    assert multistep.lr_policy == "multistep"
    assert list(multistep.stepvalue) == [5000, 7000, 8000, 9000, 9500]
    assert multistep.gamma == pytest.approx(0.9)
    adam = read_solver(LENET / "lenet_solver_adam.prototxt")
    assert (adam.base_lr, adam.momentum, adam.momentum2) == pytest.approx((0.001, 0.9, 0.999))
    assert adam.lr_policy == "fixed"
    rmsprop = read_solver(LENET / "lenet_solver_rmsprop.prototxt")
    assert (rmsprop.momentum, rmsprop.rms_decay) == pytest.approx((0.0, 0.98))
    assert rmsprop.lr_policy == "inv"
    adadelta = read_solver(LENET / "lenet_adadelta_solver.prototxt")
    assert (adadelta.base_lr, adadelta.momentum, adadelta.delta) == pytest.approx((1.0, 0.95, 1e-6))


def _in_phase(layer: caffe_pb2.LayerParameter, phase: int) -> bool:
    return not layer.include or any(rule.phase == phase for rule in layer.include)


def test_train_test_net_structure():
    net = read_net(LENET / "lenet_train_test.prototxt")
    data = {layer.include[0].phase: layer for layer in net.layer if layer.type == "Data"}
    assert data[TRAIN].data_param.source == "data/mnist/mnist_train_lmdb"
    assert data[TEST].data_param.source == "data/mnist/mnist_test_lmdb"
    assert (data[TRAIN].data_param.batch_size, data[TEST].data_param.batch_size) == (64, 100)
    for layer in data.values():
        assert layer.data_param.backend == caffe_pb2.DataParameter.LMDB
        assert layer.transform_param.scale == pytest.approx(1 / 256)
    test_only = [layer.name for layer in net.layer if not _in_phase(layer, TRAIN)]
    assert test_only == ["mnist", "accuracy"]
    for layer in net.layer:
        if layer.type in ("Convolution", "InnerProduct"):
            assert [p.lr_mult for p in layer.param] == [1, 2]


def test_train_phase_matches_the_net_inside_caffes_caffemodel():
    """Caffe stores the TRAIN net's definition in the .caffemodel: ours must be the same
    layer for layer (apart from the data path and what Caffe adds: blobs, phase and the
    loss layer's default loss_weight 1)."""
    golden = read_binary(GOLDEN_MODEL, caffe_pb2.NetParameter)
    ours = read_net(LENET / "lenet_train_test.prototxt")
    train = [layer for layer in ours.layer if _in_phase(layer, TRAIN)]
    assert len(train) == len(golden.layer)
    for mine, theirs in zip(train, golden.layer, strict=True):
        theirs.ClearField("blobs")
        theirs.ClearField("phase")
        if theirs.type == "SoftmaxWithLoss":
            assert list(theirs.loss_weight) == [1.0]
            theirs.ClearField("loss_weight")
        if theirs.type == "Data":
            theirs.data_param.source = mine.data_param.source
        assert mine == theirs, mine.name


def test_deploy_net_structure():
    net = read_net(LENET / "lenet.prototxt")
    assert net.layer[0].type == "Input"
    assert list(net.layer[0].input_param.shape[0].dim) == [64, 1, 28, 28]
    assert net.layer[-1].type == "Softmax" and list(net.layer[-1].top) == ["prob"]
    types = [layer.type for layer in net.layer]
    assert "Data" not in types and "Accuracy" not in types and "SoftmaxWithLoss" not in types
    # Same learnable layers as the training net, so trained weights load by name.
    train = read_net(LENET / "lenet_train_test.prototxt")
    for name in ("conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2"):
        (a,) = [layer for layer in net.layer if layer.name == name]
        (b,) = [layer for layer in train.layer if layer.name == name]
        assert a == b, name

"""Caffe's "learning LeNet" notebook (examples/01-learning-lenet.ipynb), step by step,
through `pipeline_lib.caffe` as pycaffe code: NetSpec writes the nets, get_solver builds
them, the nets run forward, one step gives gradients, and a short loop lowers the loss.

The digits are synthetic (made here): ten fixed 28x28 strokes patterns with noise and
shifts, in LMDBs of Datum records as convert_mnist writes them.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib import caffe
from pipeline_lib.caffe import layers as L
from pipeline_lib.caffe import params as P
from pipeline_lib.data.db import open_db
from pipeline_lib.proto.datum import array_to_datum
from pipeline_lib.proto.prototxt import read_net, write_prototxt


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images of 10 classes: a class's bars, shifted by up to 2 pixels."""
    patterns = np.zeros((10, 28, 28), np.float32)
    layout = np.random.default_rng(1234)
    for k in range(10):
        for _ in range(3):  # three bars per class, at places fixed by the class
            r, c = layout.integers(4, 20, size=2)
            if layout.random() < 0.5:
                patterns[k, r:r + 3, c - 3:c + 6] = 1
            else:
                patterns[k, r - 3:r + 6, c:c + 3] = 1
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    images = np.empty((n, 28, 28), np.uint8)
    for i, k in enumerate(labels):
        dy, dx = rng.integers(-2, 3, size=2)
        shifted = np.roll(patterns[k], (dy, dx), axis=(0, 1))
        noisy = shifted * rng.uniform(150, 255) + rng.normal(0, 20, (28, 28))
        images[i] = noisy.clip(0, 255).astype(np.uint8)
    return images, labels


def write_lmdb(path, images, labels) -> None:
    with open_db(path, "w", backend="lmdb") as db:
        for i, (image, label) in enumerate(zip(images, labels)):
            db.put(f"{i:08d}".encode(), array_to_datum(image, int(label)).SerializeToString())


def lenet(lmdb: str, batch_size: int):
    """The notebook's net, as it writes it."""
    n = caffe.NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=lmdb,
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


SOLVER = """\
train_net: "mnist/lenet_auto_train.prototxt"
test_net: "mnist/lenet_auto_test.prototxt"
test_iter: 2
test_interval: 500
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 10
max_iter: 10000
snapshot: 5000
snapshot_prefix: "mnist/lenet"
"""


@pytest.fixture
def notebook_dir(tmp_path, monkeypatch):
    """The notebook's working folder: mnist/ with both databases, the nets and the solver."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()
    write_lmdb("mnist/mnist_train_lmdb", *synthetic_digits(320, seed=1))
    write_lmdb("mnist/mnist_test_lmdb", *synthetic_digits(200, seed=2))
    # the notebook writes str(proto); our writer must give the same net
    with open("mnist/lenet_auto_train.prototxt", "w") as f:
        f.write(str(lenet("mnist/mnist_train_lmdb", 64)))
    write_prototxt(lenet("mnist/mnist_test_lmdb", 100), "mnist/lenet_auto_test.prototxt")
    (tmp_path / "mnist" / "lenet_auto_solver.prototxt").write_text(SOLVER)
    caffe.set_mode_cpu()
    return tmp_path


def test_netspec_writes_the_notebooks_prototxt(notebook_dir):
    net = read_net("mnist/lenet_auto_train.prototxt")
    assert [(lp.name, lp.type) for lp in net.layer] == [
        ("data", "Data"), ("conv1", "Convolution"), ("pool1", "Pooling"),
        ("conv2", "Convolution"), ("pool2", "Pooling"), ("fc1", "InnerProduct"),
        ("relu1", "ReLU"), ("score", "InnerProduct"), ("loss", "SoftmaxWithLoss")]
    data = net.layer[0]
    assert list(data.top) == ["data", "label"]
    assert data.data_param.backend == data.data_param.LMDB
    assert data.data_param.batch_size == 64 and data.transform_param.scale == pytest.approx(1 / 255)
    conv1 = net.layer[1].convolution_param
    assert list(conv1.kernel_size) == [5] and conv1.weight_filler.type == "xavier"
    relu = net.layer[6]
    assert list(relu.bottom) == ["fc1"] and list(relu.top) == ["fc1"]  # in place
    assert list(net.layer[7].bottom) == ["fc1"]
    assert list(net.layer[8].bottom) == ["score", "label"]
    assert read_net("mnist/lenet_auto_test.prototxt").layer[0].data_param.batch_size == 100


@pytest.mark.slow  # ~1 s on an idle machine, 10-15 s on a loaded one
def test_learning_lenet_notebook(notebook_dir):
    with caffe.get_solver("mnist/lenet_auto_solver.prototxt") as solver:
        assert isinstance(solver, caffe.SGDSolver) and solver.type == "SGD"
        assert isinstance(solver.net, caffe.Net) and isinstance(solver.test_nets[0], caffe.Net)

        # "the net's blobs and parameters"
        shapes = {k: v.data.shape for k, v in solver.net.blobs.items()}
        assert shapes == {"data": (64, 1, 28, 28), "label": (64,), "conv1": (64, 20, 24, 24),
                          "pool1": (64, 20, 12, 12), "conv2": (64, 50, 8, 8),
                          "pool2": (64, 50, 4, 4), "fc1": (64, 500), "score": (64, 10),
                          "loss": ()}
        assert {k: v[0].data.shape for k, v in solver.net.params.items()} == {
            "conv1": (20, 1, 5, 5), "conv2": (50, 20, 5, 5), "fc1": (500, 800),
            "score": (10, 500)}

        # "solver.net.forward(); solver.test_nets[0].forward()": the data layers read
        out = solver.net.forward()
        assert set(out) == {"loss"} and 1.5 < float(out["loss"]) < 4.0
        data = solver.net.blobs["data"].data
        assert data.shape == (64, 1, 28, 28) and 0 <= data.min() and data.max() <= 1
        assert data.max() > 0.5
        labels = solver.net.blobs["label"].data
        assert set(np.unique(labels)) <= set(range(10)) and len(np.unique(labels)) > 3
        test_out = solver.test_nets[0].forward()
        assert set(test_out) == {"loss"}
        assert solver.test_nets[0].blobs["data"].data.shape == (100, 1, 28, 28)

        # "solver.step(1)": one iteration, gradients in the params' diffs
        solver.step(1)
        assert solver.iter == 1
        diff = solver.net.params["conv1"][0].diff
        assert diff.shape == (20, 1, 5, 5) and np.abs(diff).max() > 0
        # the test net reads the weights the solver trains (shared, as Caffe's)
        np.testing.assert_array_equal(solver.test_nets[0].params["conv1"][0].data,
                                      solver.net.params["conv1"][0].data)

        # "a custom training loop": the loss falls, the test net follows
        niter = 25
        train_loss = np.zeros(niter)
        for it in range(niter):
            solver.step(1)
            train_loss[it] = solver.net.blobs["loss"].data
            solver.test_nets[0].forward(start="conv1")
        assert solver.iter == 1 + niter
        assert train_loss[-5:].mean() < 0.5 * train_loss[:3].mean(), train_loss
        scores = solver.test_nets[0].blobs["score"].data
        truth = solver.test_nets[0].blobs["label"].data
        accuracy = float((scores.argmax(1) == truth).mean())
        assert accuracy > 0.5, accuracy

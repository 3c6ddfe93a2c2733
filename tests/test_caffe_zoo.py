"""Caffe's own nets (examples/ and models/): blob shapes, from tools/caffe_zoo.py.

Caffe's prototxt files cannot live here, so data/caffe_zoo_shapes.json holds
the shapes of every net of BVLC/caffe master that builds (and the layer types the
others lack); the nets this project ships (models/) are checked against it, and
against the shapes real Caffe printed in its notebooks. With CAFFE_ROOT set to a
Caffe checkout (folder or bare git directory), the whole zoo is checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests/data/caffe_zoo_shapes.json").read_text())
_spec = importlib.util.spec_from_file_location("caffe_zoo", ROOT / "tools/caffe_zoo.py")
zoo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zoo)

#: shapes printed by real Caffe in examples/00-classification.ipynb (CaffeNet deploy,
#: batch reshaped to 50) and examples/01-learning-lenet.ipynb (LeNet train net, batch 64)
CAFFENET_BATCH_50 = {
    "data": (50, 3, 227, 227), "conv1": (50, 96, 55, 55), "pool1": (50, 96, 27, 27),
    "norm1": (50, 96, 27, 27), "conv2": (50, 256, 27, 27), "pool2": (50, 256, 13, 13),
    "norm2": (50, 256, 13, 13), "conv3": (50, 384, 13, 13), "conv4": (50, 384, 13, 13),
    "conv5": (50, 256, 13, 13), "pool5": (50, 256, 6, 6), "fc6": (50, 4096),
    "fc7": (50, 4096), "fc8": (50, 1000), "prob": (50, 1000)}
CAFFENET_PARAMS = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
                   "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216),
                   "fc7": (4096, 4096), "fc8": (1000, 4096)}
LENET_BATCH_64 = {"data": (64, 1, 28, 28), "label": (64,), "conv1": (64, 20, 24, 24),
                  "pool1": (64, 20, 12, 12), "conv2": (64, 50, 8, 8), "pool2": (64, 50, 4, 4),
                  "ip1": (64, 500), "ip2": (64, 10), "loss": ()}


def shapes_of(path: str, phase: int = caffe_pb2.TEST, batch: int | None = None):
    param = read_net(ROOT / path)
    fed = caffe_pb2.NetParameter()
    fed.CopyFrom(param)
    del fed.layer[:]
    for lp in param.layer:
        new = fed.layer.add()
        new.CopyFrom(zoo.as_input(lp) if lp.type in zoo.FILE_DATA else lp)
        for field in ("convolution_param", "inner_product_param"):
            getattr(new, field).ClearField("weight_filler")  # shapes only: skip random fills
        if batch and new.type == "Input":
            for shape in new.input_param.shape:
                shape.dim[0] = batch
    net = Net(fed, phase, xp=np)
    return net, {n: b.shape for n, b in net.blobs.items() if "_split_" not in n}


def golden(path: str, config: str, batch: int) -> dict:
    """The recorded shapes with the batch (first) dimension set to `batch`."""
    return {k: tuple([batch, *v[1:]] if v else v) for k, v in GOLDEN["nets"][path][config].items()}


def test_caffenet_deploy_has_the_shapes_caffe_printed():
    net, shapes = shapes_of("models/caffenet/deploy.prototxt", batch=50)
    assert shapes == CAFFENET_BATCH_50
    assert {n: p[0].shape for n, p in net.params.items()} == CAFFENET_PARAMS


def test_lenet_train_net_has_the_shapes_caffe_printed():
    _, shapes = shapes_of("models/lenet/lenet_train_test.prototxt", caffe_pb2.TRAIN)
    assert shapes == LENET_BATCH_64


@pytest.mark.parametrize("ours, caffes, config", [
    ("models/lenet/lenet_train_test.prototxt", "examples/mnist/lenet_train_test.prototxt", "TEST"),
    ("models/lenet/lenet.prototxt", "examples/mnist/lenet.prototxt", "TRAIN"),
    ("models/caffenet/train_val.prototxt", "models/bvlc_reference_caffenet/train_val.prototxt",
     "TRAIN"),
    ("models/caffenet/train_val.prototxt", "models/bvlc_reference_caffenet/train_val.prototxt",
     "TEST"),
])
def test_our_copies_of_caffes_nets_match_the_zoo_survey(ours, caffes, config):
    phase = caffe_pb2.TRAIN if config == "TRAIN" else caffe_pb2.TEST
    assert shapes_of(ours, phase, batch=2)[1] == golden(caffes, config, 2)


def test_the_survey_records_what_is_missing_and_what_builds():
    nets = GOLDEN["nets"]
    assert len(nets) == 29
    # every layer type exists now; the siamese net (ContrastiveLoss) builds
    assert not any("missing" in net for net in nets.values())
    assert nets["examples/siamese/mnist_siamese_train_test.prototxt"]["TRAIN"]["loss"] == []
    # two layers named "loss" build, as in Caffe; the Python layer needs its module
    assert "TRAIN" in nets["examples/mnist/mnist_autoencoder.prototxt"]
    assert "cannot be imported" in nets["examples/pycaffe/linreg.prototxt"]["TRAIN"]["error"]
    # a loss layer written without a top builds (Caffe's automatic top)
    pascal = nets["examples/finetune_pascal_detection/pascal_finetune_trainval_test.prototxt"]
    assert pascal["TRAIN"]["fc8_pascal"] == [128, 21] and "accuracy" in pascal["TEST"]
    assert nets["models/bvlc_googlenet/deploy.prototxt"]["TRAIN"]["prob"] == [10, 1000]


SMALL_NET = """
name: "small"
layer { name: "d" type: "Data" top: "data" top: "label"
        transform_param { crop_size: 20 } data_param { source: "x/mnist_lmdb" batch_size: 4 } }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 3 kernel_size: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "c" bottom: "label" include { phase: TRAIN } }
layer { name: "acc" type: "Accuracy" bottom: "c" bottom: "label" top: "acc"
        include { phase: TEST } }
"""


def fake_checkout(tmp_path: Path) -> Path:
    for name, text in {"examples/a/net.prototxt": SMALL_NET.replace("num_output: 3 ",
                                                                    "num_output: 3 stride: 16 "),
                       "examples/a/solver.prototxt": 'net: "net.prototxt" base_lr: 0.1',
                       "models/b/deploy.prototxt": 'layer { name: "f" type: "Foo" top: "f" }'
                       }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_tool_surveys_a_checkout_and_checks_it(tmp_path, capsys):
    root = fake_checkout(tmp_path / "caffe")
    found = zoo.survey(root)
    assert found["nets"] == {
        "examples/a/net.prototxt": {
            "TRAIN": {"data": [4, 1, 20, 20], "label": [4], "c": [4, 3, 1, 1]},
            "TEST": {"data": [4, 1, 20, 20], "label": [4], "c": [4, 3, 1, 1], "acc": []}},
        "models/b/deploy.prototxt": {"missing": ["Foo"]}}
    saved = tmp_path / "shapes.json"
    assert zoo.main([str(root), "--write", str(saved)]) == 0
    assert json.loads(saved.read_text()) == found
    assert zoo.main([str(root), "--check", str(saved)]) == 0
    wrong = json.loads(saved.read_text())
    wrong["nets"]["examples/a/net.prototxt"]["TEST"]["c"] = [4, 3, 2, 2]
    saved.write_text(json.dumps(wrong))
    capsys.readouterr()
    assert zoo.main([str(root), "--check", str(saved)]) == 1
    assert ("examples/a/net.prototxt [TEST] blob c: shape [4, 3, 1, 1] here, expected "
            "[4, 3, 2, 2]") in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CAFFE_ROOT"), reason="set CAFFE_ROOT to a Caffe checkout")
def test_every_net_of_a_caffe_checkout_has_the_recorded_shapes():
    assert zoo.differences(zoo.survey(os.environ["CAFFE_ROOT"]), GOLDEN) == []

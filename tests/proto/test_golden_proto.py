"""Cross-load files written by real Caffe 1.0 (tests/data/golden, see SOURCE.md there)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import (
    BinaryProtoError,
    read_binary,
    read_net_binary,
    write_binary,
)

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
MODEL = GOLDEN / "lenet_iter_10000.caffemodel"
STATE = GOLDEN / "lenet_iter_10000.solverstate"

LEARNABLE_SHAPES = {
    "conv1": [(20, 1, 5, 5), (20,)],
    "conv2": [(50, 20, 5, 5), (50,)],
    "ip1": [(500, 800), (500,)],
    "ip2": [(10, 500), (10,)],
}
LAYERS = ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]


def test_caffemodel_layers_and_blob_shapes():
    net = read_binary(MODEL, caffe_pb2.NetParameter)
    assert net.name == "LeNet"
    assert [layer.name for layer in net.layer] == LAYERS
    assert not net.layers  # new `layer` format
    shapes = {
        layer.name: [tuple(b.shape.dim) for b in layer.blobs] for layer in net.layer if layer.blobs
    }
    assert shapes == LEARNABLE_SHAPES
    for layer in net.layer:
        for blob in layer.blobs:
            count = 1
            for d in blob.shape.dim:
                count *= d
            assert len(blob.data) == count, layer.name


def test_caffemodel_reserializes_byte_identical(tmp_path):
    original = MODEL.read_bytes()
    net = read_binary(MODEL, caffe_pb2.NetParameter)
    assert net.SerializeToString() == original
    out = tmp_path / "copy.caffemodel"
    write_binary(net, out)
    assert out.read_bytes() == original


def test_caffemodel_needs_no_upgrade(caplog):
    with caplog.at_level("INFO", logger="pipeline_lib"):
        net = read_net_binary(MODEL)
    assert net.SerializeToString() == MODEL.read_bytes()
    assert "upgraded" not in caplog.text


def test_solverstate_fields_and_reserialization(tmp_path):
    original = STATE.read_bytes()
    state = read_binary(STATE, caffe_pb2.SolverState)
    assert state.iter == 10000
    assert state.learned_net == "lenet_iter_10000.caffemodel"
    assert state.current_step == 0
    expected = [
        shape for name in ("conv1", "conv2", "ip1", "ip2") for shape in LEARNABLE_SHAPES[name]
    ]
    assert [tuple(h.shape.dim) for h in state.history] == expected
    assert not state.HasField("resume_state_json")
    out = tmp_path / "copy.solverstate"
    write_binary(state, out)
    assert out.read_bytes() == original


@pytest.mark.reliability
@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_caffemodel_names_file(tmp_path, keep):
    data = MODEL.read_bytes()
    bad = tmp_path / "cut.caffemodel"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BinaryProtoError) as info:
        read_binary(bad, caffe_pb2.NetParameter)
    message = str(info.value)
    assert str(bad) in message
    assert "caffe.NetParameter" in message
    assert "truncated or corrupt" in message


@pytest.mark.reliability
def test_empty_and_garbage_binary_files(tmp_path):
    empty = tmp_path / "empty.solverstate"
    empty.write_bytes(b"")
    with pytest.raises(BinaryProtoError, match=r"empty\.solverstate: is empty"):
        read_binary(empty, caffe_pb2.SolverState)
    garbage = tmp_path / "text.binaryproto"
    shutil.copy(GOLDEN / "SOURCE.md", garbage)
    with pytest.raises(BinaryProtoError, match=r"text\.binaryproto: is not a valid serialized"):
        read_binary(garbage, caffe_pb2.BlobProto)

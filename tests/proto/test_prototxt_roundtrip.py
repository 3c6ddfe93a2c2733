"""write_prototxt / write_binary round trips, and atomic writes."""

from __future__ import annotations

import os
import stat

import pytest
from google.protobuf import text_format

from pipeline_lib.core import fsutil
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import (
    read_binary,
    read_net,
    read_solver,
    read_text,
    write_binary,
    write_prototxt,
)

NET = """
name: "rt"
force_backward: true
state { phase: TEST level: 2 stage: "deploy" }
layer {
  name: "in" type: "Input" top: "x"
  input_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } }
}
layer {
  name: "c" type: "Convolution" bottom: "x" top: "c"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  transform_param { scale: 0.00390625 mean_value: 0.1 mean_value: 1e-07 }
  convolution_param {
    num_output: 20 kernel_size: 5 stride: 1 bias_term: false
    weight_filler { type: "gaussian" std: 0.01 }
    engine: CAFFE
  }
  loss_weight: 3.3333333
  exclude { phase: TRAIN }
}
"""


def test_net_round_trip(tmp_path):
    original = text_format.Parse(NET, caffe_pb2.NetParameter())
    path = tmp_path / "net.prototxt"
    write_prototxt(original, path)
    assert read_net(path) == original
    # Floats survive exactly (float32 values printed shortest-round-trip).
    layer = read_net(path).layer[1]
    assert layer.transform_param.scale == original.layer[1].transform_param.scale
    assert layer.loss_weight[0] == original.layer[1].loss_weight[0]
    # Caffe's layout: two-space indents, one field per line.
    assert '  name: "in"\n' in path.read_text()


def test_solver_round_trip_keeps_every_field(tmp_path):
    original = caffe_pb2.SolverParameter(
        net="models/lenet/lenet_train_test.prototxt",
        test_iter=[100],
        base_lr=0.01,
        lr_policy="multistep",
        stepvalue=[5000, 7000],
        snapshot_prefix="results/lenet",
        solver_mode=caffe_pb2.SolverParameter.CPU,
        random_seed=1701,
        type="Nesterov",
        delta=1e-8,
    )
    path = tmp_path / "solver.prototxt"
    write_prototxt(original, path)
    assert read_solver(path) == original


def test_binary_round_trip(tmp_path):
    blob = caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=[1, 3, 2, 2]), data=[0.5] * 12)
    path = tmp_path / "mean.binaryproto"
    write_binary(blob, path)
    assert read_binary(path, caffe_pb2.BlobProto) == blob
    assert path.read_bytes() == blob.SerializeToString()


def test_writes_replace_existing_files_and_leave_no_temp_files(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("stale")
    write_prototxt(caffe_pb2.NetParameter(name="fresh"), path)
    assert read_text(path, caffe_pb2.NetParameter).name == "fresh"
    assert sorted(os.listdir(tmp_path)) == ["net.prototxt"]
    # The usual permissions for a new file, not mkstemp's 0600.
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()


@pytest.mark.reliability
def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "w.caffemodel"
    write_binary(caffe_pb2.NetParameter(name="old"), path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fsutil.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_binary(caffe_pb2.NetParameter(name="new"), path)
    monkeypatch.undo()
    assert read_binary(path, caffe_pb2.NetParameter).name == "old"
    assert sorted(os.listdir(tmp_path)) == ["w.caffemodel"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

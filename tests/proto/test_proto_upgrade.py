"""Old Caffe syntax is upgraded on load, as Caffe's upgrade_proto does."""

from __future__ import annotations

import logging

import pytest
from google.protobuf import text_format

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import (
    PrototxtError,
    parse_net_text,
    parse_solver_text,
    read_net,
    read_net_binary,
    read_solver,
    write_binary,
)
from pipeline_lib.proto.upgrade import (
    V1_LAYER_TYPES,
    net_needs_upgrade,
    upgrade_v1_layer,
    v1_layer_type,
)

# The 2014 tutorial's V1 snippets (data layer with scale, conv with blobs_lr), except that
# `kernelsize` (never valid inside convolution_param) is written `kernel_size`.
SEED_V1 = """\
name: "LeNet"
layers {
  name: "mnist"
  type: DATA
  data_param {
    source: "mnist_train_lmdb"
    backend: LMDB
    batch_size: 64
    scale: 0.00390625
  }
  top: "data"
  top: "label"
}
layers {
  name: "conv1"
  type: CONVOLUTION
  blobs_lr: 1.
  blobs_lr: 2.
  convolution_param {
    num_output: 20
    kernel_size: 5
    stride: 1
    weight_filler {
      type: "xavier"
    }
    bias_filler {
      type: "constant"
    }
  }
  bottom: "data"
  top: "conv1"
}
"""

SEED_V2 = """\
name: "LeNet"
layer {
  name: "mnist"
  type: "Data"
  top: "data"
  top: "label"
  transform_param { scale: 0.00390625 }
  data_param { source: "mnist_train_lmdb" batch_size: 64 backend: LMDB }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param { lr_mult: 1 }
  param { lr_mult: 2 }
  convolution_param {
    num_output: 20
    kernel_size: 5
    stride: 1
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
"""


def net(text: str) -> caffe_pb2.NetParameter:
    return text_format.Parse(text, caffe_pb2.NetParameter())


def upgrade_lines(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pipeline_lib" and "upgraded" in r.getMessage()
    ]


def test_seed_v1_snippet_upgrades_to_v2(tmp_path, caplog):
    path = tmp_path / "lenet_v1.prototxt"
    path.write_text(SEED_V1)
    with caplog.at_level(logging.INFO, logger="pipeline_lib"):
        upgraded = read_net(path)
    assert upgraded == net(SEED_V2)
    assert not upgraded.layers
    # The scale left data_param (Caffe moves it, it does not copy it).
    assert not upgraded.layer[0].data_param.HasField("scale")
    lines = upgrade_lines(caplog)
    assert len(lines) == 1
    assert str(path) in lines[0] and "old Caffe syntax" in lines[0]
    assert "V1" in lines[0] and "data_param" in lines[0]


def test_current_syntax_is_left_alone(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline_lib"):
        parsed = parse_net_text(SEED_V2, "new.prototxt")
    assert parsed == net(SEED_V2)
    assert upgrade_lines(caplog) == []
    assert not net_needs_upgrade(parsed)


def test_v1_layer_type_table_covers_every_enum_value():
    enum = caffe_pb2.V1LayerParameter.LayerType
    assert set(V1_LAYER_TYPES) == set(enum.keys())
    named = [t for t in V1_LAYER_TYPES.values() if t]
    assert len(named) == len(set(named)) == len(enum.keys()) - 1  # NONE -> ""
    assert v1_layer_type(enum.Value("SOFTMAX_LOSS")) == "SoftmaxWithLoss"
    assert v1_layer_type(enum.Value("TANH")) == "TanH"
    assert v1_layer_type(enum.Value("HDF5_DATA")) == "HDF5Data"
    assert v1_layer_type(enum.Value("ABSVAL")) == "AbsVal"
    assert v1_layer_type(enum.Value("INNER_PRODUCT")) == "InnerProduct"


def test_v1_layer_fields_carried_over():
    v1 = text_format.Parse(
        """
        name: "ip" type: INNER_PRODUCT bottom: "x" top: "y"
        include { phase: TRAIN } exclude { stage: "deploy" }
        param: "shared_w" param: "shared_b"
        blob_share_mode: PERMISSIVE
        blobs_lr: 1 blobs_lr: 2 blobs_lr: 3
        weight_decay: 1 weight_decay: 0
        loss_weight: 0.5
        blobs { shape { dim: 2 } data: 1 data: 2 }
        inner_product_param { num_output: 7 }
        """,
        caffe_pb2.V1LayerParameter(),
    )
    layer = upgrade_v1_layer(v1)
    expected = text_format.Parse(
        """
        name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        include { phase: TRAIN } exclude { stage: "deploy" }
        param { name: "shared_w" share_mode: PERMISSIVE lr_mult: 1 decay_mult: 1 }
        param { name: "shared_b" lr_mult: 2 decay_mult: 0 }
        param { lr_mult: 3 }
        loss_weight: 0.5
        blobs { shape { dim: 2 } data: 1 data: 2 }
        inner_product_param { num_output: 7 }
        """,
        caffe_pb2.LayerParameter(),
    )
    assert layer == expected


def test_every_v1_submessage_is_carried_over():
    v1 = caffe_pb2.V1LayerParameter(type=caffe_pb2.V1LayerParameter.RELU)
    names = [
        f.name
        for f in v1.DESCRIPTOR.fields
        if f.name.endswith("_param") and f.message_type is not None
    ]
    assert len(names) > 25
    for name in names:
        getattr(v1, name).SetInParent()
    layer = upgrade_v1_layer(v1)
    assert [n for n in names if not layer.HasField(n)] == []


@pytest.mark.parametrize(
    ("v1_type", "param"),
    [
        ("DATA", "data_param"),
        ("IMAGE_DATA", "image_data_param"),
        ("WINDOW_DATA", "window_data_param"),
    ],
)
def test_transformation_fields_move_to_transform_param(v1_type, param):
    text = f"""
        layers {{ name: "d" type: {v1_type}
          {param} {{ source: "s" scale: 0.5 mean_file: "m.binaryproto"
                     crop_size: 227 mirror: true }}
        }}"""
    layer = parse_net_text(text, "d.prototxt").layer[0]
    t = layer.transform_param
    assert (t.scale, t.mean_file, t.crop_size, t.mirror) == (0.5, "m.binaryproto", 227, True)
    moved = getattr(layer, param)
    assert moved.source == "s"
    for field in ("scale", "mean_file", "crop_size", "mirror"):
        assert not moved.HasField(field)


def test_input_dim_becomes_first_input_layer():
    text = """
        name: "deploy"
        input: "data"
        input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
        input: "im_info"
        input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1
        layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }
        """
    upgraded = parse_net_text(text, "deploy.prototxt")
    first = upgraded.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["data", "im_info"])
    assert [list(s.dim) for s in first.input_param.shape] == [[10, 3, 227, 227], [1, 3, 1, 1]]
    assert upgraded.layer[1].name == "relu"
    assert not upgraded.input and not upgraded.input_dim and not upgraded.input_shape


def test_input_shape_becomes_input_layer_and_bare_input_is_dropped():
    shaped = parse_net_text('input: "x" input_shape { dim: 2 dim: 5 }', "a.prototxt")
    assert list(shaped.layer[0].input_param.shape[0].dim) == [2, 5]
    bare = parse_net_text('input: "x" layer { name: "l" }', "b.prototxt")
    assert [layer.name for layer in bare.layer] == ["l"]
    assert not bare.input


def test_input_dim_count_mismatch_is_an_error():
    with pytest.raises(PrototxtError, match=r"bad\.prototxt: .*3 `input_dim` values"):
        parse_net_text('input: "x" input_dim: 1 input_dim: 2 input_dim: 3', "bad.prototxt")


def test_old_batch_norm_params_are_frozen():
    text = """layer { name: "bn" type: "BatchNorm"
        param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 decay_mult: 1 } }"""
    layer = parse_net_text(text, "bn.prototxt").layer[0]
    assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(0, 0)] * 3


def test_v0_net_is_refused_with_a_pointer():
    with pytest.raises(PrototxtError, match=r"v0\.prototxt: uses the V0 layer format"):
        parse_net_text('layers { layer { name: "c" type: "conv" } }', "v0.prototxt")


def test_mixing_layer_and_layers_is_refused():
    text = 'layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }'
    with pytest.raises(PrototxtError, match=r"mix\.prototxt: mixes `layer"):
        parse_net_text(text, "mix.prototxt")


def test_binary_v1_caffemodel_is_upgraded(tmp_path, caplog):
    old = net('name: "old" layers { name: "ip" type: INNER_PRODUCT blobs { num: 1 data: 3 } }')
    path = tmp_path / "old.caffemodel"
    write_binary(old, path)
    with caplog.at_level(logging.INFO, logger="pipeline_lib"):
        upgraded = read_net_binary(path)
    assert upgraded.layer[0].type == "InnerProduct"
    assert list(upgraded.layer[0].blobs[0].data) == [3.0]
    assert len(upgrade_lines(caplog)) == 1


# --- solvers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enum", "name"),
    [
        ("SGD", "SGD"),
        ("NESTEROV", "Nesterov"),
        ("ADAGRAD", "AdaGrad"),
        ("RMSPROP", "RMSProp"),
        ("ADADELTA", "AdaDelta"),
        ("ADAM", "Adam"),
    ],
)
def test_solver_type_enum_becomes_type_string(enum, name, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline_lib"):
        solver = parse_solver_text(f'solver_type: {enum} snapshot_prefix: "r/x"', "s.prototxt")
    assert solver.type == name
    assert not solver.HasField("solver_type")
    assert len(upgrade_lines(caplog)) == 1


def test_solver_type_and_type_together_is_an_error():
    with pytest.raises(PrototxtError, match=r"s\.prototxt: sets both `solver_type`"):
        parse_solver_text('solver_type: ADAM type: "Adam"', "s.prototxt")


def test_inline_solver_nets_are_upgraded():
    solver = parse_solver_text(
        'net_param { layers { name: "r" type: RELU } } snapshot_prefix: "r/x"', "s.prototxt"
    )
    assert solver.net_param.layer[0].type == "ReLU"
    assert not solver.net_param.layers


def test_snapshot_prefix_defaults_like_caffe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "solver.prototxt").write_text("base_lr: 0.1\n")
    assert read_solver("solver.prototxt").snapshot_prefix == "solver"
    (tmp_path / "solver.prototxt").write_text('snapshot_prefix: "out"\n')
    assert read_solver("solver.prototxt").snapshot_prefix == "out/solver"
    (tmp_path / "solver.prototxt").write_text('snapshot_prefix: "results/lenet"\n')
    assert read_solver("solver.prototxt").snapshot_prefix == "results/lenet"

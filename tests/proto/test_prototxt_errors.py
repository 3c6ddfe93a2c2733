"""Parse errors name file:line:column and, where we know it, the fix."""

from __future__ import annotations

import pytest

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import (
    PrototxtError,
    parse_net_text,
    parse_solver_text,
    parse_text,
    read_net,
)

# The 2014 tutorial's conv layer, verbatim: `kernelsize` inside convolution_param.
SEED_CONV = """\
name: "LeNet"
layers {
  name: "conv1"
  type: CONVOLUTION
  blobs_lr: 1.
  blobs_lr: 2.
  convolution_param {
    num_output: 20
    kernelsize: 5
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


def net_error(text: str, filename: str = "net.prototxt") -> PrototxtError:
    with pytest.raises(PrototxtError) as info:
        parse_net_text(text, filename)
    return info.value


def test_kernelsize_names_file_line_and_fix(tmp_path):
    path = tmp_path / "lenet_2014.prototxt"
    path.write_text(SEED_CONV)
    with pytest.raises(PrototxtError) as info:
        read_net(path)
    err = info.value
    assert (err.path, err.line, err.column) == (str(path), 9, 5)
    assert str(err) == (
        f"{path}:9:5: `kernelsize` is not a field of convolution_param (it only existed in "
        "the V0 layer format); write `kernel_size: 5` instead"
    )
    assert isinstance(err, ValueError)


def test_kernelsize_in_pooling_param_too():
    err = net_error("layer {\n  pooling_param { kernelsize: 3 }\n}\n")
    assert (err.line, err.column) == (2, 19)
    assert "`kernelsize` is not a field of pooling_param" in err.reason
    assert "write `kernel_size: 3` instead" in err.reason


def test_batchsize_hint():
    err = net_error("layer {\n  data_param {\n    batchsize: 64\n  }\n}\n")
    assert (err.line, err.column) == (3, 5)
    assert "`batchsize` is not a field of data_param" in err.reason
    assert "write `batch_size: 64` instead" in err.reason


def test_v0_transform_field_points_to_transform_param():
    err = net_error("layer { data_param { cropsize: 227 } }")
    assert "write `crop_size: 227` inside the layer's transform_param" in err.reason


def test_syntax_error_reports_line_and_column():
    text = 'name: "LeNet"\nlayer {\n  name: "conv1"\n  type "Convolution"\n}\n'
    err = net_error(text, "broken.prototxt")
    assert (err.line, err.column) == (4, 8)
    assert str(err).startswith("broken.prototxt:4:8: ")
    assert ":" in err.reason  # text_format's "Expected ..." text is kept


def test_unterminated_string_position():
    err = net_error('name: "LeNet"\nlayer {\n  name: "conv1\n}\n')
    assert (err.line, err.column) == (3, 9)
    assert "quote" in err.reason


def test_brace_mismatches():
    err = net_error('layer {\n  name: "a"\n')
    assert err.line == 2 and "not closed" in err.reason
    err = net_error('layer {\n  name: "a"\n}\n}\n')
    assert (err.line, err.column) == (4, 1)
    assert "closing brace too many" in err.reason


def test_unknown_field_names_field_and_message_type():
    err = net_error('layer {\n  name: "a"\n  bogus_field: 3\n}\n')
    assert (err.line, err.column) == (3, 3)
    assert "`bogus_field`" in err.reason
    assert "caffe.LayerParameter" in err.reason


def test_unknown_solver_field():
    with pytest.raises(PrototxtError) as info:
        parse_solver_text("base_lr: 0.01\nlearning_rate: 0.1\n", "solver.prototxt")
    assert str(info.value).startswith("solver.prototxt:2:1: ")
    assert "`learning_rate`" in str(info.value) and "caffe.SolverParameter" in str(info.value)


def test_typo_gets_a_suggestion():
    err = net_error("layer { convolution_param { num_ouput: 20 } }")
    assert "`num_ouput` is not a field of convolution_param" in err.reason
    assert "did you mean `num_output`?" in err.reason


def test_missing_closing_brace_is_suspected():
    # The HTML tutorial page (seed 000) lost its closing braces.
    text = 'layer {\n  name: "mnist"\n  transform_param {\n    scale: 0.00390625\n  data_param {\n'
    err = net_error(text)
    assert (err.line, err.column) == (5, 3)
    assert "`data_param` is not a field of transform_param" in err.reason
    assert "closing `}` missing" in err.reason


def test_blobs_lr_in_new_layer_points_to_param():
    err = net_error('layer { name: "c" blobs_lr: 1 }')
    assert "`blobs_lr`" in err.reason and "param { lr_mult" in err.reason


def test_enum_type_in_new_layer_gets_the_string():
    err = net_error("layer {\n  type: CONVOLUTION\n}\n")
    assert (err.line, err.column) == (2, 9)
    assert 'write `type: "Convolution"`' in err.reason


def test_string_type_in_v1_layers_points_to_new_format():
    err = net_error('layers { type: "InnerProduct" }')
    assert '`layer { type: "InnerProduct"' in err.reason


def test_bad_enum_value_lists_accepted_ones():
    err = net_error("layer { pooling_param { pool: MAXIMUM } }")
    assert err.reason == (
        "`MAXIMUM` is not a value of caffe.PoolingParameter.PoolMethod; "
        "expected one of MAX, AVE, STOCHASTIC"
    )


def test_old_solver_type_strings():
    with pytest.raises(PrototxtError, match='write `type: "Adam"`'):
        parse_solver_text('solver_type: "Adam"', "s.prototxt")
    with pytest.raises(PrototxtError, match='write `type: "Nesterov"`'):
        parse_solver_text("type: NESTEROV", "s.prototxt")


def test_duplicate_singular_field_is_an_error():
    with pytest.raises(PrototxtError, match=r"x\.prototxt:2:\d+: .*multiple \"name\""):
        parse_text('name: "a"\nname: "b"\n', caffe_pb2.NetParameter, "x.prototxt")


@pytest.mark.reliability
def test_binary_file_read_as_text(tmp_path):
    path = tmp_path / "weights.caffemodel"
    path.write_bytes(caffe_pb2.NetParameter(name="x").SerializeToString() + b"\0\x01")
    with pytest.raises(PrototxtError, match=r"weights\.caffemodel: is not a text protobuf"):
        read_net(path)


@pytest.mark.reliability
def test_non_utf8_text_position(tmp_path):
    path = tmp_path / "latin1.prototxt"
    path.write_bytes('name: "a"\nlayer { name: "caf\xe9" }\n'.encode("latin-1"))
    with pytest.raises(PrototxtError) as info:
        read_net(path)
    assert (info.value.line, info.value.column) == (2, 19)
    assert "not UTF-8" in info.value.reason

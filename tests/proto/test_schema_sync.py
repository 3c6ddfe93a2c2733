"""The committed caffe_pb2.py must be what protoc makes of the committed caffe.proto."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2

from pipeline_lib.proto import caffe_pb2, generate

pytest.importorskip("grpc_tools")

FileDescriptorProto = descriptor_pb2.FileDescriptorProto


def _serialized_file_in(module_source: str) -> bytes:
    """The bytes literal a generated *_pb2.py hands to AddSerializedFile."""
    for node in ast.walk(ast.parse(module_source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            return ast.literal_eval(node.args[0])
    raise AssertionError("no AddSerializedFile call in the generated module")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> FileDescriptorProto:
    """What `python -m pipeline_lib.proto.generate` would write now, as a descriptor."""
    out = tmp_path_factory.mktemp("protoc")
    generate.compile_proto(out)
    source = (out / "caffe_pb2.py").read_text()
    return FileDescriptorProto.FromString(_serialized_file_in(source))


def _committed() -> FileDescriptorProto:
    """The descriptor written into the committed caffe_pb2.py (its source, not the runtime's)."""
    source = Path(caffe_pb2.__file__).read_text()
    return FileDescriptorProto.FromString(_serialized_file_in(source))


def test_committed_pb2_matches_proto(compiled):
    committed = _committed()
    if compiled != committed:
        ours = {m.name: m for m in committed.message_type}
        fresh = {m.name: m for m in compiled.message_type}
        differing = sorted(n for n in ours.keys() | fresh.keys() if ours.get(n) != fresh.get(n))
        pytest.fail(
            "caffe_pb2.py has drifted from caffe.proto (messages differing: "
            f"{', '.join(differing) or 'none; file-level enums/options'}); "
            "run `python -m pipeline_lib.proto.generate`"
        )


def test_drift_would_be_detected(tmp_path, monkeypatch):
    """The check is not vacuous: a .proto with one changed default compiles to a different
    descriptor than the committed module's."""
    proto = (Path(generate.__file__).parent / "caffe.proto").read_text()
    old = "optional float momentum2 = 39 [default = 0.999];"
    assert old in proto
    (tmp_path / "caffe.proto").write_text(proto.replace(old, old.replace("0.999", "0.99")))
    monkeypatch.setattr(generate, "HERE", tmp_path)
    generate.compile_proto(tmp_path)
    drifted = FileDescriptorProto.FromString(
        _serialized_file_in((tmp_path / "caffe_pb2.py").read_text())
    )
    assert drifted != _committed()


def _float_defaults_as_values(proto: FileDescriptorProto) -> FileDescriptorProto:
    """Copy with float defaults spelled one way ("0.999" and "0.999000013" are one float32)."""
    out = FileDescriptorProto()
    out.CopyFrom(proto)
    FieldType = descriptor_pb2.FieldDescriptorProto
    for message in out.message_type:
        for field in message.field:
            if field.type == FieldType.TYPE_FLOAT and field.HasField("default_value"):
                field.default_value = repr(float(np.float32(field.default_value)))
    return out


def test_loaded_module_is_the_committed_one():
    """The runtime's DESCRIPTOR is the committed one. upb re-prints float defaults at
    float32 precision, hence the normalisation; values must still agree exactly."""
    live = FileDescriptorProto.FromString(caffe_pb2.DESCRIPTOR.serialized_pb)
    assert _float_defaults_as_values(live) == _float_defaults_as_values(_committed())


def test_caffe_field_numbers_kept():
    """Spot checks of numbers that real Caffe files depend on."""
    layer = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    net = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name
    blob = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name
    state = caffe_pb2.SolverState.DESCRIPTOR.fields_by_name
    assert (net["layer"].number, net["layers"].number) == (100, 2)
    assert (layer["blobs"].number, layer["convolution_param"].number) == (7, 106)
    assert (blob["data"].number, blob["shape"].number) == (5, 7)
    assert blob["data"].GetOptions().packed
    assert (state["history"].number, state["resume_state_json"].number) == (3, 1000)

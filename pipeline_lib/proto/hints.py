"""Turn text_format parse errors into messages that say what to write instead.

`explain(message, source_line, column)` takes text_format's error text (without
its ``line:column :`` prefix), the offending source line and the 1-based column,
and returns our wording: unknown fields name the field and the message type,
fields renamed since Caffe's V0/V1 formats name their replacement, close typos
get a suggestion, and bad enum values list the accepted ones.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from google.protobuf.descriptor import Descriptor, EnumDescriptor

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.upgrade import SOLVER_TYPES, V1_LAYER_TYPES

# Field names of Caffe's V0 layer format -> their names today.
V0_RENAMES: dict[str, str] = {
    "kernelsize": "kernel_size",
    "biasterm": "bias_term",
    "batchsize": "batch_size",
    "cropsize": "crop_size",
    "meanfile": "mean_file",
    "shuffle_images": "shuffle",
    "det_fg_threshold": "fg_threshold",
    "det_bg_threshold": "bg_threshold",
    "det_fg_fraction": "fg_fraction",
    "det_context_pad": "context_pad",
    "det_crop_mode": "crop_mode",
}

# Fields that moved from a data layer's own param to transform_param.
_TRANSFORM_FIELDS = {"scale", "mean_file", "crop_size", "mirror"}
_DATA_PARAMS = {"DataParameter", "ImageDataParameter", "WindowDataParameter"}

# V1 `layers {}` fields with no namesake in `layer {}`.
_V1_ONLY_FIELDS = {
    "blobs_lr": "one `param { lr_mult: ... }` per learnable blob",
    "weight_decay": "one `param { decay_mult: ... }` per learnable blob",
    "blob_share_mode": "`param { share_mode: ... }`",
}

_UNKNOWN_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')
_BAD_ENUM = re.compile(r'Enum type "([\w.]+)" has no value named "?([^".]*)"?\.?$')
_EXPECTED_STRING = re.compile(r"Expected string but found: '(\w+)'")


def _all_messages(descriptors: Iterable[Descriptor]) -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}
    for d in descriptors:
        found[d.full_name] = d
        found.update(_all_messages(d.nested_types))
    return found


_DESCRIPTORS = _all_messages(caffe_pb2.DESCRIPTOR.message_types_by_name.values())
# Fields of these tell that a block was left open before them.
_TOP_LEVEL = (caffe_pb2.NetParameter, caffe_pb2.LayerParameter, caffe_pb2.SolverParameter)


def explain(message: str, source_line: str, column: int | None) -> str:
    """Our wording of one text_format error (see the module docstring)."""
    if m := _UNKNOWN_FIELD.search(message):
        return _unknown_field(m.group(1), m.group(2), source_line, column)
    if m := _BAD_ENUM.search(message):
        return _bad_enum(m.group(1), m.group(2))
    if m := _EXPECTED_STRING.search(message):
        return _expected_string(m.group(1), source_line, column)
    if message == 'Expected "}".':
        return 'expected "}": a `{` block opened above is not closed'
    if message == "Expected identifier or number, got }.":
        return "unexpected `}` (one closing brace too many?)"
    return message


def where_used(type_name: str) -> str:
    """A reader's name for a message type: the field that holds it where that is unique."""
    short = type_name.rsplit(".", 1)[-1]
    if short == "LayerParameter":
        return "layer"
    if short == "V1LayerParameter":
        return "layers"
    if short == "NetParameter":
        return "the net"
    if short == "SolverParameter":
        return "the solver"
    holders = {
        f.name
        for d in _DESCRIPTORS.values()
        for f in d.fields
        if f.message_type is not None and f.message_type.full_name == type_name
    }
    return holders.pop() if len(holders) == 1 else type_name


def _value_after(field: str, source_line: str, column: int | None) -> str | None:
    """The scalar written after `field:` on the source line, if any."""
    start = (column - 1) if column else 0
    m = re.compile(rf"{re.escape(field)}\s*:\s*([^\s{{}}#]+)").search(source_line, start)
    return m.group(1) if m else None


def _unknown_field(type_name: str, field: str, source_line: str, column: int | None) -> str:
    holder = where_used(type_name)
    descriptor = _DESCRIPTORS.get(type_name)
    known = [f.name for f in descriptor.fields] if descriptor else []
    value = _value_after(field, source_line, column)

    def write(name: str) -> str:
        return f"`{name}: {value}`" if value is not None else f"`{name}`"

    renamed = V0_RENAMES.get(field)
    if renamed is not None:
        short = type_name.rsplit(".", 1)[-1]
        if short in _DATA_PARAMS and renamed in _TRANSFORM_FIELDS:
            fix = f"write {write(renamed)} inside the layer's transform_param instead"
        elif renamed in known:
            fix = f"write {write(renamed)} instead"
        else:
            fix = f"the current name is `{renamed}`"
        return (
            f"`{field}` is not a field of {holder} (it only existed in the V0 layer format); {fix}"
        )
    if type_name == "caffe.LayerParameter" and field in _V1_ONLY_FIELDS:
        return (
            f"`{field}` is not a field of layer (it belongs to the V1 `layers {{}}` format); "
            f"in a `layer {{}}` block write {_V1_ONLY_FIELDS[field]}"
        )
    reason = f"`{field}` is not a field of {holder}"
    if holder != type_name:
        reason += f" ({type_name})"
    close = difflib.get_close_matches(field, known, n=1, cutoff=0.75)
    if close:
        return f"{reason}; did you mean `{close[0]}`?"
    if any(field in cls.DESCRIPTOR.fields_by_name for cls in _TOP_LEVEL):
        return f"{reason}; is a closing `}}` missing before it?"
    return reason


def _bad_enum(enum_name: str, value: str) -> str:
    if enum_name == "caffe.V1LayerParameter.LayerType" and value in V1_LAYER_TYPES.values():
        return (
            f'`layers {{}}` (the V1 format) takes an enum type, not "{value}"; write the '
            f'layer in the current format instead: `layer {{ type: "{value}" ... }}`'
        )
    if enum_name == "caffe.SolverParameter.SolverType" and value in SOLVER_TYPES.values():
        return f'`solver_type` is the old enum field; write `type: "{value}"` instead'
    enum = _find_enum(enum_name)
    accepted = ", ".join(v.name for v in enum.values) if enum else "?"
    return f"`{value}` is not a value of {enum_name}; expected one of {accepted}"


def _find_enum(full_name: str) -> EnumDescriptor | None:
    parent, _, short = full_name.rpartition(".")
    descriptor = _DESCRIPTORS.get(parent)
    if descriptor is not None:
        return descriptor.enum_types_by_name.get(short)
    return caffe_pb2.DESCRIPTOR.enum_types_by_name.get(short)


def _expected_string(word: str, source_line: str, column: int | None) -> str:
    prefix = source_line[: (column - 1) if column else 0]
    m = re.search(r"(\w+)\s*:\s*$", prefix)
    field = m.group(1) if m else None
    if field == "type" and word in V1_LAYER_TYPES:
        new = V1_LAYER_TYPES[word]
        return (
            f"a layer's type is a quoted string in the `layer {{}}` format; "
            f'write `type: "{new}"` instead of `type: {word}`'
        )
    if field == "type" and word in SOLVER_TYPES:
        return f'the solver type is a quoted string; write `type: "{SOLVER_TYPES[word]}"`'
    if field is not None:
        return f'`{field}` takes a quoted string; write `{field}: "{word}"`'
    return f"expected a quoted string but found `{word}`"

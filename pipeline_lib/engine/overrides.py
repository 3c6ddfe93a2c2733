"""Experiment settings on top of a solver file: SolverParameter fields by name, checked
against caffe.proto, and `batch_size` for the train net's data layers.

A workflow's config (`models: <name>: overrides:` and the points of a sweep) gives
plain values; `check_overrides` turns them into protobuf values or raises one line
naming where they came from, the field, what was found and what is allowed.
`apply_overrides` patches a SolverParameter in memory and returns the batch size to
give the train net, if any (engine/model_files.py applies both, once per reading).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor, text_format

from pipeline_lib.proto import caffe_pb2

BATCH_SIZE = "batch_size"

# Fields an override may not set, and why: the workflow decides them elsewhere.
_DECIDED_ELSEWHERE = {
    "max_iter": "the target's name sets it (results/<model>_iter_<N>)",
    "snapshot_prefix": "the workflow names snapshots after the target",
    "weights": "use the model's `weights:` key, which makes the file an input of the run",
    **{f: "the model's solver file names its nets; point `solver:` at another file"
       for f in ("net", "net_param", "train_net", "test_net", "train_net_param",
                 "test_net_param")},
}

_FIELDS = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
_FD = descriptor.FieldDescriptor
_INT_RANGES = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1), _FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_UINT32: (0, 2**32 - 1), _FD.TYPE_UINT64: (0, 2**64 - 1),
}


class OverrideError(ValueError):
    """An override naming no SolverParameter field, or with a value the field cannot hold."""


def _scalar(field: descriptor.FieldDescriptor, value: Any, where: str) -> Any:
    """`value` as the field's Python value, or OverrideError."""
    def bad(allowed: str) -> OverrideError:
        return OverrideError(f"{where}: {field.name} = {value!r} ({type(value).__name__}); "
                             f"{field.name} takes {allowed}")

    t = field.type
    if t in (_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise bad(f"a whole number from {lo} to {hi}")
        return value
    if t == _FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if t == _FD.TYPE_STRING:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if t == _FD.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values]
        if value not in names:
            raise bad(f"one of {', '.join(names)}")
        return field.enum_type.values_by_name[value].number
    if t == _FD.TYPE_MESSAGE:
        message = field.message_type._concrete_class()
        if not isinstance(value, str):
            raise bad(f"a {field.message_type.name} in prototxt text, e.g. \"stage: 'x'\"")
        try:
            text_format.Parse(value, message)
        except text_format.ParseError as err:
            raise bad(f"a {field.message_type.name} in prototxt text ({err})") from None
        return message
    raise bad("nothing settable here")  # pragma: no cover - caffe.proto has no other types


def check_overrides(overrides: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """The overrides as protobuf values by field name (lists for repeated fields), with
    `batch_size` as a positive int; `where` (e.g. "config.yaml models.lenet.overrides")
    starts every message."""
    checked: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name == BATCH_SIZE:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OverrideError(f"{where}: batch_size = {value!r}; batch_size (of the "
                                    "train net's data layers) takes a whole number >= 1")
            checked[name] = value
            continue
        if name in _DECIDED_ELSEWHERE:
            raise OverrideError(f"{where}: {name} cannot be overridden: "
                                f"{_DECIDED_ELSEWHERE[name]}")
        field = _FIELDS.get(name)
        if field is None:
            close = difflib.get_close_matches(str(name), [*_FIELDS, BATCH_SIZE], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise OverrideError(f"{where}: {name!r} is not a SolverParameter field{hint}; "
                                "allowed: the fields of SolverParameter in caffe.proto, "
                                "and batch_size")
        if field.is_repeated:
            values = value if isinstance(value, list) else [value]
            checked[name] = [_scalar(field, v, where) for v in values]
        else:
            checked[name] = _scalar(field, value, where)
    return checked


def apply_overrides(sp: caffe_pb2.SolverParameter, overrides: Mapping[str, Any] | None,
                    where: str = "overrides") -> int | None:
    """Set the overridden fields of `sp` in place; returns the train net's batch size when
    overridden (the caller patches the net: see model_files)."""
    checked = check_overrides(overrides, where)
    for name, value in checked.items():
        if name == BATCH_SIZE:
            continue
        field = _FIELDS[name]
        if field.is_repeated:
            sp.ClearField(name)
            if field.type == _FD.TYPE_MESSAGE:
                for v in value:
                    getattr(sp, name).add().CopyFrom(v)
            else:
                getattr(sp, name).extend(value)
        elif field.type == _FD.TYPE_MESSAGE:
            getattr(sp, name).CopyFrom(value)
        else:
            setattr(sp, name, value)
    return checked.get(BATCH_SIZE)

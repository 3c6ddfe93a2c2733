"""Read and write Caffe's protobuf files: text (.prototxt) and binary (.caffemodel etc.).

Text goes through google.protobuf's text_format only; its errors become
`PrototxtError` with ``path:line:column: what`` and a hint where we know the
fix. Nets and solvers are upgraded from old Caffe syntax on load, as Caffe
does (see `pipeline_lib.proto.upgrade`). Every write is atomic.
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path
from typing import TypeVar

from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message

from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.proto import caffe_pb2, hints
from pipeline_lib.proto.errors import BinaryProtoError, PrototxtError
from pipeline_lib.proto.upgrade import default_snapshot_prefix, upgrade_net, upgrade_solver

__all__ = [
    "BinaryProtoError",
    "PrototxtError",
    "parse_net_text",
    "parse_solver_text",
    "parse_text",
    "read_binary",
    "read_net",
    "read_net_binary",
    "read_solver",
    "read_text",
    "write_binary",
    "write_prototxt",
]

M = TypeVar("M", bound=Message)
StrPath = str | PathLike[str]

_LOCATION = re.compile(r"^\d+(?::\d+)? : ")


# --- text ---------------------------------------------------------------------


def parse_text(text: str, message_cls: type[M], filename: str = "<string>") -> M:
    """Parse prototxt `text` into a new `message_cls`, with errors naming `filename`."""
    message = message_cls()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        line, column = exc.GetLine(), exc.GetColumn()
        lines = text.splitlines()
        source_line = lines[line - 1] if line and 0 < line <= len(lines) else ""
        reason = _LOCATION.sub("", str(exc), count=1)
        # text_format quotes the whole source line before some messages.
        quoted = f"'{source_line}': "
        if source_line and reason.startswith(quoted):
            reason = reason[len(quoted) :]
        reason = hints.explain(reason, source_line, column)
        raise PrototxtError(filename, reason, line, column) from None
    return message


def read_text(path: StrPath, message_cls: type[M]) -> M:
    """Read a prototxt file into `message_cls`, without any upgrade."""
    return parse_text(_read_utf8(path), message_cls, str(path))


def parse_net_text(text: str, filename: str) -> caffe_pb2.NetParameter:
    """Parse a net prototxt and upgrade old syntax (V1 layers, input fields, ...); a net
    without layers is an error.

    `filename` names the text in errors and in the upgrade log line.
    """
    net = parse_text(text, caffe_pb2.NetParameter, filename)
    upgrade_net(net, filename)
    if not net.layer:
        raise PrototxtError(filename, "defines no layers; a net needs at least one "
                            "`layer { name: ... type: ... }`")
    return net


def parse_solver_text(text: str, filename: str) -> caffe_pb2.SolverParameter:
    """Parse a solver prototxt and upgrade old syntax (solver_type enum).

    Like Caffe's solver reader, a missing snapshot_prefix becomes `filename`
    without its extension, and a prefix naming a directory gets the file's stem.
    """
    solver = parse_text(text, caffe_pb2.SolverParameter, filename)
    upgrade_solver(solver, filename)
    inline = [(f, getattr(solver, f)) for f in ("net_param", "train_net_param")
              if solver.HasField(f)]
    inline += [(f"test_net_param #{i + 1}", p) for i, p in enumerate(solver.test_net_param)]
    for field, net in inline:
        if not (net.layer or net.layers or net.input):  # old nets: layers made on upgrade
            raise PrototxtError(filename, f"{field} defines no layers; a net needs at least "
                                "one `layer { name: ... type: ... }`")
    default_snapshot_prefix(solver, filename)
    return solver


def read_net(path: StrPath) -> caffe_pb2.NetParameter:
    """Read a net .prototxt, upgraded to the current format."""
    return parse_net_text(_read_utf8(path), str(path))


def read_solver(path: StrPath) -> caffe_pb2.SolverParameter:
    """Read a solver .prototxt, upgraded to the current format."""
    return parse_solver_text(_read_utf8(path), str(path))


def write_prototxt(message: Message, path: StrPath) -> None:
    """Write `message` as prototxt (Caffe's text layout), atomically."""
    atomic_write_bytes(path, text_format.MessageToString(message).encode("utf-8"))


def _read_utf8(path: StrPath) -> str:
    data = Path(path).read_bytes()
    if b"\0" in data[:4096]:
        raise PrototxtError(
            path,
            "is not a text protobuf (it holds NUL bytes); a binary file such as a "
            ".caffemodel holds weights: give it as weights (pcaffe --weights, "
            "read_net_binary), and the net's .prototxt as the model",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PrototxtError(
            path, f"is not UTF-8 text (byte 0x{data[exc.start]:02x})", line, column
        ) from None


# --- binary -------------------------------------------------------------------


def read_binary(path: StrPath, message_cls: type[M]) -> M:
    """Read a binary protobuf file (.caffemodel, .solverstate, .binaryproto).

    Raises BinaryProtoError naming the file when it is empty or its bytes do
    not parse as `message_cls` (truncated or corrupt).
    """
    data = Path(path).read_bytes()
    type_name = message_cls.DESCRIPTOR.full_name
    if not data:
        raise BinaryProtoError(path, f"is empty (0 bytes); expected a serialized {type_name}")
    message = message_cls()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise BinaryProtoError(
            path,
            f"is not a valid serialized {type_name} ({len(data)} bytes; truncated or "
            f"corrupt?): {exc}",
        ) from None
    return message


def read_net_binary(path: StrPath) -> caffe_pb2.NetParameter:
    """Read a binary NetParameter (.caffemodel), upgraded to the current format as Caffe does."""
    net = read_binary(path, caffe_pb2.NetParameter)
    upgrade_net(net, str(path))
    return net


def write_binary(message: Message, path: StrPath) -> None:
    """Write `message` serialized, atomically."""
    atomic_write_bytes(path, message.SerializeToString())

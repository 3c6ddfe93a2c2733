"""Errors raised when a prototxt or binary protobuf file cannot be read."""

from __future__ import annotations

from os import PathLike


class PrototxtError(ValueError):
    """A text protobuf file that does not parse, or cannot be upgraded.

    The message reads ``path:line:column: what`` (``path: what`` when no
    position applies); the parts are kept as attributes.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        reason: str,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.column = column
        where = self.path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {reason}")


class BinaryProtoError(ValueError):
    """A binary protobuf file (.caffemodel, .solverstate, .binaryproto) that does not parse."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

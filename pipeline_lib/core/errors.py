"""One-line messages for the errors a command-line user can meet.

`pcaffe` and `python -m pipeline_lib.data` end a failed command with one
message naming what went wrong and where, and exit status 1; `--debug`
shows the traceback instead. Our own errors (ValueError/RuntimeError
subclasses) already read that way; this module words the others: OS errors
(disk full, missing files), out of memory, the LMDB and LevelDB libraries,
undecodable protobuf or YAML. Anything else is a bug, and is said to be one.
"""

from __future__ import annotations

import errno
import os

__all__ = ["describe_error", "is_expected_error"]


def _library_errors() -> tuple[type[BaseException], ...]:
    """Error classes of optional libraries that may be installed."""
    found: list[type[BaseException]] = []
    try:
        import lmdb

        found.append(lmdb.Error)
    except ImportError:
        pass
    try:
        import plyvel

        found.append(plyvel.Error)
    except ImportError:
        pass
    try:
        import yaml

        found.append(yaml.YAMLError)
    except ImportError:
        pass
    from google.protobuf.message import Error as ProtobufError

    found.append(ProtobufError)
    return tuple(found)


def is_expected_error(exc: BaseException) -> bool:
    """True for errors caused by inputs or the machine (not by a bug in this code)."""
    expected = (OSError, ValueError, RuntimeError, KeyError, MemoryError, *_library_errors())
    return isinstance(exc, expected)


def _text(exc: BaseException) -> str:
    """The exception's message; bytes (plyvel's) decoded."""
    if exc.args and isinstance(exc.args[0], bytes):
        return exc.args[0].decode(errors="replace")
    return str(exc)


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or _text(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = ("no space left on device (the disk is full; files written before are kept, "
                  "free some space and rerun)")
    if where is None:
        return reason if exc.strerror else _text(exc)
    text = f"{os.fsdecode(where)}: {reason}"
    if exc.filename2 is not None:
        text += f" (to {os.fsdecode(exc.filename2)})"
    return text


def describe_error(exc: BaseException) -> str:
    """A one-message description of `exc` for a command-line user."""
    if isinstance(exc, MemoryError):
        detail = _text(exc)
        return (f"out of memory{': ' + detail if detail else ''} (try a smaller batch_size "
                "or layer, or free memory)")
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, KeyError) and exc.args and not isinstance(exc.args[0], str):
        return f"not found: {exc.args[0]!r}"
    if isinstance(exc, KeyError) and exc.args:
        return exc.args[0] if " " in exc.args[0] else f"not found: {exc.args[0]!r}"
    library = _library_errors()
    if isinstance(exc, library) and not isinstance(exc, (ValueError, RuntimeError)):
        module = type(exc).__module__.split(".")[0]
        name = {"lmdb": "LMDB", "plyvel": "LevelDB", "yaml": "YAML",
                "google": "protobuf"}.get(module, module)
        return f"{name} error: {' '.join(_text(exc).split())}"
    if is_expected_error(exc):
        return _text(exc) or type(exc).__name__
    return (f"internal error: {type(exc).__name__}: {_text(exc)} (a bug; rerun with --debug "
            "for the traceback and report it)")

"""Where log lines go: glog's classic line format for training, std logging for the rest.

Training logs in glog's classic line format, which Caffe's
`tools/extra/parse_log.py` reads.

Each line starts with

    I1123 08:24:34.466672  8827 solver.py:239] message

level letter (I, W, E, F), month and day (no year: newer glog's year breaks
parse_log.py), local time with microseconds, the thread id right-aligned in
five columns, the source file and line, then `] `. As in glog, a message with
several lines carries the prefix on its first line only, and a newline is
added unless the message ends with one.

`GlogLogger` writes to a file and/or stderr; `default_logger` is the process's
one. The data steps and applications log through Python's `logging`;
`configure_logging` sends those records to a file or stderr. On a terminal,
lines go above the live status line (core.progress), which is drawn again
below them; files get the lines alone.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from pipeline_lib.core.progress import live_line

LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def format_prefix(level: str, when: float, thread_id: int, source: str) -> str:
    """glog's classic prefix for a line logged at epoch time `when` (local time)."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    seconds = int(when)
    micros = int(round((when - seconds) * 1e6))
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    t = time.localtime(seconds)
    return (f"{level}{t.tm_mon:02d}{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{micros:06d} {thread_id:5d} {source}] ")


def format_line(level: str, message: str, when: float, thread_id: int, source: str) -> str:
    text = format_prefix(level, when, thread_id, source) + message
    return text if text.endswith("\n") else text + "\n"


def _caller_source(depth: int) -> str:
    frame = sys._getframe(depth)
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


class GlogLogger:
    """Writes glog-format lines to a file (created or appended) and/or stderr.

    `clock` and `thread_id` can be fixed for tests. Writes are serialised by a
    lock and flushed line by line, so a crash loses nothing already logged.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, stderr: bool = True,
                 stream: TextIO | None = None, append: bool = True,
                 clock: Callable[[], float] = time.time, thread_id: int | None = None):
        self.path = Path(path) if path is not None else None
        self._file: TextIO | None = None
        if self.path is not None:
            self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self._stream = stream if stream is not None else (sys.stderr if stderr else None)
        self._clock = clock
        self._thread_id = thread_id
        self._lock = threading.Lock()

    def log(self, level: str, message: str, *, source: str | None = None, depth: int = 1) -> None:
        """Log `message` at `level`; `source` defaults to the caller's file:line."""
        if source is None:
            source = _caller_source(depth + 1)
        tid = self._thread_id if self._thread_id is not None else threading.get_native_id()
        line = format_line(level, str(message), self._clock(), tid, source)
        with self._lock:
            if self._file is not None:
                self._file.write(line)
                self._file.flush()
            if self._stream is not None:
                live_line(self._stream).write(line)

    @property
    def stream(self) -> TextIO | None:
        """The stream (stderr, say) the lines go to besides the file, if any."""
        return self._stream

    def info(self, message: str, *, source: str | None = None) -> None:
        self.log("I", message, source=source, depth=2)

    def warning(self, message: str, *, source: str | None = None) -> None:
        self.log("W", message, source=source, depth=2)

    def error(self, message: str, *, source: str | None = None) -> None:
        self.log("E", message, source=source, depth=2)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> GlogLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_default: GlogLogger | None = None


def default_logger() -> GlogLogger:
    """The process-wide logger (stderr only until `set_default_logger` replaces it)."""
    global _default
    if _default is None:
        _default = GlogLogger()
    return _default


def set_default_logger(logger: GlogLogger) -> None:
    global _default
    _default = logger


def configure_logging(log_file: str | None = None, level: int = logging.INFO) -> None:
    """Send `logging` records to `log_file` (appending) or, without one, to stderr."""
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = _LiveStreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _LiveStreamHandler(logging.StreamHandler):
    """A stream handler that writes above the stream's live status line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            live_line(self.stream).write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

"""Progress reporting for long steps: a live line on a terminal, plain lines in files.

On a terminal, a step's status (done, rate, time left) is one line at the
bottom of stderr, redrawn in place; whatever else is written to that stream
through `live_line(stream).write` (log lines) appears above it, and the line
is drawn again below. Elsewhere (a Snakemake log file, CI, a pipe) nothing is
redrawn: `Progress` writes a few plain log lines instead (25%, 50%, 75%, each
with the time left, then done), and a training run's log holds only its
classic glog lines. The closing line ("done: N in T s") is always logged.
Several processes on one terminal (the jobs of one Snakemake run) take turns:
one draws its line while the others stay quiet (`TerminalClaim`).

Time left is the work still to do at the average rate since the step began,
which counts the step's slow parts (a training run's test passes) in their
share; the rate shown beside it is the recent one.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import weakref
from typing import TextIO

try:
    import fcntl
except ImportError:  # not POSIX: every process draws
    fcntl = None

CLEAR = "\r\033[K"  # carriage return, erase to the end of the line


def format_amount(n: float, unit: str) -> str:
    """`12.3 MB` for bytes (unit "B"), `1,234 records` otherwise."""
    if unit == "B":
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if n >= scale:
                return f"{n / scale:.1f} {name}"
        return f"{int(n)} B"
    return f"{int(n):,} {unit}"


def format_duration(seconds: float) -> str:
    """`4:05`, `1:02:03`; `?` when unknown (not finite or negative)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TerminalClaim:
    """Which process draws a live line on a terminal: the one holding a lock named after
    the terminal's device (in the temporary folder), taken without waiting and given up
    when its line is erased. A process that cannot tell (no device, no fcntl) draws."""

    def __init__(self, stream: TextIO):
        self._fd: int | None = None
        self.path: str | None = None
        try:
            device = os.fstat(stream.fileno()).st_rdev
            self.path = os.path.join(tempfile.gettempdir(),
                                     f"pcaffe-live-line-{os.getuid()}-{device}")
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            pass

    def hold(self) -> bool:
        """Whether this process may draw now (taking the claim when it is free)."""
        if self._fd is not None or self.path is None or fcntl is None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LiveLine:
    """The status line at the bottom of a terminal stream (does nothing on other streams).

    `show(text)` redraws it; `write(text)` puts text above it and draws it again
    below; `clear()` erases it. One object per stream (`live_line`), so that log
    lines and every status on that stream share it. While another process draws
    on the same terminal, `show` draws nothing (see TerminalClaim).
    """

    def __init__(self, stream: TextIO):
        self._stream = weakref.ref(stream)  # weak: the table of lines must not keep it open
        self.tty = is_terminal(stream)
        self.text = ""
        self.claim = TerminalClaim(stream) if self.tty else None

    @property
    def stream(self) -> TextIO:
        return self._stream()

    def show(self, text: str) -> None:
        if not self.tty or not self.claim.hold():
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        self.text = text if len(text) <= width else text[: max(width - 1, 0)] + "…"
        self.stream.write(CLEAR + self.text)
        self.stream.flush()

    def write(self, text: str) -> None:
        if self.tty and self.text:
            self.stream.write(CLEAR + text + self.text)
        else:
            self.stream.write(text)
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.text:
            self.stream.write(CLEAR)
            self.stream.flush()
        self.text = ""
        if self.claim is not None:
            self.claim.release()


_LINES: weakref.WeakKeyDictionary[TextIO, LiveLine] = weakref.WeakKeyDictionary()


def live_line(stream: TextIO) -> LiveLine:
    """The one LiveLine of `stream`."""
    line = _LINES.get(stream)
    if line is None:
        line = _LINES[stream] = LiveLine(stream)
    return line


class Rate:
    """Units done per second: recently (the last `window` updates) and since the start."""

    def __init__(self, done: float = 0, clock=time.monotonic, window: int = 20):
        self.clock = clock
        self.start = (clock(), done)
        self.recent: collections.deque[tuple[float, float]] = collections.deque(
            [self.start], maxlen=window)

    def update(self, done: float) -> None:
        self.recent.append((self.clock(), done))

    def _per_s(self, first: tuple[float, float]) -> float:
        (t0, d0), (t1, d1) = first, self.recent[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def current(self) -> float:
        return self._per_s(self.recent[0])

    def average(self) -> float:
        return self._per_s(self.start)

    def seconds_left(self, remaining: float) -> float:
        rate = self.average()
        return remaining / rate if rate > 0 else float("inf")


class Progress:
    """Count work done towards `total` (None when unknown) and report it.

    Use as a context manager; call `update(n)` as work completes.
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "items",
        logger: logging.Logger | None = None,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
        clock=time.monotonic,
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.done = 0
        self.logger = logger or logging.getLogger("pipeline_lib.core.progress")
        self.line = live_line(stream if stream is not None else sys.stderr)
        self.tty = self.line.tty
        self.min_interval = min_interval
        self.clock = clock
        self.rate = Rate(0, clock)
        self._start = clock()
        self._last_draw = -float("inf")
        self._next_quarter = 1
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    def seconds_left(self) -> float:
        if not self.total:
            return float("inf")
        return self.rate.seconds_left(max(self.total - self.done, 0))

    def update(self, n: int = 1) -> None:
        self.done += n
        self.rate.update(self.done)
        if self.tty:
            now = self.clock()
            if now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self.line.show(self.status())
        elif self.total:
            # Quarter lines only while unfinished: the closing line covers the rest.
            while (
                self._next_quarter < 4
                and self.done < self.total
                and self.done * 4 >= self.total * self._next_quarter
            ):
                done = format_amount(self.done, self.unit)
                if self.unit != "B":
                    done = f"{self.done:,}"
                self.logger.info(
                    "%s: %d%% (%s of %s, %s left)",
                    self.desc,
                    25 * self._next_quarter,
                    done,
                    format_amount(self.total, self.unit),
                    format_duration(self.seconds_left()),
                )
                self._next_quarter += 1

    def close(self, ok: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        elapsed = self.clock() - self._start
        self.line.clear()
        if ok:
            self.logger.info(
                "%s: done, %s in %.1f s", self.desc, format_amount(self.done, self.unit), elapsed
            )

    def status(self) -> str:
        """The live line's text."""
        rate = format_amount(self.rate.current(), self.unit) + "/s"
        if self.total:
            pct = 100.0 * self.done / self.total
            return (
                f"{self.desc}: {pct:5.1f}% {format_amount(self.done, self.unit)}"
                f" of {format_amount(self.total, self.unit)} ({rate},"
                f" {format_duration(self.seconds_left())} left)"
            )
        return f"{self.desc}: {format_amount(self.done, self.unit)} ({rate})"


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal (False for files, pipes and closed streams)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

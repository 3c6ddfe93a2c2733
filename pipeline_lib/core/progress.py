"""Progress reporting for long steps.

On a terminal, `Progress` redraws one status line on stderr. Elsewhere (a
Snakemake log file, CI) it writes a few plain log lines instead: 25%, 50%,
75%, done. The closing line ("done: N in T s") is always logged.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO


def format_amount(n: float, unit: str) -> str:
    """`12.3 MB` for bytes (unit "B"), `1,234 records` otherwise."""
    if unit == "B":
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if n >= scale:
                return f"{n / scale:.1f} {name}"
        return f"{int(n)} B"
    return f"{int(n):,} {unit}"


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
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.done = 0
        self.logger = logger or logging.getLogger("pipeline_lib.core.progress")
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream)
        self.min_interval = min_interval
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._next_quarter = 1
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self._draw()
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
                    "%s: %d%% (%s of %s)",
                    self.desc,
                    25 * self._next_quarter,
                    done,
                    format_amount(self.total, self.unit),
                )
                self._next_quarter += 1

    def close(self, ok: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        elapsed = time.monotonic() - self._start
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
        if ok:
            self.logger.info(
                "%s: done, %s in %.1f s", self.desc, format_amount(self.done, self.unit), elapsed
            )

    def _draw(self) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = format_amount(self.done / elapsed, self.unit) + "/s"
        if self.total:
            pct = 100.0 * self.done / self.total
            line = (
                f"{self.desc}: {pct:5.1f}% {format_amount(self.done, self.unit)}"
                f" of {format_amount(self.total, self.unit)} ({rate})"
            )
        else:
            line = f"{self.desc}: {format_amount(self.done, self.unit)} ({rate})"
        self.stream.write("\r\033[K" + line)
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

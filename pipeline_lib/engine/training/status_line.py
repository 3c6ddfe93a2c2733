"""A training run's live status line on a terminal: iteration, rate, smoothed loss, time left.

Drawn at the bottom of the terminal (core.progress.LiveLine) while the glog
lines scroll above it, and erased when the run ends. Only a terminal gets it:
`attach` returns None for a file or a pipe, so logs stay Caffe's lines alone.

Time left counts the iterations still to run at the average rate since the
line was attached, test passes included in their share; the rate beside it
is the recent one. The loss shown is an exponential moving average of the
per-iteration losses (bias-corrected at the start), steadier than the last
display's value whatever the solver's `average_loss`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from pipeline_lib.core.progress import Rate, format_duration, is_terminal, live_line

if TYPE_CHECKING:
    from pipeline_lib.engine.training.solver import Solver

LOSS_WEIGHT = 0.02  # the moving average's weight of the newest loss: about the last 50


class TrainingStatus:
    """Keeps the status line of `solver` up to date through its callbacks."""

    def __init__(self, solver: Solver, stream: TextIO, *, clock=time.monotonic,
                 min_interval: float = 0.2):
        self.solver = solver
        self.line = live_line(stream)
        self.clock = clock
        self.min_interval = min_interval
        self.rate = Rate(solver.iter, clock)
        self._sum = self._weight = 0.0
        self._last_draw = -float("inf")
        self._kind = ""
        solver.on_iteration.append(self._iteration)
        solver.on_test_batch.append(self._test_batch)

    @classmethod
    def attach(cls, solver: Solver, stream: TextIO | None, **kwargs) -> TrainingStatus | None:
        """A status line for `solver` on `stream` when it is a terminal, else None."""
        if stream is None or not is_terminal(stream):
            return None
        return cls(solver, stream, **kwargs)

    @property
    def smoothed_loss(self) -> float:
        return self._sum / self._weight if self._weight else float("nan")

    def seconds_left(self) -> float:
        return self.rate.seconds_left(max(self.solver.param.max_iter - self.solver.iter, 0))

    def _iteration(self, solver: Solver) -> None:
        self._sum = (1 - LOSS_WEIGHT) * self._sum + LOSS_WEIGHT * solver.iteration_loss
        self._weight = (1 - LOSS_WEIGHT) * self._weight + LOSS_WEIGHT
        self.rate.update(solver.iter)
        self._draw("train", self.status())

    def _test_batch(self, solver: Solver, net_id: int, done: int, total: int) -> None:
        self._draw("test", self.status(test=(net_id, done, total)))

    def _draw(self, kind: str, text: str) -> None:
        """Redraw at most every `min_interval` s, and at once when training turns to testing
        or back."""
        now = self.clock()
        if now - self._last_draw >= self.min_interval or kind != self._kind:
            self._last_draw, self._kind = now, kind
            self.line.show(text)

    def status(self, test: tuple[int, int, int] | None = None) -> str:
        """The line's text; `test` = (test net, batches done, batches) during a test pass."""
        it, last = self.solver.iter, self.solver.param.max_iter
        head = f"Iteration {it:,}/{last:,} ({100 * it / max(last, 1):.0f}%)"
        left = f"{format_duration(self.seconds_left())} left"
        if test is not None:
            net, done, total = test
            return f"{head}, testing net #{net}: batch {done}/{total}, {left}"
        loss = self.smoothed_loss
        loss_text = f", smoothed loss {loss:.4g}" if loss == loss else ""
        return f"{head}, {self.rate.current():.3g} it/s{loss_text}, {left}"

    def close(self) -> None:
        """Erase the line and stop following the solver."""
        self.line.clear()
        for hooks, fn in ((self.solver.on_iteration, self._iteration),
                          (self.solver.on_test_batch, self._test_batch)):
            if fn in hooks:
                hooks.remove(fn)

"""Action requests to a running solver: Caffe's SolverAction, and signals turned into them."""

from __future__ import annotations

import contextlib
import enum
import signal
from collections.abc import Iterator


class SolverAction(enum.IntEnum):
    """What an action request (e.g. a signal) asks of a running solver (Caffe's SolverAction)."""

    NONE = 0
    STOP = 1  # stop training; Solve still snapshots if snapshot_after_train
    SNAPSHOT = 2  # write a snapshot now and continue


def action_from_name(name: str) -> SolverAction:
    """Caffe's `-sigint_effect`/`-sighup_effect` words: stop, snapshot, none."""
    try:
        return {"stop": SolverAction.STOP, "snapshot": SolverAction.SNAPSHOT,
                "none": SolverAction.NONE}[name]
    except KeyError:
        raise ValueError(f"unknown signal effect {name!r}; expected stop, snapshot or none"
                         ) from None


class SignalHandler:
    """Turns SIGINT/SIGTERM and SIGHUP into solver actions, as Caffe's SignalHandler.

    Use as a context manager (installs handlers, restores the old ones) and
    pass it as the solver's `action_request`: each call returns and clears the
    pending action. Install from the main thread only.
    """

    def __init__(self, sigint_effect: str = "stop", sighup_effect: str = "snapshot"):
        self.effects = {signal.SIGINT: action_from_name(sigint_effect),
                        signal.SIGTERM: action_from_name(sigint_effect)}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = action_from_name(sighup_effect)
        self._pending: list[int] = []
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self._pending.append(signum)

    def __enter__(self) -> SignalHandler:
        for signum in self.effects:
            self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old.clear()

    def __call__(self) -> SolverAction:
        # Caffe checks SIGHUP before SIGINT; one pending signal is answered per call.
        if not self._pending:
            return SolverAction.NONE
        hup = getattr(signal, "SIGHUP", None)
        signum = hup if hup in self._pending else self._pending[0]
        self._pending.remove(signum)
        return self.effects[signum]


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends: for the short steps after
    training (putting the final files in place) that a signal must not cut in two. A
    signal that came meanwhile is raised again, to the handler before, when the block
    ends. (Python's handlers run in the main thread whichever thread the signal reached,
    so swapping handlers holds signals where a thread's signal mask would not.)"""
    held = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP")
                                              else [])
    came: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: came.append(signum))
                for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)

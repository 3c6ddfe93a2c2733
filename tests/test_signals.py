"""Signals while the final files are put in place are held until they are whole."""

from __future__ import annotations

import os
import signal

import pytest

from pipeline_lib.engine.training.signals import signals_held


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_inside_signals_held_is_delivered_when_the_block_ends(signum):
    seen: list[str] = []
    previous = signal.signal(signum, lambda *_: seen.append("signal"))
    try:
        with signals_held():
            os.kill(os.getpid(), signum)
            seen.append("block still running")
        seen.append("after the block")
    finally:
        signal.signal(signum, previous)
    assert seen == ["block still running", "signal", "after the block"]

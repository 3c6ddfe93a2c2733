"""Signals while the final files are put in place are held until they are whole."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from pipeline_lib.engine.training.signals import signals_held


@pytest.mark.parametrize("other_thread", [False, True], ids=["alone", "beside-a-thread"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_inside_signals_held_is_delivered_when_the_block_ends(signum, other_thread):
    """A thread beside the main one (OpenBLAS's, a data thread) may be the one the kernel
    hands the signal to: it must be held all the same."""
    seen: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait) if other_thread else None
    previous = signal.signal(signum, lambda *_: seen.append("signal"))
    try:
        if thread is not None:
            thread.start()
        with signals_held():
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # bytecodes, at which Python runs pending handlers
                pass
            seen.append("block still running")
        seen.append("after the block")
    finally:
        signal.signal(signum, previous)
        stop.set()
        if thread is not None:
            thread.join()
    assert seen == ["block still running", "signal", "after the block"]

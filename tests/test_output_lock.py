"""The output lock: one holder at a time, its pid named, the file gone on release."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline_lib.engine.training.output_lock import LOCK_NAME, OutputBusyError, OutputLock


def test_second_holder_is_refused_naming_the_first(tmp_path):
    with OutputLock(tmp_path, Path("results/x_iter_10")):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(OutputBusyError, match=rf"^results/x_iter_10: .*\(pid {os.getpid()}\)"):
            with OutputLock(tmp_path, Path("results/x_iter_10")):
                pass
    assert not (tmp_path / LOCK_NAME).exists()
    with OutputLock(tmp_path, Path("results/x_iter_10")):  # free again
        pass


def test_a_file_left_by_a_killed_holder_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text("999999\n")  # no process holds a lock on it
    with OutputLock(tmp_path, Path("s")):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"

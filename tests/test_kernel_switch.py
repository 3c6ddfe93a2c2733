"""engine/kernels decides alone whether compiled loops run: only for NumPy arrays, only when
numba is installed, not when switched off; otherwise every caller keeps NumPy's code."""

from __future__ import annotations

import importlib.util
import types

import numpy as np
import pytest

from pipeline_lib.engine import kernels


@pytest.fixture
def fresh(monkeypatch):
    """kernels as if not yet loaded in this process (restored afterwards)."""
    monkeypatch.setattr(kernels, "_tried", False)
    monkeypatch.setattr(kernels, "_kernels", None)
    monkeypatch.setattr(kernels, "_enabled", True)
    return monkeypatch


def test_without_numba_the_numpy_code_runs(fresh):
    real = importlib.util.find_spec
    fresh.setattr(importlib.util, "find_spec",
                  lambda name, *a: None if name == "numba" else real(name, *a))
    assert kernels.compiled(np) is None


def test_only_numpy_arrays_get_compiled_loops(fresh):
    assert kernels.compiled(types.ModuleType("cupy")) is None


def test_switched_off_the_numpy_code_runs(fresh):
    pytest.importorskip("numba")
    assert kernels.compiled(np) is not None
    kernels.set_enabled(False)
    assert kernels.compiled(np) is None

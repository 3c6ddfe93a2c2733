"""Compiled CPU loops (numba) for the work of a step that is not a GEMM or a plain copy.

Only where they beat NumPy, measured layer by layer on LeNet: pooling (MAX and
AVE, forward and backward), col2im and the SGD update. im2col stays NumPy's:
its strided copies are memcpy runs that compiled loops did not beat.

`compiled(xp)` is the one place that decides: it returns this module's kernels
when the arrays are NumPy's, numba imports and the switch is on (environment
PIPELINE_LIB_NUMBA=0 turns it off; `set_enabled` for tests and benchmarks),
else None, and the caller keeps its NumPy code. numba is an optional extra
(`pip install '.[fast]'`); kernels compile on first use and are cached on disk
(`cache=True`), so only a first run on a machine pays the compile.

Every kernel gives the same bits as the NumPy code it replaces: the same float
operations on the same values in the same order (no fastmath, hence no fused
multiply-add; NumPy's scalar arguments are passed as the array dtype, as NumPy
casts a Python float), so a model trained with and without numba is the same
file. They release the GIL (`nogil`), so the layers run them on parts of a batch
in several lanes at once (core/lanes.py).
"""

from __future__ import annotations

import importlib.util
import os
import types

import numpy as np

_enabled = os.environ.get("PIPELINE_LIB_NUMBA", "1") != "0"
_kernels: types.ModuleType | None = None
_tried = False


def set_enabled(flag: bool) -> None:
    """Use the compiled kernels (when numba is installed) or always NumPy's code."""
    global _enabled
    _enabled = bool(flag)


def compiled(xp) -> types.ModuleType | None:
    """The kernels (engine/numba_kernels) for arrays of `xp`, or None: NumPy's code then."""
    if not _enabled or xp is not np:
        return None
    return _load()


def _load() -> types.ModuleType | None:
    global _kernels, _tried
    if not _tried:
        _tried = True
        if importlib.util.find_spec("numba") is not None:
            from pipeline_lib.engine import numba_kernels

            _kernels = numba_kernels
    return _kernels

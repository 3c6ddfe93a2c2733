"""Shared fixtures: the array-module (`xp`) fixture and test paths."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pipeline_lib.core import backend  # noqa: E402

TESTS = Path(__file__).parent
DATA = TESTS / "data"

try:
    import plyvel  # noqa: F401
except ImportError:
    HAVE_PLYVEL = False
else:
    HAVE_PLYVEL = True
NO_LEVELDB = "LevelDB needs the [leveldb] extra (pip install 'pipeline-lib[leveldb]')"


def pytest_collection_modifyitems(config, items):
    """Without plyvel, skip the LevelDB tests: those marked `leveldb` and every test or
    parameter whose name says leveldb."""
    if HAVE_PLYVEL:
        return
    skip = pytest.mark.skip(reason=NO_LEVELDB)
    for item in items:
        if "leveldb" in item.nodeid.lower() or item.get_closest_marker("leveldb"):
            item.add_marker(skip)


def _xp_params():
    params = [pytest.param(np, id="numpy")]
    params.append(pytest.param("cupy", id="cupy", marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not backend.gpu_available(), reason="no CuPy/CUDA device"),
    ]))
    return params


@pytest.fixture(params=_xp_params())
def xp(request):
    """NumPy, and CuPy where a GPU is present."""
    if request.param == "cupy":
        return backend.Device.GPU.xp
    return request.param


@pytest.fixture(params=[False, True], ids=["nchw", "channels_last"])
def channels_last(request):
    """Blob memory layout for layers that accept channels-last blobs (see Blob)."""
    return request.param


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """CLIs run in-process install root log handlers on pytest's captured streams; undo that."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)

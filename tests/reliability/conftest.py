"""Fixtures for the fault-injection tests: a small training run folder, a tiny disk."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reliability.rel_util import GOLDEN, make_run_dir


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A folder with a small net, its solver and its own LMDB copies (see rel_util)."""
    return make_run_dir(tmp_path / "run")


@pytest.fixture
def golden_lmdb(tmp_path) -> Path:
    """A copy of the 100-image MNIST LMDB written by Caffe."""
    return Path(shutil.copytree(GOLDEN / "caffe_train100_lmdb", tmp_path / "golden_lmdb"))


@pytest.fixture
def small_disk(tmp_path):
    """Factory: a tmpfs of `kib` KiB mounted in tmp_path (skips where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(kib: int, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(point)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)

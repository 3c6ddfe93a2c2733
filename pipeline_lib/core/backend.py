"""The array-module seam: NumPy on the CPU, CuPy (optional) on the GPU.

This is the only module that imports cupy. Everything else asks for `xp`
and calls `xp.*`; data moves to the host only at I/O edges via `to_host`.
"""

from __future__ import annotations

import enum
import types

import numpy as np

try:  # CuPy is an optional extra ("pip install .[gpu]").
    import cupy as _cupy
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # pragma: no cover - depends on the machine
        return False


class Device(enum.Enum):
    """Where a net runs, named as Caffe's `solver_mode`: CPU (NumPy) or GPU (CuPy)."""

    CPU = "CPU"
    GPU = "GPU"

    @classmethod
    def named(cls, name: str) -> Device:
        """The device of a `solver_mode` name, in any case ("CPU", "gpu")."""
        mode = name.upper()
        if mode not in cls.__members__:
            raise ValueError(f"unknown solver_mode {mode!r}: expected CPU or GPU")
        return cls[mode]

    @property
    def xp(self) -> types.ModuleType:
        """The array module of this device."""
        if self is Device.CPU:
            return np
        if not gpu_available():
            raise RuntimeError(
                "solver_mode GPU needs CuPy and a CUDA device; install the 'gpu' extra "
                "(pip install '.[gpu]') or set solver_mode: CPU"
            )
        return _cupy


def get_array_module(*arrays) -> types.ModuleType:
    """NumPy or CuPy, whichever owns the given arrays."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def to_host(array) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def is_gpu_array(array) -> bool:
    return _cupy is not None and isinstance(array, _cupy.ndarray)


def gpu_count() -> int:
    """How many CUDA devices CuPy sees (0 without CuPy)."""
    if _cupy is None:
        return 0
    try:
        return int(_cupy.cuda.runtime.getDeviceCount())
    except Exception:  # pragma: no cover - depends on the machine
        return 0


def use_gpu(device_id: int) -> None:
    """Make CUDA device `device_id` the current one for new CuPy arrays."""
    count = gpu_count()
    if not 0 <= device_id < count:
        raise ValueError(f"GPU {device_id} does not exist: "
                         + (f"this machine has {count} (0..{count - 1})" if count
                            else "no CUDA device is visible (CuPy and a GPU are needed)"))
    _cupy.cuda.Device(device_id).use()


def gpu_properties(device_id: int) -> dict[str, object]:
    """The CUDA properties of a device (name, memory, compute capability, ...)."""
    if not 0 <= device_id < gpu_count():
        raise ValueError(f"GPU {device_id} does not exist ({gpu_count()} visible)")
    props = _cupy.cuda.runtime.getDeviceProperties(device_id)
    return {k: (v.decode(errors="replace") if isinstance(v, bytes) else v)
            for k, v in props.items()}


def scatter_add(target, indices, values) -> None:
    """target[indices] += values, adding repeated indices up (numpy.add.at), on either device."""
    if is_gpu_array(target):
        import cupyx

        cupyx.scatter_add(target, indices, values)
    else:
        np.add.at(target, indices, values)

"""The process-wide mode of the Python API, as pycaffe keeps it: CPU or GPU, which GPU,
and the random seed of the nets and solvers made next.

`set_mode_cpu()` is the start (as in pycaffe); `set_mode_gpu()` needs CuPy and a CUDA
device, checked when the next net is made. `set_device(i)` picks the GPU. The seed
seeds each new net's random generator, and a solver's whose `random_seed` is unset.
"""

from __future__ import annotations

from pipeline_lib.core.backend import Device, use_gpu

_device = Device.CPU
_gpu_id = 0
_seed: int | None = None


def set_mode_cpu() -> None:
    global _device
    _device = Device.CPU


def set_mode_gpu() -> None:
    global _device
    _device = Device.GPU


def set_device(device_id: int) -> None:
    """Use GPU `device_id` (checked now; it takes effect in GPU mode)."""
    global _gpu_id
    if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
        raise ValueError(f"set_device: expected a GPU number >= 0, got {device_id!r}")
    use_gpu(device_id)
    _gpu_id = device_id


def set_random_seed(seed: int) -> None:
    global _seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"set_random_seed: expected an integer, got {seed!r}")
    _seed = seed


def device() -> Device:
    """The device new nets and solvers use (selecting the GPU chosen by set_device)."""
    if _device is Device.GPU:
        Device.GPU.xp  # noqa: B018 - fails with one clear line without CuPy or a GPU
        use_gpu(_gpu_id)
    return _device


def seed(default: int = 0) -> int:
    """The seed given to set_random_seed, else `default`."""
    return default if _seed is None else _seed


def seed_was_set() -> bool:
    return _seed is not None

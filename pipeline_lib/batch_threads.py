"""Elementwise NumPy work split over the batch, one slice per core.

BLAS spreads the GEMMs over every core, but NumPy's own loops (pooling,
im2col, col2im) run on one. Those loops release the GIL, so running one slice
of the batch per thread uses the other cores too. Each slice writes its own
part of the outputs and no value depends on how the batch was cut, so results
are bit-identical for any thread count. CuPy arrays are left to the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Fewer items than this per slice are not worth a thread.
MIN_PER_SLICE = 4

_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None


def thread_count() -> int:
    """Threads for batch work: PIPELINE_THREADS, else the BLAS thread count the environment
    sets (Snakemake sets it to a job's threads), else the CPUs this process may use."""
    for name in ("PIPELINE_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name)
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_pid
    # a forked child inherits the object but not its threads: make a new one
    if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < workers:
        _pool = ThreadPoolExecutor(workers, thread_name_prefix="batch")
        _pool_pid = os.getpid()
    return _pool


def over_batch(xp, n: int, work: Callable[[int, int], None],
               min_per_slice: int = MIN_PER_SLICE) -> None:
    """Call `work(start, stop)` on consecutive slices covering range(n), in parallel on NumPy."""
    slices = min(thread_count(), n // min_per_slice) if xp is np else 1
    if slices <= 1:
        work(0, n)
        return
    bounds = [n * k // slices for k in range(slices + 1)]
    pool = _executor(slices - 1)
    futures = [pool.submit(work, bounds[k], bounds[k + 1]) for k in range(1, slices)]
    try:
        work(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()

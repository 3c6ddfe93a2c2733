"""The process's BLAS thread count, set explicitly rather than left to the environment.

A run's GEMMs use BLAS's thread pool; everything else (the compiled kernels of
engine/kernels, NumPy's loops) runs on the calling thread between them, so the
two take turns on the cores. The count also decides the bits of a model (BLAS
sums in another order with another count), so a training job fixes it: to the
rule's `threads` under Snakemake. threadpoolctl (extra [fast]) sets it at run
time; without it the environment (OPENBLAS_NUM_THREADS, ...) decides, as
Snakemake also sets it for each job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def blas_threads(count: int | None) -> Iterator[None]:
    """BLAS limited to `count` threads inside the block; None leaves it as it is."""
    if count is None:
        yield
        return
    if count < 1:
        raise ValueError(f"BLAS thread count must be at least 1, got {count}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=count, user_api="blas"):
        yield

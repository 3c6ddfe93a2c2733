"""The cores a run uses, set explicitly rather than left to the environment.

A run with `count` threads splits its heavy work over `count` lanes
(core/lanes: images of a batch, rows and columns of GEMMs) and keeps BLAS on
one thread inside each lane, so that lanes and BLAS's own pool never compete
for the cores. Since the lanes split work without changing any value's
operations, the thread count does not decide a model's bits. Under Snakemake
the count is the rule's `threads`. threadpoolctl sets BLAS's threads at run time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from threadpoolctl import threadpool_limits

from pipeline_lib.core.lanes import lanes


@contextlib.contextmanager
def compute_threads(count: int | None) -> Iterator[None]:
    """`count` lanes and single-threaded BLAS inside the block; None leaves both as they are."""
    if count is None:
        yield
        return
    if count < 1:
        raise ValueError(f"thread count must be at least 1, got {count}")
    with threadpool_limits(limits=1, user_api="blas"), lanes(count):
        yield


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), the default thread count of a run."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1

"""A step's CPU work split over the job's cores: contiguous ranges, one per lane.

`split(xp, n, work)` calls `work(start, stop)` on consecutive parts of
range(n), one part per lane, the calling thread taking the first, and returns
when all are done. Lanes are threads of this process: they only help where the
work releases the GIL (NumPy's loops, BLAS calls, the nogil compiled kernels),
and BLAS runs single-threaded meanwhile (core/threads sets both), so that the
two kinds of parallel work never compete for the cores.

The callers split so that every value is computed by the same operations
whatever the number of parts (images of a batch, rows of a GEMM's result,
columns of a weight gradient): a model's bits do not depend on the thread
count. CuPy arrays, one lane and work called from inside a lane run as one part.
Work must only write into arrays it was handed: anything made on first use (a
blob's diff, a scratch buffer) is made by the caller before it splits.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_count = 1
_pool: ThreadPoolExecutor | None = None
_inside = threading.local()


def count() -> int:
    """The number of lanes now (1: everything on the calling thread)."""
    return _count


@contextlib.contextmanager
def lanes(number: int) -> Iterator[None]:
    """Split work over `number` lanes inside the block."""
    global _count, _pool
    if number < 1:
        raise ValueError(f"lane count must be at least 1, got {number}")
    before, before_pool = _count, _pool
    if number > 1 and (_pool is None or _pool._max_workers < number - 1):
        _pool = ThreadPoolExecutor(number - 1, thread_name_prefix="lane")
    _count = number
    try:
        yield
    finally:
        if _pool is not before_pool and _pool is not None:
            _pool.shutdown()
        _count, _pool = before, before_pool


def bounds(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """range(n) cut into at most `parts` contiguous pieces of near-equal size, in order,
    every cut at a multiple of `align`."""
    cuts = sorted({align * round(n * k / (parts * align)) for k in range(1, parts)} - {0})
    edges = [0] + [c for c in cuts if c < n] + [n]
    return list(zip(edges[:-1], edges[1:]))


def split(xp, n: int, work: Callable[[int, int], None], grain: int = 1,
          align: int = 1) -> None:
    """work(start, stop) over parts of range(n), in parallel on NumPy arrays.

    `grain`: the least size worth a part of its own (work too small to pay a
    thread's wake-up runs whole); `align`: cuts fall on its multiples.
    """
    parts = min(_count, n // max(grain, align, 1)) if xp is np else 1
    if parts <= 1 or getattr(_inside, "busy", False) or _pool is None:
        if n > 0:
            work(0, n)
        return
    pieces = bounds(n, parts, align)
    futures = [_pool.submit(_in_lane, work, a, b) for a, b in pieces[1:]]
    try:
        _in_lane(work, *pieces[0])
    finally:
        for f in futures:
            f.result()


def _in_lane(work: Callable[[int, int], None], start: int, stop: int) -> None:
    _inside.busy = True
    try:
        work(start, stop)
    finally:
        _inside.busy = False


#: values per part of elementwise work at least: below, a wake-up costs more than it saves
ELEMENTWISE_GRAIN = 1 << 16


def _flat_views(arrays) -> list | None:
    """1-D views of arrays of one shape laid out alike in memory (C order, or channels-last
    4-D), so that equal ranges hold the same elements; None otherwise."""
    views, orders = [], set()
    for a in arrays:
        if a.flags.c_contiguous:
            orders.add("C")
            views.append(a.reshape(-1))
        elif a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous:
            orders.add("NHWC")
            views.append(a.transpose(0, 2, 3, 1).reshape(-1))
        else:
            return None
    if len(orders) != 1 or len({a.shape for a in arrays}) != 1:
        return None
    return views


def elementwise(xp, work: Callable[..., None], *arrays) -> None:
    """work(*parts) on equal ranges of arrays of one shape, element by element; or
    work(*arrays) once when they are not NumPy's or not laid out alike."""
    views = _flat_views(arrays) if xp is np else None
    if views is None:
        work(*arrays)
        return
    split(xp, views[0].size, lambda a, b: work(*(v[a:b] for v in views)), ELEMENTWISE_GRAIN)


#: GEMM splits cut rows or columns at multiples of this: BLAS kernels work on tiles of
#: rows and columns, and a cut inside a tile could hand a row to another kernel.
GEMM_ALIGN = 8
#: ... and give every part at least this many multiply-adds (BLAS takes another path
#: for small products; below it a split is not worth a thread's wake-up either).
GEMM_MIN_WORK = 1 << 21


def gemm_grain(other_dims: int) -> int:
    """The least rows (or columns) of a GEMM part, the product of the other two sizes given."""
    return max(GEMM_ALIGN, -(-GEMM_MIN_WORK // max(other_dims, 1)))


def matmul(xp, a, b, out) -> None:
    """out = a @ b for 2-D arrays, the rows of `out` split over the lanes.

    Cuts fall on tile boundaries and parts are large (GEMM_ALIGN, GEMM_MIN_WORK),
    so each row is computed as in one whole GEMM: the bits do not depend on the
    split (tests compare them across lane counts).
    """
    split(xp, a.shape[0], lambda r0, r1: xp.matmul(a[r0:r1], b, out=out[r0:r1]),
          grain=gemm_grain(a.shape[1] * b.shape[1]), align=GEMM_ALIGN)

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
import functools
import os
import threading
from collections.abc import Callable, Iterator

import numpy as np

_count = 1
_workers: list[_Worker] = []
_inside = threading.local()
_owner = threading.Lock()  # held by the thread whose work the lanes are doing


class _Worker:
    """A thread that runs one part at a time, handed over through two locks (a few
    microseconds a hand-over, where a pool's futures take tens)."""

    def __init__(self, index: int) -> None:
        self.index = index  # the lane it is: the part of a split it takes
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task: tuple | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="lane", daemon=True).start()

    def _run(self) -> None:
        _inside.busy = True
        _inside.lane = self.index
        while True:
            self._go.acquire()
            if self._task is None:
                return
            work, start, stop = self._task
            try:
                work(start, stop)
            except BaseException as e:  # handed to the caller in wait()
                self._error = e
            self._done.release()

    def start(self, work: Callable[[int, int], None], start: int, stop: int) -> None:
        self._task = (work, start, stop)
        self._go.release()

    def wait(self) -> None:
        self._done.acquire()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        self._task = None
        self._go.release()


def count() -> int:
    """The number of lanes now (1: everything on the calling thread)."""
    return _count


def lane() -> int:
    """Which lane the calling thread is, 0 to count() - 1 (0 outside the lane threads):
    for work that keeps scratch of its own per lane."""
    return getattr(_inside, "lane", 0)


@contextlib.contextmanager
def lanes(number: int) -> Iterator[None]:
    """Split work over `number` lanes inside the block."""
    global _count, _workers
    if number < 1:
        raise ValueError(f"lane count must be at least 1, got {number}")
    before, before_workers = _count, _workers
    alive = _live_workers()
    if number - 1 > len(alive):
        _workers = alive + [_Worker(k) for k in range(len(alive) + 1, number)]
    _count = number
    try:
        yield
    finally:
        for w in _workers:
            if w not in before_workers:
                w.stop()
        _count, _workers = before, before_workers


def _live_workers() -> list[_Worker]:
    """The lane threads of this process (a forked child has none of its parent's)."""
    return [] if _forked else _workers


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


_forked = False  # in a child forked from this process: the lane threads stayed behind
os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.lru_cache(maxsize=1024)
def bounds(n: int, parts: int, align: int = 1) -> tuple[tuple[int, int], ...]:
    """range(n) cut into at most `parts` contiguous pieces of near-equal size, in order,
    every cut at a multiple of `align`."""
    cuts = sorted({align * round(n * k / (parts * align)) for k in range(1, parts)} - {0})
    edges = [0] + [c for c in cuts if c < n] + [n]
    return tuple(zip(edges[:-1], edges[1:]))


def split(xp, n: int, work: Callable[[int, int], None], grain: int = 1,
          align: int = 1) -> None:
    """work(start, stop) over parts of range(n), in parallel on NumPy arrays.

    `grain`: the least size worth a part of its own (work too small to pay a
    thread's wake-up runs whole); `align`: cuts fall on its multiples.
    """
    parts = min(_count, n // max(grain, align, 1)) if xp is np else 1
    helpers = _live_workers()[:parts - 1]
    if (len(helpers) < parts - 1 or parts <= 1 or getattr(_inside, "busy", False)
            or not _owner.acquire(blocking=False)):
        if n > 0:  # whole: one lane, small work, inside a lane, or another thread splitting
            work(0, n)
        return
    try:
        pieces = bounds(n, parts, align)
        helpers = helpers[:len(pieces) - 1]
        for worker, (a, b) in zip(helpers, pieces[1:]):
            worker.start(work, a, b)
        try:
            _in_lane(work, *pieces[0])
        finally:
            errors = []
            for worker in helpers:
                try:
                    worker.wait()
                except BaseException as e:
                    errors.append(e)
            if errors:
                raise errors[0]
    finally:
        _owner.release()


def together(xp, tasks: list[Callable[[], None]], work: int) -> None:
    """Independent tasks at once, one per lane (in order on one lane, and when `work`,
    the multiply-adds of each, is below GEMM_MIN_WORK: a wake-up would cost more)."""
    split(xp, len(tasks), lambda a, b: [task() for task in tasks[a:b]],
          grain=1 if work >= GEMM_MIN_WORK else len(tasks) + 1)


def _in_lane(work: Callable[[int, int], None], start: int, stop: int) -> None:
    _inside.busy = True
    try:
        work(start, stop)
    finally:
        _inside.busy = False


#: values per part of elementwise work at least: below, a wake-up costs more than it saves
ELEMENTWISE_GRAIN = 1 << 16
#: the same for windows over images (pooling reads each value once or a few times)
POOL_GRAIN = 1 << 17


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
    """out = a @ b for 2-D arrays, split over the lanes by rows of `out` when `a` is the
    larger operand, else by columns, so that each lane reads a part of the larger one.

    Cuts fall on tile boundaries and parts are large (GEMM_ALIGN, GEMM_MIN_WORK),
    so each value is computed as in one whole GEMM: the bits do not depend on the
    split (tests compare them across lane counts).
    """
    (m, k), n = a.shape, b.shape[1]
    if m >= n:
        split(xp, m, lambda r0, r1: xp.matmul(a[r0:r1], b, out=out[r0:r1]),
              grain=gemm_grain(k * n), align=GEMM_ALIGN)
    else:
        split(xp, n, lambda c0, c1: xp.matmul(a, b[:, c0:c1], out=out[:, c0:c1]),
              grain=gemm_grain(m * k), align=GEMM_ALIGN)


#: a sum over many rows (a weight gradient over a batch) is cut into at most this many
#: blocks, whatever the lane count, so that lanes can share it and the bits stay the same
REDUCE_BLOCKS = 4


def reduction_blocks(rows: int, work_per_row: int) -> tuple[tuple[int, int], ...]:
    """Fixed blocks of `rows` for a sum split over lanes: as many as REDUCE_BLOCKS allows
    with each at least GEMM_MIN_WORK multiply-adds, all but the last of one size (so that
    cuts at its multiples fall between blocks: `split(..., align=blocks[0][1])`)."""
    blocks = max(min(REDUCE_BLOCKS, rows, rows * work_per_row // GEMM_MIN_WORK), 1)
    size = max(-(-rows // blocks), 1)
    return tuple((a, min(a + size, rows)) for a in range(0, rows, size))

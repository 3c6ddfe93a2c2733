"""Blob: an n-d array of values and of gradients, on NumPy or CuPy.

A 4-D blob may keep its values channels-last in memory (`channels_last`, set
by the net where producer and consumers gain from it): `data` and `diff` are
then NCHW-shaped views of (N, H, W, C) arrays, so every layer reads and writes
them as NCHW while the ones that care take `nhwc(blob.data)` for free. A
reshape of such a view may be a copy, so only layers that never write through
one may read these blobs: they say so with `accepts_channels_last`.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core import lanes


class Blob:
    """An n-d array of values (`data`) and of gradients (`diff`, made zeroed on first use,
    so that nets which only run forward never hold one).

    `clear_diff` zeroes the diff lazily: the zeros are written when the diff is next
    read, unless a writer first takes it with `overwrite_diff` (a weight gradient's
    GEMM writing straight into it) and so saves the pass that zeroes it and the one
    that adds to the zeros.
    """

    def __init__(self, shape=(), xp=np, dtype=np.float32, name: str = ""):
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.name = name
        self.channels_last = False  # wanted layout, applied by reshape
        self._allocated_channels_last = False
        self.data = xp.zeros(tuple(map(int, shape)), self.dtype)
        self._diff = None
        self._zeros_pending = False

    @property
    def diff(self):
        if self._diff is None:
            self._diff = self._zeros(self.shape, self._allocated_channels_last)
        elif self._zeros_pending:
            lanes.elementwise(self.xp, lambda d: d.fill(0), self._diff)
        self._zeros_pending = False
        return self._diff

    @diff.setter
    def diff(self, value) -> None:
        self._diff = value
        self._zeros_pending = False

    def clear_diff(self) -> None:
        """Make the diff zeros (written when it is next read; see `overwrite_diff`)."""
        self._zeros_pending = self._diff is not None

    def overwrite_diff(self) -> bool:
        """True when the diff holds only cleared zeros: the caller then writes every value
        of `diff` instead of adding to it (0 + x is x; a -0 stays -0 where Caffe's sum
        gives +0). False: the caller adds, as always."""
        fresh = self._zeros_pending or self._diff is None
        if fresh and self._diff is None:
            self._diff = self._zeros(self.shape, self._allocated_channels_last)
        self._zeros_pending = False
        return fresh

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def count(self) -> int:
        return int(self.data.size)

    @property
    def num(self) -> int:
        return self._legacy_axis(0)

    @property
    def channels(self) -> int:
        return self._legacy_axis(1)

    @property
    def height(self) -> int:
        return self._legacy_axis(2)

    @property
    def width(self) -> int:
        return self._legacy_axis(3)

    def _legacy_axis(self, axis: int) -> int:
        """Caffe's 4-axis accessors: an axis the blob lacks counts as 1."""
        if self.data.ndim > 4:
            raise ValueError(f"blob {self.name!r} has {self.data.ndim} axes; num/channels/"
                             "height/width need 4 or fewer (use shape)")
        return int(self.data.shape[axis]) if axis < self.data.ndim else 1

    def reshape(self, *shape) -> None:
        """Reallocate (zeroed) when the shape or layout changes; keep the arrays otherwise.

        The shape is one sequence, `reshape((2, 3))`, or the dimensions, `reshape(2, 3)`."""
        if len(shape) == 1 and not isinstance(shape[0], int | np.integer):
            shape = shape[0]
        shape = tuple(map(int, shape))
        last = self.channels_last and len(shape) == 4
        if shape != self.shape or last != self._allocated_channels_last:
            self.data = self._zeros(shape, last)
            self._diff = None
            self._zeros_pending = False
            self._allocated_channels_last = last

    def _zeros(self, shape: tuple[int, ...], channels_last: bool):
        if not channels_last:
            return self.xp.zeros(shape, self.dtype)
        n, c, h, w = shape
        return self.xp.zeros((n, h, w, c), self.dtype).transpose(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"Blob({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def nhwc(array):
    """An NCHW array seen channels-last: contiguous when its blob is `channels_last`."""
    return array.transpose(0, 2, 3, 1)

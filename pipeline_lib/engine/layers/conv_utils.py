"""Shared pieces of convolution and pooling: window geometry, im2col/col2im, scratch buffers.

Both patch-matrix layouts are built from channels-last (NHWC) images and are
chosen by which gives NumPy the longer contiguous runs to copy (its cost is
per run more than per value):
- "rows": one row per output pixel, so a kernel row of kw pixels is one run of
  kw*C values. Suits many channels and small outputs (LeNet's conv2).
- "taps": one row per kernel tap and channel, runs of one output row (Wo
  values) when C is 1. Suits few channels and wide outputs (conv1).
Everything here takes the array module `xp` (NumPy or CuPy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window2D:
    """Kernel, stride, padding and dilation along height and width."""

    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """Kernel taps (i, j) in row-major order, Caffe's scan order."""
        return [(i, j) for i in range(self.kernel_h) for j in range(self.kernel_w)]

    def conv_output(self, height: int, width: int) -> tuple[int, int]:
        """Convolution output size (rounds down, as Caffe)."""
        return (conv_out_size(height, self.kernel_h, self.pad_h, self.stride_h, self.dilation_h),
                conv_out_size(width, self.kernel_w, self.pad_w, self.stride_w, self.dilation_w))

    def tap_slices(self, i: int, j: int, out_h: int, out_w: int) -> tuple[slice, slice]:
        """Rows and columns of a padded input that tap (i, j) reads for every output pixel."""
        r0, c0 = i * self.dilation_h, j * self.dilation_w
        return (slice(r0, r0 + self.stride_h * (out_h - 1) + 1, self.stride_h),
                slice(c0, c0 + self.stride_w * (out_w - 1) + 1, self.stride_w))


def conv_out_size(size: int, kernel: int, pad: int, stride: int, dilation: int = 1) -> int:
    """Caffe's convolution output size: (size + 2 pad - extent) // stride + 1."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def pool_out_size(size: int, kernel: int, pad: int, stride: int, ceil_mode: bool = True,
                  clip: bool | None = None) -> int:
    """Caffe's pooling output size, rounding up (CEIL) or down, with its padding clip.

    With padding, the last window must start inside the image or its left
    padding, not in the right padding; otherwise it is dropped. Caffe applies
    this clip to both dimensions when either has padding: `clip` (by default,
    whether this dimension has padding). Unclipped, ceil rounding with a stride
    above the kernel can leave a last window wholly past the image.
    """
    span = size + 2 * pad - kernel
    pooled = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if (pad if clip is None else clip) and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


class Buffers:
    """Named scratch arrays, reused while their shape and dtype stay the same."""

    def __init__(self, xp) -> None:
        self.xp = xp
        self._arrays: dict[str, object] = {}

    def get(self, name: str, shape, dtype, fill: float | None = None):
        """The buffer `name`; a new one (set to `fill` unless None) if the shape changed.

        `fill` is only applied on allocation: callers that rely on it (padding
        borders) must never write there.
        """
        shape = tuple(map(int, shape))
        dtype = np.dtype(dtype)
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            if fill is None:
                array = self.xp.empty(shape, dtype)
            else:
                array = self.xp.full(shape, fill, dtype)
            self._arrays[name] = array
        return array

    def take(self, name: str, shape, dtype, capacity: int):
        """A contiguous (shape) array at the start of a flat buffer of `capacity` elements.

        For scratch whose size varies below a known maximum (a smaller last slice).
        """
        shape = tuple(map(int, shape))
        size = math.prod(shape)
        if size > capacity:
            raise ValueError(f"scratch {name!r}: shape {shape} exceeds capacity {capacity}")
        return self.get(name, (capacity,), dtype)[:size].reshape(shape)

    def flat(self, name: str):
        """The memory of an existing buffer as a flat array, to reuse as other scratch."""
        return self._arrays[name].reshape(-1)


def as_strided(xp, array, shape, strides):
    """`as_strided` of NumPy or CuPy (strides in bytes)."""
    return xp.lib.stride_tricks.as_strided(array, shape=tuple(shape), strides=tuple(strides))


def patch_view(xp, x_nhwc, win: Window2D, out_h: int, out_w: int):
    """A strided view (N, out_h, out_w, kh, kw, C) of every patch of a padded NHWC array.

    Patches overlap in memory: read it, never write through it.
    """
    n, _, _, c = x_nhwc.shape
    sn, sh, sw, sc = x_nhwc.strides
    shape = (n, out_h, out_w, win.kernel_h, win.kernel_w, c)
    strides = (sn, sh * win.stride_h, sw * win.stride_w,
               sh * win.dilation_h, sw * win.dilation_w, sc)
    return as_strided(xp, x_nhwc, shape, strides)


def im2col_rows(xp, x_nhwc, win: Window2D, out_h: int, out_w: int, groups: int, out) -> None:
    """Copy the patches of a padded NHWC array into `out`, shaped (N, out_h, out_w, G, kh, kw, C/G).

    Each group's columns are contiguous, so `out.reshape(M, G, K/G)[:, g]` is
    group g's (M x K/G) patch matrix with M = N*out_h*out_w.
    """
    patches = patch_view(xp, x_nhwc, win, out_h, out_w)
    n, oh, ow, kh, kw, c = patches.shape
    patches = patches.reshape(n, oh, ow, kh, kw, groups, c // groups)
    out[...] = patches.transpose(0, 1, 2, 5, 3, 4, 6)


def col2im_rows_add(xp, cols, dx_nhwc, win: Window2D, out_h: int, out_w: int) -> None:
    """Add per-tap patch gradients into a padded NHWC gradient (the adjoint of im2col).

    `cols` is (G, kh*kw, N, out_h, out_w, C/G): for each tap a block of the same
    layout as the output pixels. `dx_nhwc` (N, Hp, Wp, C) is added to, not cleared.
    """
    groups, _, n, _, _, cg = cols.shape
    dx = dx_nhwc.reshape(dx_nhwc.shape[:3] + (groups, cg))
    for q, (i, j) in enumerate(win.offsets):
        rows, columns = win.tap_slices(i, j, out_h, out_w)
        dest = dx[:, rows, columns]
        src = cols[:, q] if groups > 1 else cols[0, q][..., None, :]
        if groups > 1:
            src = src.transpose(1, 2, 3, 0, 4)
        xp.add(dest, src, out=dest)


def im2col_taps(xp, x_nhwc, win: Window2D, out_h: int, out_w: int, groups: int, out) -> None:
    """Copy the patches of a padded NHWC array into `out`, shaped (G, kh, kw, C/G, N, out_h, out_w).

    `out.reshape(G, K/G, M)` is then each group's (K/G x M) patch matrix, K
    ordered (kh, kw, C/G) as in `im2col_rows`.
    """
    patches = patch_view(xp, x_nhwc, win, out_h, out_w)
    n, oh, ow, kh, kw, c = patches.shape
    patches = patches.reshape(n, oh, ow, kh, kw, groups, c // groups)
    out[...] = patches.transpose(5, 3, 4, 6, 0, 1, 2)

"""Pooling: MAX and AVE over 2-D windows, with Caffe's output-size and averaging rules.

Output size rounds up by default (round_mode CEIL; FLOOR on request), and with
padding (in either dimension) the last window is dropped if it would start in
the right/bottom padding. MAX ignores padding and keeps the first maximum in
row-major window order (Caffe's tie rule); it records which tap won, for
backward and for the optional second top (the winning bottom index h * W + w,
as Caffe writes it). AVE divides by the window size clipped to the padded
image, as Caffe does.

Without padding, ceil rounding with a stride above the kernel can leave a last
window wholly past the image. As in Caffe, MAX gives it -FLT_MAX and mask -1,
and AVE 0 over its signed clipped size: -0, +0, or NaN where that size is 0.
Its gradient goes nowhere (Caffe's GPU code; its CPU code writes it before the
channel's first element, corrupting memory).

No loops over images or pixels: one vectorised pass per window tap (kh*kw
strided slices of the bottom). The work is done on channels-last views (see
Blob): with a channels-last bottom each tap's slice is a run of C contiguous
values per pixel, several times faster than NCHW's runs of one.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob, nhwc
from pipeline_lib.engine import kernels
from pipeline_lib.engine.layers.base import ImageWork, Layer, register
from pipeline_lib.engine.layers.conv_utils import Buffers, pool_out_size
from pipeline_lib.proto import caffe_pb2

P = caffe_pb2.PoolingParameter
#: Caffe's start value for a max (-FLT_MAX); also what an all-padding window gives.
MAX_FILL = -float(np.finfo(np.float32).max)


@register
class PoolingLayer(Layer):
    type = "Pooling"
    num_bottom = (1, 1)
    num_top = (1, 2)
    prefers_channels_last = True
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        pp = self.param.pooling_param
        self.method = pp.pool
        if self.method == P.STOCHASTIC:
            raise self.error("STOCHASTIC pooling is not implemented; use MAX or AVE")
        if self.method not in (P.MAX, P.AVE):
            raise self.error(f"unknown pooling method {self.method}")
        if len(top) > 1 and self.method != P.MAX:
            raise self.error("only MAX pooling has a second top (the mask)")
        has = pp.HasField
        self.global_pooling = pp.global_pooling
        if self.global_pooling:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                raise self.error("with global_pooling the kernel size comes from the bottom; "
                                 "do not give kernel_size/kernel_h/kernel_w")
        else:
            if has("kernel_size") == (has("kernel_h") and has("kernel_w")):
                raise self.error("give kernel_size, or kernel_h and kernel_w (both), not both")
            if has("kernel_size"):
                self.kernel = (pp.kernel_size, pp.kernel_size)
            else:
                self.kernel = (pp.kernel_h, pp.kernel_w)
            if min(self.kernel) <= 0:
                raise self.error(f"kernel size must be positive, got {self.kernel}")
        self.pad = self._pair(pp, "pad", 0)
        self.stride = self._pair(pp, "stride", 1)
        if min(self.stride) <= 0:
            raise self.error(f"stride must be positive, got {self.stride}")
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise self.error("with global_pooling only pad 0 and stride 1 are allowed")
        if not self.global_pooling and (self.pad[0] >= self.kernel[0]
                                        or self.pad[1] >= self.kernel[1]):
            raise self.error(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        self.ceil_mode = pp.round_mode == P.CEIL
        self.buffers = Buffers(self.xp)
        self._geometry_for = None

    def _pair(self, pp, name: str, default: int) -> tuple[int, int]:
        h, w = f"{name}_h", f"{name}_w"
        if pp.HasField(h) or pp.HasField(w):
            if pp.HasField(name) or not (pp.HasField(h) and pp.HasField(w)):
                raise self.error(f"give {name}, or {h} and {w} (both), not both")
            return getattr(pp, h), getattr(pp, w)
        value = getattr(pp, name) if pp.HasField(name) else default
        return value, value

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(f"needs a 4-D bottom (N, C, H, W), got shape {shape}")
        n, c, h, w = shape
        if self._geometry_for == (shape, bottom[0].data.dtype):  # unchanged: nothing to redo
            for t in top:
                t.reshape((n, c) + self.out_hw)
            return
        if self.global_pooling:
            self.kernel = (h, w)
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        clip = ph > 0 or pw > 0
        oh = pool_out_size(h, kh, ph, sh, self.ceil_mode, clip)
        ow = pool_out_size(w, kw, pw, sw, self.ceil_mode, clip)
        if oh <= 0 or ow <= 0:
            raise self.error(f"kernel {kh}x{kw} does not fit the padded input {h}x{w}")
        self.in_hw, self.out_hw, self.channels = (h, w), (oh, ow), c
        # padded extent: the image, its padding, and any ceil-mode overhang
        self.padded_hw = (max(h + 2 * ph, (oh - 1) * sh + kh), max(w + 2 * pw, (ow - 1) * sw + kw))
        self.needs_pad = self.padded_hw != (h, w)
        # windows never overlap and cover the padded input exactly: backward assigns
        self.tiles = (kh == sh and kw == sw and self.padded_hw == (oh * sh, ow * sw))
        past = ((np.arange(oh) * sh - ph >= h)[:, None] | (np.arange(ow) * sw - pw >= w))
        self.past = self.xp.asarray(past) if past.any() else None  # windows past the image
        for t in top:
            t.reshape((n, c, oh, ow))
        if self.method == P.AVE:
            self.inv_area = self._inverse_area(bottom[0].data.dtype)
        self._geometry_for = (shape, bottom[0].data.dtype)

    # -- helpers -------------------------------------------------------------------
    def _taps(self):
        """(tap number, row slice, column slice) for every window tap, row-major."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        oh, ow = self.out_hw
        for i in range(kh):
            for j in range(kw):
                yield (i * kw + j, slice(i, i + sh * (oh - 1) + 1, sh),
                       slice(j, j + sw * (ow - 1) + 1, sw))

    def _inverse_area(self, dtype):
        """1 / Caffe's AVE divisor per output pixel: the window clipped to the padded image.

        A window past the image has a size <= 0 there and sums to 0: Caffe's 0 / size is
        -0, +0 or (size 0) NaN, which a NaN here gives without a warning (0 * NaN).
        """
        sizes = []
        for out, k, p, s, size in zip(self.out_hw, self.kernel, self.pad, self.stride,
                                      self.in_hw):
            start = np.arange(out) * s - p
            end = np.minimum(start + k, size + p)
            sizes.append(end - start)
        area = np.outer(sizes[0], sizes[1]).astype(np.float64)
        inverse = np.divide(1.0, area, out=np.full_like(area, np.nan), where=area != 0)
        return self.xp.asarray(inverse.astype(dtype))

    def _source(self, x, fill: float):
        """The NHWC bottom, or a buffer for it inside a border of `fill` when windows reach
        outside it (filled image by image by `_pad_images`)."""
        if not self.needs_pad:
            return x
        n, h, w, c = x.shape
        return self.buffers.get("xpad", (n,) + self.padded_hw + (c,), x.dtype, fill=fill)

    def _pad_images(self, src, x, a: int, b: int) -> None:
        if self.needs_pad:
            ph, pw = self.pad
            h, w = self.in_hw
            src[a:b, ph:ph + h, pw:pw + w] = x[a:b]

    # -- forward -------------------------------------------------------------------
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        parts = self.forward_images(bottom, top)
        if parts is not None:
            ImageWork.run(self.xp, bottom[0].shape[0], [parts])
            return
        # global MAX without padding: one reduction over each channel
        x, y = bottom[0].data, top[0].data
        n, c = y.shape[:2]
        idx = self._argmax_buffer(y.shape)
        flat = x.reshape(n, c, -1)
        y[...] = self.xp.max(flat, axis=2).reshape(y.shape)
        idx[...] = self.xp.argmax(flat, axis=2).reshape(n, 1, 1, c)
        self.argmax = idx.transpose(0, 3, 1, 2)
        if len(top) > 1:
            top[1].data[...] = self._mask_indices(self.argmax)

    def forward_images(self, bottom: list[Blob], top: list[Blob]) -> ImageWork | None:
        xs, ys = nhwc(bottom[0].data), nhwc(top[0].data)
        fast = kernels.compiled(self.xp)
        window = self.kernel + self.stride
        if self.method == P.AVE:
            src = self._source(xs, 0.0)

            def images(a: int, b: int) -> None:
                self._pad_images(src, xs, a, b)
                if fast:
                    fast.ave_pool_forward(src[a:b], ys[a:b], self.inv_area, *window)
                else:
                    self._forward_ave(src[a:b], ys[a:b])

            return ImageWork(images, 1, self._image_grain(), lambda: None)
        if self.global_pooling and not self.needs_pad:
            return None
        idx = self._argmax_buffer(top[0].shape)
        src = self._source(xs, MAX_FILL)
        scratch = None if fast else self._max_scratch(ys.shape)

        mask = top[1].data if len(top) > 1 else None

        def images(a: int, b: int) -> None:
            self._pad_images(src, xs, a, b)
            if fast:
                fast.max_pool_forward(src[a:b], ys[a:b], idx[a:b], *window)
            else:
                self._forward_max(src[a:b], ys[a:b], idx[a:b], *(s[a:b] for s in scratch))
            if mask is not None:  # here, not in finish: a next layer of the run may read it
                mask[a:b] = self._mask_indices(idx[a:b].transpose(0, 3, 1, 2))

        def finish() -> None:
            self.argmax = idx.transpose(0, 3, 1, 2)

        return ImageWork(images, 1, self._image_grain(), finish)

    def _argmax_buffer(self, shape):
        """The winning taps (N, oh, ow, C), the smallest integers that hold a tap number."""
        n, c, oh, ow = shape
        idx_dtype = np.uint8 if self.kernel[0] * self.kernel[1] <= 255 else np.int32
        return self.buffers.get("argmax", (n, oh, ow, c), idx_dtype)

    def _image_grain(self) -> int:
        """Least images per lane: enough bottom values to pay for a lane's wake-up."""
        h, w = self.in_hw
        return -(-lanes.POOL_GRAIN // (h * w * self.channels))

    def _max_scratch(self, shape):
        return tuple(self.buffers.get(name, shape, np.bool_) for name in ("run", "below"))

    def _forward_max(self, src, y, winner, run, below) -> None:
        """MAX on NHWC views: `y` gets the maxima, `winner` the tap of the first one
        (`run` and `below`: boolean scratch of y's shape)."""
        xp = self.xp
        slices = [src[:, r, c] for _, r, c in self._taps()]
        if len(slices) == 1:
            y[...] = slices[0]
            winner[...] = 0
            return
        xp.maximum(slices[0], slices[1], out=y)
        for s in slices[2:]:
            xp.maximum(y, s, out=y)
        # winner = number of leading taps strictly below the max (first maximum wins)
        xp.less(slices[0], y, out=run)
        winner[...] = run
        for s in slices[1:-1]:
            xp.less(s, y, out=below)
            xp.logical_and(run, below, out=run)
            xp.add(winner, run, out=winner)

    def _mask_indices(self, idx):
        """Caffe's mask top: the winning bottom index h * W + w for every output."""
        xp = self.xp
        kw = self.kernel[1]
        oh, ow = self.out_hw
        w = self.in_hw[1]
        rows = xp.arange(oh).reshape(oh, 1) * self.stride[0] - self.pad[0]
        cols = xp.arange(ow) * self.stride[1] - self.pad[1]
        tap = idx.astype(np.int64)
        index = (rows + tap // kw) * w + (cols + tap % kw)
        return index if self.past is None else xp.where(self.past, -1, index)

    def _forward_ave(self, src, y) -> None:
        """AVE on NHWC views."""
        xp = self.xp
        taps = list(self._taps())
        _, r, c = taps[0]
        y[...] = src[:, r, c]
        for _, r, c in taps[1:]:
            xp.add(y, src[:, r, c], out=y)
        xp.multiply(y, self.inv_area[..., None], out=y)

    # -- backward ------------------------------------------------------------------
    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        parts = self.backward_images(top, propagate_down, bottom)
        if parts is not None:
            ImageWork.run(self.xp, bottom[0].shape[0], [parts])

    def backward_images(self, top: list[Blob], propagate_down: list[bool],
                        bottom: list[Blob]) -> ImageWork | None:
        """Bottom diff, on NHWC views (padded when the windows reach outside the bottom)."""
        if not propagate_down[0]:
            return None
        dy = nhwc(top[0].diff)
        b = bottom[0]
        n, c = b.shape[:2]
        if self.needs_pad:
            dx = self.buffers.get("dxpad", (n,) + self.padded_hw + (c,), dy.dtype)
        else:
            dx = nhwc(b.diff)
        if self.method == P.MAX:
            winner = nhwc(self.argmax)
            scratch = (self.buffers.get("eq", dy.shape, np.bool_),
                       None if self.tiles else self.buffers.get("grad", dy.shape, dy.dtype))
        else:
            winner = dy  # unused by AVE: a stand-in of dy's shape to slice alike
            scratch = (None, self.buffers.get("grad", dy.shape, dy.dtype))

        bottom_diff = nhwc(b.diff)  # made here: a blob's diff is allocated on first use

        def images(a: int, z: int) -> None:
            self._backward_images(dy[a:z], winner[a:z], dx[a:z],
                                  *(s if s is None else s[a:z] for s in scratch))
            if self.needs_pad:
                ph, pw = self.pad
                h, w = self.in_hw
                bottom_diff[a:z] = dx[a:z, ph:ph + h, pw:pw + w]

        return ImageWork(images, 1, self._image_grain(), lambda: None)

    def _backward_images(self, dy, winner, dx, eq, grad) -> None:
        """dx (padded NHWC) of some images from their dy (and MAX's winning taps);
        `eq` and `grad`: scratch of dy's shape."""
        xp = self.xp
        if not self.tiles:
            dx[...] = 0
        fast = kernels.compiled(xp)
        if fast:
            window = self.kernel + self.stride
            if self.method == P.MAX:
                fast.max_pool_backward(dy, winner, dx, *window, self.tiles, dy.dtype.type(0))
            else:
                fast.ave_pool_backward(dy, self.inv_area, dx, *window, self.tiles)
        elif self.method == P.MAX:
            for q, r, c in self._taps():
                xp.equal(winner, q, out=eq)
                if self.tiles:
                    xp.multiply(dy, eq, out=dx[:, r, c])
                else:
                    xp.multiply(dy, eq, out=grad)
                    xp.add(dx[:, r, c], grad, out=dx[:, r, c])
        else:
            xp.multiply(dy, self.inv_area[..., None], out=grad)
            for _, r, c in self._taps():
                if self.tiles:
                    dx[:, r, c] = grad
                else:
                    xp.add(dx[:, r, c], grad, out=dx[:, r, c])

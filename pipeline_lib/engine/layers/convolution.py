"""Convolution: 2-D, with padding, stride, dilation and groups, as batch-wide GEMMs.

Weights are Caffe's (num_output, C/group, kh, kw), biases (num_output,). Output
size rounds down: (H + 2p - (d(k-1)+1)) // s + 1. Like Caffe, several bottoms
may share the layer's weights, each giving the top of the same index.

Inside, the patches of the whole batch form one matrix (M = N*Ho*Wo pixels by
K = kh*kw*C/group values, plus a column of ones that carries the bias; layout
"rows" or "taps", see conv_utils) and each group is one GEMM whose (M, O)
result is the top seen channels-last: written in place when the top is a
channels-last blob. Backward: the weight and bias gradients are GEMMs
against the same patch matrix (kept from forward), over fixed blocks of images
added in order; the input gradient is one GEMM per group giving the patch
gradients (wide: K columns, not a GEMM per tap), in the spent patch rows'
memory, added back tap by tap (col2im). Both go by ranges of images, so the
net may run them in one split with the layers beside (forward_images,
backward_images). Large patch matrices are made a slice of the batch at a time
so that their memory stays bounded (a smaller bound in the TEST phase, which
keeps nothing for backward: there each lane takes its images slice by slice
through scratch of its own, so the layer still runs with those beside it).
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob, nhwc
from pipeline_lib.engine import kernels
from pipeline_lib.engine.layers.base import ImageWork, Layer, register
from pipeline_lib.engine.layers.conv_utils import (
    Buffers,
    Window2D,
    col2im_rows_add,
    im2col_rows,
    im2col_taps,
)
from pipeline_lib.proto import caffe_pb2

#: Above this many bytes of patch matrix, the batch is processed in slices.
MAX_COLUMN_BYTES = 64 * 2**20
#: The same in the TEST phase, for all lanes together: forward only, so the matrix is not
#: kept for a backward.
MAX_COLUMN_BYTES_TEST = 6 * 2**20
#: Patch-matrix layout, "rows" or "taps"; None picks per layer (tests pin it).
LAYOUT: str | None = None


def read_window(layer: Layer, cp) -> Window2D:
    """Kernel, stride, pad and dilation from a ConvolutionParameter, by Caffe's rules."""

    def pair(name: str, repeated, h_name: str, w_name: str, default: int | None) -> tuple[int, int]:
        has_hw = cp.HasField(h_name) or cp.HasField(w_name)
        if has_hw:
            if len(repeated):
                raise layer.error(f"give either {name} or {h_name}/{w_name}, not both")
            if name == "kernel_size" and not (cp.HasField(h_name) and cp.HasField(w_name)):
                raise layer.error("kernel_h and kernel_w must be given together")
            return getattr(cp, h_name), getattr(cp, w_name)
        if len(repeated) == 0:
            if default is None:
                raise layer.error("kernel_size (or kernel_h and kernel_w) is required")
            return default, default
        if len(repeated) > 2:
            raise layer.error(f"{name} given {len(repeated)} times; this layer is 2-D, "
                              f"give it once or once per spatial axis (2)")
        return repeated[0], repeated[-1]

    kh, kw = pair("kernel_size", cp.kernel_size, "kernel_h", "kernel_w", None)
    sh, sw = pair("stride", cp.stride, "stride_h", "stride_w", 1)
    ph, pw = pair("pad", cp.pad, "pad_h", "pad_w", 0)
    if len(cp.dilation) > 2:
        raise layer.error(f"dilation given {len(cp.dilation)} times; give it once or twice")
    dh, dw = (cp.dilation[0], cp.dilation[-1]) if len(cp.dilation) else (1, 1)
    if min(kh, kw) <= 0:
        raise layer.error(f"kernel size must be positive, got {kh}x{kw}")
    if min(sh, sw) <= 0:
        raise layer.error(f"stride must be positive, got {sh}x{sw}")
    if min(dh, dw) <= 0:
        raise layer.error(f"dilation must be positive, got {dh}x{dw}")
    return Window2D(kh, kw, sh, sw, ph, pw, dh, dw)


def read_geometry(layer: Layer, bottom: list[Blob], top: list[Blob]):
    """Check and set what Convolution and Deconvolution share from convolution_param: the
    window, num_output, group, bias_term and the bottom's channels; returns the param."""
    if len(bottom) != len(top):
        raise layer.error(f"needs one top per bottom, got {len(bottom)} bottom(s) "
                          f"and {len(top)} top(s)")
    cp = layer.param.convolution_param
    shape = bottom[0].shape
    if len(shape) != 4:
        raise layer.error(f"needs a 4-D bottom (N, C, H, W), got shape {shape}")
    if cp.axis not in (1, -3):
        raise layer.error(f"only axis 1 (channels of NCHW) is supported, got axis {cp.axis}")
    layer.win = read_window(layer, cp)
    layer.num_output = int(cp.num_output)
    layer.group = int(cp.group)
    layer.bias_term = bool(cp.bias_term)
    channels = shape[1]
    if layer.num_output <= 0:
        raise layer.error("num_output must be positive")
    if layer.group <= 0 or channels % layer.group or layer.num_output % layer.group:
        raise layer.error(f"group {layer.group} must divide the bottom's {channels} channels "
                          f"and num_output {layer.num_output}")
    layer.channels = channels
    return cp


def check_bottoms(layer: Layer, bottom: list[Blob]) -> tuple[int, ...]:
    """The bottoms' one (N, C, H, W) shape, C being the channels the weights were made for."""
    shape = bottom[0].shape
    if len(shape) != 4 or shape[1] != layer.channels:
        raise layer.error(f"bottom shape {shape} does not fit the weights "
                          f"(expected (N, {layer.channels}, H, W))")
    for i, b in enumerate(bottom[1:], 1):
        if b.shape != shape:
            raise layer.error(f"bottom[{i}] has shape {b.shape}, bottom[0] has {shape}")
    return shape


@register
class ConvolutionLayer(Layer):
    type = "Convolution"
    num_bottom = (1, None)
    num_top = (1, None)
    prefers_channels_last = True
    accepts_channels_last = True

    # -- setup -------------------------------------------------------------------
    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = read_geometry(self, bottom, top)
        w_shape = (self.num_output, self.channels // self.group, self.win.kernel_h,
                   self.win.kernel_w)
        self.weight_and_bias(w_shape, self.num_output if self.bias_term else None,
                             cp.weight_filler, cp.bias_filler)
        self.buffers = Buffers(self.xp)
        self._cols_ready: set[int] = set()

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, _, h, w = check_bottoms(self, bottom)
        oh, ow = self.win.conv_output(h, w)
        if oh <= 0 or ow <= 0:
            raise self.error(f"kernel {self.win.kernel_h}x{self.win.kernel_w} does not fit the "
                             f"padded input {h}x{w}")
        self.out_hw = (oh, ow)
        for t in top:
            t.reshape((n, self.num_output, oh, ow))
        cg = self.channels // self.group
        # contiguous run per copied piece: kw*C/G values (rows) or one output row (taps)
        rows_run = self.win.kernel_w * cg if self.group == 1 else cg
        if LAYOUT:
            self.layout = LAYOUT
        elif self.xp is not np:  # on a GPU copies cost the same either way: fewer kernels
            self.layout = "taps"
        else:
            self.layout = "taps" if ow > rows_run else "rows"
        per_image = oh * ow * self.channels * self.win.kernel_h * self.win.kernel_w
        if self.phase == caffe_pb2.TEST:  # the lanes share it, a slice each at a time
            most = MAX_COLUMN_BYTES_TEST // self._lanes() // (per_image * self.dtype.itemsize)
            # two grains at least, so that a lane's images cut into slices of a grain or more
            self.chunk = max(1, min(n, max(most, 2 * self._image_grain())))
        else:
            self.chunk = max(1, min(n, MAX_COLUMN_BYTES // (per_image * self.dtype.itemsize)))
        self._cols_ready.clear()

    def _lanes(self) -> int:
        """Lanes a split of this layer's work may use (CuPy's work runs whole)."""
        return lanes.count() if self.xp is np else 1

    # -- patch matrices -------------------------------------------------------------
    def _chunks(self, n: int) -> list[tuple[int, int]]:
        return [(a, min(a + self.chunk, n)) for a in range(0, n, self.chunk)]

    def _dims(self) -> tuple[int, int, int, int]:
        """groups, outputs per group, channels per group, K per group."""
        g = self.group
        cg = self.channels // g
        return g, self.num_output // g, cg, cg * self.win.kernel_h * self.win.kernel_w

    def _padded(self, x, key: str):
        """A bottom slice as NHWC, and whether it needs copying into a zero-padded buffer
        (`_pad_images`); a view then of that buffer."""
        xs = nhwc(x)
        n, h, w, c = xs.shape
        ph, pw = self.win.pad_h, self.win.pad_w
        if ph == 0 and pw == 0 and (xs.flags.c_contiguous or self.xp is not np):
            return xs, None
        buf = self.buffers.get(f"xpad{key}", (self.chunk, h + 2 * ph, w + 2 * pw, c),
                               x.dtype, fill=0)[:n]
        return buf, xs

    def _pad_images(self, padded, source, a: int, b: int) -> None:
        """Copy images a..b of `source` inside the zero border of `padded` (None: no copy)."""
        if source is not None:
            ph, pw = self.win.pad_h, self.win.pad_w
            h, w = source.shape[1:3]
            padded[a:b, ph:ph + h, pw:pw + w, :] = source[a:b]

    def _column_buffer(self, key: str, n: int, dtype):
        """The patch matrix memory of a slice of n images: (M, G, K') rows or (G, K', M) taps.

        K' is K/G plus, with a bias, one column of ones: the GEMMs then add the
        bias in forward and sum its gradient in backward for free.
        """
        g, _, _, kg = self._dims()
        kb = kg + self.bias_term
        m = n * self.out_hw[0] * self.out_hw[1]
        if self.layout == "rows":
            return self.buffers.get(f"col{key}", (self.chunk * m // n, g, kb), dtype)[:m]
        return self.buffers.take(f"col{key}", (g, kb, m), dtype, g * kb * self.chunk * m // n)

    def _columns_of(self, col, a: int, b: int):
        """Images a..b's rows of a patch matrix memory, seen as (G, M_ab, K')."""
        ohw = self.out_hw[0] * self.out_hw[1]
        if self.layout == "rows":
            return col[a * ohw:b * ohw].transpose(1, 0, 2)
        return col[:, :, a * ohw:b * ohw].transpose(0, 2, 1)

    def _fill_columns(self, padded, col, a: int, b: int) -> None:
        """Write the patches of images a..b of a padded NHWC slice into `col`."""
        win = self.win
        g, _, _, kg = self._dims()
        oh, ow = self.out_hw
        ohw, n = oh * ow, b - a
        if self.layout == "rows":
            part = col[a * ohw:b * ohw]
            dest = part.reshape(n, oh, ow, g, kg + self.bias_term)[..., :kg].reshape(
                n, oh, ow, g, win.kernel_h, win.kernel_w, -1)
            im2col_rows(self.xp, padded[a:b], win, oh, ow, g, dest)
            if self.bias_term:
                part[:, :, kg] = 1
            return
        part = col[:, :, a * ohw:b * ohw]
        dest = part[:, :kg].reshape(g, win.kernel_h, win.kernel_w, -1, n, oh, ow)
        im2col_taps(self.xp, padded[a:b], win, oh, ow, g, dest)
        if self.bias_term:
            part[:, kg] = 1

    def _image_grain(self) -> int:
        """Least images per lane: enough GEMM rows for lanes.GEMM_MIN_WORK. Cuts between
        images fall anywhere in a GEMM's tiles; above that work a row's bits do not depend
        on where (checked on 5,712 random cuts; the lanes tests check the layers)."""
        ohw = self.out_hw[0] * self.out_hw[1]
        _, og, _, kg = self._dims()
        return -(-lanes.gemm_grain(og * (kg + self.bias_term)) // ohw)

    def _window(self) -> tuple[int, int, int, int, int, int]:
        """Kernel, stride and dilation (h, w each), as the compiled kernels take them."""
        w = self.win
        return w.kernel_h, w.kernel_w, w.stride_h, w.stride_w, w.dilation_h, w.dilation_w

    def _weight_matrix(self):
        """Weights (and bias) as (G, O/G, K'), K ordered (kh, kw, C/G) like the patch matrices."""
        o, cg, kh, kw = self.blobs[0].shape
        g, og, _, kg = self._dims()
        wm = self.buffers.get("wmat", (g, og, kg + self.bias_term), self.blobs[0].dtype)
        w = self.blobs[0].data.reshape(g, og, cg, kh, kw).transpose(0, 1, 3, 4, 2)
        wm[:, :, :kg] = w.reshape(g, og, kg)
        if self.bias_term:
            wm[:, :, kg] = self.blobs[1].data.reshape(g, og)
        return wm

    # -- forward / backward ---------------------------------------------------------
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        wmt = self._weight_matrix().transpose(0, 2, 1)
        self._cols_ready.clear()
        for idx, (b, t) in enumerate(zip(bottom, top)):
            n = b.shape[0]
            for n0, n1 in self._chunks(n):
                lanes.split(self.xp, n1 - n0, self._forward_work(idx, b, t, n0, n1, wmt),
                            self._image_grain())
            if self.chunk >= n:
                self._cols_ready.add(idx)

    def forward_images(self, bottom: list[Blob], top: list[Blob]) -> ImageWork | None:
        n = bottom[0].shape[0]
        sliced = self.chunk < n
        if len(bottom) != 1 or (sliced and self.phase != caffe_pb2.TEST):
            return None
        self._cols_ready.clear()
        b, t, wmt = bottom[0], top[0], self._weight_matrix().transpose(0, 2, 1)
        grain = self._image_grain()
        if not sliced:
            return ImageWork(self._forward_work(0, b, t, 0, n, wmt), grain, grain,
                             lambda: self._cols_ready.add(0))
        for lane in range(min(self._lanes(), n // grain or 1)):  # scratch for each lane
            self._forward_work(0, b, t, 0, self.chunk, wmt, lane)     # that can get a part

        def images(a: int, c: int) -> None:
            """A lane's images, slice by slice through its own scratch (the TEST phase keeps
            nothing for a backward). Every slice holds a grain of images or more, so the
            bits do not depend on where the lanes' parts or the slices begin."""
            lane = lanes.lane()
            for s0, s1 in lanes.bounds(c - a, -(-(c - a) // self.chunk)):
                self._forward_work(0, b, t, a + s0, a + s1, wmt, lane)(0, s1 - s0)

        return ImageWork(images, grain, grain, lambda: None)

    def _forward_work(self, idx: int, b: Blob, t: Blob, n0: int, n1: int, wmt, lane: int = 0):
        """work(a, c) for images n0+a..n0+c of bottom idx: their patches, then their rows of
        the GEMM (the memory it writes is made here; a lane above 0 gets scratch of its
        own, for the TEST phase's slices)."""
        xp = self.xp
        g, og, _, _ = self._dims()
        oh, ow = self.out_hw
        x, y = b.data[n0:n1], t.data[n0:n1]
        key = f"{idx}/{lane}" if lane else str(idx)
        col = self._column_buffer(key, n1 - n0, x.dtype)
        padded, source = self._padded(x, key)
        into_top = g == 1 and nhwc(y).flags.c_contiguous
        res = None if into_top else self.buffers.take(
            f"res{key}" if lane else "res", (g, (n1 - n0) * oh * ow, og), wmt.dtype,
            g * og * self.chunk * oh * ow)

        def images(a: int, c: int) -> None:
            self._pad_images(padded, source, a, c)
            self._fill_columns(padded, col, a, c)
            cols = self._columns_of(col, a, c)
            dest = nhwc(y[a:c])
            m = (c - a) * oh * ow
            if res is None:  # straight into a channels-last top
                xp.matmul(cols, wmt, out=dest.reshape(1, m, og))
                return
            part = res[:, a * oh * ow:c * oh * ow]
            xp.matmul(cols, wmt, out=part)
            dest[...] = part.transpose(1, 0, 2).reshape(dest.shape)

        return images

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        fresh = [blob.overwrite_diff() for blob in self.blobs]  # first write: no adding
        for idx, (t, b) in enumerate(zip(top, bottom)):
            down = idx < len(propagate_down) and propagate_down[idx]
            for n0, n1 in self._chunks(t.shape[0]):
                ImageWork.run(self.xp, n1 - n0, [self._backward_work(idx, t, b, n0, n1, down,
                                                                     fresh)])
        for blob, unwritten in zip(self.blobs, fresh):  # no images: a gradient of zeros
            if unwritten:
                blob.diff[...] = 0

    def backward_images(self, top: list[Blob], propagate_down: list[bool],
                        bottom: list[Blob]) -> ImageWork | None:
        n = top[0].shape[0]
        if len(bottom) != 1 or self.chunk < n or n == 0:
            return None
        fresh = [blob.overwrite_diff() for blob in self.blobs]
        return self._backward_work(0, top[0], bottom[0], 0, n, propagate_down[0], fresh)

    def _backward_work(self, idx: int, t: Blob, b: Blob, n0: int, n1: int, down: bool,
                       fresh: list[bool]) -> ImageWork:
        """The gradients of images n0..n1 of bottom idx as work over ranges of them.

        A range's work: its patch matrix rows (unless kept from forward), the weight
        gradient's fixed blocks of images inside it (ranges are cut between blocks, so
        each block is summed whole, whatever the lane count), then, when `down`, its
        bottom diff: one GEMM per group gives its patch gradients, in the memory of its
        own patch rows (spent by then; with "taps" a scratch of their own), and col2im
        adds them back tap by tap, a run of C/G values per output pixel. `finish` adds
        the blocks in order into the param diffs (written when `fresh`).
        """
        xp = self.xp
        win = self.win
        g, og, cg, kg = self._dims()
        kb = kg + self.bias_term
        oh, ow = self.out_hw
        ohw, n, key = oh * ow, n1 - n0, str(idx)
        taps = self.layout == "taps"
        x = b.data[n0:n1]
        ready = idx in self._cols_ready
        col = self._column_buffer(key, n, x.dtype)
        padded_x, source = (None, None) if ready else self._padded(x, key)
        cols = self._columns_of(col, 0, n)
        dy = nhwc(t.diff[n0:n1])
        copy_dy = not dy.flags.c_contiguous  # an NCHW top diff: rows copied range by range
        dy_rows = self.buffers.take("dy", (n * ohw, self.num_output), dy.dtype, self.chunk *
                                    ohw * self.num_output) if copy_dy else dy.reshape(n * ohw, -1)
        dyg = dy_rows.reshape(-1, g, og).transpose(1, 0, 2)
        dyt = dyg.transpose(0, 2, 1)
        blocks = lanes.reduction_blocks(n, ohw * og * kb)
        dw_parts = self.buffers.get("dw_parts", (len(blocks),) + ((g, kb, og) if taps else
                                                                  (g, og, kb)), dy.dtype)
        if down:
            wm = self._weight_matrix()[:, :, :kg]
            scratch = (self.buffers.get(f"dcol{key}", (self.chunk * ohw * g * kg,), dy.dtype)
                       if taps else self.buffers.flat(f"col{key}"))
            per_image = ohw * g * (kg if taps else kb)  # where an image's patch rows start
            _, c, h, w = b.shape
            ph, pw = win.pad_h, win.pad_w
            dx = nhwc(b.diff[n0:n1])
            direct = ph == 0 and pw == 0 and dx.flags.c_contiguous
            padded = dx if direct else self.buffers.get(
                f"dxpad{key}", (self.chunk, h + 2 * ph, w + 2 * pw, c), dy.dtype)[:n]
            fast = kernels.compiled(xp)

        def work(a: int, z: int) -> None:
            r0, r1 = a * ohw, z * ohw
            if copy_dy:
                dy_rows[r0:r1] = dy[a:z].reshape(r1 - r0, -1)
            if not ready:
                self._pad_images(padded_x, source, a, z)
                self._fill_columns(padded_x, col, a, z)
            for j, (b0, b1) in enumerate(blocks):
                if a <= b0 and b1 <= z:
                    q0, q1 = b0 * ohw, b1 * ohw
                    if taps:
                        xp.matmul(col[:, :, q0:q1], dyg[:, q0:q1], out=dw_parts[j])
                    else:
                        xp.matmul(dyt[:, :, q0:q1], cols[:, q0:q1], out=dw_parts[j])
            if not down:
                return
            part = scratch[a * per_image:a * per_image + g * (r1 - r0) * kg].reshape(
                g, r1 - r0, kg)
            xp.matmul(dyg[:, r0:r1], wm, out=part)
            per_tap = part.reshape(g, z - a, oh, ow, win.kernel_h * win.kernel_w,
                                   cg).transpose(0, 4, 1, 2, 3, 5)
            dest = padded[a:z]
            dest[...] = 0
            if fast:
                fast.col2im_add(per_tap, dest, *self._window())
            else:
                col2im_rows_add(xp, per_tap, dest, win, oh, ow)
            if not direct:
                dx[a:z] = dest[:, ph:ph + h, pw:pw + w]

        def finish() -> None:
            total = dw_parts[0]
            for j in range(1, len(blocks)):
                xp.add(total, dw_parts[j], out=total)
            dwm = total.transpose(0, 2, 1) if taps else total
            dw = dwm[:, :, :kg].reshape(g, og, win.kernel_h, win.kernel_w, cg)
            targets = [(self.blobs[0].diff.reshape(g, og, cg, win.kernel_h, win.kernel_w),
                        dw.transpose(0, 1, 4, 2, 3))]
            if self.bias_term:
                targets.append((self.blobs[1].diff, dwm[:, :, kg].reshape(-1)))
            for k, (target, value) in enumerate(targets):
                if fresh[k]:
                    target[...] = value
                    fresh[k] = False
                else:
                    target += value
            if down:  # the patch rows now hold patch gradients
                self._cols_ready.discard(idx)

        grain = self._image_grain()
        return ImageWork(work, grain if down else 1, grain, finish, blocks[0][1])

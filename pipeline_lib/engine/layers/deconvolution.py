"""Deconvolution: the transpose of Convolution (its backward-data as forward), as Caffe's.

Weights are (C_in, num_output/group, kh, kw): the weights of the convolution that
maps this layer's top back to its bottom. Output size: stride*(in-1) + extent -
2*pad with extent d(k-1)+1. Padding, stride, dilation and groups are read as for
Convolution (`read_geometry`, `check_bottoms`); the patch copies are conv_utils' im2col/col2im on
channels-last (NHWC) views:
- forward: one GEMM per kernel tap gives that tap's contribution (M = N*H*W input
  pixels by num_output/G) and col2im adds them into the padded top, then the
  padding is cut off and the bias added; images split over the lanes, taps taken a
  block at a time so that a large kernel (FCN's upsampling) keeps its scratch bounded;
- backward: the top diff's patch matrix (im2col, images over the lanes) against the
  weights gives the bottom diff (a plain convolution) and, against the bottom, the
  weight diff (both products split over the lanes).
Several bottoms share the weights, each giving the top of the same index.
"""

from __future__ import annotations

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob, nhwc
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.conv_utils import im2col_rows
from pipeline_lib.engine.layers.convolution import check_bottoms, read_geometry

#: the most bytes of per-tap contributions a lane holds at once in forward
MAX_CONTRIBUTION_BYTES = 16 * 2**20


@register
class DeconvolutionLayer(Layer):
    type = "Deconvolution"
    num_bottom = (1, None)
    num_top = (1, None)
    prefers_channels_last = True
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = read_geometry(self, bottom, top)
        w_shape = (self.channels, self.num_output // self.group,
                   self.win.kernel_h, self.win.kernel_w)
        self.weight_and_bias(w_shape, self.num_output if self.bias_term else None,
                             cp.weight_filler, cp.bias_filler)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, _, h, w = check_bottoms(self, bottom)
        win = self.win
        oh = win.stride_h * (h - 1) + win.dilation_h * (win.kernel_h - 1) + 1 - 2 * win.pad_h
        ow = win.stride_w * (w - 1) + win.dilation_w * (win.kernel_w - 1) + 1 - 2 * win.pad_w
        if oh <= 0 or ow <= 0:
            raise self.error(f"output would be {oh}x{ow}: padding {win.pad_h}x{win.pad_w} "
                             f"removes more than the {h}x{w} input spreads to")
        self.out_hw = (oh, ow)
        for t in top:
            t.reshape((n, self.num_output, oh, ow))

    def _taps(self):
        """Weights as (G, kh*kw, C/G, O/G): per group and tap, input to output channels."""
        c, og, kh, kw = self.blobs[0].shape
        g = self.group
        w = self.blobs[0].data.reshape(g, c // g, og, kh, kw).transpose(0, 3, 4, 1, 2)
        return w.reshape(g, kh * kw, c // g, og)

    def _kernel_matrix(self):
        """Weights as (G, C/G, K), K ordered (kh, kw, O/G) like the top's patch matrix."""
        c, og, kh, kw = self.blobs[0].shape
        g = self.group
        w = self.blobs[0].data.reshape(g, c // g, og, kh, kw).transpose(0, 1, 3, 4, 2)
        return w.reshape(g, c // g, kh * kw * og)

    def _top_columns(self, dy, h: int, w: int):
        """The patch matrix of a top diff (N, O, Ho, Wo) as (G, M, K), M = N*h*w: the
        windows that read each of the bottom's h x w pixels."""
        xp, win, g = self.xp, self.win, self.group
        n = dy.shape[0]
        padded = xp.pad(nhwc(dy), ((0, 0), (win.pad_h, win.pad_h), (win.pad_w, win.pad_w),
                                   (0, 0)))
        cols = xp.empty((n, h, w, g, win.kernel_h, win.kernel_w, self.num_output // g),
                        dy.dtype)
        lanes.split(xp, n, lambda a, z: im2col_rows(xp, padded[a:z], win, h, w, g, cols[a:z]))
        return cols.reshape(n * h * w, g, -1).transpose(1, 0, 2)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp, win, g = self.xp, self.win, self.group
        taps = self._taps()
        count = taps.shape[1]
        og = self.num_output // g
        oh, ow = self.out_hw
        ph, pw = win.pad_h, win.pad_w
        bias = self.blobs[1].data if self.bias_term else None
        for b, t in zip(bottom, top):
            n, c, h, w = b.shape
            x = nhwc(b.data).reshape(n, h * w, g, c // g)
            out = nhwc(t.data)
            padded = xp.empty((n, oh + 2 * ph, ow + 2 * pw, self.num_output), t.data.dtype)
            per_tap = h * w * self.num_output * t.data.dtype.itemsize

            def images(a: int, z: int, x=x, out=out, padded=padded, per_tap=per_tap,
                       h=h, w=w) -> None:
                """Top of images a..z: each tap's contribution added into the padded top, taps
                in row-major order (Caffe's col2im order), a block of taps at a time."""
                part = padded[a:z]
                part[...] = 0
                xs = x[a:z].reshape((z - a) * h * w, g, -1).transpose(1, 0, 2)[:, None]
                block = max(1, MAX_CONTRIBUTION_BYTES // (per_tap * (z - a)))
                for q0 in range(0, count, block):
                    contrib = xp.matmul(xs, taps[:, q0:q0 + block])  # (G, taps, M, O/G)
                    for k in range(contrib.shape[1]):
                        i, j = divmod(q0 + k, win.kernel_w)
                        rows, cols = win.tap_slices(i, j, h, w)
                        dest = part[:, rows, cols]
                        src = contrib[:, k].reshape(g, z - a, h, w, og).transpose(1, 2, 3, 0, 4)
                        xp.add(dest, src.reshape(dest.shape), out=dest)
                out[a:z] = part[:, ph:ph + oh, pw:pw + ow]
                if bias is not None:
                    out[a:z] += bias

            lanes.split(xp, n, images)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp, g = self.xp, self.group
        kernel = self._kernel_matrix()
        c, og, kh, kw = self.blobs[0].shape
        cg = c // g
        for i, (t, b) in enumerate(zip(top, bottom)):
            dy = t.diff
            if self.bias_term:
                self.blobs[1].diff += dy.sum(axis=(0, 2, 3))
            n, _, h, w = b.shape
            cols = self._top_columns(dy, h, w)
            x = nhwc(b.data).reshape(n * h * w, g, cg).transpose(1, 0, 2)
            dw = xp.empty((g, cg, kh * kw * og), dy.dtype)
            for gi in range(g):
                lanes.matmul(xp, x[gi].T, cols[gi], dw[gi])  # (C/G, K)
            self.blobs[0].diff += dw.reshape(c, kh, kw, og).transpose(0, 3, 1, 2)
            if i < len(propagate_down) and propagate_down[i]:
                dx = xp.empty((g, n * h * w, cg), dy.dtype)
                for gi in range(g):
                    lanes.matmul(xp, cols[gi], kernel[gi].T, dx[gi])  # (M, C/G)
                nhwc(b.diff)[...] = dx.transpose(1, 0, 2).reshape(n, h, w, c)

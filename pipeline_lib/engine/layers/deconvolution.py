"""Deconvolution: the transpose of Convolution (its backward-data as forward), as Caffe's.

Weights are (C_in, num_output/group, kh, kw): the weights of the convolution that
maps this layer's top back to its bottom. Output size: stride*(in-1) + extent -
2*pad with extent d(k-1)+1. Padding, stride, dilation and groups are read as for
Convolution (`read_geometry`, `check_bottoms`); the patch copies are conv_utils' im2col/col2im on
channels-last (NHWC) views:
- forward: one GEMM per kernel tap gives that tap's contribution (M = N*H*W input
  pixels by num_output/G) and col2im adds them into the padded top, then the
  padding is cut off and the bias added;
- backward: the top diff's patch matrix (im2col) against the weights gives the
  bottom diff (a plain convolution) and, against the bottom, the weight diff.
Several bottoms share the weights, each giving the top of the same index.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob, nhwc
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.conv_utils import col2im_rows_add, im2col_rows
from pipeline_lib.engine.layers.convolution import check_bottoms, read_geometry


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
        im2col_rows(xp, padded, win, h, w, g, cols)
        return cols.reshape(n * h * w, g, -1).transpose(1, 0, 2)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp, win, g = self.xp, self.win, self.group
        taps = self._taps()
        og = self.num_output // g
        oh, ow = self.out_hw
        for b, t in zip(bottom, top):
            n, c, h, w = b.shape
            x = nhwc(b.data).reshape(n * h * w, g, c // g).transpose(1, 0, 2)
            contrib = xp.matmul(x[:, None], taps)  # (G, taps, M, O/G)
            padded = xp.zeros((n, oh + 2 * win.pad_h, ow + 2 * win.pad_w, self.num_output),
                              t.data.dtype)
            col2im_rows_add(xp, contrib.reshape(g, -1, n, h, w, og), padded, win, h, w)
            out = nhwc(t.data)
            out[...] = padded[:, win.pad_h:win.pad_h + oh, win.pad_w:win.pad_w + ow]
            if self.bias_term:
                out += self.blobs[1].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        g = self.group
        kernel = self._kernel_matrix()
        c, og, kh, kw = self.blobs[0].shape
        for i, (t, b) in enumerate(zip(top, bottom)):
            dy = t.diff
            if self.bias_term:
                self.blobs[1].diff += dy.sum(axis=(0, 2, 3))
            n, _, h, w = b.shape
            cols = self._top_columns(dy, h, w)
            x = nhwc(b.data).reshape(n * h * w, g, c // g).transpose(1, 0, 2)
            dw = self.xp.matmul(x.transpose(0, 2, 1), cols)  # (G, C/G, K)
            self.blobs[0].diff += dw.reshape(c, kh, kw, og).transpose(0, 3, 1, 2)
            if i < len(propagate_down) and propagate_down[i]:
                dx = self.xp.matmul(cols, kernel.transpose(0, 2, 1))  # (G, M, C/G)
                nhwc(b.diff)[...] = dx.transpose(1, 0, 2).reshape(n, h, w, c)

"""Im2col: each window of a convolution as a column: (N, C, H, W) -> (N, C*kh*kw, Ho, Wo).

Channel index of the top is (c * kh + i) * kw + j, Caffe's im2col order. Window,
stride, pad and dilation come from `convolution_param` as for Convolution (2-D:
a 4-D bottom, channels on axis 1). Backward adds each column back (col2im).
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob, nhwc
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.conv_utils import col2im_rows_add, patch_view
from pipeline_lib.engine.layers.convolution import read_window


@register
class Im2colLayer(Layer):
    type = "Im2col"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        cp = self.param.convolution_param
        if len(bottom[0].shape) != 4:
            raise self.error(f"needs a 4-D bottom (N, C, H, W), got shape {bottom[0].shape}")
        if cp.axis not in (1, -3):
            raise self.error(f"only axis 1 (channels of NCHW) is supported, got axis {cp.axis}")
        self.win = read_window(self, cp)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        n, c, h, w = bottom[0].shape
        self.out_hw = self.win.conv_output(h, w)
        if min(self.out_hw) <= 0:
            raise self.error(f"kernel {self.win.kernel_h}x{self.win.kernel_w} does not fit the "
                             f"padded input {h}x{w}")
        top[0].reshape((n, c * self.win.kernel_h * self.win.kernel_w) + self.out_hw)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        win = self.win
        x = nhwc(bottom[0].data)
        padded = self.xp.pad(x, ((0, 0), (win.pad_h, win.pad_h), (win.pad_w, win.pad_w), (0, 0)))
        patches = patch_view(self.xp, padded, win, *self.out_hw)  # (N, Ho, Wo, kh, kw, C)
        n, c = x.shape[0], x.shape[3]
        top[0].data.reshape(n, c, win.kernel_h, win.kernel_w, *self.out_hw)[...] = \
            patches.transpose(0, 5, 3, 4, 1, 2)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        win = self.win
        n, c, h, w = bottom[0].shape
        oh, ow = self.out_hw
        dy = top[0].diff.reshape(n, c, win.kernel_h * win.kernel_w, oh, ow)
        cols = dy.transpose(2, 0, 3, 4, 1)[None]  # (G=1, taps, N, Ho, Wo, C)
        padded = self.xp.zeros((n, h + 2 * win.pad_h, w + 2 * win.pad_w, c), dy.dtype)
        col2im_rows_add(self.xp, cols, padded, win, oh, ow)
        nhwc(bottom[0].diff)[...] = padded[:, win.pad_h:win.pad_h + h, win.pad_w:win.pad_w + w]

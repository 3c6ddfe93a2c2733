"""Reference convolution and pooling: Caffe's arithmetic written plainly, for the tests.

NCHW NumPy arrays in, float64 arrays out; one loop over output positions,
nothing fused, nothing cached. Slow on purpose: the fast layers
(convolution.py, pooling.py, conv_utils.py) are read, and tested, against
these. Pairs are (height, width). Global pooling is a window of the whole
bottom: kernel (H, W), stride 1, pad 0.

Pooling in ceil mode with a stride above the kernel and no padding can leave
a last window wholly past the image. Caffe then gives MAX -FLT_MAX with mask
-1 and AVE 0 over the window's signed clipped size (-0, +0, or NaN for 0 / 0);
so does this module. A mask of -1 routes no gradient (Caffe's GPU code; its CPU
code writes before the channel's first element, corrupting memory).
"""

from __future__ import annotations

import numpy as np

#: Caffe's start value for a max, -FLT_MAX.
FLT_MAX = float(np.finfo(np.float32).max)


# -- output sizes ------------------------------------------------------------------
def conv_output_size(size: int, kernel: int, pad: int, stride: int, dilation: int = 1) -> int:
    """Rounds down: the last window must fit inside the padded input."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def pool_output_size(size: int, kernel: int, pad: int, stride: int,
                     ceil_mode: bool = True, clip: bool | None = None) -> int:
    """Rounds up (or down, FLOOR), then drops a last window that would start in the padding.

    Caffe drops it in both dimensions when either is padded (`clip`; by default, when
    this one is)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if (pad if clip is None else clip) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


# -- convolution ---------------------------------------------------------------------
def _patch(padded, i: int, j: int, kernel, stride, dilation):
    """The (N, C, kh, kw) view of the padded input that output position (i, j) reads."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    r, c = i * sh, j * sw
    return padded[:, :, r:r + dh * (kh - 1) + 1:dh, c:c + dw * (kw - 1) + 1:dw]


def _pad(x, pad):
    ph, pw = pad
    return np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def conv_forward(x, weight, bias=None, stride=(1, 1), pad=(0, 0), dilation=(1, 1),
                 group: int = 1) -> np.ndarray:
    """y[n, o, i, j] = bias[o] + sum over o's group's channels and the taps of weight * x."""
    n, _, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // group
    oh = conv_output_size(h, kh, pad[0], stride[0], dilation[0])
    ow = conv_output_size(w, kw, pad[1], stride[1], dilation[1])
    padded = _pad(x, pad)
    weight = np.asarray(weight, np.float64)
    y = np.zeros((n, o, oh, ow))
    for i, j in np.ndindex(oh, ow):
        patch = _patch(padded, i, j, (kh, kw), stride, dilation)
        for g in range(group):
            outs, ins = slice(g * og, (g + 1) * og), slice(g * cg, (g + 1) * cg)
            y[:, outs, i, j] = np.einsum("nckl,ockl->no", patch[:, ins], weight[outs])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv_backward(x, weight, dy, stride=(1, 1), pad=(0, 0), dilation=(1, 1),
                  group: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias) for top gradient dy: each output's gradient goes back
    through the taps that made it (dx), times the inputs they read (dweight)."""
    _, _, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // group
    padded = _pad(x, pad)
    weight = np.asarray(weight, np.float64)
    dy = np.asarray(dy, np.float64)
    dpadded = np.zeros_like(padded)
    dweight = np.zeros_like(weight)
    for i, j in np.ndindex(dy.shape[2:]):
        patch = _patch(padded, i, j, (kh, kw), stride, dilation)
        dpatch = _patch(dpadded, i, j, (kh, kw), stride, dilation)  # a view: += adds to dx
        for g in range(group):
            outs, ins = slice(g * og, (g + 1) * og), slice(g * cg, (g + 1) * cg)
            d = dy[:, outs, i, j]
            dweight[outs] += np.einsum("no,nckl->ockl", d, patch[:, ins])
            dpatch[:, ins] += np.einsum("no,ockl->nckl", d, weight[outs])
    ph, pw = pad
    dx = dpadded[:, :, ph:ph + h, pw:pw + w]
    return dx, dweight, dy.sum(axis=(0, 2, 3))


# -- pooling ---------------------------------------------------------------------------
def _pool_shape(x_shape, kernel, stride, pad, ceil_mode: bool) -> tuple[int, int]:
    clip = any(pad)
    return (pool_output_size(x_shape[2], kernel[0], pad[0], stride[0], ceil_mode, clip),
            pool_output_size(x_shape[3], kernel[1], pad[1], stride[1], ceil_mode, clip))


def max_pool_forward(x, kernel, stride=(1, 1), pad=(0, 0), ceil_mode: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(top, mask): Caffe's loop over each window clipped to the image, row-major, where
    only a strictly greater value wins (ties keep the first); the mask is the winner's
    index r * W + q in its bottom channel."""
    n, c, h, w = x.shape
    x = np.asarray(x, np.float64)
    oh, ow = _pool_shape(x.shape, kernel, stride, pad, ceil_mode)
    y = np.full((n, c, oh, ow), -FLT_MAX)
    mask = np.full((n, c, oh, ow), -1, np.int64)
    for i, j in np.ndindex(oh, ow):
        r0, q0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
        r1, q1 = min(r0 + kernel[0], h), min(q0 + kernel[1], w)
        for r in range(max(r0, 0), r1):
            for q in range(max(q0, 0), q1):
                better = x[:, :, r, q] > y[:, :, i, j]
                y[:, :, i, j] = np.where(better, x[:, :, r, q], y[:, :, i, j])
                mask[:, :, i, j] = np.where(better, r * w + q, mask[:, :, i, j])
    return y, mask


def max_pool_backward(dy, mask, x_shape) -> np.ndarray:
    """Each output's gradient goes to the bottom element its mask names (none for -1)."""
    n, c, h, w = x_shape
    dx = np.zeros(x_shape)
    nn, cc = np.indices((n, c))
    for i, j in np.ndindex(dy.shape[2:]):
        named = mask[:, :, i, j] >= 0
        r, q = np.divmod(mask[:, :, i, j][named], w)
        dx[nn[named], cc[named], r, q] += dy[:, :, i, j][named]
    return dx


def _ave_window(i: int, j: int, x_shape, kernel, stride, pad):
    """Rows r0:r1 and columns q0:q1 of window (i, j) inside the image, and Caffe's divisor:
    the window's area clipped to the padded bound, so padding counts but an overhang
    past it (ceil mode) does not."""
    h, w = x_shape[2:]
    r0, q0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
    r1, q1 = min(r0 + kernel[0], h + pad[0]), min(q0 + kernel[1], w + pad[1])
    area = (r1 - r0) * (q1 - q0)
    return max(r0, 0), min(r1, h), max(q0, 0), min(q1, w), area


def ave_pool_forward(x, kernel, stride=(1, 1), pad=(0, 0), ceil_mode: bool = True
                     ) -> np.ndarray:
    """The sum of each window's image values over Caffe's divisor (see _ave_window)."""
    x = np.asarray(x, np.float64)
    n, c = x.shape[:2]
    oh, ow = _pool_shape(x.shape, kernel, stride, pad, ceil_mode)
    y = np.zeros((n, c, oh, ow))
    for i, j in np.ndindex(oh, ow):
        r0, r1, q0, q1, area = _ave_window(i, j, x.shape, kernel, stride, pad)
        with np.errstate(invalid="ignore"):  # 0 / 0 past the image: NaN, as in Caffe
            y[:, :, i, j] = x[:, :, r0:r1, q0:q1].sum(axis=(2, 3)) / area
    return y


def ave_pool_backward(dy, x_shape, kernel, stride=(1, 1), pad=(0, 0)) -> np.ndarray:
    """Each output's gradient, over the same divisor, to every image value of its window."""
    dx = np.zeros(x_shape)
    for i, j in np.ndindex(dy.shape[2:]):
        r0, r1, q0, q1, area = _ave_window(i, j, x_shape, kernel, stride, pad)
        if r0 < r1 and q0 < q1:  # a window past the image has nothing to pass it to
            dx[:, :, r0:r1, q0:q1] += dy[:, :, i, j, None, None] / area
    return dx

"""LRN: local response normalisation, top = x * scale^-beta, with Caffe's two regions.

ACROSS_CHANNELS: scale = k + alpha/n * (sum of x^2 over the n channels centred
on each channel, zero beyond the ends). WITHIN_CHANNEL: Caffe composes it from
an AVE pooling of x^2 (n x n, padded by (n-1)/2, stride 1) and a power layer,
which gives scale = 1 + alpha/n^2 * (sum of x^2 over the n x n window); k is
not used there. local_size must be odd. Backward:
dx = dy * scale^-beta - 2*alpha*beta/size * x * windowsum(dy * top / scale),
with size n (across) or n^2 (within) and the same symmetric window.
"""

from __future__ import annotations

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.engine.layers.conv_utils import Buffers
from pipeline_lib.proto import caffe_pb2

R = caffe_pb2.LRNParameter


@register
class LRNLayer(Layer):
    type = "LRN"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("cannot work in place (backward needs its bottom); "
                             "give the top another name")
        lp = self.param.lrn_param
        self.size = int(lp.local_size)
        if self.size % 2 != 1:
            raise self.error(f"local_size must be odd, got {self.size}")
        self.pre = (self.size - 1) // 2
        self.alpha, self.beta, self.k = float(lp.alpha), float(lp.beta), float(lp.k)
        if lp.norm_region not in (R.ACROSS_CHANNELS, R.WITHIN_CHANNEL):
            raise self.error(f"unknown norm_region {lp.norm_region}")
        self.across = lp.norm_region == R.ACROSS_CHANNELS
        self.buffers = Buffers(self.xp)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(f"needs a 4-D bottom (N, C, H, W), got shape {shape}")
        top[0].reshape(shape)

    # -- helpers -------------------------------------------------------------------
    def _padded(self, name: str, shape, dtype):
        """A zero-bordered buffer for window sums, and its interior view."""
        n, c, h, w = shape
        p = self.pre
        if self.across:
            buf = self.buffers.get(name, (n, c + 2 * p, h, w), dtype, fill=0)
            return buf, buf[:, p:p + c]
        buf = self.buffers.get(name, (n, c, h + 2 * p, w + 2 * p), dtype, fill=0)
        return buf, buf[:, :, p:p + h, p:p + w]

    def _window_sum(self, padded, out, rows) -> None:
        """out = sum over each element's window of a zero-bordered array (some images of
        it); `rows`: scratch for WITHIN_CHANNEL's row sums, (n, c, h, padded width)."""
        xp = self.xp
        n, c, h, w = out.shape
        if self.across:
            out[...] = padded[:, 0:c]
            for q in range(1, self.size):
                xp.add(out, padded[:, q:q + c], out=out)
            return
        rows[...] = padded[:, :, 0:h]
        for q in range(1, self.size):
            xp.add(rows, padded[:, :, q:q + h], out=rows)
        out[...] = rows[:, :, :, 0:w]
        for q in range(1, self.size):
            xp.add(out, rows[:, :, :, q:q + w], out=out)

    def _rows(self, padded, shape, dtype):
        """Scratch for `_window_sum` (None ACROSS_CHANNELS)."""
        if self.across:
            return None
        n, c, h, _ = shape
        return self.buffers.get("rows", (n, c, h, padded.shape[3]), dtype)

    def _neg_power(self, scale, out) -> None:
        """out = scale ** -beta (Caffe's beta 0.75 as two square roots: faster, exact enough)."""
        xp = self.xp
        if self.beta == 0.75:
            xp.sqrt(scale, out=out)
            xp.sqrt(out, out=out)
            xp.divide(out, scale, out=out)
        else:
            xp.power(scale, -self.beta, out=out)

    def _norm_count(self) -> int:
        return self.size if self.across else self.size * self.size

    # -- forward / backward ---------------------------------------------------------
    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x, y = bottom[0].data, top[0].data
        shape = x.shape
        sq, inner = self._padded("sq", shape, x.dtype)
        scale = self.buffers.get("scale", shape, x.dtype)
        factor = self.buffers.get("factor", shape, x.dtype)
        rows = self._rows(sq, shape, x.dtype)
        t = x.dtype.type

        def images(a: int, b: int) -> None:
            xp.multiply(x[a:b], x[a:b], out=inner[a:b])
            self._window_sum(sq[a:b], scale[a:b], None if rows is None else rows[a:b])
            scale[a:b] *= t(self.alpha / self._norm_count())
            scale[a:b] += t(self.k if self.across else 1.0)
            self._neg_power(scale[a:b], factor[a:b])
            xp.multiply(x[a:b], factor[a:b], out=y[a:b])

        lanes.split(xp, shape[0], images)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        xp = self.xp
        x, y, dy = bottom[0].data, top[0].data, top[0].diff
        shape = x.shape
        scale = self.buffers.get("scale", shape, x.dtype)
        factor = self.buffers.get("factor", shape, x.dtype)
        ratio, inner = self._padded("ratio", shape, x.dtype)
        acc = self.buffers.get("acc", shape, x.dtype)
        rows = self._rows(ratio, shape, x.dtype)
        dx = bottom[0].diff
        t = x.dtype.type

        def images(a: int, b: int) -> None:
            xp.multiply(dy[a:b], y[a:b], out=inner[a:b])
            xp.divide(inner[a:b], scale[a:b], out=inner[a:b])
            self._window_sum(ratio[a:b], acc[a:b], None if rows is None else rows[a:b])
            xp.multiply(acc[a:b], x[a:b], out=acc[a:b])
            acc[a:b] *= t(-2.0 * self.alpha * self.beta / self._norm_count())
            xp.multiply(dy[a:b], factor[a:b], out=dx[a:b])
            dx[a:b] += acc[a:b]

        lanes.split(xp, shape[0], images)

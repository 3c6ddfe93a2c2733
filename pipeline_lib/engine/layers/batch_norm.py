"""BatchNorm: normalise each channel (axis 1) to zero mean and unit variance.

No learnable scale or shift (a Scale layer follows for that). The three blobs are
Caffe's running statistics, not weights: (C,) sum of means, (C,) sum of variances
and a (1,) scale factor, each decayed by `moving_average_fraction` and added to
once per training forward; the estimates are the sums divided by the factor
(0 when the factor is 0). Variances are stored with the m/(m-1) correction, m
the values per channel. The solver must never move them: as Caffe does, the
layer gives them lr_mult 0 (a param spec asking for another rate is an error).

`use_global_stats` (default: false in TRAIN, true in TEST) normalises with the
stored estimates instead of the batch's. Statistics are per channel over every
other axis, written with broadcasting so that channels-last blobs work as is.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.proto import caffe_pb2


@register
class BatchNormLayer(Layer):
    type = "BatchNorm"
    num_bottom = (1, 1)
    num_top = (1, 1)
    accepts_channels_last = True

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        bp = self.param.batch_norm_param
        self.use_global_stats = (bp.use_global_stats if bp.HasField("use_global_stats")
                                 else self.phase == caffe_pb2.TEST)
        self.fraction = float(bp.moving_average_fraction)
        self.eps = float(bp.eps)
        shape = bottom[0].shape
        if len(shape) < 2:
            raise self.error(f"needs a bottom with a channel axis (at least 2 axes), "
                             f"got shape {shape}")
        self.channels = shape[1]
        want = [(self.channels,), (self.channels,), (1,)]
        if self.blobs:
            got = [b.shape for b in self.blobs]
            if got != want:
                raise self.error(f"statistics blobs have shapes {got}, expected {want}")
        else:
            self.blobs = [self.make_blob(s) for s in want]  # zeros
        specs = self.param.param
        for i in range(len(self.blobs)):
            if i == len(specs):
                specs.add().lr_mult = 0
            elif specs[i].lr_mult != 0:
                raise self.error(f"param {i} has lr_mult {specs[i].lr_mult:g}: the blobs of "
                                 "BatchNorm are running statistics, not learnable (allowed: "
                                 "lr_mult 0, or no param spec); learn a scale and shift "
                                 "with a Scale layer (bias_term: true)")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) < 2 or shape[1] != self.channels:
            raise self.error(f"bottom shape {shape} does not have the {self.channels} "
                             f"channels (axis 1) the statistics were made for")
        self.axes = (0,) + tuple(range(2, len(shape)))
        self.stat_shape = (1, self.channels) + (1,) * (len(shape) - 2)
        if top[0] is not bottom[0]:
            top[0].reshape(shape)

    def _stored_estimates(self):
        factor = float(self.blobs[2].data[0])
        scale = 0.0 if factor == 0 else 1.0 / factor
        return self.blobs[0].data * scale, self.blobs[1].data * scale

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        x = bottom[0].data
        if self.use_global_stats:
            mean, var = self._stored_estimates()
            centred = x - mean.reshape(self.stat_shape)
        else:
            mean = x.mean(axis=self.axes)
            centred = x - mean.reshape(self.stat_shape)
            var = xp.square(centred).mean(axis=self.axes)
            m = x.size // self.channels
            correction = m / (m - 1) if m > 1 else 1.0
            self.blobs[2].data *= self.fraction
            self.blobs[2].data += 1
            self.blobs[0].data *= self.fraction
            self.blobs[0].data += mean
            self.blobs[1].data *= self.fraction
            self.blobs[1].data += correction * var
        self.std = xp.sqrt(var + self.eps).astype(x.dtype).reshape(self.stat_shape)
        # kept for backward: an in-place layer after this one may overwrite the top
        self.x_norm = centred / self.std
        top[0].data[...] = self.x_norm

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if not propagate_down[0]:
            return
        dy = top[0].diff
        if self.use_global_stats:
            bottom[0].diff[...] = dy / self.std
            return
        y = self.x_norm
        mean_dy = dy.mean(axis=self.axes, keepdims=True)
        mean_dy_y = (dy * y).mean(axis=self.axes, keepdims=True)
        bottom[0].diff[...] = (dy - mean_dy - mean_dy_y * y) / self.std

"""Caffe's `transform_param` applied to a whole batch at once.

Per image, in Caffe's order: crop (random offsets in TRAIN, centred in TEST),
mirror (a coin flip per image whenever `mirror: true`, in any phase, as
Caffe's DataTransformer does), subtract the mean (`mean_file`, cropped and
mirrored with the image, or `mean_value` per channel), then multiply by
`scale`. The arithmetic is `(x - mean) * scale` in the output dtype, as Caffe
computes it in its `Dtype`.

Random draws come only from the Generator given to the transformer, one set
per batch: mirror flags for all images (when `mirror`), then row offsets,
then column offsets (when cropping in TRAIN).
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.proto import caffe_pb2


class TransformError(ValueError):
    """Input that the transformation parameters cannot be applied to."""


class DataTransformer:
    """Crop, mirror, mean subtraction and scaling for N x C x H x W batches."""

    def __init__(self, transform_param: caffe_pb2.TransformationParameter, phase: int,
                 rng: np.random.Generator, mean: np.ndarray | None = None,
                 dtype=np.float32):
        p = transform_param
        self.param = p
        self.phase = phase
        self.rng = rng
        self.dtype = np.dtype(dtype)
        self.scale = float(p.scale)
        self.crop_size = int(p.crop_size)
        self.mirror = bool(p.mirror)
        if p.force_color and p.force_gray:
            raise TransformError("transform_param: cannot set both force_color and force_gray")
        if p.HasField("mean_file") and len(p.mean_value):
            raise TransformError(
                "transform_param: cannot specify mean_file and mean_value at the same time")
        if mean is None and p.HasField("mean_file"):
            from pipeline_lib.proto.blobproto import read_mean_binaryproto

            mean = read_mean_binaryproto(p.mean_file)
        if mean is not None and len(p.mean_value):
            raise TransformError("transform_param: a mean image was given and mean_value is set")
        self.mean = None if mean is None else np.asarray(mean, dtype=self.dtype)
        if self.mean is not None and self.mean.ndim != 3:
            raise TransformError(f"the mean image must be C x H x W, got shape {self.mean.shape}")
        self.mean_values = np.asarray(list(p.mean_value), dtype=self.dtype)

    # -- shapes -------------------------------------------------------------
    def output_shape(self, input_chw_shape, batch: int) -> tuple[int, int, int, int]:
        """Top shape for `batch` images of shape C x H x W (after decoding)."""
        c, h, w = (int(d) for d in input_chw_shape)
        self._check_input(c, h, w)
        if self.crop_size:
            h = w = self.crop_size
        return (int(batch), c, h, w)

    def _check_input(self, c: int, h: int, w: int) -> None:
        if c < 1:
            raise TransformError(f"input has {c} channels")
        if self.crop_size and (h < self.crop_size or w < self.crop_size):
            raise TransformError(
                f"crop_size {self.crop_size} is larger than the input image {h} x {w}")
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise TransformError(
                f"mean image has shape {'x'.join(map(str, self.mean.shape))}, the input "
                f"{c}x{h}x{w}; the mean file must match the (uncropped) input size")
        n_values = len(self.mean_values)
        if n_values not in (0, 1, c):
            raise TransformError(
                f"specify either 1 mean_value or as many as channels ({c}), got {n_values}")

    # -- encoded images ----------------------------------------------------------
    @property
    def decode_color(self) -> bool | None:
        """How to decode encoded images: True force_color, False force_gray, None native."""
        if self.param.force_color:
            return True
        if self.param.force_gray:
            return False
        return None

    # -- randomness ----------------------------------------------------------------
    def draw(self, n: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row offsets, column offsets and mirror flags for `n` images of H x W."""
        mirror = (self.rng.integers(0, 2, size=n).astype(bool) if self.mirror
                  else np.zeros(n, dtype=bool))
        crop = self.crop_size
        if crop and self.phase == caffe_pb2.TRAIN:
            h_off = self.rng.integers(0, height - crop + 1, size=n)
            w_off = self.rng.integers(0, width - crop + 1, size=n)
        elif crop:
            h_off = np.full(n, (height - crop) // 2)
            w_off = np.full(n, (width - crop) // 2)
        else:
            h_off = np.zeros(n, dtype=np.int64)
            w_off = np.zeros(n, dtype=np.int64)
        return h_off, w_off, mirror

    # -- the transform -----------------------------------------------------------
    def transform(self, batch: np.ndarray) -> np.ndarray:
        """Transform an N x C x H x W batch (uint8 or float); returns `self.dtype`."""
        batch = np.asarray(batch)
        if batch.ndim != 4:
            raise TransformError(f"expected an N x C x H x W batch, got shape {batch.shape}")
        n, c, h, w = batch.shape
        self._check_input(c, h, w)
        h_off, w_off, mirror = self.draw(n, h, w)
        return self.apply(batch, h_off, w_off, mirror)

    def apply(self, batch: np.ndarray, h_off: np.ndarray, w_off: np.ndarray,
              mirror: np.ndarray) -> np.ndarray:
        """The deterministic part of `transform`, for given offsets and flags."""
        n, c, h, w = batch.shape
        ch = cw = self.crop_size
        if not self.crop_size:
            ch, cw = h, w
        mean = self.mean
        if ch == h and cw == w and not mirror.any():
            out = batch.astype(self.dtype)  # always a fresh array
            if mean is not None:
                out -= mean
        else:
            # One strided window per image: a loop of slice copies runs an order of
            # magnitude faster than a single fancy-indexed gather over the batch.
            out = np.empty((n, c, ch, cw), self.dtype)
            for i in range(n):
                rows = slice(int(h_off[i]), int(h_off[i]) + ch)
                cols = slice(int(w_off[i]), int(w_off[i]) + cw)
                if mirror[i]:
                    cols = slice(cols.stop - 1, cols.start - 1 if cols.start else None, -1)
                out[i] = batch[i, :, rows, cols]
                if mean is not None:
                    out[i] -= mean[:, rows, cols]
        if len(self.mean_values):
            # one value applies to every channel; otherwise one per channel
            out -= self.mean_values.reshape(1, -1, 1, 1)
        if self.scale != 1.0:
            out *= self.dtype.type(self.scale)
        return out

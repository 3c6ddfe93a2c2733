"""pycaffe's `caffe.io`: images as H x W x K floats, and the Transformer to a net's input.

    t = Transformer({"data": net.blobs["data"].data.shape})
    t.set_transpose("data", (2, 0, 1))     # H x W x K -> K x H x W
    t.set_channel_swap("data", (2, 1, 0))  # RGB -> BGR
    t.set_raw_scale("data", 255)           # [0, 1] -> [0, 255]
    t.set_mean("data", mean_bgr)           # per channel (K,) or per pixel (K x H x W)
    net.blobs["data"].data[...] = t.preprocess("data", load_image("cat.jpg"))

`preprocess` does, in pycaffe's order: resize to the input's H x W, transpose,
channel swap, raw scale, subtract the mean, input scale; `deprocess` undoes them
(but the resize). `load_image` gives RGB (or grey, H x W x 1) in [0, 1], decoded as
`data/images` decodes every image file (EXIF orientation, any Pillow mode).
`resize_image` resizes each channel with Pillow (interp_order 0 nearest, 1 bilinear,
3 bicubic): pycaffe's numbers came from scikit-image, so resized pixels can differ
from pycaffe's by a few percent of the range; the rest is the same arithmetic.
`blobproto_to_array`, `array_to_blobproto`, `array_to_datum` and `datum_to_array` are
the proto tier's codecs under pycaffe's names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

_INTERPOLATION = {0: "nearest", 1: "bilinear", 3: "bicubic"}


class TransformerError(ValueError):
    """A Transformer setting that does not fit the input it is for."""


def load_image(filename: str | os.PathLike, color: bool = True) -> np.ndarray:
    """The image file as H x W x 3 RGB (or H x W x 1 with color=False), float32 in [0, 1]."""
    from pipeline_lib.data.images import open_image

    pixels = np.asarray(open_image(filename, gray=not color), dtype=np.float32) / 255
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels


def resize_image(im: np.ndarray, new_dims: Sequence[int], interp_order: int = 1) -> np.ndarray:
    """H x W x K image resized to new_dims (H, W), every channel alike, as float32."""
    from PIL import Image

    from pipeline_lib.data.images import resampling_filter

    im = np.asarray(im, dtype=np.float32)
    if im.ndim != 3:
        raise ValueError(f"resize_image: expected an H x W x K image, got shape {im.shape}")
    if interp_order not in _INTERPOLATION:
        raise ValueError(f"resize_image: interp_order {interp_order!r}: expected 0 (nearest), "
                         "1 (bilinear) or 3 (bicubic)")
    h, w = (int(d) for d in new_dims)
    if (h, w) == im.shape[:2]:
        return im.copy()
    if im.size and im.min() == im.max():  # constant: nothing for a filter to do
        return np.full((h, w, im.shape[2]), im.flat[0], dtype=np.float32)
    resample = resampling_filter(_INTERPOLATION[interp_order])
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(im[:, :, k]), "F")
                           .resize((w, h), resample)) for k in range(im.shape[2])]
    return np.stack(channels, axis=2).astype(np.float32, copy=False)


def oversample(images: Sequence[np.ndarray], crop_dims: Sequence[int]) -> np.ndarray:
    """10 crops of each H x W x K image: the 4 corners and the centre, then the same 5
    mirrored left-right; (10 N) x crop_h x crop_w x K."""
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("oversample: no images")
    im_h, im_w, k = images[0].shape
    ch, cw = (int(d) for d in crop_dims)
    if ch > im_h or cw > im_w:
        raise ValueError(f"oversample: crop {ch}x{cw} is larger than the images ({im_h}x{im_w})")
    corners = [(i, j) for i in (0, im_h - ch) for j in (0, im_w - cw)]
    centre = (int(im_h / 2.0 - ch / 2.0), int(im_w / 2.0 - cw / 2.0))
    starts = [*corners, centre]
    crops = np.empty((10 * len(images), ch, cw, k), dtype=np.float32)
    for n, im in enumerate(images):
        if im.shape != (im_h, im_w, k):
            raise ValueError(f"oversample: image {n} has shape {im.shape}, image 0 "
                             f"{(im_h, im_w, k)}")
        for c, (i, j) in enumerate(starts):
            crop = im[i:i + ch, j:j + cw, :]
            crops[10 * n + c] = crop
            crops[10 * n + 5 + c] = crop[:, ::-1, :]
    return crops


# -- protobuf records, as pycaffe's io names them -----------------------------------------
def blobproto_to_array(blob, return_diff: bool = False) -> np.ndarray:
    """A BlobProto's values (or its diff) as an array of its shape."""
    from pipeline_lib.proto.blobproto import blob_proto_to_array, blob_shape

    if not return_diff:
        return blob_proto_to_array(blob)
    diff = np.array(blob.diff, dtype=np.float32)
    shape = blob_shape(blob)
    if diff.size != int(np.prod(shape)):
        raise ValueError(f"blob of shape {list(shape)} holds {diff.size} diff values")
    return diff.reshape(shape)


def array_to_blobproto(arr: np.ndarray, diff: np.ndarray | None = None):
    """A BlobProto holding `arr` (and `diff`), shape set."""
    from pipeline_lib.proto.blobproto import array_to_blob_proto

    arr = np.asarray(arr)
    if diff is not None and np.shape(diff) != arr.shape:
        raise ValueError(f"diff of shape {np.shape(diff)} for an array of shape {arr.shape}")
    return array_to_blob_proto(arr, diff=None if diff is None else np.asarray(diff))


def array_to_datum(arr: np.ndarray, label: int | None = None):
    """A Datum of a C x H x W image: uint8 as bytes, floats as float_data."""
    from pipeline_lib.proto.datum import array_to_datum as to_datum

    if np.asarray(arr).ndim != 3:
        raise ValueError(f"array_to_datum: expected a C x H x W array, got {np.shape(arr)}")
    return to_datum(arr, 0 if label is None else label)


def datum_to_array(datum) -> np.ndarray:
    """A Datum's image as C x H x W (uint8 or float32; encoded images decoded)."""
    from pipeline_lib.proto.datum import datum_to_array as to_array

    return to_array(datum)


class Transformer:
    """Prepares H x W x K images for the net inputs named in `inputs` (name -> shape)."""

    def __init__(self, inputs: Mapping[str, Sequence[int]]):
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose: dict[str, tuple[int, ...]] = {}
        self.channel_swap: dict[str, tuple[int, ...]] = {}
        self.raw_scale: dict[str, float] = {}
        self.mean: dict[str, np.ndarray] = {}
        self.input_scale: dict[str, float] = {}

    def _check(self, in_: str) -> tuple[int, ...]:
        if in_ not in self.inputs:
            raise TransformerError(f"{in_!r} is not one of the net's inputs "
                                   f"({', '.join(self.inputs)})")
        return self.inputs[in_]

    # -- settings ---------------------------------------------------------------------
    def set_transpose(self, in_: str, order: Sequence[int]) -> None:
        """The axes order taking the image to the input's (e.g. (2, 0, 1): HWK -> KHW)."""
        shape = self._check(in_)
        if len(order) != len(shape) - 1:
            raise TransformerError(f"transpose order {tuple(order)} for input {in_!r}: give "
                                   f"{len(shape) - 1} axes (the input is {shape})")
        self.transpose[in_] = tuple(int(a) for a in order)

    def set_channel_swap(self, in_: str, order: Sequence[int]) -> None:
        """Reorder channels after the transpose (e.g. (2, 1, 0): RGB -> BGR)."""
        shape = self._check(in_)
        if len(order) != shape[1]:
            raise TransformerError(f"channel swap {tuple(order)} for input {in_!r}: give "
                                   f"{shape[1]} channels (the input is {shape})")
        self.channel_swap[in_] = tuple(int(c) for c in order)

    def set_raw_scale(self, in_: str, scale: float) -> None:
        """Multiply the raw pixels (after transpose and swap; 255 for images in [0, 1])."""
        self._check(in_)
        self.raw_scale[in_] = float(scale)

    def set_mean(self, in_: str, mean: np.ndarray) -> None:
        """Subtract, after the raw scale: K values (per channel) or a K x H x W image."""
        shape = self._check(in_)
        mean = np.asarray(mean, dtype=np.float32)
        if mean.ndim == 1:
            if mean.shape[0] != shape[1]:
                raise TransformerError(f"mean of {mean.shape[0]} channel values for input "
                                       f"{in_!r} of {shape[1]} channels")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if mean.ndim == 2:
                mean = mean[np.newaxis]
            if mean.ndim != 3 or mean.shape != shape[1:]:
                raise TransformerError(f"mean of shape {mean.shape} for input {in_!r}: expected "
                                       f"{shape[1]} values or a {'x'.join(map(str, shape[1:]))} "
                                       "image")
        self.mean[in_] = mean

    def set_input_scale(self, in_: str, scale: float) -> None:
        """Multiply last, after the mean (e.g. 0.017 for unit variance)."""
        self._check(in_)
        self.input_scale[in_] = float(scale)

    # -- the transform ------------------------------------------------------------------
    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """One H x W x K image to the input's K x H x W (with set_transpose((2, 0, 1)))."""
        shape = self._check(in_)
        out = np.asarray(data).astype(np.float32, copy=True)
        if out.shape[:2] != shape[2:]:
            out = resize_image(out, shape[2:])
        if in_ in self.transpose:
            out = out.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            out = out[list(self.channel_swap[in_]), :, :]
        if in_ in self.raw_scale:
            out *= np.float32(self.raw_scale[in_])
        if in_ in self.mean:
            out -= self.mean[in_]
        if in_ in self.input_scale:
            out *= np.float32(self.input_scale[in_])
        return np.ascontiguousarray(out)

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """The inverse of preprocess (but the resize): net input back to an image."""
        self._check(in_)
        out = np.array(data, dtype=np.float32).squeeze()
        if in_ in self.input_scale:
            out /= np.float32(self.input_scale[in_])
        if in_ in self.mean:
            out += self.mean[in_]
        if in_ in self.raw_scale:
            out /= np.float32(self.raw_scale[in_])
        if in_ in self.channel_swap:
            out = out[np.argsort(self.channel_swap[in_]), :, :]
        if in_ in self.transpose:
            out = out.transpose(np.argsort(self.transpose[in_]))
        return out

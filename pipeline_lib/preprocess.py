"""Raw images to a net's input, stated once for prediction and evaluation.

A trained net expects the pixels its Data layer gave it: database records
(uint8, C x H x W, BGR for colour, at the size the images were resized to)
put through `transform_param` in the TEST phase: a centred crop to the net's
input, the mean image or per-channel mean values subtracted, then `scale`.
A `Preprocessor` holds those settings together with what came before the
database, so that an image file gets there the same way: decoded grey or
colour, resized to the database size (`image_size`), channels in the order
the net was trained on. `raw_scale` multiplies the raw pixels first (255 for
float images in [0, 1], as pycaffe's Transformer has it).

The arithmetic is `DataTransformer`'s (TEST phase, no mirroring), so a record
prepared here is bit for bit what the Data layer feeds the net. Build one
from a net (`for_net`: its Input shape, and the transform_param of its own or
another net's data layer, e.g. the one a .caffemodel carries) or from a
TransformationParameter (`from_transform_param`); keyword overrides replace
single settings.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline_lib.data.transform import DataTransformer
from pipeline_lib.proto import caffe_pb2

CHANNEL_ORDERS = ("BGR", "RGB")


class PreprocessError(ValueError):
    """Settings or an image that do not fit the net's input."""


@dataclass(frozen=True, eq=False)
class Preprocessor:
    """How raw images (C x H x W uint8, or H x W grey) become a batch of net input."""

    input_shape: tuple[int, int, int]  # C, H, W of one input of the net
    scale: float = 1.0
    mean: np.ndarray | None = field(default=None, repr=False)  # C x H x W at image_size
    mean_values: tuple[float, ...] = ()
    raw_scale: float = 1.0
    channel_order: str = "BGR"  # the order the net was trained on
    image_size: tuple[int, int] | None = None  # (H, W) before the centre crop
    resample: str = "bilinear"  # Pillow filter for resizing image files

    def __post_init__(self) -> None:
        c, h, w = (int(d) for d in self.input_shape)
        object.__setattr__(self, "input_shape", (c, h, w))
        if min(c, h, w) < 1:
            raise PreprocessError(f"net input shape {c}x{h}x{w} has an empty dimension")
        if self.channel_order not in CHANNEL_ORDERS:
            raise PreprocessError(f"channel order {self.channel_order!r}: expected BGR or RGB")
        if self.mean is not None and self.mean_values:
            raise PreprocessError("give a mean image or mean values, not both")
        if self.mean is not None:
            mean = np.asarray(self.mean, dtype=np.float32)
            if mean.ndim != 3 or mean.shape[0] != c:
                raise PreprocessError(f"mean image has shape {mean.shape}; the net takes "
                                      f"{c} channel(s): expected {c} x H x W")
            object.__setattr__(self, "mean", mean)
        if len(self.mean_values) not in (0, 1, c):
            raise PreprocessError(f"{len(self.mean_values)} mean values for {c} channel(s): "
                                  f"give 1 or {c}")
        object.__setattr__(self, "mean_values", tuple(float(v) for v in self.mean_values))
        size = self.image_size
        if size is None:
            size = self.mean.shape[1:] if self.mean is not None else (h, w)
        size = (int(size[0]), int(size[1]))
        object.__setattr__(self, "image_size", size)
        if self.mean is not None and self.mean.shape[1:] != size:
            raise PreprocessError(f"mean image is {self.mean.shape[1]}x{self.mean.shape[2]} "
                                  f"but images are resized to {size[0]}x{size[1]}; the mean "
                                  "must have the (uncropped) image size")
        if size != (h, w):
            if size[0] < h or size[1] < w:
                raise PreprocessError(f"images of {size[0]}x{size[1]} are smaller than the "
                                      f"net's input {h}x{w}")
            if h != w:
                raise PreprocessError(f"a centre crop from {size[0]}x{size[1]} to the non-square "
                                      f"input {h}x{w} is not supported (crop_size is square)")
        tp = caffe_pb2.TransformationParameter(scale=self.scale, mean_value=self.mean_values)
        if size != (h, w):
            tp.crop_size = h
        transformer = DataTransformer(tp, caffe_pb2.TEST, np.random.default_rng(0),
                                      mean=self.mean)
        object.__setattr__(self, "_transformer", transformer)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_transform_param(cls, tp: caffe_pb2.TransformationParameter,
                             input_shape: Sequence[int], **overrides) -> Preprocessor:
        """The TEST-phase transform of `tp` for a net taking `input_shape` (C, H, W).

        A crop_size must equal the input's size; images are then resized to the
        mean image's size (or `image_size`) and centre-cropped. Mirroring is off.
        """
        c, h, w = (int(d) for d in input_shape)
        if tp.crop_size and (tp.crop_size != h or tp.crop_size != w):
            raise PreprocessError(f"transform_param crop_size {tp.crop_size} does not match the "
                                  f"net's input {h}x{w}")
        settings: dict = {"scale": float(tp.scale), "mean_values": tuple(tp.mean_value)}
        if tp.mean_file:
            from pipeline_lib.proto.blobproto import read_mean_binaryproto

            settings["mean"] = read_mean_binaryproto(tp.mean_file)
        return cls((c, h, w), **settings).replace(**overrides)

    @classmethod
    def for_net(cls, net: caffe_pb2.NetParameter, *, input_blob: str | None = None,
                transform_from: caffe_pb2.NetParameter | None = None,
                **overrides) -> Preprocessor:
        """For the Input blob of a deploy net (the first, or `input_blob`).

        The transform comes from the data layer of `transform_from` (a train/val
        net or the training net a .caffemodel carries) or else of `net` itself;
        with neither, no transform but the overrides.
        """
        shape = input_shape(net, input_blob)
        tp = None
        for source in (transform_from, net):
            if source is not None and (tp := find_transform_param(source)) is not None:
                break
        if tp is None:
            return cls(shape).replace(**overrides)
        return cls.from_transform_param(tp, shape, **overrides)

    def replace(self, **overrides) -> Preprocessor:
        """A copy with some settings replaced (None: keep).

        A mean image replaces mean values and sets the image size; mean values
        replace a mean image and keep the image size.
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "mean" in overrides and "mean_values" not in overrides:
            overrides["mean_values"] = ()
        if overrides.get("mean_values") and "mean" not in overrides:
            overrides["mean"] = None
        if isinstance(overrides.get("mean"), str | os.PathLike):
            from pipeline_lib.proto.blobproto import read_mean_binaryproto

            overrides["mean"] = read_mean_binaryproto(overrides["mean"])
        new_size = overrides.get("mean") is not None or "input_shape" in overrides
        if new_size and "image_size" not in overrides:
            overrides["image_size"] = None  # follow the new mean image or input
        if not overrides:
            return self
        return dataclasses.replace(self, **overrides)

    # -- properties ----------------------------------------------------------------------
    @property
    def gray(self) -> bool:
        return self.input_shape[0] == 1

    @property
    def crop_size(self) -> int:
        """The centred crop applied after resizing (0: none)."""
        return int(self._transformer.crop_size)

    def describe(self) -> dict:
        """The settings as plain values (for logs and JSON)."""
        return {
            "input_shape": list(self.input_shape),
            "image_size": list(self.image_size),
            "crop_size": self.crop_size,
            "channel_order": self.channel_order if not self.gray else "gray",
            "raw_scale": self.raw_scale,
            "mean": None if self.mean is None else "image",
            "mean_values": list(self.mean_values),
            "scale": self.scale,
        }

    # -- raw images ------------------------------------------------------------------------
    def load(self, path: str | os.PathLike) -> np.ndarray:
        """An image file as C x H x W uint8 at `image_size`, in the net's channel order."""
        from pipeline_lib.data.images import ResizeSpec, read_image

        if self.input_shape[0] not in (1, 3):
            raise PreprocessError(f"{path}: the net takes {self.input_shape[0]} channels; image "
                                  "files give 1 (grey) or 3 (colour)")
        h, w = self.image_size
        image = read_image(path, gray=self.gray, resize=ResizeSpec(h, w, self.resample))
        return self._ordered(image)

    def fit(self, image: np.ndarray, where: str = "image") -> np.ndarray:
        """An array image (H x W grey, or C x H x W in BGR order) at `image_size`."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[np.newaxis]
        c = self.input_shape[0]
        if image.ndim != 3 or image.shape[0] != c:
            raise PreprocessError(f"{where}: image of shape {image.shape}; the net takes "
                                  f"{c} channel(s)")
        if image.shape[1:] != self.image_size:
            image = self._resized(image, where)
        return self._ordered(image)

    def _resized(self, image: np.ndarray, where: str) -> np.ndarray:
        from PIL import Image

        from pipeline_lib.data.images import resampling_filter

        if image.dtype != np.uint8 or image.shape[0] not in (1, 3):
            raise PreprocessError(f"{where}: is {image.shape[1]}x{image.shape[2]}, the net wants "
                                  f"{self.image_size[0]}x{self.image_size[1]}; only 8-bit grey "
                                  "or colour images are resized")
        h, w = self.image_size
        hwc = image.transpose(1, 2, 0)
        pil = Image.fromarray(hwc[:, :, 0] if image.shape[0] == 1 else hwc)
        out = np.asarray(pil.resize((w, h), resampling_filter(self.resample)))
        return out[np.newaxis].copy() if out.ndim == 2 else np.ascontiguousarray(
            out.transpose(2, 0, 1))

    def _ordered(self, image: np.ndarray) -> np.ndarray:
        if self.channel_order == "RGB" and image.shape[0] == 3:
            return np.ascontiguousarray(image[::-1])
        return image

    # -- the transform -----------------------------------------------------------------------
    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """N images (C x H x W at `image_size`) -> the net's N x C x H x W float32 input."""
        batch = np.asarray(images) if not isinstance(images, np.ndarray) else images
        if batch.ndim == 3:
            batch = batch[np.newaxis]
        want = (self.input_shape[0], *self.image_size)
        if batch.ndim != 4 or batch.shape[1:] != want:
            raise PreprocessError(f"batch of shape {batch.shape}: expected N x "
                                  f"{'x'.join(map(str, want))} (use load/fit first)")
        if self.raw_scale != 1.0:
            batch = batch.astype(np.float32) * np.float32(self.raw_scale)
        return self._transformer.transform(batch)


def input_shape(net: caffe_pb2.NetParameter, blob: str | None = None) -> tuple[int, int, int]:
    """C, H, W of an Input layer's top (the net's first input, or `blob`)."""
    from pipeline_lib.engine.layers.data_layer import data_layer_class

    for layer in net.layer:
        cls = data_layer_class(layer.type)
        if cls is None or not cls.is_input:
            continue
        shapes = layer.input_param.shape
        for i, top in enumerate(layer.top):
            if blob is not None and top != blob:
                continue
            if not shapes:
                raise PreprocessError(f"net {net.name!r}: Input layer {layer.name!r} gives no "
                                      "shape for its tops")
            dims = list(shapes[0 if len(shapes) == 1 else i].dim)
            if len(dims) != 4:
                raise PreprocessError(f"net {net.name!r}: input {top!r} has shape {dims}; "
                                      "expected N x C x H x W")
            return dims[1], dims[2], dims[3]
    which = f"Input blob {blob!r}" if blob else "Input layer"
    raise PreprocessError(f"net {net.name!r} has no {which} (a deploy net starts with one)")


def find_transform_param(net: caffe_pb2.NetParameter, phase: int = caffe_pb2.TEST
                         ) -> caffe_pb2.TransformationParameter | None:
    """The transform_param of the net's data layer for `phase` (else any data layer's)."""
    from pipeline_lib.engine.layers.data_layer import data_layer_class

    found = [layer for layer in net.layer if layer.HasField("transform_param")
             and (cls := data_layer_class(layer.type)) is not None and cls.transforms]
    for layer in found:
        if any(rule.HasField("phase") and rule.phase == phase for rule in layer.include):
            return layer.transform_param
    return found[0].transform_param if found else None

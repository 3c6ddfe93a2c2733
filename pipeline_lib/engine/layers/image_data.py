"""The "ImageData" layer: batches of image files named in a listing of `path label` lines.

As Caffe's ImageDataLayer: `image_data_param.source` is the listing (the label
follows the last space, so paths may hold spaces), each path is prefixed with
`root_folder` as given (relative paths are to the working directory), images
are decoded as OpenCV does, BGR, or grey with `is_color: false`, and resized
to `new_height` x `new_width` when both are set. Then `transform_param`
(crop, mirror, mean, scale) applies as in the Data layer. Tops: data
(N x C x H x W) and label (N). Items are read in listing order and wrap
around at the end; with `shuffle` the order is drawn anew at the start and at
every pass over the listing; `rand_skip` skips a random number of items first.

Randomness comes from the layer's own Generator (seeded from the net's rng),
and each batch is tagged with the state after it (the position, the Generator
state its pass's order was drawn from, and the Generator's state), so a
resumed run continues exactly; batches are prefetched like the Data layer's.
"""

from __future__ import annotations

import copy

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.data.images import ImageError, ResizeSpec, read_image
from pipeline_lib.data.listing import ListingEntry, read_listing
from pipeline_lib.data.transform import DataTransformer, TransformError
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.data_layer import Batch, PrefetchingDataLayer


class _ImageSource:
    """Reads, decodes and transforms batches of the listing's images, in (shuffled) order."""

    def __init__(self, entries: list[ListingEntry], root: str, where: str, gray: bool,
                 resize: ResizeSpec | None, transformer: DataTransformer,
                 gen: np.random.Generator, batch_size: int, dtype: np.dtype, shuffle: bool):
        self.entries = entries
        self.root = root
        self.where = where
        self.gray = gray
        self.resize = resize
        self.transformer = transformer
        self.gen = gen
        self.batch_size = batch_size
        self.dtype = dtype
        self.shuffle = shuffle
        self.pos = 0
        self.order_rng: dict | None = None
        self.order = np.arange(len(entries))
        if shuffle:
            self._draw_order()

    def _draw_order(self, rng_state: dict | None = None) -> None:
        if rng_state is not None:
            self.gen.bit_generator.state = copy.deepcopy(rng_state)
        self.order_rng = copy.deepcopy(self.gen.bit_generator.state)
        self.order = self.gen.permutation(len(self.entries))

    def state(self) -> dict:
        return {"pos": self.pos, "order_rng": copy.deepcopy(self.order_rng),
                "rng": copy.deepcopy(self.gen.bit_generator.state)}

    def restore(self, state: dict) -> None:
        pos = int(state["pos"])
        if not 0 <= pos < len(self.entries):
            raise ValueError(f"saved position {pos} is outside the listing's "
                             f"{len(self.entries)} images")
        if self.shuffle and state.get("order_rng") is not None:
            self._draw_order(state["order_rng"])
        elif not self.shuffle:
            self.order_rng, self.order = None, np.arange(len(self.entries))
        self.gen.bit_generator.state = copy.deepcopy(state["rng"])
        self.pos = pos

    def skip(self, count: int) -> None:
        if count >= len(self.entries):
            raise ValueError(f"rand_skip drew {count}, but the listing holds "
                             f"{len(self.entries)} images")
        self.pos = count

    def read(self, entry: ListingEntry) -> np.ndarray:
        try:
            return read_image(self.root + entry.path, gray=self.gray, resize=self.resize)
        except ImageError as exc:
            raise ImageError(f"{self.where} line {entry.line}: {exc}") from None

    def output_shape(self) -> tuple:
        """The top shape of a batch starting at the next image."""
        entry = self.entries[int(self.order[self.pos])]
        return self._transformed(entry, self.transformer.output_shape,
                                 self.read(entry).shape, self.batch_size)

    def next_batch(self) -> Batch:
        """The next batch, transformed; after an error the source is back at its start."""
        start = self.state()
        try:
            first = self.entries[int(self.order[self.pos])]
            images, labels = self._read_batch()
            data = self._transformed(first, self.transformer.transform, images)
        except BaseException:
            self.restore(start)
            raise
        return Batch(data, labels, self.state())

    def _transformed(self, first: ListingEntry, step, *args):
        """`step(*args)`; its errors named by the batch's first image, as its shape is."""
        try:
            return step(*args)
        except TransformError as exc:
            raise TransformError(f"{self.where} line {first.line} ({first.path!r}): "
                                 f"{exc}") from None

    def _read_batch(self) -> tuple[np.ndarray, np.ndarray]:
        images = []
        labels = np.empty(self.batch_size, self.dtype)
        for i in range(self.batch_size):
            entry = self.entries[int(self.order[self.pos])]
            image = self.read(entry)
            if images and image.shape != images[0].shape:
                raise ValueError(f"{self.where} line {entry.line}: image {entry.path!r} is "
                                 f"{image.shape}, the batch's first {images[0].shape}; a batch "
                                 "needs one size (set new_height and new_width)")
            images.append(image)
            labels[i] = entry.label
            self.pos += 1
            if self.pos == len(self.entries):
                self.pos = 0
                if self.shuffle:
                    self._draw_order()
        return np.stack(images), labels


@register
class ImageDataLayer(PrefetchingDataLayer):
    """Caffe's "ImageData" layer: tops `data` and `label` from a listing of image files."""

    type = "ImageData"
    param_field = "image_data_param"
    num_top = (2, 2)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.image_data_param
        self.batch_size = self._batch_size()
        if bool(p.new_height) != bool(p.new_width):
            raise self.error("image_data_param: set both new_height and new_width, or neither")
        path = self._source_path("a listing of 'path label' lines")
        try:
            entries = read_listing(path)
        except (OSError, ValueError) as exc:
            raise self.error(str(exc)) from None
        self._open_resources()
        gen = self._own_generator()
        transformer = self._transformer(gen)
        resize = ResizeSpec(int(p.new_height), int(p.new_width)) if p.new_height else None
        source = _ImageSource(entries, p.root_folder, str(path), not p.is_color, resize,
                              transformer, gen, self.batch_size, self.dtype, bool(p.shuffle))
        try:
            if p.rand_skip:
                source.skip(int(gen.integers(0, p.rand_skip)))
            data_shape = source.output_shape()
        except ValueError as exc:
            raise self.error(str(exc)) from None
        self._start(source, data_shape)

    def set_state(self, state: dict) -> None:
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.error(f"saved state does not fit this layer "
                             f"({type(exc).__name__}: {exc})") from None

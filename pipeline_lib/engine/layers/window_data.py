"""The "WindowData" layer (R-CNN's): batches of windows cut from images and warped to a square.

`window_data_param.source` is Caffe's window file, whitespace-separated records

    # <image index>
    <image path>            (prefixed with root_folder as given; no spaces)
    <channels> <height> <width>
    <number of windows>
    <class> <overlap> <x1> <y1> <x2> <y2>      (one line per window, 0-based, inclusive)

A window whose overlap is at least `fg_threshold` is foreground (its class must
be positive); one below `bg_threshold` is background (label 0); others are
unused. A batch of `batch_size` holds int(batch_size * fg_fraction) foreground
windows after the rest, background ones, each drawn at random (with
replacement). Each window is cut from its image (read in colour, BGR, with
Pillow), optionally grown so that `context_pad` pixels of context surround it
once warped, made square first with `crop_mode: "square"` (default "warp"),
clipped to the image (the part outside stays 0), resized bilinearly to fill
`crop_size` x `crop_size` and flipped at random with `mirror`; then
`(pixel - mean) * scale`, the mean being the central crop of `mean_file` or
`mean_value` per channel. Crop size, mirror, mean and scale come from
transform_param with window_data_param's deprecated fields folded in (Caffe
itself reads `scale` from window_data_param only). Pillow's bilinear filter
smooths when it shrinks, where OpenCV's does not, so shrunk windows differ
slightly from Caffe's. `cache_images` keeps decoded images in memory.

Draws come from the layer's own Generator (seeded from the net's rng): per
window, its index, then a coin for mirror when mirroring. Batches are
prefetched and resumable like the Data layer's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline_lib.core.blob import Blob
from pipeline_lib.data.images import ImageError, image_to_array, open_image
from pipeline_lib.data.transform import DataTransformer
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.data_layer import Batch, PrefetchingDataLayer
from pipeline_lib.proto import caffe_pb2

CROP_MODES = ("warp", "square")


@dataclass(frozen=True)
class Window:
    image: int  # index into the list of images
    label: int
    overlap: float
    box: tuple[int, int, int, int]  # x1, y1, x2, y2, inclusive
    line: int


def read_window_file(path: str, root: str, fg_threshold: float, bg_threshold: float
                     ) -> tuple[list[str], list[Window], list[Window]]:
    """(image paths, foreground windows, background windows) of a window file."""
    tokens = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            tokens.extend((t, number) for t in line.split())
    images: list[str] = []
    fg: list[Window] = []
    bg: list[Window] = []
    pos = 0

    def take(kind, what):
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"{path!r}: ends where {what} was expected")
        text, number = tokens[pos]
        pos += 1
        try:
            return kind(text), number
        except ValueError:
            raise ValueError(f"{path!r} line {number}: expected {what}, found {text!r}") from None

    if not tokens:
        raise ValueError(f"{path!r}: the window file is empty")
    while pos < len(tokens):
        mark, number = take(str, "'#'")
        if mark != "#":
            raise ValueError(f"{path!r} line {number}: expected '# <image index>', "
                             f"found {mark!r}")
        take(int, "the image index")
        image_path, _ = take(str, "an image path")
        for what in ("channels", "height", "width"):
            take(int, f"the image's {what}")
        count, number = take(int, "the number of windows")
        if count < 0:
            raise ValueError(f"{path!r} line {number}: negative number of windows {count}")
        for _ in range(count):
            label, number = take(int, "a window's class")
            overlap, _ = take(float, "a window's overlap")
            box = tuple(take(int, "a window coordinate")[0] for _ in range(4))
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"{path!r} line {number}: window {box} has x2 < x1 or y2 < y1")
            if overlap >= fg_threshold:
                if label <= 0:
                    raise ValueError(f"{path!r} line {number}: foreground window (overlap "
                                     f"{overlap} >= fg_threshold {fg_threshold}) has class "
                                     f"{label}; foreground classes must be positive")
                fg.append(Window(len(images), label, overlap, box, number))
            elif overlap < bg_threshold:
                bg.append(Window(len(images), 0, 0.0, box, number))
        images.append(root + image_path)
    return images, fg, bg


def c_round(x: float) -> int:
    """C's round(): halves away from zero."""
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def window_geometry(box, width: int, height: int, crop: int, context_pad: int, square: bool,
                    mirror: bool):
    """Where a window lands in the crop x crop output, as Caffe computes it (in float).

    Returns (x1, y1, x2, y2) of the image region to cut, (out_w, out_h) to resize it to,
    and (pad_w, pad_h), the output offset.
    """
    x1, y1, x2, y2 = box
    if not (context_pad > 0 or square):
        return (x1, y1, x2, y2), (crop, crop), (0, 0)
    f = np.float32
    context_scale = f(crop) / f(crop - 2 * context_pad)
    half_h, half_w = f(y2 - y1 + 1) / f(2), f(x2 - x1 + 1) / f(2)
    cx, cy = f(x1) + half_w, f(y1) + half_h
    if square:
        half_h = half_w = max(half_h, half_w)
    x1, x2 = c_round(cx - half_w * context_scale), c_round(cx + half_w * context_scale)
    y1, y2 = c_round(cy - half_h * context_scale), c_round(cy + half_h * context_scale)
    unclipped_w, unclipped_h = x2 - x1 + 1, y2 - y1 + 1
    pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
    pad_x2, pad_y2 = max(0, x2 - width + 1), max(0, y2 - height + 1)
    x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
    scale_x, scale_y = f(crop) / f(unclipped_w), f(crop) / f(unclipped_h)
    out_w = c_round(f(x2 - x1 + 1) * scale_x)
    out_h = c_round(f(y2 - y1 + 1) * scale_y)
    pad_h = c_round(f(pad_y1) * scale_y)
    pad_w = c_round(f(pad_x2 if mirror else pad_x1) * scale_x)
    out_h = min(out_h, crop - pad_h)
    out_w = min(out_w, crop - pad_w)
    return (x1, y1, x2, y2), (max(out_w, 1), max(out_h, 1)), (pad_w, pad_h)


class _WindowSource:
    """Draws, cuts, warps and normalises batches of windows."""

    def __init__(self, layer: WindowDataLayer, images, fg, bg, transformer: DataTransformer,
                 gen: np.random.Generator):
        p = layer.param.window_data_param
        self.where = p.source
        self.images, self.fg, self.bg = images, fg, bg
        self.t = transformer
        self.gen = gen
        self.batch_size = layer.batch_size
        self.dtype = layer.dtype
        self.context_pad = int(p.context_pad)
        self.square = p.crop_mode == "square"
        self.num_fg = int(np.float32(self.batch_size) * np.float32(p.fg_fraction))
        self.cache: dict[int, Image.Image] | None = {} if p.cache_images else None
        crop = self.t.crop_size
        if self.t.mean is not None:
            _, mh, mw = self.t.mean.shape
            if mh < crop or mw < crop:
                raise ValueError(f"the mean image is {mh} x {mw}, smaller than crop_size {crop}")
            self.mean_off = (mw - crop) // 2

    def state(self) -> dict:
        return {"rng": copy.deepcopy(self.gen.bit_generator.state)}

    def restore(self, state: dict) -> None:
        self.gen.bit_generator.state = copy.deepcopy(state["rng"])

    def _image(self, index: int, window: Window) -> Image.Image:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        try:
            img = open_image(self.images[index])
        except ImageError as exc:
            raise ImageError(f"{self.where!r} (window on line {window.line}): {exc}") from None
        if self.cache is not None:
            self.cache[index] = img
        return img

    def _one(self, window: Window, mirror: bool) -> np.ndarray:
        crop = self.t.crop_size
        img = self._image(window.image, window)
        (x1, y1, x2, y2), size, (pad_w, pad_h) = window_geometry(
            window.box, img.width, img.height, crop, self.context_pad, self.square, mirror)
        if x1 < 0 or y1 < 0 or x2 >= img.width or y2 >= img.height:
            raise ValueError(f"{self.where!r} line {window.line}: window {window.box} lies "
                             f"outside its {img.width} x {img.height} image "
                             f"{self.images[window.image]!r}")
        cut = img.crop((x1, y1, x2 + 1, y2 + 1))
        if cut.size != size:
            cut = cut.resize(size, Image.Resampling.BILINEAR)
        pixels = image_to_array(cut).astype(self.dtype)  # C x h x w, BGR
        if mirror:
            pixels = pixels[:, :, ::-1]
        h, w = pixels.shape[1:]
        if self.t.mean is not None:
            o = self.mean_off
            pixels = pixels - self.t.mean[:, o + pad_h:o + pad_h + h, o + pad_w:o + pad_w + w]
        elif len(self.t.mean_values):
            mv = self.t.mean_values
            pixels = pixels - (mv if len(mv) > 1 else np.repeat(mv, 3)).reshape(3, 1, 1)
        out = np.zeros((3, crop, crop), self.dtype)
        out[:, pad_h:pad_h + h, pad_w:pad_w + w] = pixels * self.dtype.type(self.t.scale)
        return out

    def next_batch(self) -> Batch:
        start = self.state()
        try:
            data = np.zeros((self.batch_size, 3, self.t.crop_size, self.t.crop_size), self.dtype)
            labels = np.empty(self.batch_size, self.dtype)
            plan = [(self.bg, self.batch_size - self.num_fg, "background"),
                    (self.fg, self.num_fg, "foreground")]
            i = 0
            for windows, n, kind in plan:
                if n and not windows:
                    raise ValueError(f"{self.where!r} holds no {kind} windows, and a batch "
                                     f"needs {n} (check fg_threshold, bg_threshold, fg_fraction)")
                for _ in range(n):
                    window = windows[int(self.gen.integers(len(windows)))]
                    mirror = self.t.mirror and bool(self.gen.integers(2))
                    data[i] = self._one(window, mirror)
                    labels[i] = window.label
                    i += 1
        except BaseException:
            self.restore(start)
            raise
        return Batch(data, labels, self.state())


@register
class WindowDataLayer(PrefetchingDataLayer):
    """Caffe's "WindowData" layer: tops `data` (N x 3 x crop x crop) and `label` (N)."""

    type = "WindowData"
    param_field = "window_data_param"
    num_top = (2, 2)

    @classmethod
    def mean_files_of(cls, lp: caffe_pb2.LayerParameter) -> list[str]:
        mean_file = cls.transform_param_of(lp).mean_file
        return [mean_file] if mean_file else []

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.window_data_param
        self.batch_size = self._batch_size()
        if p.crop_mode not in CROP_MODES:
            raise self.error(f"window_data_param.crop_mode {p.crop_mode!r} is not one of "
                             f"{', '.join(map(repr, CROP_MODES))}")
        path = self._source_path("a window file")
        try:
            images, fg, bg = read_window_file(str(path), p.root_folder, p.fg_threshold,
                                              p.bg_threshold)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise self.error(str(exc)) from None
        self._open_resources()
        gen = self._own_generator()
        transformer = self._transformer(gen)
        crop = transformer.crop_size
        if crop <= 0:
            raise self.error("WindowData needs transform_param.crop_size (the side of the "
                             "square each window is warped to)")
        if crop <= 2 * p.context_pad:
            raise self.error(f"context_pad {p.context_pad} leaves nothing of a {crop} crop")
        if len(transformer.mean_values) not in (0, 1, 3):
            raise self.error(f"give 1 or 3 mean_value (images are read in colour), got "
                             f"{len(transformer.mean_values)}")
        try:
            source = _WindowSource(self, images, fg, bg, transformer, gen)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        self._start(source, (self.batch_size, 3, crop, crop))

    def set_state(self, state: dict) -> None:
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.error(f"saved state does not fit this layer "
                             f"({type(exc).__name__}: {exc})") from None

"""Reading, resizing and writing image files with Pillow, as Caffe's OpenCV reads them.

Every image comes out 8-bit with 3 channels (or 1 when grey is asked for),
whatever the file holds: greyscale, palette, CMYK, 16-bit and alpha images
are converted (alpha is dropped, 16-bit keeps its high byte), and the EXIF
orientation is applied, as OpenCV's `imread` in colour mode does. Arrays
are C x H x W in BGR order, the layout Caffe's Datum stores.

Resizing goes to an exact width x height (the tutorial's `256x256!`), with
a Pillow filter chosen by name. For JPEGs, `draft` lets libjpeg decode at
1/2, 1/4 or 1/8 scale first when the image is at least twice the target in
both directions, which makes decoding several times faster; the filter then
does the rest.

A file Pillow cannot read raises `ImageError` naming the file.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: filter names accepted in config, as Pillow names them
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
DEFAULT_JPEG_QUALITY = 95  # OpenCV's imwrite default
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_READ_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError,
                struct.error, Image.DecompressionBombError)


class ImageError(ValueError):
    """An image file that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class ResizeSpec:
    """Resize to exactly `height` x `width` with the named Pillow filter."""

    height: int
    width: int
    resample: str = "bilinear"
    draft: bool = True

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"resize size must be positive, got {self.height} x {self.width}")
        resampling_filter(self.resample)


def resampling_filter(name: str) -> Image.Resampling:
    """Pillow's filter for a config name such as "bilinear"."""
    try:
        return RESAMPLING[name.lower()]
    except KeyError:
        raise ValueError(f"unknown resampling filter {name!r}: expected one of "
                         f"{', '.join(RESAMPLING)}") from None


def _to_mode(img: Image.Image, gray: bool, where: str) -> Image.Image:
    """`img` as mode "L" (gray) or "RGB", from any of Pillow's 8- and 16-bit modes."""
    target = "L" if gray else "RGB"
    if img.mode == target:
        return img
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L, I: 16-bit samples keep the high byte
        high = (np.asarray(img).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(high, "L")
        return img if gray else img.convert("RGB")
    if img.mode == "F":
        raise ImageError(f"{where}: floating-point image (mode F); expected 8- or 16-bit pixels")
    if img.mode in ("P", "PA") and not gray:
        img = img.convert("RGBA")
    try:
        return img.convert(target)
    except ValueError as exc:
        raise ImageError(f"{where}: cannot convert image mode {img.mode} to {target} "
                         f"({exc})") from None


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image (mode RGB or L, oriented, resized) and what the file held."""

    image: Image.Image
    format: str | None  # Pillow's name of the file format, e.g. "JPEG"
    mode: str  # the file's own mode before conversion, e.g. "CMYK"
    orientation: int  # the file's EXIF orientation (1 = none)


def decode_image(source: str | os.PathLike | bytes, *, gray: bool = False,
                 resize: ResizeSpec | None = None, where: str | None = None) -> DecodedImage:
    """Decode a file (a path, or its bytes) to an RGB or L image, oriented and resized."""
    if where is None:
        where = "image bytes" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            fmt, mode = img.format, img.mode
            orientation = int(img.getexif().get(0x0112, 1))
            if resize is not None and resize.draft and fmt == "JPEG":
                w, h = resize.width, resize.height
                if orientation in _TRANSPOSED_ORIENTATIONS:
                    w, h = h, w
                img.draft("L" if gray else None, (w, h))
            img.load()
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            img = _to_mode(img, gray, where)
            if resize is not None and img.size != (resize.width, resize.height):
                img = img.resize((resize.width, resize.height),
                                 resampling_filter(resize.resample))
            return DecodedImage(img, fmt, mode, orientation)
    except FileNotFoundError:
        raise ImageError(f"{where}: no such image file") from None
    except ImageError:
        raise
    except _READ_ERRORS as exc:
        raise ImageError(f"{where}: cannot read image ({type(exc).__name__}: {exc})") from None


def open_image(source: str | os.PathLike | bytes, *, gray: bool = False,
               resize: ResizeSpec | None = None, where: str | None = None) -> Image.Image:
    """The decoded image alone (see `decode_image`)."""
    return decode_image(source, gray=gray, resize=resize, where=where).image


def image_to_array(img: Image.Image) -> np.ndarray:
    """C x H x W uint8: BGR for colour images (Caffe's channel order), 1 x H x W for grey."""
    pixels = np.asarray(img)
    if pixels.ndim == 2:
        return pixels[np.newaxis].copy()
    return np.ascontiguousarray(pixels[:, :, ::-1].transpose(2, 0, 1))


def read_image(path: str | os.PathLike, *, gray: bool = False,
               resize: ResizeSpec | None = None) -> np.ndarray:
    """The image at `path` as C x H x W uint8 BGR (or 1 x H x W grey)."""
    return image_to_array(open_image(path, gray=gray, resize=resize))


def encode_image(img: Image.Image, fmt: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """The bytes of `img` saved as `fmt` ("JPEG", "PNG", ...)."""
    buffer = io.BytesIO()
    fmt = fmt.upper()
    if fmt == "JPEG":
        img.save(buffer, "JPEG", quality=int(jpeg_quality))
    elif fmt == "PNG":
        img.save(buffer, "PNG", compress_level=1)  # intermediate files: speed over size
    else:
        img.save(buffer, fmt)
    return buffer.getvalue()


def resize_file(src: str | os.PathLike, dst: str | os.PathLike, resize: ResizeSpec, *,
                gray: bool = False, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> str:
    """Resize the image `src` into `dst` (same file name kept by the caller); return the format.

    JPEGs stay JPEG (at `jpeg_quality`); every other format is written as PNG,
    losslessly, whatever `dst`'s ending says (readers go by content).
    """
    decoded = decode_image(src, gray=gray, resize=resize)
    fmt = "JPEG" if decoded.format == "JPEG" else "PNG"
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.write_bytes(encode_image(decoded.image, fmt, jpeg_quality))
    except OSError as exc:
        raise ImageError(f"{dst}: cannot write resized image ({exc})") from None
    return fmt

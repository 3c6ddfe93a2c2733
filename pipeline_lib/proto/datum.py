"""Arrays to and from Caffe's `Datum` record, byte for byte as Caffe writes them.

A Datum holds one C x H x W image and its label: raw uint8 pixels in `data`,
or floats in `float_data`, or (with `encoded` set) the bytes of a JPEG/PNG
file in `data`. Caffe decodes encoded images with OpenCV, which gives colour
channels in BGR order; `datum_to_array` does the same with Pillow. Pixel
values of lossy (JPEG) images may differ from OpenCV's by a few levels where
the two link different libjpeg builds; PNG decodes identically.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from google.protobuf.message import DecodeError

from pipeline_lib.proto import caffe_pb2


class DatumError(ValueError):
    """A record that is not a usable Datum."""


def array_to_datum(array: np.ndarray, label: int) -> caffe_pb2.Datum:
    """A Datum for a C x H x W (or H x W) image: uint8 -> `data`, float -> `float_data`."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise DatumError(f"expected a C x H x W (or H x W) image, got shape {array.shape}")
    c, h, w = (int(d) for d in array.shape)
    datum = caffe_pb2.Datum(channels=c, height=h, width=w)
    if array.dtype == np.uint8:
        datum.data = np.ascontiguousarray(array).tobytes()
    elif np.issubdtype(array.dtype, np.floating):
        datum.float_data.extend(array.astype(np.float32).ravel().tolist())
    else:
        raise DatumError(f"expected a uint8 or float image, got dtype {array.dtype}")
    datum.label = int(label)
    return datum


def encoded_datum(file_bytes: bytes, label: int) -> caffe_pb2.Datum:
    """A Datum carrying an image file's bytes as they are (Caffe's `--encoded`)."""
    if not file_bytes:
        raise DatumError("encoded datum needs the bytes of an image file, got none")
    return caffe_pb2.Datum(data=bytes(file_bytes), label=int(label), encoded=True)


def parse_datum(value: bytes, where: str = "record") -> caffe_pb2.Datum:
    """Parse serialized Datum bytes; `where` names the record in errors."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except (DecodeError, RuntimeError) as exc:
        raise DatumError(f"{where}: corrupt record, not a serialized Datum ({exc})") from None
    return datum


def plain_batch(values: list[bytes]) -> tuple[np.ndarray, np.ndarray] | None:
    """The N x C x H x W uint8 pixels and the labels of serialized Datums laid out byte for
    byte like the first one, without parsing each: plain `data` of one shape, a label below
    128 (or none), nothing else, as Caffe's converters write them. None when the first is
    not such a record or any other differs from it outside its pixels and label: the
    caller then parses them one by one (and reports what is wrong).

    Checking the bytes is enough: equal bytes up to the pixels mean the same fields and
    the same length of `data`, and a record whose length also equals the first's then
    ends in its label field or nothing (the first's pixels are compared to its parse).
    """
    first = values[0]
    try:
        datum = caffe_pb2.Datum.FromString(first)
    except (DecodeError, RuntimeError):
        return None
    pixels, label = datum.data, datum.label
    has_label = datum.HasField("label")
    tail = bytes((0x28, label)) if has_label and 0 <= label < 0x80 else b""
    start = len(first) - len(tail) - len(pixels)
    if (datum.encoded or not pixels or len(pixels) != datum.channels * datum.height * datum.width
            or (has_label and not tail) or datum.SerializeToString() != first
            or first[start:start + len(pixels)] != pixels or first[len(first) - len(tail):] != tail
            or any(len(v) != len(first) for v in values)):
        return None
    rows = np.frombuffer(b"".join(values), np.uint8).reshape(len(values), len(first))
    if not (rows[:, :start] == rows[0, :start]).all():
        return None
    if tail and not ((rows[:, -2] == 0x28).all() and (rows[:, -1] < 0x80).all()):
        return None
    images = rows[:, start:start + len(pixels)].reshape(
        len(values), datum.channels, datum.height, datum.width)
    labels = rows[:, -1] if tail else np.zeros(len(values), np.uint8)
    return images, labels


def read_datum(reader, index: int) -> caffe_pb2.Datum:
    """The Datum at `index` of a `data.db.DatabaseReader`; errors name the database and key."""
    key = reader.key(index)
    return parse_datum(reader.value(index), f"{reader.path} key {key.decode(errors='replace')}")


def datum_to_array(
    datum: caffe_pb2.Datum, color: bool | None = None, where: str = "datum"
) -> np.ndarray:
    """The image of a Datum as C x H x W: uint8 from `data`, float32 from `float_data`.

    Encoded images are decoded; `color` None keeps the file's channels (1 for
    grey, 3 BGR, 4 BGRA), True forces 3 BGR channels, False forces 1 grey
    channel: Caffe's native, `force_color` and `force_gray` decodes.
    """
    if datum.encoded:
        return _decode(datum.data, color, where)
    shape = (datum.channels, datum.height, datum.width)
    size = int(np.prod(shape, dtype=np.int64))
    if datum.data:
        if len(datum.data) != size:
            raise DatumError(
                f"{where}: data has {len(datum.data)} bytes, expected "
                f"{shape[0]}x{shape[1]}x{shape[2]} = {size}"
            )
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    if len(datum.float_data):
        if len(datum.float_data) != size:
            raise DatumError(
                f"{where}: float_data has {len(datum.float_data)} values, expected "
                f"{shape[0]}x{shape[1]}x{shape[2]} = {size}"
            )
        return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)
    if size == 0:
        raise DatumError(f"{where}: datum holds no image (no data, no float_data)")
    raise DatumError(f"{where}: datum has shape {shape} but holds no data")


def _decode(file_bytes: bytes, color: bool | None, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns of large images as it opens them; they are refused below instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(file_bytes))
        with img:
            width, height = img.size
            if width * height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{width} x {height} pixels")
            img.load()
            if color is True:
                img = img.convert("RGB")
            elif color is False:
                img = img.convert("L")
            else:
                img = _native(img, where)
            pixels = np.asarray(img)
    except Image.DecompressionBombError as exc:
        # ours names the size; Pillow's own (past twice the limit, raised by open) the pixels
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{found.group(1)} pixels" if found else str(exc)
        raise DatumError(
            f"{where}: encoded image of {size} is larger than the {Image.MAX_IMAGE_PIXELS} "
            f"pixels an image may have (from {len(file_bytes)} bytes: a decompression "
            "bomb?); not decoded") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatumError(f"{where}: cannot decode encoded image ({exc})") from None
    if pixels.dtype != np.uint8:
        raise DatumError(f"{where}: decoded image is {pixels.dtype}, Caffe needs 8-bit pixels")
    if pixels.ndim == 2:
        return pixels[np.newaxis].copy()
    chw = pixels.transpose(2, 0, 1)
    order = [2, 1, 0] + list(range(3, chw.shape[0]))  # RGB(A) -> BGR(A), as OpenCV gives
    return np.ascontiguousarray(chw[order])


def _native(img, where: str):
    """The image in the channel layout OpenCV's unchanged decode would give."""
    if img.mode in ("L", "RGB", "RGBA"):
        return img
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    if img.mode in ("P", "CMYK", "YCbCr"):
        return img.convert("RGB")
    raise DatumError(f"{where}: encoded image has mode {img.mode}; Caffe needs 8-bit pixels")

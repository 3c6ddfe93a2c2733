"""IDX files, the format of the MNIST distribution.

Layout: a 4-byte magic (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C
order. MNIST uses unsigned bytes (type code 0x08): images have magic 2051
(3 dimensions: count, rows, cols), labels 2049 (1 dimension: count).

Gzipped files (as distributed) are read by `GzipIdxStream`, which decompresses
as the items are read, so no whole file need sit in memory.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline_lib.core.fsutil import atomic_writer

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_UBYTE = 0x08


class IdxError(ValueError):
    """An IDX file that is not what it should be."""


def read_idx(
    path: str | os.PathLike, expected_magic: int | None = None, *, mmap: bool = False
) -> np.ndarray:
    """Read an unsigned-byte IDX file into a uint8 array of its shape.

    With `expected_magic` (2051 images, 2049 labels) any other magic is an error.
    The file must hold exactly the bytes its header announces. With `mmap` the
    array is a read-only memory map of the file, so a file larger than memory
    can be streamed; otherwise it is read into a writable array.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(4 + 4 * 255)
            if not mmap:
                raw = bytearray(size)  # a bytearray, so the returned array is writable
                f.seek(0)
                del raw[f.readinto(raw) :]
                size = len(raw)
    except FileNotFoundError:
        raise IdxError(f"{path}: no such IDX file") from None
    if size < 4:
        raise IdxError(f"{path}: truncated: {size} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", head[:4])
    ndim = _check_magic(path, magic, expected_magic, head[:2] == b"\x1f\x8b")
    header = 4 + 4 * ndim
    if size < header:
        raise IdxError(f"{path}: truncated header: {size} bytes, expected {header}")
    shape = struct.unpack(f">{ndim}I", head[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    found = size - header
    if found < expected:
        raise IdxError(
            f"{path}: truncated: header says shape {shape} ({expected} bytes of data), "
            f"file holds {found}"
        )
    if found > expected:
        raise IdxError(
            f"{path}: {found - expected} unexpected trailing bytes after the {expected} bytes "
            f"of data announced by the header (shape {shape})"
        )
    if mmap:
        if expected == 0:  # a zero-length map is not allowed
            return np.zeros(shape, dtype=np.uint8)
        return np.memmap(path, dtype=np.uint8, mode="r", offset=header, shape=shape)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _check_magic(path: Path, magic: int, expected_magic: int | None, gzipped: bool) -> int:
    """The number of dimensions an unsigned-byte IDX magic announces; IdxError otherwise."""
    what = {IMAGES_MAGIC: "images (2051)", LABELS_MAGIC: "labels (2049)"}
    hint = " (this looks like a gzip file: decompress it first)" if gzipped else ""
    if expected_magic is not None and magic != expected_magic:
        raise IdxError(
            f"{path}: bad magic number {magic}: expected an IDX "
            f"{what.get(expected_magic, str(expected_magic))} file{hint}"
        )
    zeros, type_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zeros != 0 or type_code != _UBYTE or ndim == 0:
        raise IdxError(
            f"{path}: bad magic number {magic}: expected an unsigned-byte IDX file "
            f"(0x0008NN, e.g. 2051 for images or 2049 for labels){hint}"
        )
    return ndim


def is_gzip(path: str | os.PathLike) -> bool:
    """True when the file starts with gzip's magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


class GzipIdxStream:
    """A gzipped unsigned-byte IDX file read item by item, decompressing as it goes.

    `shape` is the header's; `read(n)` gives the next n items as an (n, *item) array;
    `close()` checks that the data ended where the header said. A corrupt or truncated
    stream is an IdxError naming the file.
    """

    def __init__(self, path: str | os.PathLike, expected_magic: int | None = None) -> None:
        self.path = Path(path)
        try:
            self._f = gzip.open(self.path, "rb")
        except FileNotFoundError:
            raise IdxError(f"{self.path}: no such IDX file") from None
        try:
            head = self._exactly(4, "an IDX header")
            ndim = _check_magic(self.path, struct.unpack(">I", head)[0], expected_magic, False)
            self.shape = struct.unpack(f">{ndim}I", self._exactly(4 * ndim, "an IDX header"))
        except BaseException:
            self._f.close()
            raise
        self._item = int(np.prod(self.shape[1:], dtype=np.int64))
        self._left = self.shape[0]

    def _exactly(self, n: int, what: str) -> bytes:
        try:
            data = self._f.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxError(f"{self.path}: not a valid gzip file ({exc})") from None
        if len(data) != n:
            raise IdxError(f"{self.path}: truncated: the decompressed data ends inside {what} "
                           f"(header shape {getattr(self, 'shape', '?')})")
        return data

    def read(self, count: int) -> np.ndarray:
        count = min(count, self._left)
        data = self._exactly(count * self._item, f"item {self.shape[0] - self._left + count}")
        self._left -= count
        return np.frombuffer(data, dtype=np.uint8).reshape(count, *self.shape[1:])

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """The remaining items, `size` at a time, then the end check."""
        while self._left:
            yield self.read(size)
        self.check_end()

    def check_end(self) -> None:
        try:
            extra = self._f.read(1)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxError(f"{self.path}: not a valid gzip file ({exc})") from None
        if extra:
            raise IdxError(f"{self.path}: unexpected trailing bytes after the data announced "
                           f"by the header (shape {self.shape})")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> GzipIdxStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_idx(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write a uint8 array as an IDX file, atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise IdxError(f"{path}: IDX writer takes uint8 arrays, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise IdxError(f"{path}: IDX needs 1 to 255 dimensions, got {array.ndim}")
    magic = (_UBYTE << 8) | array.ndim
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with atomic_writer(path) as f:
        f.write(header)
        f.write(np.ascontiguousarray(array).tobytes())


def read_images(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """An images file (magic 2051) as an (N, rows, cols) uint8 array."""
    return read_idx(path, IMAGES_MAGIC, mmap=mmap)


def read_labels(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """A labels file (magic 2049) as an (N,) uint8 array."""
    return read_idx(path, LABELS_MAGIC, mmap=mmap)


def read_mnist_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, *, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, rows, cols) and labels (N,) that belong together, at least one image
    (`mmap`: see read_idx)."""
    images = read_images(images_path, mmap=mmap)
    labels = read_labels(labels_path, mmap=mmap)
    if images.shape[0] != labels.shape[0]:
        raise IdxError(
            f"count mismatch: {images_path} holds {images.shape[0]} images but "
            f"{labels_path} holds {labels.shape[0]} labels"
        )
    count, rows, cols = images.shape
    if count == 0:
        raise IdxError(f"{images_path}: holds no images (its header's count is 0); an MNIST "
                       "pair needs at least one image")
    if rows == 0 or cols == 0:
        raise IdxError(f"{images_path}: images of {rows} x {cols} pixels; rows and cols must "
                       "be positive")
    return images, labels


def iter_mnist_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, chunk: int = 1000
) -> tuple[tuple[int, int, int], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The images' shape (N, rows, cols), checked as read_mnist_pair does, and the
    (images, labels) pairs in chunks of up to `chunk` items. Plain files are memory-mapped,
    gzipped ones decompressed as the chunks are read: memory stays at one chunk."""
    if not (is_gzip(images_path) or is_gzip(labels_path)):
        images, labels = read_mnist_pair(images_path, labels_path, mmap=True)

        def plain() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for i in range(0, len(images), chunk):
                yield images[i : i + chunk], labels[i : i + chunk]

        return images.shape, plain()
    image_stream = _stream(images_path, IMAGES_MAGIC)
    label_stream = _stream(labels_path, LABELS_MAGIC)
    n, labels_n = image_stream.shape[0], label_stream.shape[0]
    shape = image_stream.shape
    try:
        if len(shape) != 3:
            raise IdxError(f"{images_path}: bad magic number: expected an IDX images (2051) "
                           "file of 3 dimensions")
        if n != labels_n:
            raise IdxError(f"count mismatch: {images_path} holds {n} images but "
                           f"{labels_path} holds {labels_n} labels")
        if n == 0:
            raise IdxError(f"{images_path}: holds no images (its header's count is 0); an "
                           "MNIST pair needs at least one image")
        if shape[1] == 0 or shape[2] == 0:
            raise IdxError(f"{images_path}: images of {shape[1]} x {shape[2]} pixels; rows "
                           "and cols must be positive")
    except IdxError:
        image_stream.close()
        label_stream.close()
        raise

    def streamed() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with image_stream, label_stream:
            for images in image_stream.chunks(chunk):
                yield images, label_stream.read(len(images))
            label_stream.check_end()

    return shape, streamed()


class _PlainIdxStream:
    """A plain IDX file behind GzipIdxStream's interface (a memory map)."""

    def __init__(self, path: str | os.PathLike, expected_magic: int) -> None:
        self._array = read_idx(path, expected_magic, mmap=True)
        self.shape = self._array.shape
        self._at = 0

    def read(self, count: int) -> np.ndarray:
        out = self._array[self._at : self._at + count]
        self._at += len(out)
        return out

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        while self._at < len(self._array):
            yield self.read(size)

    def check_end(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _PlainIdxStream:
        return self

    def __exit__(self, *exc) -> None:
        pass


def _stream(path: str | os.PathLike, magic: int) -> GzipIdxStream | _PlainIdxStream:
    return GzipIdxStream(path, magic) if is_gzip(path) else _PlainIdxStream(path, magic)

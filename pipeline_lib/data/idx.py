"""IDX files, the format of the MNIST distribution.

Layout: a 4-byte magic (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C
order. MNIST uses unsigned bytes (type code 0x08): images have magic 2051
(3 dimensions: count, rows, cols), labels 2049 (1 dimension: count).
"""

from __future__ import annotations

import os
import struct
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
    what = {IMAGES_MAGIC: "images (2051)", LABELS_MAGIC: "labels (2049)"}
    hint = " (this looks like a gzip file: decompress it first)" if head[:2] == b"\x1f\x8b" else ""
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

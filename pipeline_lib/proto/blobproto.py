"""The BlobProto codec: Caffe's n-d array message, and the mean-image file made of one.

One reading of a blob's shape for every file (`blob_shape`): the legacy
`num`/`channels`/`height`/`width` fields when any is set, else `shape`, as
Caffe's `Blob::FromProto` reads it. Arrays are written as Caffe writes them
(`shape` set, packed float32 `data`); a mean image (`.binaryproto`, 1 x C x H
x W) carries both shape forms, so old and new readers agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.proto import caffe_pb2


class BlobShapeError(ValueError):
    """A BlobProto whose values do not fill its shape."""


LEGACY_FIELDS = ("num", "channels", "height", "width")


def blob_shape(bp: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The blob's shape: the legacy 4-D fields when any is set, else `shape.dim`."""
    if any(bp.HasField(f) for f in LEGACY_FIELDS):
        return tuple(int(getattr(bp, f)) for f in LEGACY_FIELDS)
    return tuple(int(d) for d in bp.shape.dim)


def legacy_shape_fits(bp: caffe_pb2.BlobProto, shape: tuple[int, ...]) -> bool:
    """Caffe accepts legacy 4-D (num, channels, height, width) blobs for shapes that pad to it."""
    if bp.HasField("shape"):
        return False
    legacy = (bp.num, bp.channels, bp.height, bp.width)
    padded = (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None
    return padded == legacy


def check_blob(bp: caffe_pb2.BlobProto) -> str | None:
    """Why `bp`'s values do not fill its shape, or None when they do."""
    dims = list(blob_shape(bp))
    want = int(np.prod(dims, dtype=np.int64))
    have = len(bp.double_data) or len(bp.data)
    if have != want:
        return f"shape {dims} needs {want} values but it holds {have}"
    if len(bp.diff) not in (0, want) and len(bp.double_diff) not in (0, want):
        return f"shape {dims} needs {want} diff values but it holds {len(bp.diff)}"
    return None


def blob_proto_to_array(bp: caffe_pb2.BlobProto) -> np.ndarray:
    """A BlobProto's values as a float32 (or float64) array of its shape."""
    shape = blob_shape(bp)
    if len(bp.double_data):
        values = np.array(bp.double_data, dtype=np.float64)
    else:
        values = np.array(bp.data, dtype=np.float32)
    if values.size != int(np.prod(shape)):
        raise BlobShapeError(f"blob of shape {list(shape)} holds {values.size} values")
    return values.reshape(shape)


def _packed_floats(field_number: int, values: np.ndarray) -> bytes:
    """Protobuf wire bytes of a packed repeated float field (fast path for large blobs)."""
    payload = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def array_to_blob_proto(array: np.ndarray, bp: caffe_pb2.BlobProto | None = None, *,
                        diff: np.ndarray | None = None) -> caffe_pb2.BlobProto:
    """Fill `bp` with `array` (float32 data, `shape` set), as Caffe writes blobs."""
    bp = bp if bp is not None else caffe_pb2.BlobProto()
    bp.Clear()
    bp.shape.dim.extend(int(d) for d in array.shape)
    wire = _packed_floats(5, array.ravel())
    if diff is not None:
        wire += _packed_floats(6, diff.ravel())
    bp.MergeFromString(wire)
    return bp


def history_to_blob_proto(array, bp: caffe_pb2.BlobProto) -> caffe_pb2.BlobProto:
    """A history array as Caffe writes it: shape set, float data (double_data for float64)."""
    host = to_host(array)
    if host.dtype == np.float64:
        bp.Clear()
        bp.shape.dim.extend(int(d) for d in host.shape)
        bp.double_data.extend(host.ravel().tolist())
        return bp
    return array_to_blob_proto(host, bp)


# -- the mean image (.binaryproto) ---------------------------------------------------

class MeanFileError(ValueError):
    """A mean file that is not a 1 x C x H x W BlobProto."""


def read_mean_binaryproto(path: str | os.PathLike) -> np.ndarray:
    """The mean image in `path` as a C x H x W float32 array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"mean file {str(path)!r} does not exist") from None
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(raw)
    except DecodeError as exc:
        raise MeanFileError(
            f"mean file {str(path)!r} is truncated or not a binary BlobProto ({exc})"
        ) from None
    shape = blob_shape(blob)
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise MeanFileError(
            f"mean file {str(path)!r}: expected a BlobProto of shape 1 x C x H x W, "
            f"got shape {shape or '(none)'}"
        )
    values = blob.double_data if len(blob.double_data) else blob.data
    count = int(np.prod(shape))
    if len(values) != count:
        raise MeanFileError(
            f"mean file {str(path)!r}: shape {'x'.join(map(str, shape))} needs {count} "
            f"values, the file holds {len(values)} (truncated or corrupt)"
        )
    return np.asarray(values, dtype=np.float32).reshape(shape[1:])


def mean_to_blobproto(mean: np.ndarray) -> caffe_pb2.BlobProto:
    """A BlobProto 1 x C x H x W holding `mean` (C x H x W), both shape forms set."""
    mean = np.asarray(mean)
    if mean.ndim != 3:
        raise ValueError(f"a mean image must be C x H x W, got shape {mean.shape}")
    c, h, w = (int(d) for d in mean.shape)
    blob = caffe_pb2.BlobProto(num=1, channels=c, height=h, width=w)
    blob.shape.dim.extend([1, c, h, w])
    blob.data.extend(np.ascontiguousarray(mean, dtype=np.float32).ravel().tolist())
    return blob


def write_mean_binaryproto(mean: np.ndarray, path: str | os.PathLike) -> None:
    """Write `mean` (C x H x W) to `path` atomically (temp file, fsync, rename)."""
    atomic_write_bytes(path, mean_to_blobproto(mean).SerializeToString())

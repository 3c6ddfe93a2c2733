"""Read and write Caffe's mean image: a binary `BlobProto` of shape 1 x C x H x W.

`compute_image_mean` writes the legacy `num`/`channels`/`height`/`width`
fields; newer blobs carry `shape`. We read either (legacy first, as Caffe's
`Blob::FromProto` does) and write both, so old and new readers agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from pipeline_lib.fsutil import atomic_write_bytes
from pipeline_lib.proto import caffe_pb2


class MeanFileError(ValueError):
    """A mean file that is not a 1 x C x H x W BlobProto."""


def _blob_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    legacy = ("num", "channels", "height", "width")
    if any(blob.HasField(f) for f in legacy):
        return tuple(int(getattr(blob, f)) for f in legacy)
    return tuple(int(d) for d in blob.shape.dim)


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
    shape = _blob_shape(blob)
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

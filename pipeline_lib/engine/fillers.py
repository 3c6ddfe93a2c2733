"""Weight fillers: Caffe's `FillerParameter` types, drawn from a seeded NumPy Generator.

`fill` returns a host NumPy array; layers copy it to their array module. Values
are drawn in float64 and then cast, so a float32 and a float64 net seeded alike
start from the same weights (up to rounding). Fan-in and fan-out follow Caffe:
fan_in = count / shape[0], fan_out = count / shape[1] (count for 1-D blobs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod

import numpy as np

from pipeline_lib.proto import caffe_pb2

Shape = tuple[int, ...]


class FillerError(ValueError):
    """A filler cannot fill a blob of the given shape with the given parameters."""


def _check_not_sparse(filler: caffe_pb2.FillerParameter) -> None:
    if filler.sparse != -1:
        raise FillerError(f"filler {filler.type!r} does not support sparse "
                          f"(got sparse: {filler.sparse}); only 'gaussian' does")


def _fans(shape: Shape) -> tuple[int, int]:
    count = prod(shape)
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _norm_size(filler: caffe_pb2.FillerParameter, shape: Shape) -> float:
    fan_in, fan_out = _fans(shape)
    if filler.variance_norm == caffe_pb2.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if filler.variance_norm == caffe_pb2.FillerParameter.FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def _constant(filler, shape, rng):
    _check_not_sparse(filler)
    return np.full(shape, filler.value, np.float64)


def _uniform(filler, shape, rng):
    _check_not_sparse(filler)
    return rng.uniform(filler.min, filler.max, shape)


def _gaussian(filler, shape, rng):
    values = rng.normal(filler.mean, filler.std, shape)
    if filler.sparse < -1:
        raise FillerError(f"gaussian filler: sparse must be >= -1, got {filler.sparse}")
    if filler.sparse >= 0:
        # Each weight is kept with probability sparse / num_outputs, so every
        # output unit has `sparse` non-zero inputs on average.
        keep = filler.sparse / shape[0]
        values *= rng.random(shape) < keep
    return values


def _positive_unitball(filler, shape, rng):
    _check_not_sparse(filler)
    values = rng.uniform(0.0, 1.0, shape)
    rows = values.reshape(shape[0], -1)
    rows /= rows.sum(axis=1, keepdims=True)
    return values


def _xavier(filler, shape, rng):
    _check_not_sparse(filler)
    scale = np.sqrt(3.0 / _norm_size(filler, shape))
    return rng.uniform(-scale, scale, shape)


def _msra(filler, shape, rng):
    _check_not_sparse(filler)
    std = np.sqrt(2.0 / _norm_size(filler, shape))
    return rng.normal(0.0, std, shape)


def _bilinear(filler, shape, rng):
    _check_not_sparse(filler)
    if len(shape) != 4:
        raise FillerError(f"bilinear filler needs a 4-D blob, got shape {shape}")
    if shape[2] != shape[3]:
        raise FillerError(f"bilinear filler needs a square kernel, got shape {shape}")
    k = shape[3]
    f = np.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    ramp = 1.0 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(np.outer(ramp, ramp), shape).copy()


FILLERS: dict[str, Callable[[caffe_pb2.FillerParameter, Shape, np.random.Generator],
                            np.ndarray]] = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}


def fill(filler: caffe_pb2.FillerParameter, shape: Sequence[int], rng: np.random.Generator,
         dtype=np.float32) -> np.ndarray:
    """A new host array of `shape` filled as `filler` says, drawn from `rng`."""
    shape = tuple(int(d) for d in shape)
    try:
        make = FILLERS[filler.type]
    except KeyError:
        known = ", ".join(sorted(FILLERS))
        raise FillerError(f"unknown filler type {filler.type!r}; known types: {known}") from None
    if not shape or prod(shape) == 0:
        raise FillerError(f"filler {filler.type!r} needs a blob with at least one axis and "
                          f"no empty axis, got shape {shape}")
    return np.ascontiguousarray(make(filler, shape, rng), dtype=np.dtype(dtype))

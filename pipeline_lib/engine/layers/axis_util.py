"""Caffe's axis conventions: negative axes count from the end, products of dims."""

from __future__ import annotations

from math import prod

from pipeline_lib.engine.layers.base import Layer


def canonical_axis(layer: Layer, axis: int, num_axes: int) -> int:
    """`axis` in [-num_axes, num_axes) as a non-negative index, or the layer's error."""
    if not -num_axes <= axis < num_axes:
        raise layer.error(f"axis {axis} is out of range for a {num_axes}-D blob")
    return axis + num_axes if axis < 0 else axis


def count(shape: tuple[int, ...], start: int = 0, end: int | None = None) -> int:
    """The product of `shape[start:end]` (1 for an empty range), like Blob::count."""
    return int(prod(shape[start:end]))

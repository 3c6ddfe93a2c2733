"""Caffe's axis conventions: negative axes count from the end, products of dims, and the
broadcast of an operand along some axes of a bottom (Scale, Bias)."""

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


def learned_operand_shape(layer: Layer, shape: tuple[int, ...], axis: int,
                          num_axes: int) -> tuple[int, ...]:
    """The shape of a learned operand covering `num_axes` axes of `shape` from `axis`
    (-1: to the end), as Scale and Bias make it."""
    start = canonical_axis(layer, axis, len(shape))
    if num_axes < -1:
        raise layer.error(f"num_axes must be -1 (to the last axis) or more, got {num_axes}")
    if num_axes >= 0 and start + num_axes > len(shape):
        raise layer.error(f"num_axes {num_axes} from axis {start} reaches past the bottom's "
                          f"{len(shape)} axes (shape {shape})")
    return tuple(shape[start:] if num_axes == -1 else shape[start:start + num_axes])


class Broadcast:
    """An operand applied to a bottom along the bottom's axes `axis`..: as Caffe's Scale
    and Bias, the operand's dims must equal those axes; a 0-axis operand is a scalar."""

    def __init__(self, layer: Layer, shape: tuple[int, ...], operand: tuple[int, ...],
                 axis: int):
        start = 0 if not operand else canonical_axis(layer, axis, len(shape))
        end = start + len(operand)
        if end > len(shape) or tuple(shape[start:end]) != tuple(operand):
            raise layer.error(f"an operand of shape {tuple(operand)} does not fit the bottom's "
                              f"shape {shape} from axis {start}: its dims must equal the "
                              f"bottom's axes {start}..{end - 1}")
        self.operand = tuple(operand)
        self.view = (1,) * start + self.operand + (1,) * (len(shape) - end)
        self.other_axes = tuple(range(start)) + tuple(range(end, len(shape)))

    def expand(self, operand):
        """The operand reshaped to broadcast against the bottom."""
        return operand.reshape(self.view)

    def reduce(self, values):
        """`values` (the bottom's shape) summed over the axes the operand does not span."""
        return values.sum(axis=self.other_axes).reshape(self.operand)

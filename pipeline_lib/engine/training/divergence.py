"""A non-finite training loss: where it first appeared, and the error that stops the run."""

from __future__ import annotations

from pipeline_lib.core.backend import get_array_module
from pipeline_lib.engine.net import Net


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, message: str, *, iteration: int, layer: str | None, blob: str | None,
                 snapshot: tuple[str, str] | None):
        super().__init__(message)
        self.iteration = iteration
        self.layer = layer
        self.blob = blob
        self.snapshot = snapshot


def all_finite(array) -> bool:
    return bool(get_array_module(array).isfinite(array).all())


def first_nonfinite_top(net: Net) -> tuple[str | None, str | None]:
    """(layer name, blob name) of the first layer, in forward order, with a non-finite top.

    An in-place top is blamed on the layer that first produced the blob.
    """
    for name, tops in zip(net.layer_names, net.tops):
        for top in tops:
            if not all_finite(top.data):
                return name, top.name
    return None, None


def divergence_error(net: Net, iteration: int, loss: float,
                     snapshot: tuple[str, str] | None) -> DivergenceError:
    """The error for `loss` at `iteration`: the first non-finite top, whether the weights
    were already non-finite, and the `.diverged` snapshot written (if any)."""
    layer, blob = first_nonfinite_top(net)
    bad_params = [name for name, layer_obj in zip(net.layer_names, net.layers)
                  if any(not all_finite(b.data) for b in layer_obj.blobs)]
    where = (f"first non-finite top: blob {blob!r} of layer {layer!r}" if layer
             else "every layer's top is finite")
    weights = (f"the weights of {', '.join(repr(n) for n in bad_params)} are already "
               "non-finite (an earlier update diverged)" if bad_params
               else "the weights are finite")
    message = f"training diverged at iteration {iteration}: loss = {loss}; {where}; {weights}"
    if snapshot:
        message += f"; state before this iteration's update saved to {snapshot[1]}"
    return DivergenceError(message, iteration=iteration, layer=layer, blob=blob,
                           snapshot=snapshot)

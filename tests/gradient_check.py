"""Finite-difference gradient checks for layers (float64, central differences).

The objective is a fixed random projection of all tops, sum_i <w_i, top_i>,
so every top element contributes. Analytic gradients come from one backward
with top diffs set to w_i; numeric ones from perturbing inputs one element at
a time. Large blobs are checked on a random subset of elements.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer


def _objective(layer: Layer, bottom, top, weights, seed) -> float:
    layer.rng = np.random.default_rng(seed)
    layer.forward(bottom, top)
    return float(sum(np.sum(np.asarray(t.data) * w) for t, w in zip(top, weights)))


def check_gradient(layer: Layer, bottom: list[Blob], *, check_bottom=None, check_params=True,
                   eps: float = 1e-4, rtol: float = 1e-4, atol: float = 1e-6,
                   max_checks: int = 120, seed: int = 0, channels_last: bool = False) -> None:
    """Assert that `layer`'s backward matches finite differences.

    `layer` must be built with dtype float64 and `bottom` blobs of float64.
    `check_bottom` is a list of bottom indices to check (default: all).
    `channels_last` makes the tops channels-last (see Blob).
    """
    rng = np.random.default_rng(1234)
    top = [Blob((), np, np.float64, name=n) for n in layer.param.top]
    for t in top:
        t.channels_last = channels_last
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    weights = [rng.standard_normal(t.shape) if t.count else np.zeros(t.shape) for t in top]
    if check_bottom is None:
        check_bottom = list(range(len(bottom)))

    # analytic
    _objective(layer, bottom, top, weights, seed)
    for t, w in zip(top, weights):
        t.diff[...] = w
    for b in bottom:
        b.diff[...] = 0
    for p in layer.blobs:
        p.diff[...] = 0
    propagate = [i in check_bottom for i in range(len(bottom))]
    layer.backward(top, propagate, bottom)
    targets = [(f"bottom[{i}]", bottom[i]) for i in check_bottom]
    if check_params:
        targets += [(f"param[{i}]", p) for i, p in enumerate(layer.blobs)]
    analytic = {name: np.array(blob.diff, copy=True) for name, blob in targets}

    # numeric
    for name, blob in targets:
        values = blob.data  # indexed, not reshaped: a channels-last blob is not contiguous
        n = values.size
        idx = np.arange(n) if n <= max_checks else rng.choice(n, max_checks, replace=False)
        for k in idx:
            at = np.unravel_index(k, values.shape)
            orig = values[at]
            values[at] = orig + eps
            plus = _objective(layer, bottom, top, weights, seed)
            values[at] = orig - eps
            minus = _objective(layer, bottom, top, weights, seed)
            values[at] = orig
            numeric = (plus - minus) / (2 * eps)
            got = analytic[name].reshape(-1)[k]
            scale = max(abs(numeric), abs(got), 1.0)
            assert abs(got - numeric) <= atol + rtol * scale * 10, (
                f"{layer.type} {name} element {k}: analytic {got:.8g} vs numeric {numeric:.8g}"
            )

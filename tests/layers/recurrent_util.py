"""Helpers for the RNN and LSTM tests: prototxt text, random sequences, weights by name."""

from __future__ import annotations

import numpy as np


def text(kind, hidden=3, static=False, expose=False, name="rec"):
    bottoms = ["x", "cont"] + (["x_static"] if static else [])
    tops = ["y"]
    if expose:
        states = ["h_0"] if kind == "RNN" else ["h_0", "c_0"]
        bottoms += states
        tops += [s.replace("_0", "_T") for s in states]
    t = f'name: "{name}" type: "{kind}" '
    t += " ".join(f'bottom: "{b}"' for b in bottoms) + " " + " ".join(f'top: "{n}"' for n in tops)
    return t + (f" recurrent_param {{ num_output: {hidden} expose_hidden: {str(expose).lower()} "
                "weight_filler { type: 'uniform' min: -0.6 max: 0.6 } "
                "bias_filler { type: 'uniform' min: -0.3 max: 0.3 } }")


def sequences(steps=4, streams=2, dims=(2, 2), static_dims=(3,), seed=0, resets=()):
    """x (T, N, *dims), cont (T, N) with 0 at t = 0 and at each (t, n) in `resets`, and a
    static input (N, *static_dims)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, streams, *dims))
    cont = np.ones((steps, streams))
    cont[0] = 0
    for t, n in resets:
        cont[t, n] = 0
    return x, cont, rng.standard_normal((streams, *static_dims))


def sigmoid(v):
    return 1 / (1 + np.exp(-v))

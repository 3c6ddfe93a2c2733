"""The solver's log lines for numbers and net outputs, as Caffe prints them."""

from __future__ import annotations

import numpy as np

from pipeline_lib.core import glog
from pipeline_lib.core.backend import to_host
from pipeline_lib.engine.net import Net


def fmt(value: float) -> str:
    """A number as Caffe's logs print it (C++ stream default: 6 significant digits)."""
    return format(float(value), ".6g")


def as_printed(value: float) -> float:
    """The number a Caffe log shows for `value` (`fmt`), read back: 0.01 for the float32
    0.009999999776482582."""
    return float(fmt(value))


def _elements(net: Net, values: list[np.ndarray] | None):
    """(name, key, value) per element of each output (`values`, else the blobs' data)."""
    for j, name in enumerate(net.output_blob_names):
        array = values[j] if values is not None else to_host(net.blobs[name].data).ravel()
        for k, raw in enumerate(array):
            yield name, name if array.size == 1 else f"{name}_{k}", float(raw)


def net_outputs(net: Net, values: list[np.ndarray] | None = None) -> dict[str, float]:
    """{name: value} of each output element (`name_k` for outputs with several), unlogged."""
    return {key: v for _, key, v in _elements(net, values)}


def log_outputs(log: glog.GlogLogger, net: Net, kind: str,
                values: list[np.ndarray] | None = None) -> dict[str, float]:
    """Log each element of each net output as Caffe does; return `net_outputs`."""
    out = {}
    for index, (name, key, v) in enumerate(_elements(net, values)):
        weight = net.loss_weights.get(name, 0.0)
        note = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
        log.info(f"    {kind} net output #{index}: {name} = {fmt(v)}{note}")
        out[key] = v
    return out

"""The solver's log lines for numbers and net outputs, as Caffe prints them."""

from __future__ import annotations

import numpy as np

from pipeline_lib.core import glog
from pipeline_lib.core.backend import to_host
from pipeline_lib.engine.net import Net


def fmt(value: float) -> str:
    """A number as Caffe's logs print it (C++ stream default: 6 significant digits)."""
    return format(float(value), ".6g")


def log_outputs(log: glog.GlogLogger, net: Net, kind: str,
                values: list[np.ndarray] | None = None) -> dict[str, float]:
    """Log each element of each net output (`values`, else the blobs' data) as Caffe does;
    return {name: value} (`name_k` for outputs with several elements)."""
    index, out = 0, {}
    for j, name in enumerate(net.output_blob_names):
        array = values[j] if values is not None else to_host(net.blobs[name].data).ravel()
        weight = net.loss_weights.get(name, 0.0)
        for k, raw in enumerate(array):
            v = float(raw)
            note = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
            log.info(f"    {kind} net output #{index}: {name} = {fmt(v)}{note}")
            out[name if array.size == 1 else f"{name}_{k}"] = v
            index += 1
    return out

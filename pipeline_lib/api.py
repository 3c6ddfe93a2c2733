"""A small Python API in pycaffe's spirit, over `pipeline_lib.engine.net.Net`.

    net = Net("models/lenet/lenet.prototxt", "results/lenet_iter_10000.caffemodel")
    probs = net.forward(data=images)["prob"]      # inputs by blob name; outputs as NumPy
    net.blobs["conv1"].data, net.params["conv1"][0].data
    net.save("copy.caffemodel")

`blobs` and `params` are the net's own Blob objects: on the CPU their
`.data`/`.diff` are NumPy arrays to read and write in place (CuPy arrays
with `device=Device.GPU`); `forward` and `backward` return NumPy copies. Giving an
input of another batch size (or shape) reshapes the Input blob and, on the
next forward, every layer after it.

`load_net` gives the engine's own Net (no pycaffe face) with its batch size
or data layers patched, as `pcaffe time` and `pcaffe test` use it, and
bench/ and the workflow's timing rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from pipeline_lib.core.backend import Device, to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer
from pipeline_lib.engine.layers.data_layer import DataLayer, replace_data_layers, set_batch_size
from pipeline_lib.engine.net import Net as CoreNet
from pipeline_lib.engine.weights import copy_weights, read_weights
from pipeline_lib.proto import caffe_pb2

PhaseLike = int | str
PathLike = str | os.PathLike


def phase_value(phase: PhaseLike) -> int:
    """caffe_pb2.TRAIN / TEST from an enum value or its name ("TEST", "test")."""
    if isinstance(phase, str):
        try:
            return caffe_pb2.Phase.Value(phase.upper())
        except ValueError:
            raise ValueError(f"unknown phase {phase!r}: expected TRAIN or TEST") from None
    if phase not in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        raise ValueError(f"unknown phase {phase!r}: expected caffe_pb2.TRAIN or caffe_pb2.TEST")
    return int(phase)


class Net:
    """A net from a prototxt (path or NetParameter), optionally with trained weights."""

    def __init__(self, model: PathLike | caffe_pb2.NetParameter,
                 weights: PathLike | Sequence[PathLike] | None = None,
                 phase: PhaseLike = "TEST", *, device: Device = Device.CPU,
                 stages: Iterable[str] = (), level: int = 0, seed: int = 0):
        from pipeline_lib.proto.prototxt import read_net

        param = model if isinstance(model, caffe_pb2.NetParameter) else read_net(model)
        self.core = CoreNet(param, phase_value(phase), xp=device.xp,
                            rng=np.random.default_rng(seed), stages=stages, level=level)
        self.inputs: list[str] = [top for layer in self.core.layers
                                  if isinstance(layer, DataLayer) and layer.is_input
                                  for top in layer.param.top]
        if weights is not None:
            self.copy_from(weights)

    # -- pycaffe's attributes --------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.core.name

    @property
    def blobs(self) -> dict[str, Blob]:
        """Every blob by name, in creation order."""
        return self.core.blobs

    @property
    def params(self) -> dict[str, list[Blob]]:
        """Learnable blobs by layer name (weights first, then bias)."""
        return self.core.params

    @property
    def layers(self) -> list[Layer]:
        return self.core.layers

    @property
    def layer_names(self) -> list[str]:
        return self.core.layer_names

    @property
    def outputs(self) -> list[str]:
        """Blobs no layer consumes, in order (e.g. "prob", or "loss" and "accuracy")."""
        return self.core.output_blob_names

    # -- weights ----------------------------------------------------------------------------
    def copy_from(self, weights: PathLike | Sequence[PathLike]) -> list[str]:
        """Load .caffemodel weights by layer name; returns the layers that got weights."""
        paths = [weights] if isinstance(weights, str | os.PathLike) else list(weights)
        return copy_weights(self.core, read_weights(paths))

    def save(self, path: PathLike) -> None:
        """Write the weights as a binary .caffemodel (atomically)."""
        from pipeline_lib.proto.prototxt import write_binary

        write_binary(self.core.to_proto(), path)

    # -- running ---------------------------------------------------------------------------
    def set_input(self, name: str, array) -> None:
        """Copy `array` into Input blob `name`, reshaping the blob when its shape differs."""
        if name not in self.inputs:
            raise KeyError(f"net {self.name!r} has no input blob {name!r} "
                           f"(inputs: {', '.join(self.inputs) or 'none'})")
        blob = self.blobs[name]
        array = np.asarray(to_host(array), dtype=blob.dtype)
        if array.ndim != len(blob.shape):
            raise ValueError(f"input {name!r}: array of shape {array.shape} for a blob of shape "
                             f"{list(blob.shape)}; give the same number of axes")
        blob.reshape(array.shape)
        blob.data[...] = blob.xp.asarray(array)

    def forward(self, blobs: Iterable[str] = (), start: str | None = None,
                end: str | None = None, **inputs) -> dict[str, np.ndarray]:
        """Set the given inputs, run layers `start`..`end` (names; default all).

        Returns the outputs (the tops of `end` when given) and any `blobs`
        asked for, as NumPy copies.
        """
        for name, array in inputs.items():
            self.set_input(name, array)
        first, last = self._index(start, 0), self._index(end, len(self.layers) - 1)
        for i in range(first, last + 1):
            self.core.forward_layer(i)
        names = self.outputs if end is None else list(self.layers[last].param.top)
        return self._copies([*names, *blobs], "data")

    def backward(self, diffs: Iterable[str] = (), start: str | None = None,
                 end: str | None = None, **top_diffs) -> dict[str, np.ndarray]:
        """Backward from `start` down to `end` (names; default all layers).

        Loss tops start from their loss weight; `top_diffs` sets the diff of
        output blobs by name. Returns the diffs of the inputs and of `diffs`.
        Parameter diffs accumulate (`+=`) as in Caffe. A layer runs backward
        only when the net needs it (a loss, learnable params or force_backward).
        """
        self.core.seed_loss_diffs()
        for name, diff in top_diffs.items():
            if name not in self.outputs:
                raise KeyError(f"net {self.name!r}: {name!r} is not an output blob "
                               f"(outputs: {', '.join(self.outputs)})")
            blob = self.blobs[name]
            diff = np.asarray(to_host(diff), dtype=blob.dtype)
            if diff.shape != blob.shape:
                raise ValueError(f"diff for {name!r} has shape {diff.shape}, the blob "
                                 f"{list(blob.shape)}")
            blob.diff[...] = blob.xp.asarray(diff)
        first = self._index(start, len(self.layers) - 1)
        last = self._index(end, 0)
        for i in range(first, last - 1, -1):
            self.core.backward_layer(i)
        names = self.inputs if end is None else list(self.layers[last].param.bottom)
        return self._copies([*names, *diffs], "diff")

    def reshape(self) -> None:
        """Propagate input shapes through the net without computing anything."""
        for layer, bottoms, tops in zip(self.layers, self.core.bottoms, self.core.tops):
            layer.reshape(bottoms, tops)

    def _index(self, layer: str | None, default: int) -> int:
        if layer is None:
            return default
        try:
            return self.layer_names.index(layer)
        except ValueError:
            raise KeyError(f"net {self.name!r} has no layer {layer!r}") from None

    def _copies(self, names: list[str], what: str) -> dict[str, np.ndarray]:
        out = {}
        for name in dict.fromkeys(names):
            if name not in self.blobs:
                raise KeyError(f"net {self.name!r} has no blob {name!r}")
            out[name] = np.array(to_host(getattr(self.blobs[name], what)), copy=True)
        return out

    # -- resources --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop data layers' prefetch threads."""
        self.core.close()

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Net({self.name!r}, inputs={self.inputs}, outputs={self.outputs}, "
                f"{len(self.layers)} layers)")


# -- core nets with their inputs patched, for timing and testing (`pcaffe time`, `test`) --

def load_net(model: str, weights: str | None, phase: int, device: Device = Device.CPU,
             batch_size: int | None = None, dummy_data: Sequence[int] | None = None,
             seed: int = 0):
    """A Net from a prototxt, optionally with weights, batch size and dummy data (C, H, W)
    patched in."""
    from pipeline_lib.proto.prototxt import read_net

    param = read_net(model)
    if dummy_data:
        replace_data_layers(param, list(dummy_data), batch_size)
    if batch_size:
        set_batch_size(param, batch_size)
    net = CoreNet(param, phase, xp=device.xp, rng=np.random.default_rng(seed))
    if weights:
        copy_weights(net, read_weights([w for w in weights.split(",") if w]))
    return net

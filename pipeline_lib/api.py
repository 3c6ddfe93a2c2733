"""A small Python API in pycaffe's spirit, over `pipeline_lib.engine.net.Net`.

    net = Net("models/lenet/lenet.prototxt", "results/lenet_iter_10000.caffemodel", TEST)
    net = Net("models/lenet/lenet.prototxt", TEST, weights="lenet.caffemodel")  # the same
    probs = net.forward(data=images)["prob"]      # inputs by blob name; outputs as NumPy
    net.blobs["conv1"].data, net.params["conv1"][0].data
    net.blobs["data"].reshape(1, 1, 28, 28); net.reshape()
    net.save("copy.caffemodel")

`blobs` and `params` are the net's own Blob objects: on the CPU their
`.data`/`.diff` are NumPy arrays to read and write in place (CuPy arrays
on the GPU); `forward` and `backward` return NumPy copies. Giving an
input of another batch size (or shape) reshapes the Input blob and, on the
next forward, every layer after it. A net is made on the device of
`pipeline_lib.mode` (set_mode_cpu/set_mode_gpu) unless `device=` says.

The same class faces the nets of a solver (`pipeline_lib.caffe.SGDSolver(...).net`),
made by `Net.wrap` around the engine's net.

`load_net` gives the engine's own Net (no pycaffe face) with its batch size
or data layers patched, as `pcaffe time` and `pcaffe test` use it, and
bench/ and the workflow's timing rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from pipeline_lib import mode
from pipeline_lib.core.backend import Device, to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer
from pipeline_lib.engine.layers.data_layer import DataLayer, replace_data_layers, set_batch_size
from pipeline_lib.engine.layers.python_layer import modules_beside
from pipeline_lib.engine.net import Net as CoreNet
from pipeline_lib.engine.weights import copy_weights, read_weights
from pipeline_lib.proto import caffe_pb2

PhaseLike = int | str
PathLike = str | os.PathLike

TRAIN: int = caffe_pb2.TRAIN
TEST: int = caffe_pb2.TEST


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
    """A net from a prototxt (path or NetParameter), optionally with trained weights.

    As pycaffe: `Net(model, weights, phase)`, `Net(model, phase, weights=...)` or
    `Net(model, phase)`; the phase is TRAIN or TEST (default TEST), also as a name.
    """

    def __init__(self, model: PathLike | caffe_pb2.NetParameter, *args,
                 weights: PathLike | Sequence[PathLike] | None = None,
                 phase: PhaseLike | None = None, device: Device | None = None,
                 stages: Iterable[str] = (), level: int = 0, seed: int | None = None):
        from pipeline_lib.proto.prototxt import read_net

        weights, phase = _weights_and_phase(args, weights, phase)
        from_file = not isinstance(model, caffe_pb2.NetParameter)
        param = read_net(model) if from_file else model
        device = device if device is not None else mode.device()
        with modules_beside(*([model] if from_file else [])):
            core = CoreNet(param, phase_value(phase), xp=device.xp,
                           rng=np.random.default_rng(mode.seed() if seed is None else seed),
                           stages=stages, level=level)
        self._attach(core)
        if weights is not None:
            try:
                self.copy_from(weights)
            except BaseException:
                core.close()
                raise

    @classmethod
    def wrap(cls, core: CoreNet) -> Net:
        """The pycaffe face of an engine net (e.g. a solver's), sharing its blobs."""
        net = cls.__new__(cls)
        net._attach(core)
        return net

    def _attach(self, core: CoreNet) -> None:
        self.core = core
        self.inputs: list[str] = [top for layer in core.layers
                                  if isinstance(layer, DataLayer) and layer.is_input
                                  for top in layer.param.top]

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

    _layer_names = layer_names

    @property
    def layer_dict(self) -> dict[str, Layer]:
        return dict(zip(self.core.layer_names, self.core.layers))

    @property
    def top_names(self) -> dict[str, list[str]]:
        """Each layer's top blob names, by layer name."""
        return {n: [b.name for b in tops] for n, tops in zip(self.layer_names, self.core.tops)}

    @property
    def bottom_names(self) -> dict[str, list[str]]:
        """Each layer's bottom blob names, by layer name."""
        return {n: [b.name for b in bottoms]
                for n, bottoms in zip(self.layer_names, self.core.bottoms)}

    @property
    def blob_loss_weights(self) -> dict[str, float]:
        return {name: self.core.loss_weights.get(name, 0.0) for name in self.blobs}

    @property
    def phase(self) -> int:
        return self.core.phase

    @property
    def outputs(self) -> list[str]:
        """Blobs no layer consumes, by name as in Caffe (e.g. "prob", or "accuracy", "loss")."""
        return self.core.output_blob_names

    @property
    def last_output(self) -> str:
        """The output written last (a deploy net's scores): what classify and evaluate read
        unless told otherwise."""
        for layer in reversed(self.layers):
            for top in reversed(layer.param.top):
                if top in self.outputs:
                    return top
        raise ValueError(f"net {self.name!r} has no output blob")

    # -- weights ----------------------------------------------------------------------------
    def copy_from(self, weights: PathLike | Sequence[PathLike]) -> list[str]:
        """Load .caffemodel weights by layer name; returns the layers that got weights."""
        paths = [weights] if isinstance(weights, str | os.PathLike) else list(weights)
        return copy_weights(self.core, read_weights(paths))

    def share_with(self, other: Net) -> None:
        """Use `other`'s learned blobs (the same arrays) for the layers both have by name."""
        self.core.share_trained_layers_with(other.core)

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

    def forward_all(self, blobs: Iterable[str] = (), **inputs) -> dict[str, np.ndarray]:
        """`forward` over inputs of any count, in batches of the net's batch size; the
        outputs (and `blobs`) of all batches, concatenated."""
        if not inputs:
            return self.forward(blobs)
        sizes = {len(v) for v in inputs.values()}
        if len(sizes) != 1:
            raise ValueError(f"forward_all: inputs of different counts: "
                             f"{ {k: len(v) for k, v in inputs.items()} }")
        total = sizes.pop()
        batch = self.blobs[next(iter(inputs))].shape[0] or total or 1
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, total, batch):
            chunk = {k: v[start:start + batch] for k, v in inputs.items()}
            for name, value in self.forward(blobs, **chunk).items():
                parts.setdefault(name, []).append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}

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


def _weights_and_phase(args: tuple, weights, phase) -> tuple:
    """pycaffe's positional forms: (weights, phase), (phase,) or (weights,)."""
    if len(args) > 2:
        raise TypeError(f"Net(model, [weights], [phase]): {len(args) + 1} positional "
                        "arguments given")
    if len(args) == 2:
        given_weights, given_phase = args
    elif len(args) == 1 and _is_phase(args[0]):
        given_weights, given_phase = None, args[0]
    elif len(args) == 1:
        given_weights, given_phase = args[0], None
    else:
        given_weights = given_phase = None
    if given_weights is not None and weights is not None:
        raise TypeError("Net: weights given twice (positionally and as weights=)")
    if given_phase is not None and phase is not None:
        raise TypeError("Net: phase given twice (positionally and as phase=)")
    return (weights if weights is not None else given_weights,
            phase if phase is not None else (given_phase if given_phase is not None else TEST))


def _is_phase(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- core nets with their inputs patched, for timing and testing (`pcaffe time`, `test`) --

def load_net(model: str, weights: str | None, phase: int, device: Device = Device.CPU,
             batch_size: int | None = None, dummy_data: Sequence[int] | None = None,
             seed: int = 0, stages: Iterable[str] = (), level: int | None = None):
    """A Net from a prototxt, optionally with weights, batch size and dummy data (C, H, W)
    patched in, for the state `stages`/`level` (None: the net's own level)."""
    from pipeline_lib.proto.prototxt import read_net

    param = read_net(model)
    if dummy_data:
        replace_data_layers(param, list(dummy_data), batch_size)
    if batch_size:
        set_batch_size(param, batch_size)
    with modules_beside(model):
        net = CoreNet(param, phase, xp=device.xp, rng=np.random.default_rng(seed),
                      stages=stages, level=level or 0)
    if weights:
        copy_weights(net, read_weights([w for w in weights.split(",") if w]))
    return net

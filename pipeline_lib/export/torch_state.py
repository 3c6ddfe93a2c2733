"""A net's learnable blobs as a PyTorch `state_dict`, and a `state_dict` into a net.

Keys are `<layer>.weight` and `<layer>.bias` (then `<layer>.blob<k>` for further blobs),
so a `torch.nn.Sequential` whose modules carry the Caffe layer names loads them as
they are: Caffe's Convolution weights (out, in/group, kh, kw) and InnerProduct weights
(out, in) are laid out as torch's Conv2d and Linear ones. An InnerProduct with
`transpose: true` stores (in, out) and is transposed both ways. A BatchNorm layer
gives `<bn>.running_mean` and `<bn>.running_var` (Caffe's stored sums over its
scale factor; both unbiased, as torch's), and a Scale with a bias right after it
(per channel) gives `<bn>.weight` and `<bn>.bias`: together one torch
`BatchNorm2d` named after the BatchNorm layer. Values that come in (tensors or
arrays) are checked against the net's shapes, with one line per problem.
Needs torch only to make tensors (`to_state_dict(..., tensors=True)`) or read and
write `.pt` files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2


class StateDictError(ValueError):
    """A state_dict does not fit the net; the message names the key and the shapes."""


@dataclass
class _Slot:
    """One state_dict entry: blob `k` of layer `layer`, as `kind` lays it out."""

    key: str
    layer: str
    k: int
    kind: str  # "plain", "transposed" (InnerProduct transpose), "mean" or "var" (BatchNorm)


def _suffix(k: int) -> str:
    return ("weight", "bias")[k] if k < 2 else f"blob{k}"


def _affine_of_batchnorm(net: Net) -> dict[str, str]:
    """{Scale layer: BatchNorm layer} for each Scale with a bias that scales and shifts a
    BatchNorm's top per channel, as torch's BatchNorm affine weight and bias do."""
    last_writer: dict[str, int] = {}
    pairs = {}
    for i, layer in enumerate(net.layers):
        bottoms = net.bottoms[i]
        if layer.type == "Scale" and len(bottoms) == 1 and layer.bias_term:
            j = last_writer.get(bottoms[0].name)
            bn = net.layers[j] if j is not None else None
            if (bn is not None and bn.type == "BatchNorm" and len(bottoms[0].shape) >= 2
                    and layer.blobs[0].shape == (bn.channels,)
                    and layer.broadcast.view[:2] == (1, bn.channels)):
                pairs[layer.name] = bn.name
        for top in net.tops[i]:
            last_writer[top.name] = i
    return pairs


def _slots(net: Net) -> list[_Slot]:
    paired = _affine_of_batchnorm(net)
    slots = []
    for name, blobs in net.params.items():
        layer = net.layer(name)
        if layer.type == "BatchNorm":
            slots += [_Slot(f"{name}.running_mean", name, 0, "mean"),
                      _Slot(f"{name}.running_var", name, 1, "var")]
        elif name in paired:
            slots += [_Slot(f"{paired[name]}.{_suffix(k)}", name, k, "plain") for k in (0, 1)]
        else:
            transposed = layer.type == "InnerProduct" and bool(
                layer.param.inner_product_param.transpose)
            slots += [_Slot(f"{name}.{_suffix(k)}", name, k,
                            "transposed" if transposed and k == 0 else "plain")
                      for k in range(len(blobs))]
    return slots


def _estimates(net: Net, layer_name: str) -> list[np.ndarray]:
    """A BatchNorm's mean and variance: its stored sums over the factor (Caffe: 0 if 0)."""
    blobs = net.layer(layer_name).blobs
    factor = float(to_host(blobs[2].data)[0])
    scale = 0.0 if factor == 0 else 1.0 / factor
    return [np.array(to_host(blobs[k].data), dtype=np.float32) * np.float32(scale)
            for k in (0, 1)]


def _torch():
    try:
        import torch
    except ImportError:
        raise StateDictError("PyTorch interchange needs torch: pip install "
                             "'pipeline-lib[torch]'") from None
    return torch


def to_state_dict(net: Net, tensors: bool = True) -> dict:
    """{"conv1.weight": ..., "conv1.bias": ..., ...}: torch tensors, or NumPy arrays."""
    out = {}
    for slot in _slots(net):
        if slot.kind in ("mean", "var"):
            values = _estimates(net, slot.layer)[slot.k]
        else:
            values = np.array(to_host(net.layer(slot.layer).blobs[slot.k].data),
                              dtype=np.float32)
        out[slot.key] = values.T.copy() if slot.kind == "transposed" else values
    if tensors:
        torch = _torch()
        out = {key: torch.from_numpy(v) for key, v in out.items()}
    return out


def _as_array(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_state_dict(net: Net, state: Mapping[str, object], strict: bool = True) -> list[str]:
    """Copy `state` into the net's blobs (all checked before any is written); returns the
    keys copied. `strict`: every key must name a blob and every blob must get a value.
    A BatchNorm's running mean and variance are stored with factor 1; torch's
    `num_batches_tracked` of a BatchNorm layer is ignored."""
    slots = {slot.key: slot for slot in _slots(net)}
    batchnorms = {s.layer for s in slots.values() if s.kind == "mean"}
    plan = []
    for key, value in state.items():
        slot = slots.get(key)
        if slot is None:
            layer_name, _, suffix = key.rpartition(".")
            if suffix == "num_batches_tracked" and layer_name in batchnorms:
                continue
            if strict:
                raise StateDictError(f"state_dict key {key!r} names no learnable blob of net "
                                     f"{net.name!r}; its keys are: {', '.join(slots)}")
            continue
        array = _as_array(value)
        if slot.kind == "transposed":
            array = array.T
        blob = net.layer(slot.layer).blobs[slot.k]
        if array.shape != blob.shape:
            raise StateDictError(f"state_dict key {key!r} has shape {list(array.shape)} but "
                                 f"layer {slot.layer!r} blob {slot.k} has shape "
                                 f"{list(blob.shape)}")
        plan.append((slot, array))
    if strict:
        given = {slot.key for slot, _ in plan}
        missing = [key for key in slots if key not in given]
        if missing:
            raise StateDictError(f"state_dict lacks {', '.join(missing)} of net {net.name!r}")
    estimates = {}  # BatchNorm layer -> [mean, var], the given ones replacing the stored
    for slot, array in plan:
        if slot.kind in ("mean", "var"):
            estimates.setdefault(slot.layer, _estimates(net, slot.layer))[slot.k] = array
            continue
        blob = net.layer(slot.layer).blobs[slot.k]
        blob.data[...] = net.xp.asarray(array, dtype=blob.dtype)
    for layer_name, values in estimates.items():
        blobs = net.layer(layer_name).blobs
        for k, v in enumerate(values):
            blobs[k].data[...] = net.xp.asarray(v, dtype=blobs[k].dtype)
        blobs[2].data[...] = 1
    return [slot.key for slot, _ in plan]


def caffemodel_to_torch(model: str | os.PathLike, weights: Sequence[str | os.PathLike],
                        output: str | os.PathLike) -> None:
    """Save a net's .caffemodel weights as a torch `state_dict` file (torch.save)."""
    from pipeline_lib.core.fsutil import atomic_writer
    from pipeline_lib.engine.weights import copy_weights, read_weights
    from pipeline_lib.proto.prototxt import read_net

    torch = _torch()
    net = Net(read_net(model), caffe_pb2.TEST)
    copy_weights(net, read_weights(list(weights)))
    with atomic_writer(output) as f:
        torch.save(to_state_dict(net), f)


def torch_to_caffemodel(model: str | os.PathLike, state_file: str | os.PathLike,
                        output: str | os.PathLike) -> None:
    """Write a .caffemodel for `model` from a torch `state_dict` file."""
    from pipeline_lib.proto.prototxt import read_net
    from pipeline_lib.proto.snapshot import save_caffemodel

    torch = _torch()
    net = Net(read_net(model), caffe_pb2.TEST)
    load_state_dict(net, torch.load(state_file, map_location="cpu", weights_only=True))
    save_caffemodel(net, output)

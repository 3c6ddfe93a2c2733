"""A net's learnable blobs as a PyTorch `state_dict`, and a `state_dict` into a net.

Keys are `<layer>.weight` and `<layer>.bias` (then `<layer>.blob<k>` for further blobs),
so a `torch.nn.Sequential` whose modules carry the Caffe layer names loads them as
they are: Caffe's Convolution weights (out, in/group, kh, kw) and InnerProduct weights
(out, in) are laid out as torch's Conv2d and Linear ones. An InnerProduct with
`transpose: true` stores (in, out) and is transposed both ways. Values that come in
(tensors or arrays) are checked against the net's shapes, with one line per problem.
Needs torch only to make tensors (`to_state_dict(..., tensors=True)`) or read and
write `.pt` files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2


class StateDictError(ValueError):
    """A state_dict does not fit the net; the message names the key and the shapes."""


def _suffix(k: int) -> str:
    return ("weight", "bias")[k] if k < 2 else f"blob{k}"


def _transposed(net: Net, layer_name: str, k: int) -> bool:
    layer = net.layer(layer_name)
    return layer.type == "InnerProduct" and k == 0 and bool(layer.param.inner_product_param
                                                            .transpose)


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
    for name, blobs in net.params.items():
        for k, blob in enumerate(blobs):
            values = np.array(to_host(blob.data), dtype=np.float32)
            out[f"{name}.{_suffix(k)}"] = values.T.copy() if _transposed(net, name, k) else values
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
    keys copied. `strict`: every key must name a blob and every blob must get a value."""
    params = net.params
    plan = []
    for key, value in state.items():
        layer_name, _, suffix = key.rpartition(".")
        blobs = params.get(layer_name)
        k = {"weight": 0, "bias": 1}.get(suffix, int(suffix[4:]) if suffix[4:].isdigit()
                                         and suffix.startswith("blob") else -1)
        if blobs is None or not 0 <= k < len(blobs):
            if strict:
                have = ", ".join(f"{n}.{_suffix(j)}" for n, b in params.items()
                                 for j in range(len(b)))
                raise StateDictError(f"state_dict key {key!r} names no learnable blob of net "
                                     f"{net.name!r}; its keys are: {have}")
            continue
        array = _as_array(value)
        if _transposed(net, layer_name, k):
            array = array.T
        if array.shape != blobs[k].shape:
            raise StateDictError(f"state_dict key {key!r} has shape {list(array.shape)} but "
                                 f"layer {layer_name!r} blob {k} has shape "
                                 f"{list(blobs[k].shape)}")
        plan.append((key, blobs[k], array))
    if strict:
        given = {key for key, _, _ in plan}
        missing = [f"{n}.{_suffix(j)}" for n, b in params.items() for j in range(len(b))
                   if f"{n}.{_suffix(j)}" not in given]
        if missing:
            raise StateDictError(f"state_dict lacks {', '.join(missing)} of net {net.name!r}")
    for _, blob, array in plan:
        blob.data[...] = net.xp.asarray(array, dtype=blob.dtype)
    return [key for key, _, _ in plan]


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

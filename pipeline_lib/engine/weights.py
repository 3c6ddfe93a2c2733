"""Trained weights into a net by layer name: fine-tuning (`pcaffe train --weights`, the
solver's `weights`), `pcaffe test/time --weights` and `api.Net(model, weights)`.

As Caffe's Net::CopyTrainedLayersFrom: a layer of the file with no layer of that name in
the net is ignored (logged), and a layer of the net with learnable blobs that no file
holds keeps its filler values (a warning each: a file cut short between two layers looks
just like this). Unlike Caffe, a file that matches no layer of the net is an error, not a
run from scratch that looks like fine-tuning. Resuming (training/resume.py) is stricter:
a snapshot must hold every layer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pipeline_lib.core import glog
from pipeline_lib.engine.net import Net, NetError
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.snapshot import load_caffemodel

_SHOWN = 12  # layer names listed in a message, at most


def _names(names: Sequence[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    more = len(names) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def read_weights(paths: Sequence[str | os.PathLike]) -> list[tuple[str, caffe_pb2.NetParameter]]:
    """Each .caffemodel of `paths`, read once: (its path, its NetParameter)."""
    return [(str(path), load_caffemodel(path)) for path in paths]


def copy_weights(net: Net, weights: Sequence[tuple[str, caffe_pb2.NetParameter]],
                 log: glog.GlogLogger | None = None) -> list[str]:
    """Copy each (path, caffemodel) of `weights` (see read_weights) into `net` by layer name;
    returns the layers that got weights. Raises NetError naming both sides' layers when a
    file matches none."""
    if not weights:
        return []
    log = log if log is not None else glog.default_logger()
    learnable = [name for name, layer in zip(net.layer_names, net.layers) if layer.blobs]
    copied: list[str] = []
    for path, param in weights:
        got = net.copy_trained_layers_from(param, source=path)
        in_file = [lp.name for lp in [*param.layer, *param.layers] if len(lp.blobs)]
        if learnable and not got:
            raise NetError(f"{path}: matches no layer of net {net.name!r} (weights are copied "
                           f"by layer name): the file (net {param.name!r}) has weights for "
                           f"{_names(in_file)}; the net has learnable layers "
                           f"{_names(learnable)}")
        for name in in_file:
            if name not in net.layer_names:
                log.info(f"Ignoring source layer {name}")
        copied += got
    files = ", ".join(path for path, _ in weights)
    for name in learnable:
        if name not in copied:
            log.warning(f"{files} holds no weights for layer {name!r} of net {net.name!r}; "
                        "it keeps its initial (filler) values")
    return copied

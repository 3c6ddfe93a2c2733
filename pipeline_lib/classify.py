"""Top-k predictions of a trained net for image files and IDX images (`pcaffe classify`).

Inputs are image files that Pillow reads (PNG, JPEG, ...), folders of them (their
image files by extension, sorted by name) and IDX image files (MNIST's format,
recognised by their magic number, not their name). An IDX
input may name a slice: `FILE:START:COUNT`, or `FILE:START` for one image;
otherwise every image of the file (or the command's --idx-start/--idx-count).

Pixels reach the net as in training: see `pipeline_lib.preprocess`. The
transform is taken from, in order, a train/val net given with
`transform_from`, the training net stored in the weights file (a .caffemodel
keeps its Data layer's transform_param), then the deploy net itself; single
settings (scale, mean, ...) can be overridden. Output values that a Softmax
layer produced are probabilities already; other scores go through a softmax.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from pipeline_lib.api import Net
from pipeline_lib.core.backend import Device
from pipeline_lib.engine.layers.python_layer import modules_beside
from pipeline_lib.preprocess import Preprocessor, find_transform_param
from pipeline_lib.proto import caffe_pb2

_SLICE = re.compile(r"^(?P<path>.+?):(?P<start>\d+)(?::(?P<count>\d+))?$")


class ClassifyError(ValueError):
    """An input or option that classify cannot use."""


@dataclass(frozen=True)
class Prediction:
    """The `top` (class, probability) pairs of one input, best first."""

    input: str
    top: tuple[tuple[int, float], ...]

    @property
    def best(self) -> int:
        return self.top[0][0]


# -- inputs ----------------------------------------------------------------------------------
def is_idx_images(path: str | os.PathLike) -> bool:
    """True when the file starts like an unsigned-byte IDX file of 2 or 3 dimensions."""
    with open(path, "rb") as f:
        head = f.read(4)
    return len(head) == 4 and head[:3] == b"\x00\x00\x08" and head[3] in (2, 3)


def parse_input(spec: str, start: int = 0, count: int | None = None
                ) -> tuple[str, int, int | None]:
    """(path, start, count) of an input argument; `FILE:START[:COUNT]` slices an IDX file."""
    if not os.path.exists(spec) and (m := _SLICE.match(spec)):
        n = m.group("count")
        return m.group("path"), int(m.group("start")), 1 if n is None else int(n)
    return spec, start, count


def expand_folders(specs: Sequence[str]) -> Iterator[str]:
    """The inputs with each folder replaced by its image files (by extension), sorted."""
    from pipeline_lib.data.listing import IMAGE_EXTENSIONS

    for spec in specs:
        if not os.path.isdir(spec):
            yield spec
            continue
        images = sorted(entry.path for entry in os.scandir(spec)
                        if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            raise ClassifyError(f"{spec}: is a folder with no image files in it (looked for "
                                f"{', '.join(IMAGE_EXTENSIONS)}; subfolders are not searched)")
        yield from images


def iter_inputs(specs: Sequence[str], preprocessor: Preprocessor, idx_start: int = 0,
                idx_count: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(name, image at the preprocessor's image size) for every input, in order."""
    from pipeline_lib.data.idx import read_idx

    for spec in expand_folders(specs):
        path, start, count = parse_input(spec, idx_start, idx_count)
        if not os.path.isfile(path):
            raise ClassifyError(f"{path}: no such file")
        if not is_idx_images(path):
            if path != spec:
                raise ClassifyError(f"{spec}: only IDX files take a :START:COUNT slice")
            yield path, preprocessor.load(path)
            continue
        images = read_idx(path)
        if images.ndim == 2:
            images = images[np.newaxis]
        n = len(images)
        stop = n if count is None else start + count
        if not 0 <= start < stop <= n:
            asked = f"images from {start}" if count is None else f"images {start}..{stop - 1}"
            holds = f"{n} (0..{n - 1})" if n else "none"
            raise ClassifyError(f"{path}: {asked} asked for, the file holds {holds}")
        for i in range(start, stop):
            where = f"{path}[{i}]"
            yield where, preprocessor.fit(images[i], where)


def read_label_names(path: str | os.PathLike) -> list[str]:
    """One class name per non-empty line (e.g. synset_words.txt: `n01440764 tench, ...`)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


# -- prediction ------------------------------------------------------------------------------
def output_probabilities(net: Net, blob: str, values: np.ndarray) -> np.ndarray:
    """N x K probabilities from an output blob's values (softmax unless a Softmax made them)."""
    scores = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[:, None]
    if values.ndim > 2 and int(np.prod(values.shape[2:])) != 1:
        raise ClassifyError(f"output {blob!r} has shape {list(values.shape)}; expected one "
                            "score per class (N x K)")
    producer = [layer.type for layer in net.layers if blob in layer.param.top]
    if producer and producer[-1] == "Softmax":
        return scores.astype(np.float64)
    shifted = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def classify(net: Net, preprocessor: Preprocessor, items: Iterable[tuple[str, np.ndarray]],
             *, top_k: int = 5, output_blob: str | None = None, input_blob: str | None = None,
             batch_size: int | None = None) -> list[Prediction]:
    """Run `items` (name, image) through the net in batches; the top-k classes of each."""
    input_blob = input_blob or net.inputs[0]
    output_blob = output_blob or net.last_output
    if output_blob not in net.blobs:
        raise ClassifyError(f"net {net.name!r} has no blob {output_blob!r} "
                            f"(outputs: {', '.join(net.outputs)})")
    batch_size = batch_size or net.blobs[input_blob].shape[0] or 1
    predictions: list[Prediction] = []
    names: list[str] = []
    images: list[np.ndarray] = []

    def flush() -> None:
        values = net.forward(blobs=[output_blob], **{input_blob: preprocessor(np.stack(images))})
        probs = output_probabilities(net, output_blob, values[output_blob])
        k = min(top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for name, row, classes in zip(names, probs, order):
            predictions.append(Prediction(name, tuple((int(c), float(row[c])) for c in classes)))
        names.clear()
        images.clear()

    for name, image in items:
        names.append(name)
        images.append(image)
        if len(images) == batch_size:
            flush()
    if images:
        flush()
    return predictions


def build_preprocessor(deploy: caffe_pb2.NetParameter, weights: Sequence[str] = (), *,
                       transform_from: str | None = None, input_blob: str | None = None,
                       **overrides) -> tuple[Preprocessor, str]:
    """The preprocessor for a deploy net, and where its transform came from."""
    from pipeline_lib.proto.prototxt import read_net, read_net_binary

    sources: list[tuple[str, caffe_pb2.NetParameter]] = []
    if transform_from:
        sources.append((transform_from, read_net(transform_from)))
    sources += [(w, read_net_binary(w)) for w in weights[:1]]
    sources.append(("the deploy net", deploy))
    origin, source = "no transform_param (none given, none in the weights)", None
    for name, param in sources:
        if find_transform_param(param) is not None:
            origin, source = f"transform_param of {name}", param
            break
    pp = Preprocessor.for_net(deploy, input_blob=input_blob, transform_from=source, **overrides)
    given = sorted(k for k, v in overrides.items() if v is not None)
    if given:
        origin += f", overridden: {', '.join(given)}"
    return pp, origin


# -- output ----------------------------------------------------------------------------------
def _label(names: Sequence[str] | None, c: int) -> str:
    return names[c] if names else str(c)


def format_text(predictions: Iterable[Prediction], names: Sequence[str] | None = None) -> str:
    """Caffe's classification example layout: a header per input, `p - "label"` lines."""
    lines = []
    for p in predictions:
        lines.append(f"---------- Prediction for {p.input} ----------")
        lines += [f'{prob:.4f} - "{_label(names, c)}"' for c, prob in p.top]
    return "\n".join(lines)


def to_json(predictions: Iterable[Prediction], names: Sequence[str] | None = None,
            **info) -> str:
    """Machine-readable predictions (plus any `info` fields at the top level)."""
    doc = dict(info)
    doc["predictions"] = [
        {"input": p.input,
         "top": [{"class": c, "label": _label(names, c), "probability": prob}
                 for c, prob in p.top]}
        for p in predictions
    ]
    return json.dumps(doc, indent=2)


def check_label_names(names: Sequence[str], net: Net, output_blob: str | None,
                      path: str) -> None:
    """One name per class of the output blob, or an error naming the labels file."""
    blob = net.blobs[output_blob or net.last_output]
    classes = int(np.prod(blob.shape[1:])) if len(blob.shape) > 1 else 1
    if len(names) != classes:
        raise ClassifyError(f"{path}: {len(names)} labels but the net's output "
                            f"{blob.name!r} has {classes} classes")


def run_classify(model: str, weights: Sequence[str], inputs: Sequence[str], *,
                 labels: str | None = None, top_k: int = 5, as_json: bool = False,
                 device: Device = Device.CPU, idx_start: int = 0, idx_count: int | None = None,
                 input_blob: str | None = None, output_blob: str | None = None,
                 batch_size: int | None = None, transform_from: str | None = None,
                 log: TextIO | None = None, **overrides) -> str:
    """`pcaffe classify`: the predictions for `inputs` as text (or JSON).

    A note on the preprocessing goes to `log` (default: stderr).

    `overrides` are Preprocessor settings (scale, mean, mean_values, raw_scale,
    channel_order, image_size); None leaves the model's own.
    """
    from pipeline_lib.proto.prototxt import read_net

    deploy = read_net(model)
    weights = [w for w in weights if w]
    pp, origin = build_preprocessor(deploy, weights, transform_from=transform_from,
                                    input_blob=input_blob, **overrides)
    print(f"pcaffe classify: preprocessing from {origin}: {pp.describe()}",
          file=log or sys.stderr)
    with modules_beside(model), Net(deploy, weights or None, "TEST", device=device) as net:
        names = read_label_names(labels) if labels else None
        if names:
            check_label_names(names, net, output_blob, labels)
        items = iter_inputs(inputs, pp, idx_start, idx_count)
        predictions = classify(net, pp, items, top_k=top_k, output_blob=output_blob,
                               input_blob=input_blob, batch_size=batch_size)
    if as_json:
        return to_json(predictions, names, model=str(model), weights=list(weights),
                       transform=pp.describe())
    return format_text(predictions, names)

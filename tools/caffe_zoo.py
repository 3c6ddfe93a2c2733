"""Build every net of a Caffe checkout's examples/ and models/ and record its blob shapes.

    python tools/caffe_zoo.py CAFFE [--write shapes.json | --check shapes.json]

CAFFE is a Caffe source folder or a bare git directory (the `fetch` tool's
/work/.mirror/BVLC+caffe/repo); its files are read, never changed. Solvers are
skipped. Each net is built for TRAIN and TEST (and each stage its rules name);
data layers that read files are replaced by Input layers of the shapes they
would give, from their batch size, crop and resize and the datum shape of
the dataset Caffe's scripts make for that source (`DATUM_SHAPES`). A net that
uses a layer type we lack is listed with the missing types.

`--write` saves the result as JSON; `--check` compares with a saved result and
exits 1 naming each net and blob whose shape differs. tests/data/caffe_zoo_shapes.json
holds our engine's result for BVLC/caffe master (not Caffe's own output: no Caffe
binary runs here); tests/test_caffe_zoo.py checks our nets against it and against
the shapes real Caffe printed in its notebooks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from pipeline_lib.engine.layers.base import LAYER_TYPES, layer_class
from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2

#: datum shape (C, H, W) of the databases Caffe's example scripts write, by a word of the
#: source path; siamese pairs stack two MNIST digits as two channels
DATUM_SHAPES = {"siamese": (2, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32),
                "ilsvrc12": (3, 256, 256), "imagenet": (3, 256, 256)}
#: per-item shape of the HDF5 files of examples/hdf5_classification (4 features)
HDF5_SHAPES = {"hdf5_classification": (4,)}
FILE_DATA = {"Data", "ImageData", "WindowData", "HDF5Data"}
PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


class Checkout:
    """Read-only access to a Caffe folder or bare git directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.git = not (self.root / "examples").is_dir()

    def prototxt_files(self) -> list[str]:
        if self.git:
            out = subprocess.run(["git", "--git-dir", str(self.root), "ls-tree", "-r",
                                  "--name-only", "HEAD", "examples", "models"],
                                 capture_output=True, text=True, check=True).stdout
            names = out.split()
        else:
            names = [p.relative_to(self.root).as_posix() for top in ("examples", "models")
                     for p in (self.root / top).rglob("*")]
        return sorted(n for n in names if n.endswith(".prototxt"))

    def read(self, name: str) -> str:
        if self.git:
            return subprocess.run(["git", "--git-dir", str(self.root), "show", f"HEAD:{name}"],
                                  capture_output=True, text=True, check=True).stdout
        return (self.root / name).read_text()

    def commit(self) -> str:
        if not self.git:
            return ""
        return subprocess.run(["git", "--git-dir", str(self.root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()


def item_shape(lp: caffe_pb2.LayerParameter) -> tuple[int, ...] | None:
    """The per-item shape a file-reading data layer would give, or None if unknown."""
    if lp.type == "HDF5Data":
        return next((s for k, s in HDF5_SHAPES.items() if k in lp.hdf5_data_param.source), None)
    crop = lp.transform_param.crop_size
    if lp.type == "WindowData":
        return (3, crop, crop) if crop else None
    if lp.type == "ImageData":
        ip = lp.image_data_param
        channels = 3 if ip.is_color else 1
        if crop:
            return channels, crop, crop
        return (channels, ip.new_height, ip.new_width) if ip.new_height else None
    source = lp.data_param.source
    datum = next((s for k, s in DATUM_SHAPES.items() if k in source), None)
    if datum is None:
        return None
    return (datum[0], crop, crop) if crop else datum


def batch_size(lp: caffe_pb2.LayerParameter) -> int:
    field = {"Data": "data_param", "ImageData": "image_data_param",
             "WindowData": "window_data_param", "HDF5Data": "hdf5_data_param"}[lp.type]
    return int(getattr(lp, field).batch_size)


def as_input(lp: caffe_pb2.LayerParameter) -> caffe_pb2.LayerParameter:
    """An Input layer with the name, rules and tops of data layer `lp`, shaped as it is."""
    shape = item_shape(lp)
    if shape is None:
        raise ValueError(f"layer {lp.name!r} ({lp.type}): no known item shape for its source")
    n = batch_size(lp)
    out = caffe_pb2.LayerParameter(name=lp.name, type="Input", top=list(lp.top))
    out.include.extend(lp.include)
    out.exclude.extend(lp.exclude)
    for j, _ in enumerate(lp.top):
        out.input_param.shape.add().dim.extend([n, *shape] if j == 0 else [n])
    return out


def parse_net(text: str) -> caffe_pb2.NetParameter | None:
    """The net in `text`, or None for a solver (or anything else that is not a net)."""
    try:
        net = text_format.Parse(text, caffe_pb2.NetParameter())
    except text_format.ParseError:
        return None
    return net if len(net.layer) or len(net.layers) else None


def configurations(net: caffe_pb2.NetParameter) -> list[tuple[str, int, list[str]]]:
    """(label, phase, stages) to build: each phase, and each stage its rules name."""
    stages = sorted({s for lp in net.layer for rule in lp.include for s in rule.stage})
    out = [(name, phase, []) for name, phase in PHASES.items()]
    out += [(f"TEST stage={s}", caffe_pb2.TEST, [s]) for s in stages]
    return out


def build_shapes(net: caffe_pb2.NetParameter) -> dict:
    """{"missing": [types]} or {config: {blob: shape} or {"error": message}}."""
    import pipeline_lib.engine.layers  # noqa: F401  (registers every layer type)

    if len(net.layers):
        net = Net(net, caffe_pb2.TEST, xp=np).param  # upgraded V1 layers
    missing = sorted({lp.type for lp in net.layer
                      if lp.type not in LAYER_TYPES and lp.type not in FILE_DATA})
    if missing:
        return {"missing": missing}
    fed = caffe_pb2.NetParameter()
    fed.CopyFrom(net)
    del fed.layer[:]
    for lp in net.layer:
        fed.layer.add().CopyFrom(as_input(lp) if lp.type in FILE_DATA else lp)
    result: dict = {}
    seen: list[dict] = []
    for label, phase, stages in configurations(fed):
        try:
            built = Net(fed, phase, xp=np, stages=stages)
        except (ValueError, MemoryError) as e:
            # the same record from any folder (a Python layer's error names the cwd)
            result[label] = {"error": str(e).replace(os.getcwd(), "<cwd>")}
            continue
        shapes = {name: list(blob.shape) for name, blob in built.blobs.items()
                  if layer_class_of(built, name) != "Split"}
        built.close()
        if shapes not in seen:  # a phase that builds the same net adds nothing
            seen.append(shapes)
            result[label] = shapes
    return result


def layer_class_of(net: Net, blob: str) -> str:
    for layer, tops in zip(net.layers, net.tops):
        if any(t.name == blob for t in tops):
            return layer.type
    return ""


def survey(root: str | Path) -> dict:
    checkout = Checkout(root)
    nets = {}
    for name in checkout.prototxt_files():
        net = parse_net(checkout.read(name))
        if net is not None:
            nets[name] = build_shapes(net)
    return {"caffe_commit": checkout.commit(), "nets": nets}


def differences(found: dict, expected: dict) -> list[str]:
    """One line per net, configuration or blob whose result differs from `expected`."""
    out = []
    for name, want in expected["nets"].items():
        got = found["nets"].get(name)
        if got is None:
            out.append(f"{name}: not in the checkout")
            continue
        for config in sorted(set(want) | set(got)):
            a, b = got.get(config), want.get(config)
            if a == b:
                continue
            if not isinstance(a, dict) or not isinstance(b, dict):
                out.append(f"{name} [{config}]: {a} here, expected {b}")
                continue
            for blob in sorted(set(a) | set(b)):
                if a.get(blob) != b.get(blob):
                    out.append(f"{name} [{config}] blob {blob}: shape {a.get(blob)} here, "
                               f"expected {b.get(blob)}")
    return out


def to_json(found: dict) -> str:
    """The survey as JSON with one line per net and configuration (small diffs in git)."""
    lines = ["{", f' "caffe_commit": {json.dumps(found["caffe_commit"])},', ' "nets": {']
    nets = list(found["nets"].items())
    for i, (name, result) in enumerate(nets):
        lines.append(f"  {json.dumps(name)}: {{")
        items = list(result.items())
        for j, (config, value) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            lines.append(f"   {json.dumps(config)}: {json.dumps(value)}{comma}")
        lines.append("  }" + ("," if i < len(nets) - 1 else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def summary(found: dict) -> str:
    nets = found["nets"]
    built = [n for n, r in nets.items() if "missing" not in r
             and not any(isinstance(v, dict) and "error" in v for v in r.values())]
    lines = [f"{len(nets)} nets, {len(built)} build in every phase"]
    for name, r in nets.items():
        if "missing" in r:
            lines.append(f"  {name}: missing layer types {', '.join(r['missing'])}")
        for config, v in r.items():
            if isinstance(v, dict) and "error" in v:
                lines.append(f"  {name} [{config}]: {v['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caffe", help="Caffe source folder or bare git directory")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="JSON", help="save the shapes found")
    group.add_argument("--check", metavar="JSON", help="compare with saved shapes")
    args = ap.parse_args(argv)
    found = survey(args.caffe)
    print(summary(found))
    if args.write:
        tmp = Path(args.write + ".tmp")
        tmp.write_text(to_json(found))
        tmp.replace(args.write)
    if args.check:
        diffs = differences(found, json.loads(Path(args.check).read_text()))
        for line in diffs:
            print(line, file=sys.stderr)
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    layer_class("Input")  # fail early if the package is not importable
    sys.exit(main())

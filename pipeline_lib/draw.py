"""A net as a picture: layers as boxes, blobs as octagons, through Graphviz's `dot`.

    draw_net_to_file(net_param, "lenet.png", rankdir="LR", phase=TRAIN)
    python -m pipeline_lib.draw models/lenet/lenet_train_test.prototxt lenet.png
    pcaffe draw models/lenet/lenet_train_test.prototxt lenet.svg --rankdir TB

The graph is written as DOT text here (`to_dot`); `dot` renders it in the format of
the output file's suffix (png, svg, pdf, ...). Without `dot` on the PATH, one line
says to install Graphviz. A layer that writes its top in place gets a new node for the
blob it rewrites, so the picture stays a chain. With a phase, only the layers that phase
builds are drawn (the net's include/exclude rules); without, all of them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.proto import caffe_pb2

RANKDIRS = ("LR", "TB", "BT", "RL")
_COLOURS = {"Convolution": "#ff8a80", "Deconvolution": "#ff8a80", "Pooling": "#ffcc80",
            "InnerProduct": "#ce93d8"}
_LAYER_COLOUR = "#90caf9"
_BLOB_COLOUR = "#e0e0e0"


class DrawError(RuntimeError):
    """Graphviz is missing or failed."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _details(layer: caffe_pb2.LayerParameter) -> list[str]:
    """The settings worth a line in a layer's box."""
    lines = []
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        kernel = list(p.kernel_size) or [p.kernel_h, p.kernel_w]
        lines.append(f"kernel {'x'.join(map(str, kernel))}, stride "
                     f"{'x'.join(map(str, p.stride)) or 1}, pad {'x'.join(map(str, p.pad)) or 0}")
        lines.append(f"{p.num_output} outputs")
    elif layer.type == "Pooling":
        p = layer.pooling_param
        pool = caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)
        kernel = "global" if p.global_pooling else (p.kernel_size or f"{p.kernel_h}x{p.kernel_w}")
        lines.append(f"{pool} {kernel}, stride {p.stride}, pad {p.pad}")
    elif layer.type == "InnerProduct":
        lines.append(f"{layer.inner_product_param.num_output} outputs")
    return lines


def to_dot(net: caffe_pb2.NetParameter, rankdir: str = "LR", phase: int | None = None) -> str:
    """The DOT text of the net's graph."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir {rankdir!r}: expected one of {', '.join(RANKDIRS)}")
    if phase is not None:
        from pipeline_lib.engine.net import filter_net

        net = filter_net(net, caffe_pb2.NetState(phase=phase))
    lines = [f"digraph {_quote(net.name or 'net')} {{", f"  rankdir={rankdir};",
             '  node [fontname="Helvetica", fontsize=11];']
    version: dict[str, int] = {}  # blob -> how many times it was (re)written

    def blob_node(name: str, new: bool) -> str:
        if new or name not in version:
            version[name] = version.get(name, -1) + 1
            node = f"blob:{name}:{version[name]}"
            lines.append(f"  {_quote(node)} [label={_quote(name)}, shape=octagon, "
                         f'style=filled, fillcolor="{_BLOB_COLOUR}"];')
            return node
        return f"blob:{name}:{version[name]}"

    for i, layer in enumerate(net.layer):
        node = f"layer:{i}"
        label = "\n".join([layer.name, f"({layer.type})", *_details(layer)])
        colour = _COLOURS.get(layer.type, _LAYER_COLOUR)
        lines.append(f"  {_quote(node)} [label={_quote(label)}, shape=box, style=filled, "
                     f'fillcolor="{colour}"];')
        for bottom in layer.bottom:
            lines.append(f"  {_quote(blob_node(bottom, False))} -> {_quote(node)};")
        for top in layer.top:
            lines.append(f"  {_quote(node)} -> {_quote(blob_node(top, True))};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_program() -> str:
    """The path of Graphviz's `dot`, or a DrawError saying how to get it."""
    found = shutil.which("dot")
    if found is None:
        raise DrawError("drawing a net needs Graphviz's `dot` program, which is not on the "
                        "PATH; install Graphviz (e.g. `apt-get install graphviz`)")
    return found


def draw_net(net: caffe_pb2.NetParameter, rankdir: str = "LR", ext: str = "png",
             phase: int | None = None) -> bytes:
    """The picture of the net, as the bytes of an `ext` file (png, svg, pdf, ...)."""
    text = to_dot(net, rankdir, phase)
    done = subprocess.run([dot_program(), f"-T{ext}"], input=text.encode("utf-8"),
                          capture_output=True, check=False)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise DrawError(f"dot -T{ext} failed (exit {done.returncode}): "
                        f"{why[-1] if why else 'no message'}")
    return done.stdout


def draw_net_to_file(net: caffe_pb2.NetParameter, filename: str | os.PathLike,
                     rankdir: str = "LR", phase: int | None = None) -> None:
    """Write the picture to `filename`, in the format its suffix names (atomically)."""
    ext = Path(filename).suffix.lstrip(".").lower()
    if not ext:
        raise ValueError(f"{filename}: give the output file a suffix naming its format "
                         "(.png, .svg, .pdf, ...)")
    if ext == "dot":
        atomic_write_bytes(filename, to_dot(net, rankdir, phase).encode("utf-8"))
        return
    atomic_write_bytes(filename, draw_net(net, rankdir, ext, phase))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pcaffe draw` and `python -m pipeline_lib.draw`."""
    parser.add_argument("net", help="net prototxt to draw")
    parser.add_argument("output", help="image to write; its suffix names the format "
                                       "(png, svg, pdf, ...; .dot writes the graph text)")
    parser.add_argument("--rankdir", "-rankdir", default="LR", choices=RANKDIRS,
                        help="direction of the graph: LR (left to right), TB, BT, RL")
    parser.add_argument("--phase", "-phase", default="ALL", choices=["TRAIN", "TEST", "ALL"],
                        help="draw only the layers of this phase (default ALL: every layer)")


def run(args: argparse.Namespace) -> int:
    from pipeline_lib.proto.prototxt import read_net

    phase = None if args.phase == "ALL" else caffe_pb2.Phase.Value(args.phase)
    draw_net_to_file(read_net(args.net), args.output, args.rankdir, phase)
    print(args.output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline_lib.core.cli_args import OneLineParser
    from pipeline_lib.core.errors import describe_error

    parser = OneLineParser(prog="python -m pipeline_lib.draw",
                           description="Draw a net prototxt with Graphviz.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Exception as e:
        print(f"draw: error: {describe_error(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

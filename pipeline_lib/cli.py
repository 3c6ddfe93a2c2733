"""`pcaffe`: the command line, in the spirit of Caffe's `caffe` tool.

    pcaffe train --solver S [--snapshot F | --weights W] [-gpu 0] [-stage a,b] [-level N]
    pcaffe test  --model M --weights W --iterations N [-gpu 0] [-stage ..] [-level ..]
    pcaffe time  --model M --iterations N [--batch-size B] [--dummy-data C,H,W]
    pcaffe classify --model DEPLOY --weights W [--labels L] [--top-k K] [--json] INPUT...
                   (image files, folders of images, IDX files)
    pcaffe draw NET OUT.png [--rankdir LR] [--phase TRAIN|TEST|ALL]
    pcaffe device_query [-gpu 0|0,1|all]
    pcaffe --version
    pcaffe export-onnx --model DEPLOY --weights W --output X.onnx

Caffe's single-dash spellings (`-solver`, `-weights`, `-gpu 0`, ...) are accepted too.
`-gpu` takes a device, a list (0,1) or `all`: one device is used (the first) until
multi-GPU runs exist, and a log line says so.
Errors print one line and exit 1; `--debug` shows the traceback instead. A
training stopped by a signal (SIGINT/SIGTERM) saves a snapshot and exits 3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pipeline_lib.core.cli_args import (
    OneLineParser,
    add_debug,
    at_least,
    file_list,
    finite_float,
    gpu_list,
    name_list,
    numbers,
    positive_int,
    positive_ints,
    size_hw,
    whole_number,
)
from pipeline_lib.core.errors import describe_error
from pipeline_lib.core.threads import compute_threads, usable_cpus
from pipeline_lib.proto import caffe_pb2

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def _gpu(args: argparse.Namespace) -> int | None:
    """The GPU that `-gpu` names (None: not given), made the current device. Of a list,
    or `all`, the first is used (one log line says so) until multi-GPU runs exist."""
    from pipeline_lib.core.backend import gpu_count, use_gpu

    ids = args.gpu
    if ids is None:
        return None
    if ids == "all":
        ids = tuple(range(gpu_count()))
        if not ids:
            raise RuntimeError("-gpu all: no CUDA device is visible (CuPy and a GPU are "
                               "needed)")
    if len(ids) > 1:
        from pipeline_lib.core import glog

        glog.default_logger().warning(
            f"-gpu {','.join(map(str, ids))}: multi-GPU runs are not implemented yet; "
            f"using GPU {ids[0]} only")
    use_gpu(ids[0])
    return ids[0]


def _device(args: argparse.Namespace):
    """The device of `pcaffe test/time/classify` (train: see engine.training.device)."""
    from pipeline_lib.core.backend import Device

    return Device.GPU if _gpu(args) is not None else Device.CPU


def _phase(name: str) -> int:
    return caffe_pb2.Phase.Value(name.upper())


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from pipeline_lib.engine.training.job import TrainingJob

    if args.snapshot and args.weights:
        raise SystemExit("pcaffe train: give either --snapshot or --weights, not both")
    job = TrainingJob.create(args.solver, output_stem=args.output, max_iter=args.iterations,
                             solver_mode="GPU" if _gpu(args) is not None else None,
                             resume=args.snapshot, weights=args.weights, log_path=args.log,
                             sigint_effect=args.sigint_effect, sighup_effect=args.sighup_effect,
                             stages=args.stage, level=args.level, threads=args.threads)
    result = job.run()
    print(f"{result.caffemodel}\n{result.solverstate}")
    if result.stopped_early:
        again = "--snapshot auto" if args.output else f"--snapshot {result.solverstate}"
        print(f"pcaffe train: stopped at iteration {result.iterations} on request (a signal); "
              f"state saved to {result.solverstate}; to continue, run the same command with "
              f"{again}", file=sys.stderr)
        return 3
    return 0


@command("test")
def cmd_test(args: argparse.Namespace) -> int:
    from pipeline_lib.api import load_net

    net = load_net(args.model, args.weights, _phase(args.phase), _device(args),
                   stages=args.stage, level=args.level)
    with compute_threads(args.threads):
        _score(net, args.iterations)
    net.close()
    return 0


def _score(net, iterations: int) -> None:
    """Caffe's `test` lines: each batch's outputs, then their means."""
    from pipeline_lib.core.backend import to_host

    totals: dict[str, float] = {}
    for i in range(iterations):
        net.forward()
        for name in net.output_blob_names:
            values = to_host(net.blobs[name].data).ravel()
            for j, v in enumerate(values):
                key = name if values.size == 1 else f"{name}[{j}]"
                totals[key] = totals.get(key, 0.0) + float(v)
                print(f"Batch {i}, {key} = {float(v):.6g}")
    for key, total in totals.items():
        weight = net.loss_weights.get(key, 0.0)
        mean = total / iterations
        suffix = f" (* {weight:g} = {weight * mean:.6g} loss)" if weight else ""
        print(f"{key} = {mean:.6g}{suffix}")


@command("time")
def cmd_time(args: argparse.Namespace) -> int:
    from pipeline_lib.api import load_net
    from pipeline_lib.engine.timing import time_net

    net = load_net(args.model, args.weights, _phase(args.phase), _device(args),
                   batch_size=args.batch_size, dummy_data=args.dummy_data,
                   stages=args.stage, level=args.level)
    with compute_threads(args.threads):
        print(time_net(net, iterations=args.iterations).table())
    net.close()
    return 0


@command("classify")
def cmd_classify(args: argparse.Namespace) -> int:
    from pipeline_lib.classify import run_classify

    print(run_classify(
        args.model, args.weights.split(","), args.inputs, labels=args.labels, top_k=args.top_k,
        as_json=args.json, device=_device(args), idx_start=args.idx_start,
        idx_count=args.idx_count,
        input_blob=args.input_blob, output_blob=args.output_blob, batch_size=args.batch_size,
        transform_from=args.transform_from, scale=args.scale, mean=args.mean,
        mean_values=args.mean_values, raw_scale=args.raw_scale,
        channel_order=args.channel_order, image_size=args.image_size))
    return 0


@command("draw")
def cmd_draw(args: argparse.Namespace) -> int:
    from pipeline_lib.draw import run

    return run(args)


#: what `device_query` prints of each device, as CUDA names the properties
_DEVICE_PROPERTIES = (
    ("Name", "name"), ("Major revision number", "major"), ("Minor revision number", "minor"),
    ("Total global memory", "totalGlobalMem"),
    ("Total shared memory per block", "sharedMemPerBlock"),
    ("Total registers per block", "regsPerBlock"), ("Warp size", "warpSize"),
    ("Maximum memory pitch", "memPitch"), ("Maximum threads per block", "maxThreadsPerBlock"),
    ("Maximum dimension of block", "maxThreadsDim"), ("Maximum dimension of grid", "maxGridSize"),
    ("Clock rate", "clockRate"), ("Total constant memory", "totalConstMem"),
    ("Texture alignment", "textureAlignment"),
    ("Number of multiprocessors", "multiProcessorCount"),
    ("Kernel execution timeout", "kernelExecTimeoutEnabled"),
)


@command("device_query")
def cmd_device_query(args: argparse.Namespace) -> int:
    from pipeline_lib.core.backend import gpu_count, gpu_properties

    count = gpu_count()
    ids = range(count) if args.gpu in (None, "all") else args.gpu
    if not count:
        raise RuntimeError("no CUDA device is visible (CuPy and a GPU are "
                           "needed; pip install '.[gpu]')")
    for i in ids:
        props = gpu_properties(i)
        print(f"Querying GPU {i}")
        print(f"Device id:                     {i}")
        for label, key in _DEVICE_PROPERTIES:
            value = props.get(key)
            if isinstance(value, list | tuple):
                value = ", ".join(map(str, value))
            print(f"{label + ':':<30} {value}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pipeline-lib")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


@command("export-onnx")
def cmd_export_onnx(args: argparse.Namespace) -> int:
    from pipeline_lib.export.onnx_export import export_onnx

    export_onnx(args.model, args.weights.split(",") if args.weights else [], args.output)
    print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pcaffe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", "-version", action="version",
                        version=f"pcaffe {_version()} (Caffe 1.0 files)",
                        help="print the version and exit")
    add_debug(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *, gpu: str = "run on this GPU") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--gpu", "-gpu", nargs="?", const=(0,), type=gpu_list, metavar="IDS",
                       help=f"{gpu}: a number, a comma list (0,1) or all; with a list the "
                            "first is used until multi-GPU runs exist (alone: 0)")
        add_debug(p, command=True)
        if name in ("train", "test", "time"):
            p.add_argument("--threads", "-threads", type=positive_int, default=usable_cpus(),
                           help="CPU threads the run splits its work over (default: every "
                                "CPU this process may use, here %(default)s); the model's "
                                "bits do not depend on it")
        return p

    def add_state(p: argparse.ArgumentParser, net: str) -> None:
        p.add_argument("--stage", "-stage", type=name_list, default=(), metavar="A,B",
                       help=f"stages of the {net}'s state, comma-separated (layers' "
                            "include/exclude stage rules)")
        p.add_argument("--level", "-level", type=whole_number, default=None,
                       help=f"level of the {net}'s state (layers' min_level/max_level "
                            "rules; default: the net's own, else 0)")

    p = add("train", "train a model from a solver prototxt",
            gpu="train on this GPU (default: the solver's solver_mode)")
    p.add_argument("--solver", "-solver", required=True, help="solver prototxt")
    p.add_argument("--snapshot", "-snapshot",
                   help="resume from a .solverstate, or 'auto': the newest complete snapshot")
    p.add_argument("--weights", "-weights", type=file_list,
                   help="start from .caffemodel weights (comma list)")
    p.add_argument("--iterations", "-iterations", type=positive_int, help="override max_iter")
    p.add_argument("--output", help="final snapshot stem, e.g. results/lenet_iter_10000 "
                   "(its N must be the run's last iteration)")
    p.add_argument("--log", help="write the glog-style log here too")
    p.add_argument("--sigint-effect", "-sigint_effect", default="stop",
                   choices=["stop", "snapshot", "none"],
                   help="what SIGINT (Ctrl-C) does: snapshot and stop (default), snapshot "
                        "and go on, or nothing")
    p.add_argument("--sighup-effect", "-sighup_effect", default="snapshot",
                   choices=["stop", "snapshot", "none"],
                   help="what SIGHUP does (default: snapshot and go on)")
    add_state(p, "train net")

    for name, text in (("test", "score a model over N batches"),
                       ("time", "per-layer forward/backward timing")):
        p = add(name, text)
        p.add_argument("--model", "-model", required=True, help="net prototxt")
        p.add_argument("--weights", "-weights", type=file_list,
                       help=".caffemodel weights (comma list; default: the fillers')")
        p.add_argument("--iterations", "-iterations", type=positive_int, default=50,
                       help="batches to run (default 50)")
        p.add_argument("--phase", "-phase", default="TEST" if name == "test" else "TRAIN",
                       choices=["TRAIN", "TEST"],
                       help=f"the net's phase (default {'TEST' if name == 'test' else 'TRAIN'})")
        add_state(p, "net")
        if name == "time":
            p.add_argument("--batch-size", type=positive_int,
                           help="override the input batch size")
            p.add_argument("--dummy-data", metavar="C,H,W", type=positive_ints(3, ",", "C,H,W"),
                           help="replace the data layers that read images by random "
                                "data of this shape")

    p = add("classify", "top-k predictions of a deploy net for image and IDX files")
    p.add_argument("--model", "-model", required=True, help="deploy prototxt (Input layer)")
    p.add_argument("--weights", "-weights", required=True, type=file_list,
                   help=".caffemodel (comma list)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (PNG, JPEG, ...), folders of them, or IDX image files, "
                        "FILE:START[:COUNT]")
    p.add_argument("--idx-start", type=at_least(0), default=0, help="first image of IDX inputs")
    p.add_argument("--idx-count", type=positive_int, help="images of IDX inputs (default: all)")
    p.add_argument("--labels", help="class names, one a line (e.g. synset_words.txt)")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to show (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--transform-from", metavar="NET",
                   help="train/val prototxt whose TEST data layer's transform_param to use "
                        "(default: the one stored in the weights)")
    p.add_argument("--mean", help="mean image (.binaryproto)")
    p.add_argument("--mean-values", metavar="V[,V,V]", type=numbers,
                   help="per-channel mean values")
    p.add_argument("--scale", type=finite_float, help="multiply after mean subtraction")
    p.add_argument("--raw-scale", type=finite_float,
                   help="multiply raw pixels first (255 for [0,1])")
    p.add_argument("--channel-order", choices=["BGR", "RGB"], help="the net's (default BGR)")
    p.add_argument("--image-size", metavar="HxW", type=size_hw,
                   help="resize to this before the centre crop")
    p.add_argument("--input-blob", help="input blob (default: the first)")
    p.add_argument("--output-blob", help="output blob (default: the output written last)")
    p.add_argument("--batch-size", type=positive_int,
                   help="images per forward (default: the net's)")

    from pipeline_lib.draw import add_arguments

    p = sub.add_parser("draw", help="draw a net prototxt with Graphviz (png, svg, pdf, ...)",
                       description="draw a net prototxt with Graphviz (png, svg, pdf, ...)")
    add_debug(p, command=True)
    add_arguments(p)

    add("device_query", "show the properties of CUDA devices",
        gpu="the devices to show (default: all)")
    p = add("export-onnx", "write a deploy net and its weights as ONNX (needs [onnx])")
    p.add_argument("--model", "-model", required=True, help="deploy prototxt (Input layer)")
    p.add_argument("--weights", "-weights", type=file_list, help=".caffemodel (comma list)")
    p.add_argument("--output", "-output", required=True, help="the .onnx file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("pcaffe: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(f"pcaffe {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

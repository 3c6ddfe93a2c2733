"""Command line for the data tools, usable without Snakemake.

python -m pipeline_lib.data download-mnist [--config config.yaml] [--dataset mnist] [--dest D]
python -m pipeline_lib.data convert-mnist IMAGES LABELS OUT [--backend lmdb|leveldb]  (plain or .gz)
python -m pipeline_lib.data convert-imageset ROOT LISTING OUT [--synsets S] [--resize HxW] ...
python -m pipeline_lib.data compute-mean DB OUT.binaryproto
python -m pipeline_lib.data inspect DB

Errors print one message and exit 1 (a bad option too: it is named, with the value and
what is allowed); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pipeline_lib.core.cli_args import OneLineParser, add_debug, at_least, invalid, size_hw
from pipeline_lib.core.errors import describe_error

log = logging.getLogger("pipeline_lib.data")
MAX_WORKERS = 256  # decoding threads: more only costs memory


def _download_mnist(args: argparse.Namespace) -> int:
    import yaml

    from pipeline_lib.data.lockfile import LOCK_NAME
    from pipeline_lib.data.mnist_sources import ConfigError, fetch_idx_dataset

    with open(args.config, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    datasets = config.get("datasets") if isinstance(config, dict) else None
    entry = datasets.get(args.dataset) if isinstance(datasets, dict) else None
    if not isinstance(entry, dict) or entry.get("format") != "idx":
        raise ValueError(f"{args.config}: no IDX dataset '{args.dataset}' under 'datasets:' "
                         "(a mapping with format: idx, files and sources; see config.yaml)")
    dest = args.dest or f"data/{args.dataset}"
    try:
        got = fetch_idx_dataset(entry, dest, config.get("download"), name=args.dataset,
                                lock_path=Path(args.config).parent / LOCK_NAME)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    for name, path in got.items():
        print(f"{name}\t{path}")
    return 0


def _convert_mnist(args: argparse.Namespace) -> int:
    from pipeline_lib.data.convert import convert_mnist

    n = convert_mnist(args.images, args.labels, args.out, args.backend, overwrite=args.overwrite)
    print(f"{args.out}: {n} records ({args.backend})")
    return 0


def _convert_imageset(args: argparse.Namespace) -> int:
    from pipeline_lib.data.imageset import ConvertOptions, convert_imageset, write_skipped_report
    from pipeline_lib.data.listing import read_synsets

    if args.skipped is not None:
        _check_output_file(args.skipped, "--skipped")
    options = ConvertOptions(backend=args.backend, shuffle=args.shuffle, seed=args.seed,
                             gray=args.gray, encoded=args.encoded, check_size=args.check_size,
                             resize=args.resize, on_error=args.on_error, workers=args.workers)
    num_classes = len(read_synsets(args.synsets)) if args.synsets else None
    result = convert_imageset(args.root, args.listing, args.out, options,
                              num_classes=num_classes, overwrite=args.overwrite)
    if args.skipped:
        write_skipped_report(result.skipped, args.skipped)
    print(f"{args.out}: {result.count} records ({args.backend}); {len(result.skipped)} skipped")
    return 0


def _compute_mean(args: argparse.Namespace) -> int:
    from pipeline_lib.data.mean import write_image_mean

    _check_output_file(args.out, "OUT (the mean .binaryproto)")
    result = write_image_mean(args.db, args.out, args.backend)
    means = ", ".join(f"{v:.4f}" for v in result.channel_means)
    print(f"{args.out}: mean of {result.count} images; per channel: {means}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from pipeline_lib.data.db import open_db
    from pipeline_lib.proto.datum import datum_to_array, read_datum

    with open_db(args.db, "r", args.backend) as reader:
        n = len(reader)
        print(f"{args.db}: {reader.backend}, {n} records")
        for i in range(min(args.show, n)):
            datum = read_datum(reader, i)
            image = datum_to_array(datum, where=f"{args.db} key {reader.key(i).decode()}")
            print(
                f"  {reader.key(i).decode(errors='replace')}: label {datum.label}, "
                f"{'x'.join(map(str, image.shape))} {image.dtype}"
                f"{' (encoded)' if datum.encoded else ''}"
            )
    return 0


def _check_output_file(path: Path, what: str) -> None:
    """Refuse, before any work, an output file path that names a folder."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; {what} must name a file to write")


def _resize(text: str):
    """--resize HxW: both at least 1, the image no larger than decoding allows."""
    from PIL import Image

    from pipeline_lib.data.images import ResizeSpec

    height, width = size_hw(text)
    if height * width > Image.MAX_IMAGE_PIXELS:
        raise invalid(text, f"an image of at most {Image.MAX_IMAGE_PIXELS} pixels "
                            f"(HxW is {height * width})")
    return ResizeSpec(height, width)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m pipeline_lib.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_debug(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        add_debug(p, command=True)
        return p

    p = add("download-mnist", "fetch and verify the four IDX files of a dataset (MNIST's)")
    p.add_argument("--config", default="config.yaml",
                   help="YAML with 'datasets' (and 'download')")
    p.add_argument("--dataset", default="mnist", help="its name under datasets: (format idx)")
    p.add_argument("--dest", help="output folder (default: data/<dataset>)")
    p.set_defaults(func=_download_mnist)

    p = add("convert-mnist", "IDX images + labels (plain or .gz) -> database of Datum records")
    p.add_argument("images", type=Path)
    p.add_argument("labels", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--backend", choices=("lmdb", "leveldb"), default="lmdb")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_convert_mnist)

    p = add("convert-imageset", "a listing of images -> database of Datum records")
    p.add_argument("root", type=Path, help="image root; listing paths are relative to it")
    p.add_argument("listing", type=Path, help="'relative/path label' lines")
    p.add_argument("out", type=Path)
    p.add_argument("--backend", choices=("lmdb", "leveldb"), default="lmdb")
    p.add_argument("--synsets", type=Path, help="synset_words.txt: labels must be below its size")
    p.add_argument("--resize", metavar="HxW", type=_resize, help="resize every image to this")
    p.add_argument("--gray", action="store_true")
    p.add_argument("--encoded", action="store_true", help="store encoded image bytes")
    p.add_argument("--check-size", action="store_true", help="all images must be one size")
    p.add_argument("--shuffle", action="store_true")
    p.add_argument("--seed", type=at_least(0), default=0, help="shuffle seed")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="an unreadable image fails the run (default) or is skipped")
    p.add_argument("--skipped", type=Path, help="write skipped images here (TSV)")
    p.add_argument("--workers", type=at_least(1, MAX_WORKERS), default=1,
                   help=f"decoding threads (1 to {MAX_WORKERS})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_convert_imageset)

    p = add("compute-mean", "the mean image of a database, as a binaryproto")
    p.add_argument("db", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--backend", choices=("lmdb", "leveldb"), default=None)
    p.set_defaults(func=_compute_mean)

    p = add("inspect", "count records and show the first few")
    p.add_argument("db", type=Path)
    p.add_argument("--backend", choices=("lmdb", "leveldb"), default=None)
    p.add_argument("--show", type=at_least(0), default=3, help="records to show (default 3)")
    p.set_defaults(func=_inspect)
    return parser


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C, so unfinished outputs are removed


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline_lib.core.glog import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        log.error("%s", describe_error(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())

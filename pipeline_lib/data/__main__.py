"""Command line for the data tools, usable without Snakemake.

python -m pipeline_lib.data download-mnist [--config config.yaml] [--dest data/mnist]
python -m pipeline_lib.data convert-mnist IMAGES LABELS OUT [--backend lmdb|leveldb]
python -m pipeline_lib.data inspect DB
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("pipeline_lib.data")


def _download_mnist(args: argparse.Namespace) -> int:
    import yaml

    from pipeline_lib.data.mnist_sources import download_mnist

    with open(args.config, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if "mnist" not in config:
        raise SystemExit(f"{args.config}: no 'mnist' section")
    dest = args.dest or config["mnist"].get("dir", "data/mnist")
    for name, path in download_mnist(config["mnist"], dest, config.get("download")).items():
        print(f"{name}\t{path}")
    return 0


def _convert_mnist(args: argparse.Namespace) -> int:
    from pipeline_lib.data.convert import convert_mnist

    n = convert_mnist(args.images, args.labels, args.out, args.backend, overwrite=args.overwrite)
    print(f"{args.out}: {n} records ({args.backend})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from pipeline_lib.data.datum import datum_to_array, read_datum
    from pipeline_lib.data.db import DatabaseReader

    with DatabaseReader(args.db, args.backend) as reader:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_lib.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download-mnist", help="fetch and verify the four MNIST IDX files")
    p.add_argument("--config", default="config.yaml", help="YAML with 'mnist' (and 'download')")
    p.add_argument("--dest", help="output folder (default: config mnist.dir)")
    p.set_defaults(func=_download_mnist)

    p = sub.add_parser("convert-mnist", help="IDX images + labels -> database of Datum records")
    p.add_argument("images", type=Path)
    p.add_argument("labels", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--backend", choices=("lmdb", "leveldb"), default="lmdb")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_convert_mnist)

    p = sub.add_parser("inspect", help="count records and show the first few")
    p.add_argument("db", type=Path)
    p.add_argument("--backend", choices=("lmdb", "leveldb"), default=None)
    p.add_argument("--show", type=int, default=3, help="records to show (default 3)")
    p.set_defaults(func=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline_lib.progress import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return args.func(args)
    except (OSError, ValueError, RuntimeError) as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())

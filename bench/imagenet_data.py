"""Images per second for the ImageNet data stage: resize, convert_imageset, compute_image_mean.

Generates JPEGs of ImageNet's typical sizes (about 500 x 375, some larger), then times
  resize   to 256x256 (bilinear), with and without JPEG draft decoding, 1 and N threads
  convert  the resized images to LMDB and LevelDB (shuffled), 1 and N threads
  mean     the mean image over the LMDB
and prints one line per measurement. Run from the repository root:

    python bench/imagenet_data.py [--count 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline_lib.data.images import ResizeSpec
from pipeline_lib.data.imageset import (
    ConvertOptions,
    convert_imageset,
    resize_imageset,
)
from pipeline_lib.data.listing import ListingEntry, write_listing
from pipeline_lib.data.mean import compute_image_mean

SIZES = [(500, 375), (500, 333), (375, 500), (640, 480), (1024, 768)]


def make_images(root: Path, count: int, seed: int = 0) -> list[ListingEntry]:
    """`count` photo-like JPEGs in 10 class folders."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        f = rng.uniform(0.01, 0.08, size=(3, 2))
        pixels = np.stack([127 + 100 * np.sin(f[c, 0] * y + f[c, 1] * x) for c in range(3)], -1)
        pixels += rng.normal(0, 12, size=pixels.shape)  # texture, so JPEGs are photo-sized
        rel = f"n{i % 10:08d}/img_{i:06d}.JPEG"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / rel, quality=90)
        entries.append(ListingEntry(rel, i % 10, i + 1))
    return entries


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400, help="images to generate")
    parser.add_argument("--workers", type=int, default=2, help="threads for the N-thread runs")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    work = args.keep or Path(tempfile.mkdtemp(prefix="imagenet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        entries = make_images(work / "src", args.count)
        write_listing(entries, work / "train.txt")
        n = len(entries)
        mb = sum((work / "src" / e.path).stat().st_size for e in entries) / 2**20
        print(f"{n} JPEGs, {mb:.1f} MiB, sizes {', '.join(f'{w}x{h}' for w, h in SIZES)}")

        rows = []
        for draft in (False, True):
            for workers in sorted({1, args.workers}):
                out = work / f"resized_{draft}_{workers}"
                spec = ResizeSpec(256, 256, "bilinear", draft=draft)
                seconds = timed(lambda out=out, spec=spec, workers=workers: resize_imageset(
                    work / "src", entries, out, spec, workers=workers))
                rows.append((f"resize 256x256 draft={'on' if draft else 'off'}", workers,
                             n / seconds))
        resized = work / f"resized_True_{args.workers}"

        for backend in ("lmdb", "leveldb"):
            for workers in sorted({1, args.workers}):
                options = ConvertOptions(backend=backend, shuffle=True, workers=workers)
                db = work / f"{backend}_{workers}"
                seconds = timed(lambda db=db, options=options: convert_imageset(
                    resized, work / "train.txt", db, options))
                rows.append((f"convert 256x256 -> {backend}", workers, n / seconds))
        for source, label in ((resized, "256x256 files"), (work / "src", "original files")):
            options = ConvertOptions(encoded=True, shuffle=True, workers=args.workers)
            db = work / f"encoded_{label.split()[0]}"
            seconds = timed(lambda db=db, options=options, source=source: convert_imageset(
                source, work / "train.txt", db, options))
            rows.append((f"convert encoded ({label}) -> lmdb", args.workers, n / seconds))

        seconds = timed(lambda: compute_image_mean(work / f"lmdb_{args.workers}"))
        rows.append(("compute_image_mean (lmdb)", 1, n / seconds))

        print(f"{'step':<44}{'threads':>8}{'images/s':>12}")
        for name, workers, rate in rows:
            print(f"{name:<44}{workers:>8}{rate:>12.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

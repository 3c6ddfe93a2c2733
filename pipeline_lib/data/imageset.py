"""A listing of images to a database of Datum records (Caffe's convert_imageset), and resizing.

`convert_imageset` writes record i of the (optionally shuffled) listing under
the key `%08d_<path>`, as Caffe does; a skipped image keeps its number, so
keys have a gap where it was. Differences from Caffe, on purpose:
- `shuffle` draws from a Generator seeded with `seed`: the same seed gives
  the same database, byte for byte (Caffe seeds from system entropy).
- An unreadable image fails the run naming the listing line and file, or,
  with `on_error="skip"`, is left out and reported (Caffe logs and skips).
- `encoded` keeps a file's own bytes only when any decoder gives the pixels
  the options ask for: same format, no resize, no EXIF rotation, and 3
  colour channels (1 with `gray`); other files are re-encoded from the
  converted pixels, so grey, CMYK or alpha files still decode to 3 channels.
- `check_size` compares decoded C x H x W, for encoded records too.

`resize_imageset` resizes the files of a listing into a new folder (one
shard of the workflow's scatter/gather); `gather_resized` joins the shards.
Decoding runs on `workers` threads (Pillow releases the GIL while it
decodes and resizes); results are written in listing order.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipeline_lib.core.fsutil import atomic_write_bytes, make_temp_dir_beside, replace_dir
from pipeline_lib.core.progress import Progress
from pipeline_lib.data.db import DEFAULT_BATCH, open_db
from pipeline_lib.data.images import (
    DEFAULT_JPEG_QUALITY,
    ImageError,
    ResizeSpec,
    decode_image,
    encode_image,
    image_to_array,
    resize_file,
)
from pipeline_lib.data.listing import ListingEntry, read_listing, write_listing
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.datum import encoded_datum

log = logging.getLogger(__name__)

ON_ERROR = ("fail", "skip")
#: encode_type words (and file endings) -> Pillow format; "jpeg" counts as "jpg", as in Caffe
ENCODE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "ppm": "PPM",
                  "pgm": "PPM", "tif": "TIFF", "tiff": "TIFF", "webp": "WEBP"}

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ConvertOptions:
    """convert_imageset's flags (Caffe's names), plus ours: seed, on_error, workers."""

    backend: str = "lmdb"
    shuffle: bool = False
    seed: int = 0
    gray: bool = False
    encoded: bool = False
    encode_type: str = ""  # "" guesses from each file's ending, as Caffe does
    check_size: bool = False
    resize: ResizeSpec | None = None
    on_error: str = "fail"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    workers: int = 1
    batch_size: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.encode_type and self.encode_type.lower() not in ENCODE_FORMATS:
            raise ValueError(f"unknown encode_type {self.encode_type!r}: expected one of "
                             f"{', '.join(sorted(ENCODE_FORMATS))}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass(frozen=True)
class SkippedImage:
    """An image left out with on_error="skip": where it was listed and why."""

    path: str
    line: int
    reason: str


@dataclass(frozen=True)
class ConvertResult:
    count: int
    skipped: list[SkippedImage] = field(default_factory=list)
    shape: tuple[int, int, int] | None = None  # C x H x W of the first image (decoded)


# -- helpers ---------------------------------------------------------------------------------


def ordered_map(fn: Callable[[T], R], items: Sequence[T], workers: int,
                window: int = 64) -> Iterator[R]:
    """`map(fn, items)` in order, on `workers` threads, at most `window` results ahead.

    The window slides: a new item is started whenever a result is taken, so the
    threads keep working while the consumer writes (no barrier between chunks).
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[R]] = deque()
        upcoming = iter(items)
        for item in itertools.islice(upcoming, max(window, workers)):
            pending.append(pool.submit(fn, item))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(upcoming, 1):
                pending.append(pool.submit(fn, item))
            yield result


def shuffled(entries: Sequence[ListingEntry], seed: int) -> list[ListingEntry]:
    """`entries` in the order a Generator seeded with `seed` permutes them."""
    order = np.random.default_rng(seed).permutation(len(entries))
    return [entries[i] for i in order]


def record_key(index: int, path: str) -> bytes:
    """Caffe's key: the line number zero-padded to 8 digits, '_', the listed path."""
    return b"%08d_" % index + path.encode("utf-8")


def write_skipped_report(skipped: Iterable[SkippedImage], path: str | os.PathLike) -> None:
    """A TSV of skipped images (header line, then line, path and reason), atomically."""
    rows = ["line\tpath\treason"]
    rows += [f"{s.line}\t{s.path}\t{' '.join(s.reason.split())}" for s in skipped]
    atomic_write_bytes(path, ("\n".join(rows) + "\n").encode("utf-8"))


def read_skipped_report(path: str | os.PathLike) -> list[SkippedImage]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for row in lines:
        line, image, reason = row.split("\t", 2)
        out.append(SkippedImage(image, int(line), reason))
    return out


def _where(listing: str | os.PathLike | None, entry: ListingEntry) -> str:
    return f"{listing}:{entry.line}" if listing is not None and entry.line else "listing"


# -- one image to one Datum --------------------------------------------------------------------


def _target_format(entry: ListingEntry, options: ConvertOptions) -> str:
    word = options.encode_type.lower()
    if not word:
        word = Path(entry.path).suffix.lstrip(".").lower()
    try:
        return ENCODE_FORMATS[word]
    except KeyError:
        raise ImageError(f"{entry.path}: cannot tell the format to encode from the ending "
                         f"{word!r}; set encode_type (jpg, png, ...)") from None


def image_datum(path: str | os.PathLike, label: int,
                options: ConvertOptions) -> tuple[caffe_pb2.Datum, tuple[int, int, int]]:
    """The Datum for one image file, and the C x H x W its pixels decode to."""
    decoded = decode_image(path, gray=options.gray, resize=options.resize)
    img = decoded.image
    channels = 1 if options.gray else 3
    shape = (channels, img.height, img.width)
    if not options.encoded:
        pixels = image_to_array(img)
        datum = caffe_pb2.Datum(channels=shape[0], height=shape[1], width=shape[2],
                                data=pixels.tobytes(), label=int(label))
        datum.encoded = False  # Caffe sets it explicitly; keeps the bytes the same
        return datum, shape
    fmt = _target_format(ListingEntry(str(path), label), options)
    native = "L" if options.gray else "RGB"
    if (options.resize is None and decoded.orientation == 1 and decoded.format == fmt
            and decoded.mode == native):
        return encoded_datum(Path(path).read_bytes(), label), shape
    return encoded_datum(encode_image(img, fmt, options.jpeg_quality), label), shape


# -- convert_imageset --------------------------------------------------------------------------


def convert_imageset(root: str | os.PathLike, listing: str | os.PathLike,
                     out: str | os.PathLike, options: ConvertOptions = ConvertOptions(), *,
                     num_classes: int | None = None, overwrite: bool = False,
                     entries: Sequence[ListingEntry] | None = None) -> ConvertResult:
    """Write the images of `listing` (paths under `root`) into a new database at `out`.

    `num_classes` bounds the labels. `entries` replaces reading `listing`
    (which then only names the listing in messages). `out` must not exist
    unless `overwrite`; the database appears only once complete.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image root {str(root)!r} is not a folder")
    if entries is None:
        entries = read_listing(listing, num_classes)
    if options.shuffle:
        log.info("Shuffling data (seed %d)", options.seed)
        entries = shuffled(entries, options.seed)
    log.info("A total of %d images.", len(entries))

    def load(entry: ListingEntry) -> tuple[bytes, tuple[int, int, int]] | SkippedImage:
        try:
            datum, shape = image_datum(root / entry.path, entry.label, options)
            return datum.SerializeToString(), shape
        except ImageError as exc:
            if options.on_error == "skip":
                return SkippedImage(entry.path, entry.line, str(exc))
            raise ImageError(f"{_where(listing, entry)}: {exc}") from None

    skipped: list[SkippedImage] = []
    first_shape: tuple[int, int, int] | None = None
    count = 0
    with (
        open_db(out, "w", options.backend, overwrite=overwrite,
                batch_size=options.batch_size) as writer,
        Progress(f"writing {out}", total=len(entries), unit="images", logger=log) as progress,
    ):
        for index, (entry, result) in enumerate(
                zip(entries, ordered_map(load, entries, options.workers))):
            progress.update(1)
            if isinstance(result, SkippedImage):
                log.warning("skipped %s: %s", _where(listing, entry), result.reason)
                skipped.append(result)
                continue
            value, shape = result
            if first_shape is None:
                first_shape = shape
            elif options.check_size and shape != first_shape:
                raise ImageError(
                    f"{_where(listing, entry)}: {entry.path} is {'x'.join(map(str, shape))} "
                    f"(C x H x W), the first image {'x'.join(map(str, first_shape))}; "
                    "check_size needs one size (resize the images first)")
            writer.put(record_key(index, entry.path), value)
            count += 1
        if count == 0:
            raise ImageError(f"{listing}: none of the {len(entries)} images could be read")
    log.info("Processed %d files; %d skipped.", count, len(skipped))
    return ConvertResult(count, skipped, first_shape)


# -- resizing, in shards -----------------------------------------------------------------------


def shard(entries: Sequence[ListingEntry], index: int, count: int) -> list[ListingEntry]:
    """Shard `index` (1-based) of `count` contiguous, near-equal parts of `entries`."""
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"shard {index} of {count}: expected 1 <= index <= count")
    n = len(entries)
    return list(entries[(index - 1) * n // count: index * n // count])


def parse_shard_name(name: str) -> tuple[int, int]:
    """(index, count) from Snakemake's scatter item name `<i>-of-<n>`."""
    try:
        index, count = (int(part) for part in name.split("-of-"))
    except ValueError:
        raise ValueError(f"shard name {name!r} is not of the form <i>-of-<n>") from None
    return index, count


def resize_imageset(root: str | os.PathLike, entries: Sequence[ListingEntry],
                    out_dir: str | os.PathLike, resize: ResizeSpec, *, gray: bool = False,
                    jpeg_quality: int = DEFAULT_JPEG_QUALITY, on_error: str = "fail",
                    workers: int = 1, where: str | None = None,
                    ) -> tuple[list[ListingEntry], list[SkippedImage]]:
    """Resize `root/<path>` to `out_dir/<path>` for each entry; return (done, skipped).

    The folder `out_dir` is created (it is the caller's output).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(entry: ListingEntry) -> SkippedImage | None:
        try:
            resize_file(root / entry.path, out_dir / entry.path, resize, gray=gray,
                        jpeg_quality=jpeg_quality)
            return None
        except ImageError as exc:
            if on_error == "skip":
                return SkippedImage(entry.path, entry.line, str(exc))
            raise ImageError(f"{_where(where, entry)}: {exc}") from None

    done: list[ListingEntry] = []
    skipped: list[SkippedImage] = []
    with Progress(f"resizing into {out_dir}", total=len(entries), unit="images",
                  logger=log) as progress:
        for entry, result in zip(entries, ordered_map(one, entries, workers)):
            progress.update(1)
            if result is None:
                done.append(entry)
            else:
                log.warning("skipped %s: %s", _where(where, entry), result.reason)
                skipped.append(result)
    return done, skipped


def _link_tree(src: Path, dst: Path) -> int:
    """Hard-link (or copy, across devices) every file under `src` into `dst`; return the count."""
    n = 0
    for dirpath, _, filenames in os.walk(src):
        target_dir = dst / Path(dirpath).relative_to(src)
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            source, target = Path(dirpath, name), target_dir / name
            if target.exists():  # a path listed twice, resized by two shards alike
                continue
            try:
                os.link(source, target)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copy2(source, target)
            n += 1
    return n


def gather_resized(shard_dirs: Sequence[str | os.PathLike],
                   shard_listings: Sequence[str | os.PathLike],
                   shard_skipped: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   out_listing: str | os.PathLike, out_skipped: str | os.PathLike,
                   *, overwrite: bool = False) -> tuple[int, int]:
    """Join resized shards: one image folder, one listing, one skipped report.

    Files are hard-linked, so the shards can be deleted afterwards at no cost.
    Returns (images, skipped).
    """
    if not len(shard_dirs) == len(shard_listings) == len(shard_skipped):
        raise ValueError("gather_resized needs one listing and one report per shard folder")
    entries: list[ListingEntry] = []
    skipped: list[SkippedImage] = []
    for listing, report in zip(shard_listings, shard_skipped):
        entries.extend(read_listing(listing, allow_empty=True))
        skipped.extend(read_skipped_report(report))
    if not entries:
        raise ImageError(f"no image of {out_listing} could be resized "
                         f"({len(skipped)} skipped; see {out_skipped})")
    out_dir = Path(out_dir)
    tmp = make_temp_dir_beside(out_dir)
    try:
        for shard_dir in shard_dirs:
            _link_tree(Path(shard_dir), tmp)
        replace_dir(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_listing(entries, out_listing)
    write_skipped_report(skipped, out_skipped)
    return len(entries), len(skipped)

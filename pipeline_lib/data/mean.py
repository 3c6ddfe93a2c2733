"""The mean image of a database of Datum records (Caffe's compute_image_mean).

Records are read one at a time in key order (the database is never held in
memory) and summed in float64, so the sum of uint8 pixels is exact and the
mean is the correctly rounded quotient before it is stored as float32 in a
1 x C x H x W BlobProto. Encoded records are decoded with their own channels,
as Caffe's `DecodeDatumNative` does. Every record must have the first one's
C x H x W; a record that differs is an error naming its key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from pipeline_lib.core.progress import Progress
from pipeline_lib.data.db import open_db
from pipeline_lib.proto.blobproto import write_mean_binaryproto
from pipeline_lib.proto.datum import datum_to_array, parse_datum

log = logging.getLogger(__name__)


class MeanError(ValueError):
    """A database whose records cannot be averaged."""


@dataclass(frozen=True)
class ImageMean:
    """The mean image (C x H x W, float64) over `count` records."""

    mean: np.ndarray
    count: int

    @property
    def channel_means(self) -> np.ndarray:
        """The mean of each channel over all pixels (Caffe logs these as `mean_value`)."""
        return self.mean.reshape(self.mean.shape[0], -1).mean(axis=1)


def compute_image_mean(db_path: str | os.PathLike, backend: str | None = None) -> ImageMean:
    """Stream over every record of the database and average the images."""
    total: np.ndarray | None = None
    count = 0
    with open_db(db_path, "r", backend) as reader:
        size = len(reader)
        if size == 0:
            raise MeanError(f"{db_path}: the database holds no records")
        with Progress(f"averaging {db_path}", total=size, unit="records", logger=log) as progress:
            for key, value in reader:
                where = f"{db_path} key {key.decode('utf-8', errors='replace')}"
                image = datum_to_array(parse_datum(value, where), where=where)
                if total is None:
                    total = np.zeros(image.shape, dtype=np.float64)
                    log.info("%s: %s records of %s", db_path, size, "x".join(map(str, image.shape)))
                elif image.shape != total.shape:
                    raise MeanError(
                        f"{where}: image is {'x'.join(map(str, image.shape))}, earlier records "
                        f"{'x'.join(map(str, total.shape))}; the mean needs one size "
                        "(resize the images, or convert with check_size)")
                total += image
                count += 1
                progress.update(1)
    assert total is not None
    return ImageMean(total / count, count)


def write_image_mean(db_path: str | os.PathLike, out_path: str | os.PathLike,
                     backend: str | None = None) -> ImageMean:
    """Compute the mean of `db_path`, write it to `out_path` (binaryproto), log channel means."""
    result = compute_image_mean(db_path, backend)
    write_mean_binaryproto(result.mean, out_path)
    log.info("wrote %s (mean of %d images)", out_path, result.count)
    for c, value in enumerate(result.channel_means):
        log.info("mean_value channel [%d]: %.6f", c, value)
    return result

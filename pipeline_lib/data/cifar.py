"""CIFAR-10's binary batches to databases of Datum records (Caffe's convert_cifar_data).

A batch file is a run of 3073-byte records: one label byte, then the 32x32
image's 3072 bytes in channel, row, column order (R, G, B planes). Record i of
the train database (batches 1 to 5 in order) and of the test database gets key
`%05d` % i and a Datum with channels 3, height 32, width 32, those 3072 bytes
and the label: the bytes Caffe writes. Files are read a record at a time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline_lib.data.db import open_db
from pipeline_lib.proto import caffe_pb2

log = logging.getLogger(__name__)

SIZE = 32
IMAGE_BYTES = 3 * SIZE * SIZE
RECORD_BYTES = 1 + IMAGE_BYTES
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCHES = ("test_batch.bin",)
SPLIT_BATCHES = {"train": TRAIN_BATCHES, "test": TEST_BATCHES}


class CifarError(ValueError):
    """A batch file that is not CIFAR-10's binary format."""


def convert_cifar(
    batch_files: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    backend: str = "lmdb",
    overwrite: bool = False,
) -> int:
    """Write every record of `batch_files`, in order, into a new database; return the count."""
    files = [Path(p) for p in batch_files]
    for path in files:  # checked before anything is written
        size = path.stat().st_size
        if size == 0 or size % RECORD_BYTES:
            raise CifarError(f"{path}: {size} bytes is not a whole number of CIFAR-10 "
                             f"records ({RECORD_BYTES} bytes each: 1 label byte + 3x32x32 "
                             "pixels)")
    datum = caffe_pb2.Datum(channels=3, height=SIZE, width=SIZE)
    count = 0
    with open_db(out_path, "w", backend, overwrite=overwrite) as writer:
        for path in files:
            with open(path, "rb") as f:
                while record := f.read(RECORD_BYTES):
                    datum.label = record[0]
                    datum.data = record[1:]
                    writer.put(b"%05d" % count, datum.SerializeToString())
                    count += 1
            log.info("%s: %d records so far", path, count)
    log.info("wrote %d records to %s (%s)", count, out_path, backend)
    return count

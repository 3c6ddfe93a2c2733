"""An IDX images/labels pair to a database of Datum records (Caffe's convert_mnist_data).

Record i gets key `%08d` % i and a Datum with channels 1, height rows,
width cols, the raw pixel bytes and the label: the same bytes Caffe writes.
"""

from __future__ import annotations

import logging
import os

from pipeline_lib.core.progress import Progress
from pipeline_lib.data.db import open_db
from pipeline_lib.data.idx import read_mnist_pair
from pipeline_lib.proto.datum import array_to_datum

log = logging.getLogger(__name__)


def convert_mnist(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    out_path: str | os.PathLike,
    backend: str = "lmdb",
    overwrite: bool = False,
) -> int:
    """Write one record per image into a new `backend` database; return the count."""
    # Memory-mapped: records are made one at a time, so the images need not fit in memory.
    images, labels = read_mnist_pair(images_path, labels_path, mmap=True)
    n, rows, cols = images.shape
    log.info("%s + %s: %d items, rows %d, cols %d", images_path, labels_path, n, rows, cols)
    with (
        open_db(out_path, "w", backend, overwrite=overwrite) as writer,
        Progress(f"writing {out_path}", total=n, unit="records", logger=log) as progress,
    ):
        for i in range(n):
            value = array_to_datum(images[i][None], int(labels[i])).SerializeToString()
            writer.put(b"%08d" % i, value)
            if (i + 1) % 1000 == 0 or i + 1 == n:
                progress.update((i % 1000) + 1)
    log.info("wrote %d records to %s (%s)", n, out_path, backend)
    return n

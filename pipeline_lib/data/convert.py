"""An IDX images/labels pair to a database of Datum records (Caffe's convert_mnist_data).

Record i gets key `%08d` % i and a Datum with channels 1, height rows,
width cols, the raw pixel bytes and the label: the same bytes Caffe writes.
Either file may be gzipped (as distributed); it is decompressed as it is read.
"""

from __future__ import annotations

import logging
import os

from pipeline_lib.core.progress import Progress
from pipeline_lib.data.db import open_db
from pipeline_lib.data.idx import iter_mnist_pair
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
    # Memory-mapped or decompressed a chunk at a time: the images need not fit in memory.
    (n, rows, cols), chunks = iter_mnist_pair(images_path, labels_path)
    log.info("%s + %s: %d items, rows %d, cols %d", images_path, labels_path, n, rows, cols)
    with (
        open_db(out_path, "w", backend, overwrite=overwrite) as writer,
        Progress(f"writing {out_path}", total=n, unit="records", logger=log) as progress,
    ):
        i = 0
        for images, labels in chunks:
            for image, label in zip(images, labels):
                writer.put(b"%08d" % i, array_to_datum(image[None], int(label)).SerializeToString())
                i += 1
            progress.update(len(images))
    log.info("wrote %d records to %s (%s)", n, out_path, backend)
    return n

"""The "HDF5Output" layer: writes its two bottoms to an HDF5 file, as datasets "data" and "label".

`hdf5_output_param.file_name` is the file (a relative path is to the working
directory). As in Caffe, each blob is stored with its legacy 4-D shape (num,
channels, height, width; a label of N values becomes N x 1 x 1 x 1, a scalar 1 x 1 x 1 x 1) in the
net's precision, and both bottoms must have the same first dimension. Caffe
truncates the file when the net is built and can write one batch only (a second
forward fails on the existing datasets); here nothing is written until a
forward, and each forward replaces the file, atomically, with its batch, so the
file always holds the latest batch whole. No tops, no gradient.
"""

from __future__ import annotations

import io
import os

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.engine.layers.base import Layer, register

DATASETS = ("data", "label")


def legacy_4d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Caffe's (num, channels, height, width) view of a shape of at most 4 axes."""
    return tuple(shape) + (1,) * (4 - len(shape))


@register
class HDF5OutputLayer(Layer):
    type = "HDF5Output"
    num_bottom = (2, 2)
    num_top = (0, 0)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        name = self.param.hdf5_output_param.file_name
        if not name:
            raise self.error("hdf5_output_param.file_name is not set (the HDF5 file to write)")
        self.path = os.path.abspath(name)
        if not os.path.isdir(os.path.dirname(self.path)):
            raise self.error(f"hdf5_output_param.file_name {name!r}: folder "
                             f"{os.path.dirname(self.path)!r} does not exist")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shapes = [b.shape for b in bottom]
        if any(len(s) > 4 for s in shapes):
            raise self.error(f"bottoms must have at most 4 axes, got {shapes}")
        # a scalar (a loss) is 1 x 1 x 1 x 1, as Caffe's legacy shape reads it
        if legacy_4d(shapes[0])[0] != legacy_4d(shapes[1])[0]:
            raise self.error(f"data and label must have the same first dimension: "
                             f"{shapes[0]} vs {shapes[1]}")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        import h5py

        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            for name, blob in zip(DATASETS, bottom):
                values = np.asarray(to_host(blob.data), dtype=self.dtype)
                f.create_dataset(name, data=values.reshape(legacy_4d(blob.shape)))
        atomic_write_bytes(self.path, buffer.getvalue())

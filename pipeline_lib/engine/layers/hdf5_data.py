"""The "HDF5Data" layer (Caffe's, and Mocha's HDF5DataLayer): batches of rows from HDF5 files.

`hdf5_data_param.source` is a text file listing HDF5 files, one a line
(relative paths are tried against the working directory, as Caffe does,
then against the list file's directory). Each top is filled from the dataset
of the same name in the current file (e.g. "data" and "label"); all of a
file's datasets must have the same number of rows (the first axis). A file
is loaded whole, read row after row, and the next file follows when it is
used up; after the last file the list starts over.

With `shuffle`, as in Caffe: the file order is shuffled at the start and at
every pass over the list, and the row order each time a file is (re)started.
All draws come from the layer's own Generator, seeded from the net's rng at
setup, and `get_state`/`set_state` capture the position and random state so
a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.data_layer import DataLayer


def read_file_list(list_path: Path) -> list[Path]:
    """The HDF5 files named in `list_path`, resolved against the cwd, then the list's dir."""
    files = []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        candidates = [Path(os.path.abspath(name))]
        if not Path(name).is_absolute():
            candidates.append(list_path.parent / name)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            tried = " or ".join(repr(str(c)) for c in candidates)
            raise FileNotFoundError(f"{str(list_path)!r} line {number}: HDF5 file {name!r} "
                                    f"not found (tried {tried})")
        files.append(found)
    return files


@register
class HDF5DataLayer(DataLayer):
    """Tops named after datasets of the listed HDF5 files, `batch_size` rows at a time."""

    type = "HDF5Data"
    param_field = "hdf5_data_param"
    num_top = (1, None)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self.param.HasField("transform_param"):
            raise self.error("HDF5Data does not transform data; remove transform_param "
                             "(store the data already scaled in the HDF5 file)")
        hp = self.param.hdf5_data_param
        self.batch_size = self._batch_size()
        self.shuffle = bool(hp.shuffle)
        list_path = self._source_path("a text file listing HDF5 files")
        try:
            self._files = read_file_list(list_path)
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(str(exc)) from None
        if not self._files:
            raise self.error(f"{hp.source!r} lists no HDF5 files")
        self._names = list(self.param.top)
        self._gen = self._own_generator()
        self._row_shapes: list[tuple[int, ...]] | None = None

        self._file_order = np.arange(len(self._files))
        if self.shuffle:
            self._gen.shuffle(self._file_order)
        self._file_pos = 0
        self._load_current()

    # -- files -----------------------------------------------------------------
    def _load_current(self, perm_rng: dict | None = None) -> None:
        """Load the file at `_file_pos` and start it at row 0 (row order drawn if shuffling).

        `perm_rng` replays the row shuffle from a saved Generator state instead.
        """
        import h5py

        path = self._files[int(self._file_order[self._file_pos])]
        arrays = []
        try:
            with h5py.File(path, "r") as f:
                for name in self._names:
                    if name not in f or not isinstance(f[name], h5py.Dataset):
                        have = ", ".join(k for k in f if isinstance(f[k], h5py.Dataset))
                        raise self.error(f"HDF5 file {str(path)!r} has no dataset {name!r} for "
                                         f"top {name!r} (datasets: {have or 'none'})")
                    ds = f[name]
                    if ds.dtype.kind not in "fiub" or ds.ndim < 1:
                        raise self.error(f"HDF5 file {str(path)!r} dataset {name!r}: need a "
                                         f"numeric array of at least 1 axis, got dtype "
                                         f"{ds.dtype} shape {ds.shape}")
                    arrays.append(ds[...].astype(self.dtype, copy=False))
        except OSError as exc:
            raise self.error(f"cannot read HDF5 file {str(path)!r}: {exc}") from None
        rows = arrays[0].shape[0]
        shapes = [a.shape[1:] for a in arrays]
        for name, a in zip(self._names, arrays, strict=True):
            if a.shape[0] != rows:
                raise self.error(f"HDF5 file {str(path)!r}: dataset {name!r} has {a.shape[0]} "
                                 f"rows, {self._names[0]!r} has {rows}")
        if rows == 0:
            raise self.error(f"HDF5 file {str(path)!r} holds no rows")
        if self._row_shapes is None:
            self._row_shapes = shapes
        elif shapes != self._row_shapes:
            raise self.error(f"HDF5 file {str(path)!r}: row shapes {shapes} differ from "
                             f"{self._row_shapes} of the first file")
        self._arrays = arrays
        self._rows = rows
        self._row = 0
        self._start_rows(perm_rng)

    def _start_rows(self, perm_rng: dict | None = None) -> None:
        if perm_rng is not None:
            self._gen.bit_generator.state = copy.deepcopy(perm_rng)
        self._perm_rng = copy.deepcopy(self._gen.bit_generator.state)
        self._perm = self._gen.permutation(self._rows) if self.shuffle else None
        self._row = 0

    def _next_file(self) -> None:
        if len(self._files) == 1:
            self._start_rows()
            return
        self._file_pos += 1
        if self._file_pos == len(self._files):
            self._file_pos = 0
            if self.shuffle:
                self._gen.shuffle(self._file_order)
        self._load_current()

    # -- the Caffe contract -----------------------------------------------------
    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for blob, shape in zip(top, self._row_shapes, strict=True):
            blob.reshape((self.batch_size, *shape))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        outs = [np.empty((self.batch_size, *s), self.dtype) for s in self._row_shapes]
        filled = 0
        while filled < self.batch_size:
            take = min(self.batch_size - filled, self._rows - self._row)
            rows = (slice(self._row, self._row + take) if self._perm is None
                    else self._perm[self._row:self._row + take])
            for out, arr in zip(outs, self._arrays, strict=True):
                out[filled:filled + take] = arr[rows]
            filled += take
            self._row += take
            if self._row == self._rows:
                self._next_file()
        for blob, out in zip(top, outs, strict=True):
            blob.reshape(out.shape)
            blob.data[...] = self.xp.asarray(out)

    # -- resumable state ---------------------------------------------------------
    def get_state(self) -> dict:
        return {
            "file_order": [int(i) for i in self._file_order],
            "file_pos": int(self._file_pos),
            "row": int(self._row),
            "perm_rng": copy.deepcopy(self._perm_rng),
            "rng": copy.deepcopy(self._gen.bit_generator.state),
        }

    def set_state(self, state: dict) -> None:
        try:
            order = np.asarray(state["file_order"], dtype=np.int64)
            file_pos, row = int(state["file_pos"]), int(state["row"])
            perm_rng, rng = state["perm_rng"], state["rng"]
        except (KeyError, TypeError, ValueError):
            raise self.error(f"saved state lacks file_order/file_pos/row/perm_rng/rng: "
                             f"{sorted(state) if isinstance(state, dict) else state!r}") from None
        if sorted(order.tolist()) != list(range(len(self._files))) or \
                not 0 <= file_pos < len(self._files):
            raise self.error(f"saved state is for a list of {len(order)} files, the source "
                             f"lists {len(self._files)}")
        probe = type(self._gen.bit_generator)(0)
        try:
            probe.state = perm_rng
            probe.state = rng
        except (KeyError, TypeError, ValueError) as exc:
            raise self.error(f"saved random state does not fit this layer: {exc}") from None
        self._file_order = order
        self._file_pos = file_pos
        self._load_current(perm_rng=perm_rng)
        self._gen.bit_generator.state = copy.deepcopy(rng)
        if not 0 <= row < self._rows:
            raise self.error(f"saved row {row} is outside the file's {self._rows} rows")
        self._row = row

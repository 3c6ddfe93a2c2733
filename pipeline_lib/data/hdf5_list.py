"""The list file Caffe's HDF5Data layer reads: one HDF5 file path a line.

Each file is opened (and must hold at least one dataset) before the list is
written, so a missing or broken file is named here, not at training time.
The paths are written as given: HDF5Data opens them relative to the folder
training runs in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pipeline_lib.core.fsutil import atomic_write_bytes


class Hdf5ListError(ValueError):
    """An entry of an HDF5 list that is not a usable HDF5 file."""


def write_hdf5_list(files: Sequence[str], out_path: str | os.PathLike, where: str) -> int:
    """Check each of `files` and write them, one a line, to `out_path`; return the count.
    `where` names the list in messages (its config key)."""
    import h5py

    for i, name in enumerate(files):
        if "\n" in name or name != name.strip():
            raise Hdf5ListError(f"{where}[{i}]: {name!r}: a path with a line break or "
                                "surrounding spaces cannot be listed (HDF5Data reads one "
                                "path a line)")
        try:
            with h5py.File(name, "r") as h5:
                datasets = [k for k in h5 if isinstance(h5[k], h5py.Dataset)]
        except FileNotFoundError:
            raise Hdf5ListError(f"{where}[{i}]: {name}: no such file") from None
        except OSError as exc:
            raise Hdf5ListError(f"{where}[{i}]: {name}: not an HDF5 file "
                                f"({' '.join(str(exc).split())})") from None
        if not datasets:
            raise Hdf5ListError(f"{where}[{i}]: {name}: holds no datasets (HDF5Data reads "
                                "one per top, e.g. data and label)")
    atomic_write_bytes(out_path, "".join(f"{name}\n" for name in files).encode())
    return len(files)

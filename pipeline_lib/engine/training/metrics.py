"""A run's metrics as one table: a row per display iteration and per test pass.

One row per display iteration (the last iteration's included, as Caffe logs
its loss after the last update) and one per test pass of each test net, with
the same columns for every solver type: `kind` ("train" or "test"), `iter`,
`net` (test net index; empty for train rows), `seconds` (wall time since the
solver started this process's run), `lr` (the rate of that iteration's
update, as Caffe's log prints it: `%g` of the float32 value, 0.01 and not
0.009999999776482582), `loss` (train: the iteration's loss, averaged over
iter_size; test: the loss-weighted sum of the averaged test outputs),
`smoothed_loss` (train: Caffe's average over `average_loss` iterations; empty
for test rows), then one `out_<blob>` column per net output (`out_<blob>_<k>`
for outputs with several values). Written as CSV, atomically; a resumed run
keeps the rows of the iterations before its start and appends after them.

The CSV is written with the standard `csv` module, in the bytes pandas'
`to_csv(index=False)` gives for the same table (a column of whole numbers
stays whole unless a value is missing or fractional, floats print as Python's
repr, missing values are empty) except `lr`, printed as `%g`; so training
does not import pandas (about 36 MB); `frame()` imports it when a DataFrame is
asked for.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline_lib.core.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

BASE_COLUMNS = ["kind", "iter", "net", "seconds", "lr", "loss", "smoothed_loss"]


class MetricsTable:
    """Collects rows in memory; `write` puts them at `path` (or the path given)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self.rows: list[dict] = []

    def add_train(self, iteration: int, *, lr: float, loss: float, smoothed_loss: float,
                  seconds: float, outputs: Mapping[str, float] | None = None) -> None:
        row = {"kind": "train", "iter": int(iteration), "net": None, "seconds": seconds,
               "lr": lr, "loss": loss, "smoothed_loss": smoothed_loss}
        row.update({f"out_{k}": v for k, v in (outputs or {}).items()})
        self.rows.append(row)

    def add_test(self, iteration: int, net_id: int, *, loss: float, seconds: float,
                 outputs: Mapping[str, float], lr: float | None = None) -> None:
        row = {"kind": "test", "iter": int(iteration), "net": int(net_id), "seconds": seconds,
               "lr": math.nan if lr is None else lr, "loss": loss, "smoothed_loss": math.nan}
        row.update({f"out_{k}": v for k, v in outputs.items()})
        self.rows.append(row)

    def columns(self) -> list[str]:
        """The base columns, then the output columns in name order."""
        extra = {c for row in self.rows for c in row if c not in BASE_COLUMNS}
        return BASE_COLUMNS + sorted(extra)

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame(self.rows).reindex(columns=self.columns())
        df["net"] = df["net"].astype("Int64")
        return df

    def to_csv(self) -> str:
        """The table as CSV text."""
        columns = self.columns()
        cells = [_column_text(name, [row.get(name) for row in self.rows]) for name in columns]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*cells))
        return out.getvalue()

    def write(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the table as CSV atomically; returns the path (None when there is none)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            return None
        atomic_write_bytes(target, self.to_csv().encode("utf-8"))
        return target

    def resume(self, iteration: int) -> None:
        """Continue a run from `iteration`: keep the rows before it, from memory or `path`."""
        if not self.rows and self.path is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [{k: _parse(k, v) for k, v in row.items() if v != ""}
                             for row in csv.DictReader(f)]
        self.rows = [r for r in self.rows if r["iter"] < iteration]


def _missing(value) -> bool:
    return value is None or (_is_number(value) and math.isnan(value))


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _column_text(name: str, values: list) -> list[str]:
    """A column's cells as pandas writes them, by the dtype it would give the column."""
    if name == "lr":
        return ["" if _missing(v) else format(float(v), "g") for v in values]
    present = [v for v in values if not _missing(v)]
    complete = len(present) == len(values)
    if name == "net" or (complete and all(isinstance(v, Integral) and _is_number(v)
                                          for v in present)):
        return ["" if _missing(v) else str(int(v)) for v in values]
    if not all(_is_number(v) for v in present):
        return ["" if _missing(v) else str(v) for v in values]
    if complete and all(isinstance(v, np.float32) for v in present):
        return [str(v) for v in values]  # pandas keeps such a column float32
    return ["" if _missing(v) else repr(float(v)) for v in values]


def _parse(column: str, text: str):
    if column == "kind":
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text

"""A run's metrics as one table: a row per display iteration and per test pass.

Columns: `kind` ("train" or "test"), `iter`, `net` (test net index; empty for
train rows), `seconds` (wall time since the solver started this process's
run), `lr`, `loss` (train: the iteration's loss, averaged over iter_size;
test: the loss-weighted sum of the averaged test outputs), `smoothed_loss`
(train: Caffe's average over `average_loss` iterations), then one `out_<blob>`
column per net output (`out_<blob>_<k>` for outputs with several values).
Written as CSV with pandas, atomically; a resumed run keeps the rows of the
iterations before its start and appends after them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from pipeline_lib.fsutil import atomic_write_bytes

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

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        extra = sorted(c for c in df.columns if c not in BASE_COLUMNS)
        df = df.reindex(columns=BASE_COLUMNS + extra)
        df["net"] = df["net"].astype("Int64")
        return df

    def write(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the table as CSV atomically; returns the path (None when there is none)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            return None
        atomic_write_bytes(target, self.frame().to_csv(index=False).encode("utf-8"))
        return target

    def resume(self, iteration: int) -> None:
        """Continue a run from `iteration`: keep the rows before it, from memory or `path`."""
        if not self.rows and self.path is not None and self.path.is_file():
            df = pd.read_csv(self.path)
            self.rows = [{k: v for k, v in row.items() if not _missing(v)}
                         for row in df.to_dict("records")]
            for row in self.rows:
                row["iter"] = int(row["iter"])
                if row.get("net") is not None:
                    row["net"] = int(row["net"])
        self.rows = [r for r in self.rows if r["iter"] < iteration]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

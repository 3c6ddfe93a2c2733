"""A parameter sweep's summary: one row per point (its parameters, the final test accuracy
and loss, the last training loss, the training's wall time) as CSV, and one figure
comparing the points' learning curves and final accuracies (plots.plot_comparison).

The workflow's sweep rules train one model per point; this module only reads what those
runs wrote (their metrics CSVs and provenance records).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.engine.training.provenance import read_provenance
from pipeline_lib.plots import final_metrics, plot_comparison

RESULT_COLUMNS = ["test_accuracy", "test_loss", "train_loss", "wall_seconds"]


def point_label(params: Mapping[str, Any]) -> str:
    """What differs between points, e.g. "base_lr=0.01, momentum=0.9"."""
    return ", ".join(f"{name}={value}" for name, value in params.items())


def summary_row(params: Mapping[str, Any], metrics: str | os.PathLike,
                provenance: str | os.PathLike) -> dict[str, Any]:
    """One point: its parameters, then RESULT_COLUMNS (None where the run had no test)."""
    scores = final_metrics(metrics)
    test = scores["test"][0] if scores["test"] else {}
    train = scores["train"] or {}
    return {**params, "test_accuracy": test.get("accuracy"), "test_loss": test.get("loss"),
            "train_loss": train.get("loss"),
            "wall_seconds": read_provenance(provenance)["wall_seconds"]}


def write_summary(points: Sequence[Mapping[str, Any]], metrics: Sequence[str | os.PathLike],
                  provenance: Sequence[str | os.PathLike], csv_path: str | os.PathLike,
                  plot_path: str | os.PathLike, title: str = "") -> pd.DataFrame:
    """Write the summary CSV and the comparison plot of a sweep's points (in the given
    order, one metrics CSV and provenance record each); returns the table."""
    if not len(points) == len(metrics) == len(provenance):
        raise ValueError(f"a sweep summary needs one metrics file and one provenance record "
                         f"per point: {len(points)} points, {len(metrics)} metrics, "
                         f"{len(provenance)} records")
    rows = [summary_row(p, m, r) for p, m, r in zip(points, metrics, provenance)]
    table = pd.DataFrame(rows)
    atomic_write_bytes(csv_path, table.to_csv(index=False).encode())
    plot_comparison({point_label(p): m for p, m in zip(points, metrics)}, plot_path,
                    title=title)
    return table


"""A sweep's summary (pipeline_lib/sweeps.py) from hand-made metrics tables and provenance
records: one row per point with the last test pass and training row, and a comparison plot
(plots.plot_comparison) whose bytes depend only on the metrics."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline_lib.engine.training.provenance import FORMAT_VERSION
from pipeline_lib.sweeps import point_label, write_summary

HEADER = "kind,iter,net,seconds,lr,loss,smoothed_loss,out_accuracy,out_loss\n"


def metrics(tmp_path, name, final_accuracy, final_test_loss, last_train_loss, seconds=0.5):
    path = tmp_path / f"{name}_metrics.csv"
    path.write_text(HEADER
                    + f"test,0,0,{seconds},,2.3,,0.1,2.3\n"
                    + f"train,0,,{seconds},0.01,2.4,2.4,,2.4\n"
                    + f"train,10,,{seconds},0.01,{last_train_loss},1.0,,{last_train_loss}\n"
                    + f"test,10,0,{seconds},,{final_test_loss},,{final_accuracy},"
                      f"{final_test_loss}\n")
    return path


def provenance(tmp_path, name, wall):
    path = tmp_path / f"{name}.provenance.json"
    path.write_text(json.dumps({"format": FORMAT_VERSION, "wall_seconds": wall}))
    return path


def test_one_row_per_point_and_a_plot_of_the_metrics_alone(tmp_path):
    points = [{"base_lr": 0.01, "momentum": 0.9}, {"base_lr": 0.1, "momentum": 0.9}]
    runs = [metrics(tmp_path, "a", 0.75, 0.6, 0.5), metrics(tmp_path, "b", 0.5, 1.25, 1.5)]
    records = [provenance(tmp_path, "a", 12.5), provenance(tmp_path, "b", 20.0)]
    table = write_summary(points, runs, records, tmp_path / "summary.csv",
                          tmp_path / "plot.png", title="t")
    written = pd.read_csv(tmp_path / "summary.csv")
    assert written.to_dict("records") == [
        {"base_lr": 0.01, "momentum": 0.9, "test_accuracy": 0.75, "test_loss": 0.6,
         "train_loss": 0.5, "wall_seconds": 12.5},
        {"base_lr": 0.1, "momentum": 0.9, "test_accuracy": 0.5, "test_loss": 1.25,
         "train_loss": 1.5, "wall_seconds": 20.0}]
    assert table.equals(written)
    png = (tmp_path / "plot.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    # other timings, same learning: the same plot, byte for byte
    runs = [metrics(tmp_path, "a", 0.75, 0.6, 0.5, seconds=9.0),
            metrics(tmp_path, "b", 0.5, 1.25, 1.5, seconds=9.0)]
    write_summary(points, runs, records, tmp_path / "s2.csv", tmp_path / "p2.png", title="t")
    assert (tmp_path / "p2.png").read_bytes() == png


def test_labels_name_what_differs_and_counts_must_match(tmp_path):
    assert point_label({"base_lr": 0.01, "momentum": 0.9}) == "base_lr=0.01, momentum=0.9"
    with pytest.raises(ValueError, match="2 points, 1 metrics, 2 records"):
        write_summary([{}, {}], ["m"], ["p", "q"], tmp_path / "s.csv", tmp_path / "p.png")

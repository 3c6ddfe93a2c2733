"""The per-run metrics table: columns, atomic CSV, resuming."""

from __future__ import annotations

import math

import pandas as pd

from pipeline_lib.metrics import BASE_COLUMNS, MetricsTable


def filled(path) -> MetricsTable:
    table = MetricsTable(path)
    table.add_test(0, 0, loss=2.3, seconds=0.5, outputs={"accuracy": 0.1, "loss": 2.3})
    table.add_train(0, lr=0.01, loss=2.2, smoothed_loss=2.2, seconds=0.6, outputs={"loss": 2.2})
    table.add_train(10, lr=0.009, loss=1.0, smoothed_loss=1.5, seconds=1.0, outputs={"loss": 1.0})
    table.add_test(10, 0, loss=0.9, seconds=1.1, outputs={"accuracy": 0.7, "loss": 0.9})
    return table


def test_table_columns_and_csv(tmp_path):
    path = tmp_path / "run_metrics.csv"
    assert filled(path).write() == path
    df = pd.read_csv(path)
    assert list(df.columns) == BASE_COLUMNS + ["out_accuracy", "out_loss"]
    assert list(df["kind"]) == ["test", "train", "train", "test"]
    assert list(df["iter"]) == [0, 0, 10, 10]
    train = df[df.kind == "train"]
    assert list(train["lr"]) == [0.01, 0.009] and list(train["smoothed_loss"]) == [2.2, 1.5]
    assert train["net"].isna().all() and math.isnan(train["out_accuracy"].iloc[0])
    assert list(df[df.kind == "test"]["out_accuracy"]) == [0.1, 0.7]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_resume_keeps_rows_before_the_resumed_iteration(tmp_path):
    path = tmp_path / "m.csv"
    filled(path).write()
    resumed = MetricsTable(path)
    resumed.resume(10)
    assert [(r["kind"], r["iter"]) for r in resumed.rows] == [("test", 0), ("train", 0)]
    resumed.add_test(10, 0, loss=0.8, seconds=0.1, outputs={"accuracy": 0.75, "loss": 0.8})
    resumed.write()
    df = pd.read_csv(path)
    assert list(df["iter"]) == [0, 0, 10] and df["out_accuracy"].iloc[-1] == 0.75
    assert df["net"].iloc[0] == 0


def test_no_path_keeps_the_table_in_memory():
    table = filled(None)
    assert table.write() is None
    assert len(table.frame()) == 4

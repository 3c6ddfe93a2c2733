"""The per-run metrics table: columns, atomic CSV, resuming."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd

from pipeline_lib.engine.training.metrics import BASE_COLUMNS, MetricsTable


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


def test_csv_bytes_are_what_pandas_writes(tmp_path):
    table = filled(tmp_path / "m.csv")
    table.add_train(20, lr=1e-5, loss=float("inf"), smoothed_loss=1e16, seconds=2,
                    outputs={"loss": 0.1 + 0.2, "count": 3, "note": "a,b"})
    table.add_test(20, 1, loss=np.float64(0.25), seconds=2.5,
                   outputs={"accuracy": np.float32(0.7), "count": 4})
    table.write()
    want = table.frame().to_csv(index=False)
    assert (tmp_path / "m.csv").read_bytes() == want.encode()
    assert want.splitlines()[5] == ("train,20,,2.0,1e-05,inf,1e+16,,3.0,0.30000000000000004,"
                                    '"a,b"')
    whole = MetricsTable()
    whole.add_test(0, 0, loss=1.0, seconds=0.5, outputs={"count": 2})
    whole.add_test(5, 0, loss=1.0, seconds=0.5, outputs={"count": 3})
    assert whole.to_csv() == whole.frame().to_csv(index=False)  # whole numbers stay whole
    assert whole.to_csv().splitlines()[1].endswith(",,2")
    assert MetricsTable().to_csv() == ",".join(BASE_COLUMNS) + "\n"


def test_a_resumed_table_writes_the_same_bytes(tmp_path):
    def late_rows(table):
        table.add_train(15, lr=0.1 + 0.2, loss=1 / 3, smoothed_loss=2e-7, seconds=3.0,
                        outputs={"loss": 1 / 3})
        table.add_train(20, lr=0.5, loss=2.0, smoothed_loss=1.0, seconds=4.0, outputs={"loss": 2})

    path = tmp_path / "m.csv"
    table = filled(path)
    late_rows(table)
    table.write()
    written = path.read_bytes()
    resumed = MetricsTable(path)
    resumed.resume(20)
    assert [r["iter"] for r in resumed.rows] == [0, 0, 10, 10, 15]
    resumed.add_train(20, lr=0.5, loss=2.0, smoothed_loss=1.0, seconds=4.0, outputs={"loss": 2})
    resumed.write()
    assert path.read_bytes() == written


def test_training_does_not_import_pandas():
    code = ("import sys, pipeline_lib.engine.training.solver, pipeline_lib.engine.training.job\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"

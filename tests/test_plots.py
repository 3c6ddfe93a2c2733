"""Learning curves and final scores from a run's metrics table."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from caffe_log_parser import parse_caffe_log
from PIL import Image
from test_reproducible import make_run_dir

from pipeline_lib.engine.training.job import train
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.plots import (
    default_window,
    final_metrics,
    learning_curve_figure,
    low_pass,
    plot_learning_curves,
    write_final_metrics,
)


def mocha_low_pass(x, window):
    """The tutorial's loop, 0-based: mean of x[lo..i] with lo = max(0, i - window)."""
    return [float(np.mean(x[max(0, i - window): i + 1])) for i in range(len(x))]


@pytest.mark.parametrize("window", [0, 1, 3, 25])
def test_low_pass_is_mochas_trailing_mean(window):
    x = np.random.default_rng(0).normal(size=40)
    np.testing.assert_allclose(low_pass(x, window), mocha_low_pass(x, window), rtol=1e-12)


def test_low_pass_edges():
    np.testing.assert_array_equal(low_pass([5.0, 1.0], 0), [5.0, 1.0])
    assert low_pass([], 3).size == 0
    assert low_pass([2.0, 4.0, 6.0], 10).tolist() == [2.0, 3.0, 4.0]  # window past the start
    with pytest.raises(ValueError, match="window"):
        low_pass([1.0], -1)


def test_default_window_is_a_quarter():
    assert default_window(100) == 25 and default_window(3) == 1 and default_window(1) == 0
    with pytest.raises(ValueError, match="fraction"):
        default_window(10, 1.5)


def metrics_table(test_nets=1) -> pd.DataFrame:
    """A run of 400 iterations: train rows every 50, tests every 200 (loss falls, acc rises)."""
    table = MetricsTable()
    for it in range(0, 400, 50):
        table.add_train(it, lr=0.01, loss=2.0 / (1 + it / 50), smoothed_loss=2.0 / (1 + it / 50),
                        seconds=it / 100, outputs={"loss": 2.0 / (1 + it / 50)})
    for it in (0, 200, 400):
        for net in range(test_nets):
            table.add_test(it, net, loss=1.0 / (1 + it / 100) + net, seconds=it / 100,
                           outputs={"accuracy": 0.1 + it / 500 - net / 10,
                                    "loss": 1.0 / (1 + it / 100) + net})
    return table.frame()


def test_figure_holds_raw_smoothed_and_test_curves():
    df = metrics_table()
    fig = learning_curve_figure(df, title="run", smoothing=0.25)
    try:
        ax_loss, ax_acc = fig.axes
        lines = {line.get_label(): line for line in ax_loss.get_lines()}
        raw = lines["train loss (raw)"]
        smooth = lines["train loss (low pass, window 2)"]
        train = df[df["kind"] == "train"]
        np.testing.assert_array_equal(raw.get_xdata(), train["iter"])
        np.testing.assert_allclose(smooth.get_ydata(), mocha_low_pass(train["loss"].to_numpy(), 2))
        np.testing.assert_allclose(lines["test loss"].get_ydata(), [1.0, 1 / 3, 0.2])
        (acc,) = ax_acc.get_lines()
        assert acc.get_label() == "test accuracy"
        np.testing.assert_array_equal(acc.get_xdata(), [0, 200, 400])
        np.testing.assert_allclose(acc.get_ydata(), [0.1, 0.5, 0.9])
        assert ax_loss.get_yscale() == "log" and ax_acc.get_xlabel() == "iteration"
    finally:
        plt.close(fig)


def test_figure_labels_each_test_net():
    fig = learning_curve_figure(metrics_table(test_nets=2))
    try:
        labels = [line.get_label() for line in fig.axes[1].get_lines()]
        assert labels == ["test accuracy #0", "test accuracy #1"]
    finally:
        plt.close(fig)


def test_png_is_written_and_reproducible(tmp_path):
    csv = tmp_path / "m.csv"
    metrics_table().to_csv(csv, index=False)
    first = plot_learning_curves(csv, tmp_path / "a.png", title="t")
    second = plot_learning_curves(csv, tmp_path / "b.png", title="t")
    assert first.read_bytes() == second.read_bytes()
    with Image.open(first) as img:
        assert img.format == "PNG" and img.size == (800, 700)
        # not blank: the curves' colours are there
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50


def test_metrics_without_required_columns_are_named(tmp_path):
    csv = tmp_path / "m.csv"
    pd.DataFrame({"iter": [0]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="m.csv.*kind"):
        plot_learning_curves(csv, tmp_path / "x.png")


def test_final_metrics_take_each_nets_last_pass(tmp_path):
    df = metrics_table(test_nets=2)
    scores = final_metrics(df)
    assert scores["train"]["iter"] == 350
    assert [(t["net"], t["iter"]) for t in scores["test"]] == [(0, 400), (1, 400)]
    assert scores["test"][0]["accuracy"] == pytest.approx(0.9)
    assert scores["test"][1]["loss"] == pytest.approx(1.2)
    written = write_final_metrics(df, tmp_path / "f.json", tmp_path / "f.html", title="T")
    assert json.loads((tmp_path / "f.json").read_text()) == json.loads(json.dumps(written))
    page = (tmp_path / "f.html").read_text()
    assert "<th>accuracy</th>" in page and "<td>0.9</td>" in page and "<title>T</title>" in page


def test_curves_agree_with_what_parse_log_reads(tmp_path, monkeypatch):
    # The CSV the plots read and the glog file that Caffe's parse_log.py reads tell one story.
    run = make_run_dir(tmp_path / "run")
    monkeypatch.chdir(run)
    train("solver.prototxt", output_stem="results/small_iter_30", max_iter=30,
          log_path="train.log")
    log_train, log_test = parse_caffe_log((run / "train.log").read_text())
    df = pd.read_csv(run / "results/small_iter_30_metrics.csv")
    csv_train = df[df["kind"] == "train"]
    # the CSV also has the loss logged after the last update, which has no output lines
    assert csv_train["iter"].tolist() == [0, 5, 10, 15, 20, 25, 30]
    assert [r["NumIters"] for r in log_train] == [0, 5, 10, 15, 20, 25]
    for row, loss in zip(log_train, csv_train["loss"]):
        assert row["loss"] == float(format(loss, ".6g"))
    # parse_log gives a row the rate of the lr line before it: the previous display's
    assert [r["LearningRate"] for r in log_train[1:]] == csv_train["lr"].tolist()[:5]
    last = csv_train.iloc[-1]
    assert f"Iteration 30, loss = {format(last['smoothed_loss'], '.6g')}" in (
        run / "train.log").read_text()
    csv_test = df[df["kind"] == "test"]
    assert [r["NumIters"] for r in log_test] == csv_test["iter"].tolist() == [0, 15, 30]
    for row, acc in zip(log_test, csv_test["out_accuracy"]):
        assert math.isclose(row["accuracy"], float(format(acc, ".6g")))
    scores = final_metrics(df)
    assert scores["test"][0]["iter"] == 30
    assert scores["test"][0]["accuracy"] == pytest.approx(log_test[-1]["accuracy"], rel=1e-5)

"""Learning curves and final scores from a run's metrics table."""

from __future__ import annotations

import json
import math
import re

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
    centred_mean,
    comparison_figure,
    final_metrics,
    half_width_points,
    learning_curve_figure,
    plot_comparison,
    plot_learning_curves,
    smoothed_loss,
    write_final_metrics,
)


def invented_features(iters, raw, smooth, half_width) -> list[tuple[str, int]]:
    """Where a smoothed loss curve shows what the raw losses do not, compared as drawn (log):
    ("above"/"below", i) where it leaves the range of the raw points within `half_width`
    iterations of iteration i (their running maximum and minimum over the stated window), and
    ("step", i) where it moves between points i-1 and i by more than any step the raw data
    takes within those two windows."""
    iters, x, s = np.asarray(iters), np.log(raw), np.log(smooth)
    windows = [np.flatnonzero(np.abs(iters - t) <= half_width) for t in iters]
    found = []
    for i, w in enumerate(windows):
        if s[i] > x[w].max() + 1e-9:
            found.append(("above", i))
        if s[i] < x[w].min() - 1e-9:
            found.append(("below", i))
        if i:
            both = np.union1d(w, windows[i - 1])
            raw_steps = np.abs(np.diff(x[both.min(): both.max() + 1]))
            if abs(s[i] - s[i - 1]) > raw_steps.max() + 1e-9:
                found.append(("step", i))
    return found


def mocha_low_pass(x, window):
    """The smoothing these plots used before: Mocha's trailing mean over `window` points,
    of the linear loss."""
    return np.array([np.mean(x[max(0, i - window): i + 1]) for i in range(len(x))])


def lenet_like_loss(noise: float, n: int = 101, seed: int = 0):
    """A LeNet-like training loss at 100-iteration displays: 2.3 first, then a fast fall to a
    noisy floor."""
    iters = np.arange(n) * 100
    rng = np.random.default_rng(seed)
    loss = np.r_[2.3, 0.05 + 0.25 * np.exp(-np.arange(1, n) / 8)]
    loss[1:] *= np.exp(noise * rng.normal(size=n - 1))
    return iters, loss


@pytest.mark.parametrize("noise", [0.0, 0.3, 1.0])
def test_the_smoothed_loss_invents_no_features(noise):
    # The curve as drawn in the figure, checked against the window its legend states.
    iters, loss = lenet_like_loss(noise)
    table = MetricsTable()
    for it, value in zip(iters, loss):
        table.add_train(int(it), lr=0.01, loss=float(value), smoothed_loss=float(value),
                        seconds=0.0)
    fig = learning_curve_figure(table.frame())
    try:
        ax = fig.axes[0]
        (drawn,) = [line for line in ax.get_lines() if line.get_gid() == "smoothed"]
        (label,) = [t for t in ax.get_legend_handles_labels()[1] if "centred" in t]
    finally:
        plt.close(fig)
    half = int(re.search(r"±([\d,]+) iterations", label).group(1).replace(",", ""))
    assert half == 500  # the default: 10% of 101 points, 5 on each side, 100 iterations apart
    smooth = drawn.get_ydata()
    np.testing.assert_array_equal(drawn.get_xdata(), iters)
    assert invented_features(iters, loss, smooth, half) == []
    assert smooth[0] == pytest.approx(2.3)  # the first point is the first loss
    if noise:  # it runs through the middle of the raw points, not above them
        assert 0.35 < np.mean(np.log(loss) > np.log(smooth)) < 0.65


def test_random_series_keep_both_properties():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 120))
        iters = np.arange(n) * 50
        loss = np.exp(rng.normal(size=n) * rng.uniform(0, 3) + rng.normal() * np.arange(n) / n)
        smooth, half = smoothed_loss(iters, loss, float(rng.uniform(0, 1)))
        assert invented_features(iters, loss, smooth, half) == []


def test_the_check_catches_the_old_trailing_mean():
    # What the committed figure showed before: the first loss held the curve up for a quarter
    # of the run, then it fell in a step the training never took.
    iters, clean = lenet_like_loss(0.0)
    found = invented_features(iters, clean, mocha_low_pass(clean, 25), 500)
    assert ("step", 26) in found  # iteration 2,600: 2.3 leaves the window
    iters, noisy = lenet_like_loss(0.3)
    old = mocha_low_pass(noisy, 25)
    assert [i for kind, i in invented_features(iters, noisy, old, 500) if kind == "above"]
    assert np.mean(np.log(noisy) > np.log(old)) < 0.3  # above most raw points
    # and a curve that overshoots (a spline, say) is caught too
    bump = clean * np.exp(0.05 * np.sin(np.arange(clean.size)))
    smooth, _ = smoothed_loss(iters, clean, 0.1)
    assert invented_features(iters, clean, smooth * np.exp(0.3 * (iters == 5000)), 500)
    assert invented_features(iters, bump, clean * 1.5, 500)


def test_centred_mean_edges():
    np.testing.assert_allclose(centred_mean([1.0, 2.0, 3.0, 4.0, 10.0], 1),
                               [1.0, 2.0, 3.0, 17 / 3, 10.0])
    np.testing.assert_array_equal(centred_mean([5.0, 1.0], 0), [5.0, 1.0])
    assert centred_mean([], 3).size == 0
    np.testing.assert_allclose(centred_mean([1.0, 2.0, 3.0], 10), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="half width"):
        centred_mean([1.0], -1)
    assert half_width_points(101, 0.1) == 5 and half_width_points(5, 0.1) == 0
    with pytest.raises(ValueError, match="fraction"):
        half_width_points(10, 1.5)


def metrics_table(test_nets=1, display=50) -> pd.DataFrame:
    """A run of 400 iterations: train rows every 50, tests every 200 (loss falls, acc rises)."""
    table = MetricsTable()
    for it in range(0, 401, display):
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
        raw = lines["train loss (raw, every 50 iterations)"]
        # 9 points, a quarter: one on each side, 50 iterations
        solid = lines["train loss, centred mean of the log loss over ±50 iterations"]
        (smooth,) = [line for line in ax_loss.get_lines() if line.get_gid() == "smoothed"]
        train = df[df["kind"] == "train"]
        np.testing.assert_array_equal(raw.get_xdata(), train["iter"])
        loss = train["loss"].to_numpy()
        want = np.exp(centred_mean(np.log(loss), 1))
        np.testing.assert_allclose(smooth.get_ydata(), want)
        assert smooth.get_linestyle() == "--" and solid.get_linestyle() == "-"
        # solid only where the whole window fits: not the first and last points
        np.testing.assert_allclose(solid.get_ydata()[1:-1], want[1:-1])
        assert np.isnan(solid.get_ydata()[[0, -1]]).all()
        np.testing.assert_allclose(lines["test loss"].get_ydata(), [1.0, 1 / 3, 0.2])
        (err,) = ax_acc.get_lines()
        assert err.get_label() == "test error (1 - accuracy)"
        np.testing.assert_array_equal(err.get_xdata(), [0, 200, 400])
        np.testing.assert_allclose(err.get_ydata(), [0.9, 0.5, 0.1])
        assert ax_loss.get_yscale() == "log" and ax_acc.get_yscale() == "log"
        assert ax_acc.get_xlabel() == "iteration"
        (note,) = ax_acc.texts  # the final value, written beside the last point
        assert note.get_text() == "10.00% error\n(accuracy 0.9000)\nat 400"
    finally:
        plt.close(fig)


def test_an_error_of_zero_gets_a_zoomed_accuracy_axis():
    df = metrics_table()
    df.loc[(df["kind"] == "test") & (df["iter"] == 400), "out_accuracy"] = 1.0
    fig = learning_curve_figure(df)
    try:
        ax = fig.axes[1]
        assert ax.get_yscale() == "linear" and ax.get_ylabel() == "test accuracy"
        lo, hi = ax.get_ylim()
        assert 0 <= lo < 0.1 and hi == 1.0
    finally:
        plt.close(fig)


def test_figure_labels_each_test_net():
    fig = learning_curve_figure(metrics_table(test_nets=2))
    try:
        labels = [line.get_label() for line in fig.axes[1].get_lines()]
        assert labels == ["test error (1 - accuracy #0)", "test error (1 - accuracy #1)"]
    finally:
        plt.close(fig)


def test_comparison_draws_every_run_and_its_final_accuracy(tmp_path):
    runs = {}
    for k, label in enumerate(["base_lr=0.01", "base_lr=0.02", "Adam"]):
        df = metrics_table(display=10)
        df["loss"] *= 1 + k
        df.loc[df["kind"] == "test", "out_accuracy"] += k / 50
        runs[label] = tmp_path / f"{k}.csv"
        df.to_csv(runs[label], index=False)
    fig = comparison_figure(runs, title="sweep")
    try:
        ax_loss, ax_err, ax_final = fig.axes
        labelled = [line.get_label() for line in ax_loss.get_lines() if line.get_label() in runs]
        assert labelled == list(runs)
        smoothed = [line for line in ax_loss.get_lines() if line.get_gid() == "smoothed"]
        assert len(smoothed) == 3
        for k, line in enumerate(smoothed):  # the same smoothing as a single run's figure
            train = metrics_table(display=10).query("kind == 'train'")
            loss = train["loss"].to_numpy() * (1 + k)
            np.testing.assert_allclose(line.get_ydata(), np.exp(centred_mean(np.log(loss), 2)))
            assert smoothed_loss(train["iter"], loss)[1] == 20  # 41 points, 10%: 2 each side
        assert "centred mean of the log loss over ±20 iterations" in ax_loss.get_title()
        assert ax_err.get_yscale() == "log"
        np.testing.assert_allclose(ax_err.get_lines()[1].get_ydata(), [0.88, 0.48, 0.08])
        assert [t.get_text() for t in ax_final.get_yticklabels()] == list(runs)  # top down
        assert [t.get_text() for t in ax_final.texts] == [
            "0.9000\n(iter 400)", "0.9200\n(iter 400)", "0.9400\n(iter 400)"]
        assert fig.get_suptitle() == "sweep"
    finally:
        plt.close(fig)
    out = plot_comparison(runs, tmp_path / "cmp.png", title="sweep")
    again = plot_comparison(runs, tmp_path / "again.png", title="sweep")
    assert out.read_bytes() == again.read_bytes()
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1100, 750)
    with pytest.raises(ValueError, match="no runs"):
        plot_comparison({}, tmp_path / "none.png")


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
    assert scores["train"]["iter"] == 400
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

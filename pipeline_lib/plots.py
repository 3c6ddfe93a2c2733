"""Learning curves and final scores of training runs, from their metrics CSVs.

`plot_learning_curves` draws one PNG with two panels against iteration: the
training loss (raw, as logged at display iterations, and smoothed) with the
test loss, and the test error (1 - accuracy) with its final value written
beside the last point. `plot_comparison` draws several runs on one figure:
their smoothed training losses, their test errors, and each run's final test
accuracy, labelled with what differs between them.

Smoothing must not invent features. The smoothed loss is a centred moving
mean: each point is the mean of the raw points within `half_width`
iterations on either side of it, the window shrinking symmetrically at the
ends of the run (so the first point is the first raw value and no trend is
shifted). On a log axis (every loss > 0) it is the mean of the log loss, the
geometric mean, so that the curve runs through the middle of the raw points
as drawn. Such a mean never leaves the range of the raw points in its
window, and its steps are weighted means of the raw steps in the window, so
it never falls faster than the raw data does. The window is a fraction of
the run's display points (`plots: smoothing`), stated in iterations in the
legend ("centred mean of the log loss over ±500 iterations"); it is dashed
where the start or the end of the run cuts its window short.

The test panel plots the error on a log axis, as papers do, so that the
range a user cares about (1-3 % for LeNet) is as visible as the first pass's
90 %; a run with an error of exactly 0 gets a linear accuracy axis zoomed to
its values instead.

`final_metrics` picks the scores of the last test pass of each test net
(and the last training row); `write_final_metrics` writes them as JSON and
as a small HTML table for the Snakemake report.

Rendering uses Matplotlib's Agg backend (no display needed); PNGs carry no
date or version, so the same metrics give the same bytes.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.core.fsutil import atomic_write_bytes

ACCURACY_MARK = "accuracy"
TEST_COLORS = ("tab:green", "tab:red", "tab:purple", "tab:brown")
#: the default smoothing window: this fraction of the run's display points, centred
SMOOTHING = 0.1


def centred_mean(values: Sequence[float], half_width: int) -> np.ndarray:
    """out[i] = mean(values[i - k : i + k + 1]) with k = min(half_width, i, n - 1 - i)."""
    x = np.asarray(values, dtype=np.float64)
    if half_width < 0:
        raise ValueError(f"smoothing half width must be >= 0 points, got {half_width}")
    n = x.size
    if n == 0:
        return x
    i = np.arange(n)
    k = np.minimum(half_width, np.minimum(i, n - 1 - i))
    cumsum = np.concatenate([[0.0], np.cumsum(x)])
    return (cumsum[i + k + 1] - cumsum[i - k]) / (2 * k + 1)


def half_width_points(n: int, fraction: float = SMOOTHING) -> int:
    """Points on each side of a centred window spanning about `fraction` of `n` points."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"smoothing fraction must be in [0, 1], got {fraction}")
    return int(round(n * fraction / 2))


def smoothed_loss(iters: Sequence[int], loss: Sequence[float], fraction: float = SMOOTHING,
                  log: bool = True) -> tuple[np.ndarray, int]:
    """The smoothed curve of `loss` (centred mean, of log loss when `log`) and its half
    width in iterations (0: no smoothing)."""
    iters = np.asarray(iters)
    loss = np.asarray(loss, dtype=np.float64)
    h = half_width_points(len(loss), fraction)
    step = int(np.median(np.diff(iters))) if len(iters) > 1 else 0
    if h == 0 or step <= 0:
        return loss.copy(), 0
    if log:
        return np.exp(centred_mean(np.log(loss), h)), h * step
    return centred_mean(loss, h), h * step


def smoothing_label(half_width: int, log: bool) -> str:
    """The words legend and caption use for the smoothed curve."""
    what = "log loss" if log else "loss"
    return f"train loss, centred mean of the {what} over ±{half_width:,} iterations"


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """The metrics CSV (engine.training.metrics), checked for the columns the plots need."""
    df = pd.read_csv(path)
    missing = {"kind", "iter", "net", "loss"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: not a metrics table; columns {sorted(missing)} are missing")
    return df


def accuracy_columns(df: pd.DataFrame) -> list[str]:
    """Output columns holding accuracies (`out_accuracy`, `out_accuracy_top5`, ...)."""
    return [c for c in df.columns if c.startswith("out_") and ACCURACY_MARK in c]


def _test_nets(df: pd.DataFrame) -> list[int]:
    tests = df[df["kind"] == "test"]
    return sorted(int(n) for n in tests["net"].dropna().unique())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _frame(metrics: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    return metrics if isinstance(metrics, pd.DataFrame) else read_metrics(metrics)


def _train_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["kind"] == "train"].sort_values("iter", kind="stable")


def _test_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["kind"] == "test"].sort_values("iter", kind="stable")


def _error_axis(ax, series: list[np.ndarray]) -> bool:
    """Log error axis when every error is > 0 (True); else a linear axis (False)."""
    values = np.concatenate(series) if series else np.array([])
    log = values.size > 0 and bool((values > 0).all())
    if log:
        ax.set_yscale("log")
    return log


def _accuracy_curves(df: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, iterations, accuracies) per test net and accuracy output."""
    tests, nets = _test_rows(df), _test_nets(df)
    curves = []
    for net in nets:
        rows = tests[tests["net"] == net]
        suffix = f" #{net}" if len(nets) > 1 else ""
        for col in accuracy_columns(df):
            ok = rows[col].notna()
            if ok.any():
                curves.append((f"{col.removeprefix('out_')}{suffix}",
                               rows["iter"][ok].to_numpy(), rows[col][ok].to_numpy(float)))
    return curves


def _draw_test_panel(ax, curves, colors) -> None:
    """Test error (log) or accuracy (linear, zoomed) per curve, the final value annotated."""
    log = _error_axis(ax, [1 - acc for _, _, acc in curves])
    for (label, iters, acc), color in zip(curves, colors):
        y = 1 - acc if log else acc
        ax.plot(iters, y, "o-", ms=3, lw=1.5, color=color,
                label=f"test error (1 - {label})" if log else f"test {label}")
        ax.annotate(f"{1 - acc[-1]:.2%} error\n({label} {acc[-1]:.4f})\nat {iters[-1]:,}",
                    (iters[-1], y[-1]), xytext=(-8, 10 if log else -10),
                    textcoords="offset points", ha="right", va="bottom" if log else "top",
                    fontsize="small", color=color,
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.8})
    if log:
        ax.set_ylabel("test error (1 - accuracy), log scale")
    else:
        values = np.concatenate([acc for _, _, acc in curves])
        lo, hi = float(values.min()), float(values.max())
        pad = max((hi - lo) * 0.1, 1e-3)
        ax.set_ylim(max(lo - pad, 0.0), min(hi + pad, 1.0))
        ax.set_ylabel("test accuracy")


def learning_curve_figure(metrics: pd.DataFrame | str | os.PathLike, *,
                          title: str | None = None, smoothing: float = SMOOTHING):
    """The two-panel Matplotlib figure (loss; test error) against iteration.

    The caller closes it (`matplotlib.pyplot.close(fig)`).
    """
    plt = _pyplot()
    df = _frame(metrics)
    train, tests, nets = _train_rows(df), _test_rows(df), _test_nets(df)

    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                          constrained_layout=True)
    log = bool(len(train)) and bool((train["loss"] > 0).all())
    if len(train):
        iters, loss = train["iter"].to_numpy(), train["loss"].to_numpy(dtype=np.float64)
        step = int(np.median(np.diff(iters))) if len(iters) > 1 else 0
        raw = f"train loss (raw, every {step:,} iterations)" if step else "train loss (raw)"
        ax_loss.plot(iters, loss, lw=0.8, alpha=0.5, color="tab:blue", label=raw)
        smooth, half = smoothed_loss(iters, loss, smoothing, log)
        if half:
            _plot_smoothed(ax_loss, iters, smooth, half, "tab:orange", 2.2,
                           smoothing_label(half, log))
    for net in nets:
        rows = tests[tests["net"] == net]
        suffix = f" #{net}" if len(nets) > 1 else ""
        ax_loss.plot(rows["iter"], rows["loss"], "o-", ms=3, lw=1.2,
                     color=TEST_COLORS[net % len(TEST_COLORS)], label=f"test loss{suffix}")
    ax_loss.set_ylabel("loss (log scale)" if log else "loss")
    ax_loss.set_title(title or "Learning curves")
    if log:
        ax_loss.set_yscale("log")
    curves = _accuracy_curves(df)
    if curves:
        _draw_test_panel(ax_acc, curves, [TEST_COLORS[i % len(TEST_COLORS)]
                                          for i in range(len(curves))])
    else:
        ax_acc.text(0.5, 0.5, "no test accuracy in this run", ha="center", va="center",
                    transform=ax_acc.transAxes)
    ax_acc.set_xlabel("iteration")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    return fig


def _plot_smoothed(ax, iters, smooth, half: int, color: str, lw: float, label: str) -> None:
    """The smoothed curve: solid where its whole window fits in the run, dashed where the
    start or end of the run cuts the window short (there it is closer to the raw points).
    The dashed line (gid "smoothed") holds every point; the solid one holds the label."""
    iters = np.asarray(iters)
    full = (iters - iters[0] >= half) & (iters[-1] - iters >= half)
    ax.plot(iters, smooth, lw=lw / 2, ls="--", color=color, gid="smoothed")
    ax.plot(iters, np.where(full, smooth, np.nan), lw=lw, color=color, label=label)


def _save_png(fig, out_path: str | os.PathLike, dpi: int = 100) -> Path:
    plt = _pyplot()
    try:
        buf = io.BytesIO()
        # No Software/date metadata: the same metrics give the same PNG bytes.
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    atomic_write_bytes(out_path, buf.getvalue())
    return Path(out_path)


def plot_learning_curves(metrics: pd.DataFrame | str | os.PathLike,
                         out_path: str | os.PathLike, *, title: str | None = None,
                         smoothing: float = SMOOTHING, dpi: int = 100) -> Path:
    """Draw the learning-curve figure as a PNG at `out_path` (written atomically)."""
    return _save_png(learning_curve_figure(metrics, title=title, smoothing=smoothing),
                     out_path, dpi)


def comparison_figure(runs: Mapping[str, pd.DataFrame | str | os.PathLike], title: str = "",
                      smoothing: float = SMOOTHING):
    """Several runs on one figure: smoothed training loss, test error, final accuracy.

    `runs` maps a label (what differs between the runs) to a metrics table or CSV path.
    """
    plt = _pyplot()
    if not runs:
        raise ValueError("plot_comparison: no runs to compare")
    frames = {label: _frame(m) for label, m in runs.items()}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig = plt.figure(figsize=(11, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, width_ratios=(2.3, 1))
    ax_loss = fig.add_subplot(grid[0, 0])
    ax_err = fig.add_subplot(grid[1, 0], sharex=ax_loss)
    ax_final = fig.add_subplot(grid[:, 1])
    log = all((_train_rows(df)["loss"] > 0).all() for df in frames.values())
    halves, finals, curves = set(), [], []
    for i, (label, df) in enumerate(frames.items()):
        color = colors[i % len(colors)]
        train = _train_rows(df)
        if len(train):
            iters, loss = train["iter"].to_numpy(), train["loss"].to_numpy(dtype=np.float64)
            smooth, half = smoothed_loss(iters, loss, smoothing, log)
            halves.add(half)
            ax_loss.plot(iters, loss, lw=0.6, alpha=0.25, color=color)
            _plot_smoothed(ax_loss, iters, smooth, half, color, 2, label)
        acc = _accuracy_curves(df)[:1]  # the first test net's first accuracy output
        if acc:
            _, iters, values = acc[0]
            curves.append((label, iters, values, color))
            finals.append((label, float(values[-1]), int(iters[-1]), color))
    if log:
        ax_loss.set_yscale("log")
    widths = ", ".join(f"±{h:,}" for h in sorted(halves - {0}))
    ax_loss.set_ylabel("train loss" + (" (log scale)" if log else ""))
    ax_loss.set_title("train loss: raw (faint)" + (
        f" and centred mean of the {'log ' if log else ''}loss over {widths} iterations"
        if widths else ", too few points to smooth"), fontsize="medium")
    err_log = _error_axis(ax_err, [1 - v for _, _, v, _ in curves])
    for label, iters, values, color in curves:
        ax_err.plot(iters, 1 - values if err_log else values, "o-", ms=2.5, lw=1.4,
                    color=color, label=label)
    ax_err.set_ylabel("test error (1 - accuracy), log scale" if err_log else "test accuracy")
    ax_err.set_xlabel("iteration")
    _draw_finals(ax_final, finals)
    for ax in (ax_loss, ax_err):
        ax.grid(True, which="both", alpha=0.25)
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(loc="upper right", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _draw_finals(ax, finals: list[tuple[str, float, int, str]]) -> None:
    """A dot per run: its final test accuracy, the value written beside it."""
    if not finals:
        ax.text(0.5, 0.5, "no test accuracy in these runs", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    y = np.arange(len(finals))[::-1]
    values = np.array([v for _, v, _, _ in finals])
    for yi, (_, value, it, color) in zip(y, finals):
        ax.plot([value], [yi], "o", ms=8, color=color)
        ax.annotate(f"{value:.4f}\n(iter {it:,})", (value, yi), xytext=(0, 9),
                    textcoords="offset points", ha="center", fontsize="small")
    lo, hi = float(values.min()), float(values.max())
    pad = max((hi - lo) * 0.35, 0.002)
    ax.set_xlim(max(lo - pad, 0.0), min(hi + pad, 1.0) if hi + pad <= 1 else hi + pad)
    ax.set_ylim(-0.7, len(finals) - 0.3)
    ax.set_yticks(y, labels=[label for label, _, _, _ in finals])
    ax.set_xlabel("final test accuracy")
    ax.set_title("final test accuracy", fontsize="medium")
    ax.grid(True, axis="x", alpha=0.25)


def plot_comparison(runs: Mapping[str, str | os.PathLike], out: str | os.PathLike,
                    title: str = "") -> Path:
    """Draw `comparison_figure(runs, title)` as a PNG at `out` (written atomically).

    `runs` maps a label (what differs, e.g. "base_lr=0.01, momentum=0.9") to a training
    metrics CSV; every run's curves are smoothed by the same rule as a single run's.
    """
    return _save_png(comparison_figure(runs, title), out)


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def final_metrics(metrics: pd.DataFrame | str | os.PathLike) -> dict[str, Any]:
    """The last training row and each test net's last test pass, as plain numbers."""
    df = metrics if isinstance(metrics, pd.DataFrame) else read_metrics(metrics)
    outputs = sorted(c for c in df.columns if c.startswith("out_"))
    result: dict[str, Any] = {"train": None, "test": []}
    train = df[df["kind"] == "train"].sort_values("iter", kind="stable")
    if len(train):
        last = train.iloc[-1]
        result["train"] = {"iter": int(last["iter"]), "loss": _number(last["loss"]),
                           "smoothed_loss": _number(last.get("smoothed_loss"))}
    tests = df[df["kind"] == "test"].sort_values("iter", kind="stable")
    for net in _test_nets(df):
        last = tests[tests["net"] == net].iloc[-1]
        entry = {"net": net, "iter": int(last["iter"]), "loss": _number(last["loss"])}
        entry.update({c.removeprefix("out_"): _number(last[c]) for c in outputs
                      if _number(last[c]) is not None})
        result["test"].append(entry)
    return result


def final_metrics_html(scores: dict[str, Any], title: str) -> str:
    """A standalone HTML page with one table row per test net (and the last training loss)."""
    keys = sorted({k for entry in scores["test"] for k in entry} - {"net", "iter", "loss"})
    head = ["test net", "iteration", "loss (weighted)", *keys]
    rows = [[str(e["net"]), str(e["iter"]), _fmt(e["loss"]), *(_fmt(e.get(k)) for k in keys)]
            for e in scores["test"]]
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                    for row in rows)
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    train = scores.get("train")
    train_line = (f"<p>Last training loss (iteration {train['iter']}): "
                  f"{_fmt(train['loss'])}, smoothed {_fmt(train['smoothed_loss'])}</p>"
                  if train else "")
    table = (f"<table><thead><tr>{header}</tr></thead><tbody>{cells}</tbody></table>"
             if rows else "<p>No test passes in this run.</p>")
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}"
             "th{background:#eee}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h3>{html.escape(title)}</h3>"
            f"{table}{train_line}</body></html>\n")


def _fmt(value: float | None) -> str:
    return "" if value is None else format(value, ".6g")


def write_final_metrics(metrics: pd.DataFrame | str | os.PathLike, json_path: str | os.PathLike,
                        html_path: str | os.PathLike | None = None,
                        title: str = "Final metrics") -> dict[str, Any]:
    """Write the final scores as JSON (and HTML); returns them."""
    scores = final_metrics(metrics)
    atomic_write_bytes(json_path, (json.dumps(scores, indent=2, sort_keys=True) + "\n").encode())
    if html_path is not None:
        atomic_write_bytes(html_path, final_metrics_html(scores, title).encode("utf-8"))
    return scores

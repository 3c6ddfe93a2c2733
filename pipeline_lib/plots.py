"""Learning curves and final scores of a training run, from its metrics CSV.

`plot_learning_curves` draws one PNG with two panels against iteration:
the training loss (raw, as logged at display iterations, and low-pass
smoothed) with the test loss, and the test accuracy. The smoothing is the
trailing mean of Mocha's MNIST tutorial: each point is the mean of itself
and up to `window` points before it, with `window` a quarter of the series
by default, so the first points follow the raw curve.

`final_metrics` picks the scores of the last test pass of each test net
(and the last training row); `write_final_metrics` writes them as JSON and
as a small HTML table for the Snakemake report.

Rendering uses Matplotlib's Agg backend (no display needed).
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


def low_pass(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean: out[i] = mean(values[max(0, i - window) : i + 1])."""
    x = np.asarray(values, dtype=np.float64)
    if window < 0:
        raise ValueError(f"low_pass window must be >= 0, got {window}")
    if x.size == 0:
        return x
    cumsum = np.concatenate([[0.0], np.cumsum(x)])
    hi = np.arange(1, x.size + 1)
    lo = np.maximum(0, hi - 1 - window)
    return (cumsum[hi] - cumsum[lo]) / (hi - lo)


def default_window(n: int, fraction: float = 0.25) -> int:
    """Mocha's choice: about `fraction` (a quarter) of the series' length."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"smoothing fraction must be in [0, 1], got {fraction}")
    return int(round(n * fraction))


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


def learning_curve_figure(metrics: pd.DataFrame | str | os.PathLike, *,
                          title: str | None = None, smoothing: float = 0.25):
    """The two-panel Matplotlib figure (loss; test accuracy) against iteration.

    The caller closes it (`matplotlib.pyplot.close(fig)`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = metrics if isinstance(metrics, pd.DataFrame) else read_metrics(metrics)
    train = df[df["kind"] == "train"].sort_values("iter", kind="stable")
    tests = df[df["kind"] == "test"].sort_values("iter", kind="stable")
    nets = _test_nets(df)

    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                          constrained_layout=True)
    if len(train):
        iters, loss = train["iter"].to_numpy(), train["loss"].to_numpy(dtype=np.float64)
        window = default_window(len(loss), smoothing)
        ax_loss.plot(iters, loss, lw=1, alpha=0.6, color="tab:blue", label="train loss (raw)")
        if window >= 1:
            ax_loss.plot(iters, low_pass(loss, window), lw=2, color="tab:orange",
                         label=f"train loss (low pass, window {window})")
    for net in nets:
        rows = tests[tests["net"] == net]
        suffix = f" #{net}" if len(nets) > 1 else ""
        ax_loss.plot(rows["iter"], rows["loss"], "o-", ms=3, lw=1.5,
                     color=TEST_COLORS[net % len(TEST_COLORS)], label=f"test loss{suffix}")
        for col in accuracy_columns(df):
            if rows[col].notna().any():
                ax_acc.plot(rows["iter"], rows[col], "o-", ms=3, lw=1.5,
                            label=f"test {col.removeprefix('out_')}{suffix}")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title(title or "Learning curves")
    if len(train) and (train["loss"] > 0).all():
        ax_loss.set_yscale("log")
    ax_acc.set_xlabel("iteration")
    ax_acc.set_ylabel("test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    if not ax_acc.get_lines():
        ax_acc.text(0.5, 0.5, "no test accuracy in this run", ha="center", va="center",
                    transform=ax_acc.transAxes)
    return fig


def plot_learning_curves(metrics: pd.DataFrame | str | os.PathLike,
                         out_path: str | os.PathLike, *, title: str | None = None,
                         smoothing: float = 0.25, dpi: int = 100) -> Path:
    """Draw the learning-curve figure as a PNG at `out_path` (written atomically)."""
    import matplotlib.pyplot as plt

    fig = learning_curve_figure(metrics, title=title, smoothing=smoothing)
    try:
        buf = io.BytesIO()
        # No Software/date metadata: the same metrics give the same PNG bytes.
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    atomic_write_bytes(out_path, buf.getvalue())
    return Path(out_path)


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


def plot_comparison(runs: Mapping[str, str | os.PathLike], out: str | os.PathLike,
                    title: str = "") -> Path:
    """Compare training runs (label -> metrics CSV) in one PNG at `out`: every run's
    training loss and test accuracy against iteration, and each run's final test
    accuracy as a bar. Same metrics, same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc, ax_final) = plt.subplots(3, 1, figsize=(9, 11),
                                                    constrained_layout=True)
    finals = []
    for label, path in runs.items():
        df = read_metrics(path)
        train = df[df["kind"] == "train"].sort_values("iter", kind="stable")
        tests = df[(df["kind"] == "test") & (df["net"] == 0)].sort_values("iter", kind="stable")
        line, = ax_loss.plot(train["iter"], train["loss"], lw=1, label=label)
        accuracy = next((c for c in accuracy_columns(df) if tests[c].notna().any()), None)
        if accuracy is not None:
            ax_acc.plot(tests["iter"], tests[accuracy], "o-", ms=3, lw=1.5,
                        color=line.get_color(), label=label)
        final = tests[accuracy].dropna() if accuracy is not None else pd.Series(dtype=float)
        finals.append((label, float(final.iloc[-1]) if len(final) else math.nan,
                       line.get_color()))
    ax_loss.set_title(title or "Training runs compared")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_ylabel("test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    positions = np.arange(len(finals))
    ax_final.barh(positions, [f[1] for f in finals], color=[f[2] for f in finals])
    ax_final.set_yticks(positions, [f[0] for f in finals], fontsize="small")
    ax_final.invert_yaxis()
    ax_final.set_xlabel("final test accuracy")
    known = [f[1] for f in finals if not math.isnan(f[1])]
    if known:  # zoom on the differences: from a little below the worst to 1
        ax_final.set_xlim(max(0.0, min(known) - 0.05), 1.0)
    for y, (_, acc, _) in zip(positions, finals):
        if not math.isnan(acc):
            ax_final.text(acc, y, f" {acc:.4f}", va="center", fontsize="small")
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    finally:
        plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)

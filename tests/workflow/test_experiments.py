"""Experiments declared in config.yaml: per-model overrides and fine-tuning weights (recorded
in the effective solver; a change reruns that training only), sweeps over a grid (one model
per point, a summary table and a comparison plot, byte-identical on a rerun), and `targets`."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_workflow import make_tiny_workflow, planned_rules, snakemake

from pipeline_lib.proto.prototxt import read_solver


def edit_config(root: Path, change) -> None:
    config = yaml.safe_load((root / "config.yaml").read_text())
    change(config)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # a run of three tiny trainings and a dry run: about 10 s unloaded
def test_overrides_and_weights_rerun_exactly_that_training(tmp_path):
    root = make_tiny_workflow(tmp_path / "wf")

    def two_more_models(config):
        config["models"]["other"] = {"solver": "small/solver.prototxt"}
        config["models"]["tuned"] = {"solver": "small/solver.prototxt",
                                     "weights": "results/small_iter_10.caffemodel",
                                     "overrides": {"base_lr": 0.01, "batch_size": 5}}
        config["targets"] = ["results/small_iter_10.caffemodel",
                             "results/other_iter_10.caffemodel",
                             "results/tuned_iter_10.caffemodel"]

    edit_config(root, two_more_models)
    done = snakemake(root, cores=2)  # rule all: the config's targets
    assert done.returncode == 0, done.stdout[-4000:]
    tuned = read_solver(root / "results/tuned_iter_10.solver.prototxt")
    assert list(tuned.weights) == ["results/small_iter_10.caffemodel"]
    assert tuned.base_lr == pytest.approx(0.01)
    batches = {layer.include[0].phase: layer.data_param.batch_size
               for layer in tuned.net_param.layer if layer.type == "Data"}
    assert batches == {0: 5, 1: 20}  # TRAIN: the override; TEST: the net's own

    edit_config(root, lambda c: c["models"]["small"].update(overrides={"base_lr": 0.02}))
    plan = snakemake(root, "-n")
    assert plan.returncode == 0, plan.stdout[-4000:]
    # small's training, and tuned's (it starts from small's model); not other's
    assert planned_rules(plan.stdout).count("train") == 2
    assert sorted(re.findall(r"wildcards: model=(\w+), iter=10", plan.stdout)) == [
        "small", "tuned"]
    assert "Params have changed since last execution" in plan.stdout


def test_a_bad_override_is_one_message_before_any_job(tmp_path):
    root = make_tiny_workflow(tmp_path / "wf")
    edit_config(root, lambda c: c["models"]["small"].update(overrides={"base_lrr": 0.1}))
    done = snakemake(root, "-n", "results/small_iter_10.caffemodel")
    assert done.returncode == 1
    assert ("config models.small.overrides: 'base_lrr' is not a SolverParameter field "
            "(did you mean base_lr?)") in done.stdout


@pytest.mark.slow  # eight tiny trainings in two Snakemake runs: about 25 s
def test_a_sweep_gives_a_summary_and_a_plot_and_reruns_byte_identical(tmp_path):
    root = make_tiny_workflow(tmp_path / "wf")
    edit_config(root, lambda c: c.update(sweeps={"tiny": {
        "model": "small", "iterations": 6, "overrides": {"test_interval": 3},
        "grid": {"base_lr": [0.05, 0.1], "momentum": [0.8, 0.9]}}}))
    target = "results/sweeps/tiny/summary.csv"
    sweep = root / "results/sweeps/tiny"

    def run() -> dict[str, str]:
        done = snakemake(root, "--forceall", target, cores=2)
        assert done.returncode == 0, done.stdout[-4000:]
        files = [*sweep.glob("*/*/small_iter_6.caffemodel"), sweep / "comparison.png"]
        return {str(p.relative_to(sweep)): sha256(p) for p in files}

    first = run()
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(first) == 5 and "base_lr~0.1/momentum~0.8/small_iter_6.caffemodel" in first
    assert list(summary.columns) == ["base_lr", "momentum", "test_accuracy", "test_loss",
                                     "train_loss", "wall_seconds"]
    assert summary[["base_lr", "momentum"]].values.tolist() == [
        [0.05, 0.8], [0.05, 0.9], [0.1, 0.8], [0.1, 0.9]]
    assert summary["test_accuracy"].between(0, 1).all() and (summary["wall_seconds"] > 0).all()
    assert summary["test_loss"].nunique() == 4  # the points differ
    point = read_solver(sweep / "base_lr~0.1/momentum~0.9/small_iter_6.solver.prototxt")
    assert (point.base_lr, point.test_interval, point.max_iter) == (pytest.approx(0.1), 3, 6)
    assert (sweep / "comparison.png").read_bytes()[:4] == b"\x89PNG"

    assert run() == first  # same seed, same bytes: models and plot
    again = pd.read_csv(sweep / "summary.csv")
    results = ["test_accuracy", "test_loss", "train_loss"]
    assert again.drop(columns="wall_seconds").equals(summary.drop(columns="wall_seconds"))
    assert again[results].equals(summary[results])

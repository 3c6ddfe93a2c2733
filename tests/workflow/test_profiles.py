"""The Snakemake profiles: settings, and dry runs through them (no SLURM needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from tiny_workflow import REPO, make_tiny_workflow, planned_rules, snakemake

PROFILES = REPO / "workflow" / "profiles"


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def job_resources(dry_run_output: str, rule: str) -> dict[str, str]:
    """The `resources:` line of `rule`'s job in a dry run, as a dict."""
    block = re.search(rf"rule {rule}:\n(.*?)\n\n", dry_run_output + "\n\n", re.S)
    assert block, f"no {rule} job in:\n{dry_run_output[-3000:]}"
    line = re.search(r"resources: (.*)", block.group(1)).group(1)
    return dict(item.split("=", 1) for item in line.split(", "))


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    return make_tiny_workflow(tmp_path_factory.mktemp("profiles") / "wf")


def test_profiles_agree_on_training_threads():
    # The BLAS thread count decides the model's bits: cluster and local runs use the same.
    slurm, local = profile("slurm"), profile("local")
    assert slurm["set-threads"]["train"] == local["set-threads"]["train"] == 2
    assert slurm["executor"] == "slurm"
    assert {"mem_mb", "runtime"} <= set(slurm["default-resources"])
    assert "cpus_per_task" not in slurm["default-resources"]  # it would override threads
    assert {"mem_mb", "runtime"} <= set(slurm["set-resources"]["train"])
    assert local["cores"] >= local["set-threads"]["train"]


def test_every_rule_named_in_a_profile_exists(workflow):
    done = snakemake(workflow, "--list-rules", cores=None)
    assert done.returncode == 0, done.stdout[-3000:]
    rules = set(done.stdout.split())
    for name in ("slurm", "local"):
        settings = profile(name)
        named = set(settings.get("set-threads", {})) | set(settings.get("set-resources", {}))
        assert named <= rules, f"{name}: unknown rules {sorted(named - rules)}"


def test_slurm_profile_dry_run_plans_the_lenet_run(workflow):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    done = snakemake(workflow, "-n", "--profile", str(PROFILES / "slurm"),
                     "results/lenet_iter_500.caffemodel", cores=None)
    assert done.returncode == 0, done.stdout[-4000:]
    assert sorted(planned_rules(done.stdout)) == ["convert_idx", "convert_idx",
                                                  "fetch_idx", "train"]
    train = job_resources(done.stdout, "train")
    assert train["mem_mb"] == "8000" and train["runtime"] == "720" and train["gpu"] == "0"


def test_slurm_profile_asks_for_a_gpu_when_training_on_one(workflow):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    done = snakemake(workflow, "-n", "--profile", str(PROFILES / "slurm"),
                     "results/small_iter_10.caffemodel",
                     "--config", 'train={"solver_mode": "GPU"}', cores=None)
    assert done.returncode == 0, done.stdout[-4000:]
    assert job_resources(done.stdout, "train")["gpu"] == "1"


def test_local_profile_dry_run(workflow):
    done = snakemake(workflow, "-n", "--profile", str(PROFILES / "local"),
                     "results/small_iter_10_curves.png", cores=None)
    assert done.returncode == 0, done.stdout[-4000:]
    assert planned_rules(done.stdout) == ["train", "plot_curves"]
    assert job_resources(done.stdout, "train")["gpu"] == "0"

"""The workflow runs from any working directory and as a Snakemake module: files shipped with
it (models/, config.yaml, scripts, schemas) are found beside the Snakefile, data and results
are the working directory's."""

from __future__ import annotations

import json
import shutil

import pytest
from tiny_workflow import REPO, make_tiny_workflow, planned_rules, snakemake

LENET_RULES = ["fetch_idx", "convert_idx", "convert_idx", "train", "evaluate",
               "plot_curves", "all"]


def assert_lenet_dag(done):
    assert done.returncode == 0, done.stdout[-4000:]
    assert sorted(planned_rules(done.stdout)) == sorted(LENET_RULES)
    # the solver and its net come from the workflow; the databases from the working dir
    assert f"input: {REPO}/models/lenet/lenet_solver.prototxt, " \
           f"{REPO}/models/lenet/lenet_train_test.prototxt, data/mnist/mnist_train_lmdb" \
           in done.stdout


def test_the_lenet_target_from_another_directory(tmp_path):
    work = tmp_path / "work"
    done = snakemake(tmp_path, "-s", str(REPO / "Snakefile"), "-d", str(work), "-n")
    assert_lenet_dag(done)
    assert (work / ".snakemake").is_dir() and not (tmp_path / ".snakemake").exists()


def test_the_lenet_target_through_a_module(tmp_path):
    (tmp_path / "Snakefile").write_text(f"""
configfile: "{REPO}/config.yaml"


module caffe:
    snakefile:
        "{REPO}/Snakefile"
    config:
        config


use rule * from caffe
""")
    assert_lenet_dag(snakemake(tmp_path, "-n"))


@pytest.mark.slow  # a Snakemake run: about 6 s
def test_a_training_run_from_another_directory(tmp_path):
    """The tiny workflow's config and model files stay beside its Snakefile; the working
    directory holds only its data, and gets the results."""
    workflow = make_tiny_workflow(tmp_path / "wf")
    work = tmp_path / "work"
    shutil.move(workflow / "db", work / "db")
    done = snakemake(tmp_path, "-s", str(workflow / "Snakefile"), "-d", str(work),
                     "results/small_iter_10_eval.json")
    assert done.returncode == 0, done.stdout[-4000:]
    assert (work / "results/small_iter_10.caffemodel").is_file()
    assert json.loads((work / "results/small_iter_10_eval.json").read_text())["count"] == 100
    assert not (workflow / "results").exists()
    record = json.loads((work / "results/small_iter_10.provenance.json").read_text())
    assert record["solver"] == str(workflow / "small/solver.prototxt")

"""Train, curves, evaluate and report rules on a tiny workflow copy: reruns, report contents."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from tiny_workflow import REPO, make_tiny_workflow, planned_rules, snakemake

sys.path.insert(0, str(REPO / "bench"))
from report_screenshot import (  # noqa: E402
    copy_showing_result,
    find_chromium,
    rendered_dom,
    screenshot,
    shows_png,
)

pytestmark = pytest.mark.slow  # Snakemake runs: about 40 s in all

CURVES = "results/small_iter_10_curves.png"
MODEL = "results/small_iter_10.caffemodel"
HEATMAP = "results/small_iter_10_confusion.png"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The tiny workflow after `snakemake <curves> <heatmap>`: trained, plotted, evaluated."""
    root = make_tiny_workflow(tmp_path_factory.mktemp("tiny") / "wf")
    done = snakemake(root, CURVES, HEATMAP)
    assert done.returncode == 0, done.stdout[-4000:]
    return root


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained workflow (times kept, so nothing looks newer)."""
    return Path(shutil.copytree(trained, tmp_path / "wf", symlinks=True))


def dry_run(root: Path, *args: str) -> tuple[list[str], str]:
    done = snakemake(root, "-n", *args)
    assert done.returncode == 0, done.stdout[-4000:]
    return planned_rules(done.stdout), done.stdout


def test_outputs_and_nothing_left_to_do(run):
    for name in ("small_iter_10.caffemodel", "small_iter_10.provenance.json",
                 "small_iter_10_curves.png", "small_iter_10_final_metrics.json",
                 "small_iter_10_final_metrics.html"):
        assert (run / "results" / name).is_file(), name
    record = json.loads((run / "results/small_iter_10.provenance.json").read_text())
    assert record["config"]["models"] == {"small": {"solver": "small/solver.prototxt"}}
    assert record["config"]["train"] == {"resume": "auto", "solver_mode": ""}
    assert record["texts"]["small/net.prototxt"] == (run / "small/net.prototxt").read_text()
    scores = json.loads((run / "results/small_iter_10_final_metrics.json").read_text())
    assert scores["test"][0]["iter"] == 10 and 0 <= scores["test"][0]["accuracy"] <= 1
    assert dry_run(run, CURVES)[0] == []


def test_editing_the_net_reruns_training(run):
    net = run / "small/net.prototxt"
    net.write_text(net.read_text().replace("num_output: 10", "num_output: 10 bias_term: true"))
    planned, out = dry_run(run, MODEL)
    assert planned == ["train"]
    assert re.search(r"reason: Updated input files: .*small/net\.prototxt", out), out[-2000:]


def test_editing_the_solver_reruns_training(run):
    solver = run / "small/solver.prototxt"
    solver.write_text(solver.read_text().replace("base_lr: 0.05", "base_lr: 0.04"))
    planned, out = dry_run(run, CURVES)
    assert planned == ["train", "plot_curves"]
    assert re.search(r"reason: Updated input files: .*small/solver\.prototxt", out)


def test_changing_the_runs_config_reruns_training(run):
    planned, out = dry_run(run, MODEL, "--config", 'train={"resume": "none"}')
    assert planned == ["train"] and "Params have changed" in out


def test_editing_other_rules_does_not_rerun_training(run):
    script = run / "workflow/scripts/plot_curves.py"
    script.write_text(script.read_text().replace(
        'print(f"{smk.output.curves}: written', 'print(f"{smk.output.curves}: drawn'))
    for rules in ("datasets.smk", "time.smk"):  # rules outside this DAG
        path = run / "workflow/rules" / rules
        conda = 'conda:\n        "../envs/pipeline.yaml"\n'
        text = path.read_text()
        assert conda in text
        path.write_text(text.replace(conda, conda + "    threads: 1\n", 1))
    assert dry_run(run, MODEL)[0] == []
    planned, out = dry_run(run, CURVES)
    assert planned == ["plot_curves"] and "Code has changed" in out


@pytest.fixture(scope="module")
def report(trained) -> Path:
    done = snakemake(trained, "--report", "report.html", CURVES, HEATMAP)
    assert done.returncode == 0, done.stdout[-4000:]
    return trained / "report.html"


def report_object(html: str, name: str) -> dict:
    """One of the report's embedded `var <name> = {...};` objects."""
    match = re.search(rf"var {name} = (\{{.*?\}});\n", html, re.S)
    assert match, f"report has no {name}"
    return json.loads(match.group(1))


def test_report_holds_curves_scores_and_provenance(report):
    html = report.read_text()
    categories = report_object(html, "categories")
    assert categories["Training"]["small"] == [CURVES, "results/small_iter_10_final_metrics.html"]
    assert "results/small_iter_10.provenance.json" in str(categories["Provenance"])
    results = report_object(html, "results")
    assert results[CURVES]["data_uri"].startswith("data:image/png")
    assert "Learning curves of <strong>small</strong>" in results[CURVES]["caption"]
    assert results["results/small_iter_10_final_metrics.html"]["data_uri"].startswith(
        "data:text/html")


def test_report_holds_the_confusion_heatmap(report):
    html = report.read_text()
    assert report_object(html, "categories")["Evaluation"]["small"] == [HEATMAP]
    heatmap = report_object(html, "results")[HEATMAP]
    assert heatmap["data_uri"].startswith("data:image/png")
    assert "Confusion matrix of <strong>small</strong> after 10" in heatmap["caption"]
    assert "results/small_iter_10_eval.json" in heatmap["caption"]


@pytest.mark.browser
def test_report_renders_the_curves_in_chromium(report, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed")
    shown = copy_showing_result(report, "_curves.png", tmp_path / "shown.html")
    assert shows_png(rendered_dom(chromium, shown), "_curves.png")
    png = screenshot(chromium, shown, tmp_path / "shown.png", size="1280,900")
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (1280, 900)
        # the plot's green test curves are on screen (this short run has too few display
        # points for a smoothed loss)
        rgb = img.convert("RGB")
        assert any(abs(r - 44) < 20 and abs(g - 160) < 25 and abs(b - 44) < 20
                   for _, (r, g, b) in rgb.getcolors(maxcolors=1 << 20))


@pytest.mark.browser
def test_report_renders_the_confusion_matrix_in_chromium(report, tmp_path):
    # issue 13's evaluation, as the report shows it: the heatmap with the diagonal masked
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed")
    shown = copy_showing_result(report, "_confusion.png", tmp_path / "shown.html")
    assert shows_png(rendered_dom(chromium, shown), "_confusion.png")
    png = screenshot(chromium, shown, tmp_path / "shown.png", size="1280,900")
    from PIL import Image

    with Image.open(png) as img:
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
    # the masked diagonal's grey (Matplotlib's Greys at 1/4: 217, 217, 217) is on screen
    assert any(max(abs(c - 217) for c in rgb) <= 3 for _, rgb in colors)

"""A tiny copy of the workflow for Snakemake tests.

The repository's Snakefile, rules, scripts, profiles, config and models are
copied into a temp dir (so tests may edit them), with one more model,
`small`, whose Data layers read copies of Caffe's 100-image LMDB. `small`
trains in about a second. The scripts import pipeline_lib as installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN_LMDB = REPO / "tests" / "data" / "golden" / "caffe_train100_lmdb"

NET = """name: "small"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { scale: 0.00390625 }
        data_param { source: "db/train_lmdb" batch_size: 10 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
        transform_param { scale: 0.00390625 }
        data_param { source: "db/test_lmdb" batch_size: 20 backend: LMDB } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy"
        include { phase: TEST } }
"""

SOLVER = """net: "small/net.prototxt"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 power: 0.75
display: 2 max_iter: 10 test_iter: 2 test_interval: 5 snapshot: 0 random_seed: 1
solver_mode: CPU
"""


def make_tiny_workflow(root: Path) -> Path:
    """Build the workflow copy in `root` (created); returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    shutil.copytree(REPO / "workflow", root / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"]["small"] = {"solver": "small/solver.prototxt"}
    shutil.copytree(REPO / "models", root / "models")  # the configured models' prototxt
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "small").mkdir()
    (root / "small" / "net.prototxt").write_text(NET)
    (root / "small" / "solver.prototxt").write_text(SOLVER)
    for split in ("train", "test"):
        shutil.copytree(GOLDEN_LMDB, root / "db" / f"{split}_lmdb")
    return root


def snakemake(workdir: Path, *args: str, cores: int | None = 1,
              timeout: int = 300) -> subprocess.CompletedProcess:
    """`snakemake --cores 1 <args>` in `workdir`; stdout and stderr together in `.stdout`.

    cores=None leaves --cores out (a profile sets it, or an executor needs none).
    """
    cmd = [sys.executable, "-m", "snakemake", *(["--cores", str(cores)] if cores else []), *args]
    return subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, check=False)


def planned_rules(dry_run_output: str) -> list[str]:
    """Rule names of the jobs a dry run (`-n`) lists, in its order."""
    return [line.split()[1].rstrip(":") for line in dry_run_output.splitlines()
            if line.startswith(("rule ", "localrule "))]

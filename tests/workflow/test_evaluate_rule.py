"""The evaluate rule end to end: snakemake in a temp dir trains a tiny LeNet, then scores it.

Asking for results/<model>_iter_<N>_eval.json alone must build the data and the
model first (the rule takes the weights from the train rule's output).
"""

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline_lib.api import Net
from pipeline_lib.data.idx import read_idx, write_idx

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"
TARGET = "results/tiny_iter_3_eval.json"

SOLVER = """
net: "models/tiny/train_test.prototxt"
test_iter: 1
test_interval: 1000
test_initialization: false
base_lr: 0.01
momentum: 0.9
lr_policy: "fixed"
display: 0
max_iter: 3
snapshot_prefix: "results/tiny"
solver_mode: CPU
random_seed: 1
"""


def _workdir(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder with a tiny LeNet solver, and a config whose MNIST is 100 golden digits."""
    with np.load(GOLDEN / "caffe_lenet_test100_blobs.npz") as blobs:
        test_images, test_labels = blobs["data"][:20], blobs["label"][:20]
    arrays = {
        "train-images-idx3-ubyte": read_idx(GOLDEN / "train100-images-idx3-ubyte")[:32],
        "train-labels-idx1-ubyte": read_idx(GOLDEN / "train100-labels-idx1-ubyte")[:32],
        "t10k-images-idx3-ubyte": test_images,
        "t10k-labels-idx1-ubyte": test_labels,
    }
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for name, array in arrays.items():
        write_idx(array, tmp_path / name)
        raw = (tmp_path / name).read_bytes()
        (src / f"{name}.gz").write_bytes(gzip.compress(raw))
        files[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    run = tmp_path / "run"
    (run / "models/tiny").mkdir(parents=True)
    net = (REPO / "models/lenet/lenet_train_test.prototxt").read_text()
    net = net.replace("batch_size: 64", "batch_size: 8").replace("batch_size: 100",
                                                                 "batch_size: 6")
    (run / "models/tiny/train_test.prototxt").write_text(net)
    (run / "models/tiny/solver.prototxt").write_text(SOLVER)
    config = {
        "datasets": {"mnist": {"format": "idx", "files": files,
                               "sources": [{"type": "local", "path": str(src)}]}},
        "models": {"tiny": {"solver": "models/tiny/solver.prototxt"}},
        "evaluate": {"top_k": [1, 3]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return run, tmp_path / "config.yaml"


def _snakemake(run: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(run), "--configfile", str(config), "--cores", "1", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_eval_target_trains_then_scores_the_model(tmp_path):
    run, config = _workdir(tmp_path)
    plan = _snakemake(run, config, "-n", TARGET)
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = plan.stdout + plan.stderr
    for rule in ("fetch_idx", "convert_idx", "train", "evaluate"):
        assert f"rule {rule}:" in planned, rule

    result = _snakemake(run, config, TARGET)
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads((run / TARGET).read_text())
    assert doc["model"] == "tiny" and doc["iterations"] == 3 and doc["count"] == 20
    assert doc["weights"] == "results/tiny_iter_3.caffemodel"
    assert doc["source"] == "data/mnist/mnist_test_lmdb" and doc["batch_size"] == 6
    assert set(doc["top_k"]) == {"1", "3"}

    # the confusion matrix is what the trained weights predict for the 20 test digits
    confusion = pd.read_csv(run / "results/tiny_iter_3_confusion.csv", index_col=0)
    with np.load(GOLDEN / "caffe_lenet_test100_blobs.npz") as blobs:
        images, labels = blobs["data"][:20], blobs["label"][:20]
    net = Net(REPO / "models/lenet/lenet.prototxt", run / "results/tiny_iter_3.caffemodel")
    predicted = net.forward(data=images[:, None] * np.float32(0.00390625))["prob"].argmax(axis=1)
    want = np.zeros((10, 10), np.int64)
    np.add.at(want, (labels.astype(int), predicted), 1)
    np.testing.assert_array_equal(confusion.to_numpy(), want)
    assert doc["accuracy"] == pytest.approx(np.trace(want) / 20)
    assert (run / "results/tiny_iter_3_confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "accuracy" in (run / "logs/evaluate/tiny_iter_3.log").read_text()

"""The MNIST rules end to end: snakemake in a temp dir on tiny IDX files from a local folder."""

import gzip
import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline_lib.data.db import open_db
from pipeline_lib.data.idx import write_idx
from pipeline_lib.proto.datum import datum_to_array, read_datum

REPO = Path(__file__).resolve().parents[2]
TARGETS = ["data/mnist/mnist_train_lmdb", "data/mnist/mnist_test_lmdb"]
COUNTS = {"train": 12, "test": 5}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny_mnist(tmp_path):
    """Gzipped tiny IDX files in tmp_path/src, a config pointing at them, and the arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (COUNTS["train"], 28, 28), np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, COUNTS["train"], np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (COUNTS["test"], 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, COUNTS["test"], np.uint8),
    }
    src = tmp_path / "src"
    files = {}
    for name, array in arrays.items():
        write_idx(array, tmp_path / name)
        raw = (tmp_path / name).read_bytes()
        (src / f"{name}.gz").parent.mkdir(exist_ok=True)
        (src / f"{name}.gz").write_bytes(gzip.compress(raw))
        files[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    config = {
        "download": {"connect_timeout": 2},
        "datasets": {"mnist": {
            "format": "idx",
            "files": files,
            "sources": [
                {"type": "http", "url": f"http://127.0.0.1:{_closed_port()}/mnist/"},
                {"type": "local", "path": str(src)},
            ],
        }},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config, arrays


def _snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config), "--cores", "1", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_mnist_lmdb_targets_build_then_nothing_to_do(tmp_path, tiny_mnist):
    config, _, arrays = tiny_mnist
    run = tmp_path / "run"
    first = _snakemake(run, config, *TARGETS)
    assert first.returncode == 0, first.stderr[-3000:]
    for split, prefix in (("train", "train"), ("test", "t10k")):
        with open_db(run / f"data/mnist/mnist_{split}_lmdb", "r", "lmdb") as reader:
            assert len(reader) == COUNTS[split]
            datum = read_datum(reader, 0)
            assert datum.label == arrays[f"{prefix}-labels-idx1-ubyte"][0]
            np.testing.assert_array_equal(
                datum_to_array(datum), arrays[f"{prefix}-images-idx3-ubyte"][0][None]
            )
    download_log = (run / "logs/mnist/fetch.log").read_text()
    assert "unreachable" in download_log and "sha256 verified, from local folder" in download_log
    assert "wrote 12 records" in (run / "logs/mnist/convert_train_lmdb.log").read_text()

    second = _snakemake(run, config, *TARGETS)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Nothing to be done" in second.stdout + second.stderr


def test_download_failure_lists_sources_and_leaves_no_outputs(tmp_path, tiny_mnist):
    path, config, _ = tiny_mnist
    config["datasets"]["mnist"]["sources"][1]["path"] = str(tmp_path / "empty")
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    result = _snakemake(run, path, TARGETS[0])
    assert result.returncode != 0
    log = (run / "logs/mnist/fetch.log").read_text()
    assert "could not obtain train-images-idx3-ubyte" in log
    assert "/mnist/: unreachable" in log and f"local folder {tmp_path / 'empty'}" in log
    assert not (run / "data/mnist").exists() or not any((run / "data/mnist").iterdir())


def test_config_is_validated(tmp_path, tiny_mnist):
    path, config, _ = tiny_mnist
    config["backend"] = "rocksdb"
    path.write_text(yaml.safe_dump(config))
    result = _snakemake(tmp_path / "run", path, "-n", TARGETS[0])
    assert result.returncode != 0
    assert "rocksdb" in result.stderr + result.stdout


def test_lint_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile")],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr

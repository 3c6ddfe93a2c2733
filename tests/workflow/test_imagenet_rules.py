"""The ImageNet rules end to end on a tiny generated ImageNet: snakemake in a temp dir.

One command builds listings -> resized shards -> LMDB and LevelDB -> mean images and
trains CaffeNet for a few iterations on them, with the image size overridden in config
(72x72 images, 64x64 crops: the smallest CaffeNet takes is 63, for pool5 to keep 1x1).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from imagenet_tiny import CORRUPT, SYNSETS, make_tiny_imagenet

from pipeline_lib.data.db import open_db
from pipeline_lib.data.images import read_image
from pipeline_lib.data.listing import read_listing, read_synsets
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import read_mean_binaryproto
from pipeline_lib.proto.prototxt import read_binary, read_net, read_solver, write_prototxt

REPO = Path(__file__).resolve().parents[2]
SIZE, CROP = 72, 64


def _snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config), "--cores", "2", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def _config(tmp_path: Path, tiny, **dataset) -> Path:
    """The repository's config with the ilsvrc12 dataset pointed at the tiny data."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    section = config["datasets"]["ilsvrc12"]
    section.update(
        train_root=str(tiny.train_root), val_root=str(tiny.val_root),
        train_listing=str(tiny.base / "train.txt"), val_listing=str(tiny.base / "val.txt"),
        synset_words=str(tiny.base / "synset_words.txt"), on_error="skip",
    )  # fmt: skip
    section["resize"].update(height=SIZE, width=SIZE, shards=3)
    for key, value in dataset.items():
        if isinstance(value, dict):
            section[key].update(value)
        else:
            section[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _tiny_caffenet(tmp_path: Path) -> Path:
    """CaffeNet's files patched in memory for tiny images: crop, batch, 3 classes."""
    net = read_net(REPO / "models/caffenet/train_val.prototxt")
    for layer in net.layer:
        if layer.type == "Data":
            layer.transform_param.crop_size = CROP
            layer.data_param.batch_size = 4
        if layer.name == "fc8":
            layer.inner_product_param.num_output = len(SYNSETS)
    solver = read_solver(REPO / "models/caffenet/solver.prototxt")
    solver.net = str(tmp_path / "models/train_val.prototxt")
    solver.test_iter[:] = [1]
    solver.test_interval = 2
    solver.display = 1
    solver.snapshot = 0
    (tmp_path / "models").mkdir()
    write_prototxt(net, solver.net)
    write_prototxt(solver, tmp_path / "models/solver.prototxt")
    return tmp_path / "models/solver.prototxt"


def _records(path: Path) -> list[tuple[bytes, bytes]]:
    with open_db(path, "r") as reader:
        return list(reader)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_imagenet(tmp_path_factory.mktemp("imagenet"))


@pytest.mark.slow
@pytest.mark.leveldb
def test_chain_builds_databases_means_and_trains_caffenet(tmp_path, tiny):
    config_path = _config(tmp_path, tiny)
    config = yaml.safe_load(config_path.read_text())
    config["models"] = {"caffenet_tiny": {"solver": str(_tiny_caffenet(tmp_path))}}
    config["sweeps"] = {}  # the shipped sweep trains lenet, which this config leaves out
    config_path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    targets = ["ilsvrc12", "data/ilsvrc12/ilsvrc12_train_leveldb_mean.binaryproto",
               "results/caffenet_tiny_iter_2.caffemodel"]
    first = _snakemake(run, config_path, *targets)
    assert first.returncode == 0, first.stderr[-4000:]
    data = run / "data/ilsvrc12"

    # resize: 3 shards, gathered; the corrupt file skipped and reported, never silently
    assert len(list((run / "logs/ilsvrc12").glob("resize_train_*-of-3.log"))) == 3
    assert not (data / "resized/shards").exists() or not any((data / "resized/shards").rglob("*.*"))
    resized = read_listing(data / "resized/train.txt")
    assert [e.path for e in resized] == [p for p, _ in tiny.train if p != CORRUPT]
    skipped = (data / "resized/train_skipped.tsv").read_text().splitlines()
    assert len(skipped) == 2 and skipped[1].split("\t")[1] == CORRUPT

    # the databases: same records in LMDB and LevelDB, shuffled, all 72x72x3
    lmdb_records = _records(data / "ilsvrc12_train_lmdb")
    assert lmdb_records == _records(data / "ilsvrc12_train_leveldb")
    assert len(lmdb_records) == len(resized) == 12
    assert [k.split(b"_", 1)[1].decode() for k, _ in lmdb_records] != [e.path for e in resized]
    assert len(_records(data / "ilsvrc12_val_lmdb")) == len(tiny.val)

    # the mean is NumPy's mean of the resized images (BGR, C x H x W), from either backend
    stack = np.stack([read_image(data / "resized/train" / e.path) for e in resized])
    expected = stack.mean(axis=0, dtype=np.float64).astype(np.float32)
    assert expected.shape == (3, SIZE, SIZE)
    for backend in ("lmdb", "leveldb"):
        mean = read_mean_binaryproto(data / f"ilsvrc12_train_{backend}_mean.binaryproto")
        np.testing.assert_array_equal(mean, expected)
    means = stack.mean(axis=(0, 2, 3))
    log = (run / "logs/ilsvrc12/mean_train_lmdb.log").read_text()
    assert f"mean_value channel [0]: {means[0]:.6f}" in log

    # CaffeNet trained on them for 2 iterations, through the training rule
    model = read_binary(run / "results/caffenet_tiny_iter_2.caffemodel", caffe_pb2.NetParameter)
    blobs = {layer.name: layer.blobs for layer in model.layer if layer.blobs}
    assert list(blobs["conv2"][0].shape.dim) == [256, 48, 5, 5]  # group 2
    assert list(blobs["fc8"][0].shape.dim) == [len(SYNSETS), 4096]
    train_log = (run / "logs/train/caffenet_tiny_iter_2.log").read_text()
    assert "Iteration 1" in train_log and "loss = " in train_log

    second = _snakemake(run, config_path, *targets)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Nothing to be done" in second.stdout + second.stderr


def test_listings_from_class_folders_without_resizing(tmp_path, tiny):
    config = _config(tmp_path, tiny, listings="folders", synset_words="",
                     resize={"enabled": False}, convert={"shuffle": False})
    val = tmp_path / "val_tree"  # a class-per-folder validation tree
    for rel, label in tiny.val:
        target = val / sorted(SYNSETS)[label] / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((tiny.val_root / rel).read_bytes())
    text = config.read_text().replace(str(tiny.val_root), str(val))
    config.write_text(text)
    run = tmp_path / "run"
    result = _snakemake(run, config, "data/ilsvrc12/ilsvrc12_train_lmdb",
                        "data/ilsvrc12/ilsvrc12_val_lmdb")
    assert result.returncode == 0, result.stderr[-4000:]
    synsets = read_synsets(run / "data/ilsvrc12/ilsvrc12_synset_words.txt")
    assert synsets.ids == tuple(sorted(SYNSETS))
    listing = read_listing(run / "data/ilsvrc12/ilsvrc12_train.txt", len(synsets))
    assert sorted((e.path, e.label) for e in listing) == sorted(tiny.train)
    assert not (run / "data/ilsvrc12/resized").exists()
    records = _records(run / "data/ilsvrc12/ilsvrc12_train_lmdb")
    assert len(records) == len(tiny.train) - 1
    first = caffe_pb2.Datum.FromString(records[0][1])  # unshuffled: listing order, own size
    path = records[0][0].split(b"_", 1)[1].decode()
    assert path == listing[0].path
    assert (first.channels, first.height, first.width) == read_image(
        tiny.train_root / path).shape
    skipped = (run / "data/ilsvrc12/ilsvrc12_train_lmdb_skipped.tsv").read_text()
    assert CORRUPT in skipped
    val_records = _records(run / "data/ilsvrc12/ilsvrc12_val_lmdb")
    labels = sorted(caffe_pb2.Datum.FromString(v).label for _, v in val_records)
    assert labels == sorted(label for _, label in tiny.val)


def test_unreadable_image_fails_the_run_naming_it(tmp_path, tiny):
    config = _config(tmp_path, tiny, on_error="fail")
    run = tmp_path / "run"
    result = _snakemake(run, config, "data/ilsvrc12/ilsvrc12_train_lmdb")
    assert result.returncode != 0
    line = 1 + [p for p, _ in tiny.train].index(CORRUPT)
    logs = "".join(p.read_text() for p in (run / "logs/ilsvrc12").glob("resize_train_*.log"))
    assert f"train.txt:{line}: {tiny.train_root / CORRUPT}: cannot read image" in logs
    assert not (run / "data/ilsvrc12/ilsvrc12_train_lmdb").exists()


def test_listing_path_outside_the_root_is_refused(tmp_path, tiny):
    bad = tmp_path / "bad.txt"
    bad.write_text("n01000000/n01000000_0.JPEG 0\n../../etc/passwd 1\n")
    config = _config(tmp_path, tiny, train_listing=str(bad))
    run = tmp_path / "run"
    result = _snakemake(run, config, "data/ilsvrc12/ilsvrc12_train_lmdb")
    assert result.returncode != 0
    # Every shard reads the listing; Snakemake stops scheduling after the first failure,
    # so whichever shard ran first holds the message.
    logs = "".join(p.read_text() for p in (run / "logs/ilsvrc12").glob("resize_train_*.log"))
    assert f"{bad}:2: image path '../../etc/passwd' leaves the image root" in logs


def test_scatter_count_is_set_at_run_time(tmp_path, tiny):
    config = _config(tmp_path, tiny)
    result = _snakemake(tmp_path / "run", config, "data/ilsvrc12/ilsvrc12_val_lmdb", "-n",
                        "--set-scatter", "ilsvrc12_resize=5")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "5-of-5" in out and "6-of-" not in out and "3-of-3" not in out


def test_time_rule_writes_per_layer_table(tmp_path, tiny):
    run = tmp_path / "run"
    run.mkdir()
    (run / "models").symlink_to(REPO / "models")
    target = "results/caffenet_train_val_time_batch1.txt"
    config = _config(tmp_path, tiny)
    settings = yaml.safe_load(config.read_text())
    settings["time"] = {"iterations": 2}
    config.write_text(yaml.safe_dump(settings))
    result = _snakemake(run, config, target)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (run / target).read_text()
    for layer in ("conv2 ", "norm1 ", "fc6 ", "drop7 ", "loss "):
        assert layer in table
    assert "ms per batch of 1" in table and "mean of 2 iterations" in table
    rows = {line.split()[0]: line.split()[-2:] for line in table.splitlines()[1:-2]}
    assert float(rows["conv2"][0]) > 0 and float(rows["conv2"][1]) > 0  # forward, backward


@pytest.mark.parametrize("listings", ["given", "folders"])
def test_the_schema_wants_a_synset_file_for_given_listings(tmp_path, listings):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"]["ilsvrc12"].update(listings=listings, synset_words="")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = _snakemake(tmp_path / "run", path, "-n", "ilsvrc12")
    text = out.stdout + out.stderr
    if listings == "folders":  # the synsets are written from the train folders
        assert "Error validating config file" not in text
        return
    assert out.returncode != 0
    assert "Error validating config file" in text and "'' should be non-empty" in text
    assert "instance['datasets']['ilsvrc12']['synset_words']" in text
    assert "listings is 'given': name the synset_words.txt" in text

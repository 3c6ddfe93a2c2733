"""Your own datasets in config.yaml: snakemake in a temp dir builds them and trains on them.

Beside the tutorial's two datasets (mnist, ilsvrc12, from the repository's config) the
test declares `digits`, an IDX dataset whose .gz files sit in a local folder with no
sha256 in the config (so the first use records them in datasets.lock.yaml), and
`shapes`, a class-per-folder image dataset; then a tiny net trains on each.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline_lib.data.db import open_db
from pipeline_lib.data.idx import write_idx
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import read_mean_binaryproto
from pipeline_lib.proto.datum import datum_to_array, read_datum
from pipeline_lib.proto.prototxt import read_binary

REPO = Path(__file__).resolve().parents[2]
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SHAPES = ("circle", "square")  # class folders: labels 0 and 1 in ASCII order


def _net(name: str, train: str, test: str, mean: str = "") -> str:
    transform = f'mean_file: "{mean}"' if mean else "scale: 0.00390625"
    data = ("layer {{ name: \"data\" type: \"Data\" top: \"data\" top: \"label\" "
            "include {{ phase: {phase} }} transform_param {{ {transform} }} "
            "data_param {{ source: \"{source}\" batch_size: 4 backend: LMDB }} }}\n")
    return (f'name: "{name}"\n'
            + data.format(phase="TRAIN", transform=transform, source=train)
            + data.format(phase="TEST", transform=transform, source=test)
            + 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
              'inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }\n'
              'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
              'top: "loss" }\n'
              'layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" '
              'top: "accuracy" include { phase: TEST } }\n')


def _solver(net: str) -> str:
    return (f'net: "{net}"\nbase_lr: 0.01 momentum: 0.9 lr_policy: "fixed" display: 1\n'
            "max_iter: 3 test_iter: 1 test_interval: 3 snapshot: 0 random_seed: 1\n"
            "solver_mode: CPU\n")


def _snakemake(run: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(run), "--configfile", str(config), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def _digits(src: Path) -> dict[str, np.ndarray]:
    """Gzipped IDX files of 20 + 8 tiny 6x6 images in `src`; returns the arrays."""
    rng = np.random.default_rng(0)
    arrays = dict(zip(IDX_NAMES, (
        rng.integers(0, 256, (20, 6, 6), np.uint8), rng.integers(0, 10, 20, np.uint8),
        rng.integers(0, 256, (8, 6, 6), np.uint8), rng.integers(0, 10, 8, np.uint8))))
    src.mkdir(parents=True)
    for name, array in arrays.items():
        write_idx(array, src / name)
        (src / f"{name}.gz").write_bytes(gzip.compress((src / name).read_bytes()))
        (src / name).unlink()
    return arrays


def _shapes(root: Path) -> None:
    """Class-per-folder train and val trees of 10x10 PNGs (two classes)."""
    rng = np.random.default_rng(1)
    for split, count in (("train", 4), ("val", 2)):
        for shape in SHAPES:
            (root / split / shape).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (10, 10, 3), np.uint8)
                Image.fromarray(pixels).save(root / split / shape / f"{i}.png")


@pytest.fixture
def own(tmp_path):
    """The repository's config plus `digits` and `shapes`, two models, and a run folder."""
    arrays = _digits(tmp_path / "incoming")
    _shapes(tmp_path / "shapes")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"]["digits"] = {
        "format": "idx", "sources": [{"type": "local", "path": str(tmp_path / "incoming")}]}
    config["datasets"]["shapes"] = {
        "format": "images", "train_root": str(tmp_path / "shapes/train"),
        "val_root": str(tmp_path / "shapes/val"), "listings": "folders",
        "resize": {"height": 8, "width": 8, "shards": 2},
        "convert": {"shuffle": True, "seed": 3}}
    run = tmp_path / "run"
    (run / "nets").mkdir(parents=True)
    (run / "nets/digits.prototxt").write_text(_net(
        "digits", "data/digits/digits_train_lmdb", "data/digits/digits_test_lmdb"))
    (run / "nets/shapes.prototxt").write_text(_net(
        "shapes", "data/shapes/shapes_train_lmdb", "data/shapes/shapes_val_lmdb",
        mean="data/shapes/shapes_train_lmdb_mean.binaryproto"))
    for name in ("digits", "shapes"):
        (run / f"nets/{name}_solver.prototxt").write_text(_solver(f"nets/{name}.prototxt"))
    config["models"] = {name: {"solver": f"nets/{name}_solver.prototxt"}
                        for name in ("digits", "shapes")}
    config["sweeps"] = {}  # the shipped sweep trains lenet, which this config leaves out
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return run, path, arrays


@pytest.mark.slow
def test_own_idx_and_image_datasets_build_and_train(tmp_path, own):
    run, config, arrays = own
    targets = ["results/digits_iter_3.caffemodel", "results/shapes_iter_3.caffemodel"]
    first = _snakemake(run, config, *targets)
    assert first.returncode == 0, first.stderr[-4000:]

    # digits: decompressed from the local .gz files; their sha256 recorded on first use
    lock = yaml.safe_load((tmp_path / "datasets.lock.yaml").read_text())
    raw = {name: (run / "data/digits" / name).read_bytes() for name in IDX_NAMES}
    assert lock == {"datasets": {"digits": {
        name: hashlib.sha256(data).hexdigest() for name, data in raw.items()}}}
    with open_db(run / "data/digits/digits_test_lmdb", "r") as reader:
        assert len(reader) == 8
        datum = read_datum(reader, 7)
        assert datum.label == arrays["t10k-labels-idx1-ubyte"][7]
        np.testing.assert_array_equal(datum_to_array(datum),
                                      arrays["t10k-images-idx3-ubyte"][7][None])

    # shapes: synsets and listings from the folders, resized in 2 shards, with a mean
    synsets = (run / "data/shapes/shapes_synset_words.txt").read_text().split()
    assert synsets[::2] == list(SHAPES)
    assert len(list((run / "logs/shapes").glob("resize_train_*-of-2.log"))) == 2
    with open_db(run / "data/shapes/shapes_train_lmdb", "r") as reader:
        datums = [caffe_pb2.Datum.FromString(v) for _, v in reader]
    assert len(datums) == 8 and {(d.channels, d.height, d.width) for d in datums} == {(3, 8, 8)}
    assert sorted(d.label for d in datums) == [0] * 4 + [1] * 4
    stack = np.stack([datum_to_array(d) for d in datums]).astype(np.float64)
    mean = read_mean_binaryproto(run / "data/shapes/shapes_train_lmdb_mean.binaryproto")
    np.testing.assert_allclose(mean, stack.mean(axis=0), atol=1e-4)

    # a model trained on each
    for name, inputs in (("digits", 36), ("shapes", 192)):
        model = read_binary(run / f"results/{name}_iter_3.caffemodel", caffe_pb2.NetParameter)
        (ip,) = [layer for layer in model.layer if layer.name == "ip"]
        assert list(ip.blobs[0].shape.dim) == [10, inputs]
        assert "Iteration 3" in (run / f"logs/train/{name}_iter_3.log").read_text()

    second = _snakemake(run, config, *targets)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Nothing to be done" in second.stdout + second.stderr

    # a changed local file: the fetch reruns and fails, naming file and both hashes
    changed = tmp_path / "incoming/t10k-labels-idx1-ubyte.gz"
    labels = arrays["t10k-labels-idx1-ubyte"].copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx(labels, tmp_path / "changed")
    changed.write_bytes(gzip.compress((tmp_path / "changed").read_bytes()))
    third = _snakemake(run, config, *targets)
    assert third.returncode != 0
    found = hashlib.sha256((tmp_path / "changed").read_bytes()).hexdigest()
    expected = lock["datasets"]["digits"]["t10k-labels-idx1-ubyte"]
    log = (run / "logs/digits/fetch.log").read_text()
    assert (f"{changed}: sha256 {found} found, {expected} expected (recorded in "
            f"{tmp_path / 'datasets.lock.yaml'} on first use)") in log
    assert not (run / "data/digits/t10k-labels-idx1-ubyte").exists()


def _cifar_batch(path: Path, labels: list[int], seed: int) -> np.ndarray:
    """A CIFAR-10 binary batch of len(labels) random images; returns them (N, 3, 32, 32)."""
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 3, 32, 32), np.uint8)
    path.write_bytes(b"".join(bytes([label]) + image.tobytes()
                              for label, image in zip(labels, images)))
    return images


@pytest.mark.slow
def test_cifar_and_hdf5_datasets_build_and_a_net_reads_the_list(tmp_path):
    import h5py

    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    train = [_cifar_batch(root / f"data_batch_{i}.bin", [i, 9 - i], i) for i in range(1, 6)]
    _cifar_batch(root / "test_batch.bin", [3], 0)
    for name in ("a.h5", "b.h5"):
        with h5py.File(tmp_path / name, "w") as h5:
            h5["data"] = np.zeros((2, 1, 2, 2), np.float32)
            h5["label"] = np.zeros(2, np.float32)
    config = {"datasets": {
        "cifar10": {"format": "cifar", "root": str(root)},
        "toy": {"format": "hdf5", "splits": {"train": [str(tmp_path / "a.h5"),
                                                       str(tmp_path / "b.h5")]}}}}
    run = tmp_path / "run"
    (run / "nets").mkdir(parents=True)
    (run / "nets/toy.prototxt").write_text(
        'layer { name: "data" type: "HDF5Data" top: "data" top: "label" '
        'hdf5_data_param { source: "data/toy/toy_train.txt" batch_size: 2 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" '
        'top: "loss" }\n')
    (run / "nets/toy_solver.prototxt").write_text(_solver("nets/toy.prototxt"))
    config["models"] = {"toy": {"solver": "nets/toy_solver.prototxt"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # the HDF5 list is built because the net's HDF5Data layer names it
    done = _snakemake(run, tmp_path / "config.yaml", "cifar10", "results/toy_iter_3.caffemodel")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Iteration 3" in (run / "logs/train/toy_iter_3.log").read_text()
    with open_db(run / "data/cifar10/cifar10_train_lmdb", "r") as reader:
        assert reader.keys() == [b"%05d" % i for i in range(10)]
        datum = read_datum(reader, 3)  # batch 2, second record
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 32, 32, 7)
    assert datum.data == train[1][1].tobytes()
    with open_db(run / "data/cifar10/cifar10_test_lmdb", "r") as reader:
        assert len(reader) == 1 and read_datum(reader, 0).label == 3
    listed = (run / "data/toy/toy_train.txt").read_text()
    assert listed == f"{tmp_path / 'a.h5'}\n{tmp_path / 'b.h5'}\n"


@pytest.mark.parametrize(("dataset", "message"), [
    ({"format": "csv"}, "'csv' is not one of ['idx', 'images', 'hdf5', 'cifar']"),
    ({"format": "cifar"}, "'root' is a required property"),
    ({"format": "idx", "sources": [{"type": "local", "path": "x"}], "dir": "y"},
     "Additional properties are not allowed ('dir' was unexpected)"),
    ({"format": "idx", "sources": [{"type": "local", "path": "x"}],
      "files": {"train-labels-idx1-ubyte": {"sha256": "a" * 64}}},
     "'size' is a dependency of 'sha256'"),
    ({"format": "images", "train_root": "t", "val_root": "v"}, "'' should be non-empty"),
])
def test_dataset_entries_are_validated(dataset, message):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "workflow/schemas/config.schema.yaml")
    with pytest.raises(WorkflowError, match=re.escape(message)):
        validate({"datasets": {"mine": dataset}}, schema)


def test_the_repository_config_declares_the_tutorials_datasets():
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert {n: d["format"] for n, d in config["datasets"].items()} == {
        "mnist": "idx", "ilsvrc12": "images"}
    mine = {"datasets": {"mine": {"format": "images", "train_root": "t", "val_root": "v",
                                  "listings": "folders"}}}
    validate(mine, str(REPO / "workflow/schemas/config.schema.yaml"))  # fills in defaults
    assert mine["datasets"]["mine"]["resize"]["shards"] == 8
    assert mine["datasets"]["mine"]["convert"]["seed"] == 0
    net = (REPO / "models/caffenet/train_val.prototxt").read_text()
    for path in ("data/ilsvrc12/ilsvrc12_train_lmdb", "data/ilsvrc12/ilsvrc12_val_lmdb",
                 "data/ilsvrc12/ilsvrc12_train_lmdb_mean.binaryproto"):
        assert f'"{path}"' in net


def test_dataset_names_may_not_be_rule_names():
    """Each dataset is also a rule (its target); the schema reserves every other rule's name."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema_path = REPO / "workflow/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    reserved = set(schema["properties"]["datasets"]["propertyNames"]["not"]["enum"])
    declared = set()  # every `rule <name>:` of the workflow (the dataset rules are unnamed)
    for path in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]:
        text = path.read_text()
        declared |= set(re.findall(r"^rule (\w+):", text, re.M))
        declared |= set(re.findall(r"^use rule \w+ as (\w+)", text, re.M))
    assert declared == reserved
    with pytest.raises(WorkflowError, match="should not be valid under"):
        validate({"datasets": {"train": {"format": "cifar", "root": "x"}}}, str(schema_path))

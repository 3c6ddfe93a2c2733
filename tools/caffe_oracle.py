"""Regenerates tests/data/caffe_oracle/: real Caffe's forward tops and one SGD step on small nets.

    python tools/caffe_oracle.py CAFFE_BUILD [CASE ...] [--out tests/data/caffe_oracle]

CAFFE_BUILD is a Caffe 1.0 CPU build (`/work/shared/tools/build-caffe.sh` makes one; its
`build/tools/caffe` is used). For each case of `tools/caffe_oracle_cases.py` this writes,
in OUT/<case>/: the inputs (`input_<rows>.h5` and the list files HDF5Data reads: one file
per first-axis length, so tops of other batch sizes can be targets), `net.prototxt`,
`init.caffemodel` (the initial weights, filled by OUR engine from a seed, so both engines
start equal) and `caffe.npz`, what Caffe did with them in `caffe train` for one iteration
(lr 1, momentum 0, weight decay 0):

- `dump:<top>`: the top as Caffe's HDF5Output wrote it (legacy 4-D shape) in that forward
  (loss tops: in a first run of the same net with dump layers added, since in Caffe a loss
  top that another layer reads gets no gradient);
- `shape:<top>`: the top's shape from Caffe's "Top shape:" log line;
- `param:<layer>:<i>`: every blob of the snapshot after the step (for lr_mult 0 blobs
  such as BatchNorm's statistics: what the forward left in them).

Not needed by CI: tests/test_caffe_oracle.py only reads these files.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caffe_oracle_cases import CASES, Case, layer  # noqa: E402

from pipeline_lib.api import TEST, TRAIN, Net  # noqa: E402
from pipeline_lib.proto.blobproto import blob_proto_to_array  # noqa: E402
from pipeline_lib.proto.prototxt import parse_net_text  # noqa: E402
from pipeline_lib.proto.snapshot import load_caffemodel  # noqa: E402

SOLVER = """base_lr: 1
lr_policy: "fixed"
momentum: 0
weight_decay: 0
max_iter: 1
display: 0  # a display would run one more forward, which HDF5Output cannot write twice
snapshot: 1
snapshot_prefix: "caffe"
solver_mode: CPU
random_seed: 1
"""


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def data_layers(datasets: dict[str, np.ndarray]) -> tuple[str, dict[int, dict[str, np.ndarray]]]:
    """HDF5Data layers, one per first-axis length, and the datasets of each file."""
    groups: dict[int, dict[str, np.ndarray]] = {}
    for name, array in datasets.items():
        groups.setdefault(array.shape[0], {})[name] = array
    text = ""
    for rows, group in sorted(groups.items()):
        tops = " ".join(f'top: "{name}"' for name in group)
        text += (
            f'layer {{ name: "data_{rows}" type: "HDF5Data" {tops}\n'
            f'  hdf5_data_param {{ source: "input_{rows}.list" batch_size: {rows} }} }}\n'
        )
    return text, groups


def write_inputs(folder: Path, groups: dict[int, dict[str, np.ndarray]]) -> None:
    for rows, group in groups.items():
        with h5py.File(folder / f"input_{rows}.h5", "w") as f:
            for name, array in group.items():
                f.create_dataset(name, data=array.astype(np.float32))
        (folder / f"input_{rows}.list").write_text(f"input_{rows}.h5\n")


def dump_layers(tops: list[str]) -> str:
    return "".join(
        f'layer {{ name: "dump_{top}" type: "HDF5Output" bottom: "{top}" bottom: "{top}"\n'
        f'  hdf5_output_param {{ file_name: "dump_{top}.h5" }} }}\n'
        for top in tops
    )


def full_net(name: str, case: Case, datasets: dict[str, np.ndarray]) -> tuple[str, dict]:
    data, groups = data_layers(datasets)
    text = f'name: "oracle_{name}"\n' + data + case.body
    for top in case.losses:
        text += layer(f"loss_{top}", "EuclideanLoss", [top, f"t_{top}"], [])
    return text + dump_layers(case.dumps), groups


def prepare(name: str, case: Case, folder: Path) -> None:
    """Inputs, targets, net.prototxt and init.caffemodel (our engine's seeded fillers)."""
    rng = np.random.default_rng(seed_of(name))
    inputs = case.inputs(rng)
    probe_text, groups = data_layers(inputs)
    write_inputs(folder, groups)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        probe = parse_net_text(probe_text + case.body, name)
        net = Net(probe, TRAIN if case.phase == "TRAIN" else TEST, seed=seed_of(name))
        for (layer, index), values in (case.preset(rng) if case.preset else {}).items():
            net.params[layer][index].data[...] = values
        net.save(folder / "init.caffemodel")
        net.forward()  # some tops (Filter's) take their shape from the data
        shapes = {top: net.blobs[top].data.shape for top in case.losses}
    finally:
        os.chdir(cwd)
    targets = {
        f"t_{top}": rng.normal(size=shape).astype(np.float32) for top, shape in shapes.items()
    }
    text, groups = full_net(name, case, {**inputs, **targets})
    for old in folder.glob("input_*"):
        old.unlink()
    write_inputs(folder, groups)
    (folder / "net.prototxt").write_text(text)


def top_shapes(log: str) -> dict[str, tuple[int, ...]]:
    """Each layer's top shapes, from Caffe's "Setting up L" / "Top shape: ..." lines, by layer."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    layer = None
    for line in log.splitlines():
        if m := re.search(r"Setting up (\S+)", line):
            layer = m.group(1)
            shapes[layer] = []
        elif (m := re.search(r"Top shape: ([\d ]*)\(\d+\)", line)) and layer is not None:
            shapes[layer].append(tuple(int(d) for d in m.group(1).split()))
    return shapes


def train_once(name: str, folder: Path, caffe: Path, net: str) -> str:
    """`caffe train` for one iteration on `net` from init.caffemodel; its log."""
    (folder / "solver.prototxt").write_text(f'net: "{net}"\n' + SOLVER)
    env = dict(os.environ, GLOG_logtostderr="1")
    proc = subprocess.run(
        [str(caffe), "train", "-solver", "solver.prototxt", "-weights", "init.caffemodel"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    (folder / "caffe.log").write_text(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: caffe failed:\n" + proc.stderr[-3000:])
    return proc.stderr


def test_once(name: str, folder: Path, caffe: Path) -> str:
    """`caffe test` for one batch: a TEST-phase forward from init.caffemodel; its log."""
    env = dict(os.environ, GLOG_logtostderr="1")
    command = ["test", "-model", "net.prototxt", "-weights", "init.caffemodel", "-iterations", "1"]
    proc = subprocess.run(
        [str(caffe), *command], cwd=folder, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: caffe test failed:\n" + proc.stderr[-3000:])
    return proc.stderr


def run_caffe(name: str, folder: Path, caffe: Path, out: Path) -> None:
    case = CASES[name]
    text = (folder / "net.prototxt").read_text()
    if case.loss_dumps:  # the loss values, from a run whose gradients are not kept
        (folder / "net_losses.prototxt").write_text(text + dump_layers(case.loss_dumps))
        train_once(name, folder, caffe, "net_losses.prototxt")
    if case.phase == "TEST":
        log = test_once(name, folder, caffe)
    else:
        log = train_once(name, folder, caffe, "net.prototxt")
    golden: dict[str, np.ndarray] = {"phase": np.array(case.phase)}
    param = parse_net_text(text, "net.prototxt")
    by_layer = top_shapes(log)
    producer = {top: lp.name for lp in param.layer for top in lp.top}
    for top in case.dumps + case.loss_dumps:
        with h5py.File(folder / f"dump_{top}.h5", "r") as f:
            golden[f"dump:{top}"] = np.asarray(f["data"], np.float32)
        layer = producer[top]
        index = list(next(lp for lp in param.layer if lp.name == layer).top).index(top)
        golden[f"shape:{top}"] = np.array(by_layer[layer][index], np.int64)
    trained = (
        [] if case.phase == "TEST" else load_caffemodel(folder / "caffe_iter_1.caffemodel").layer
    )
    for lp in trained:
        for i, bp in enumerate(lp.blobs):
            golden[f"param:{lp.name}:{i}"] = blob_proto_to_array(bp).astype(np.float32)
    dest = out / name
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():
        old.unlink()
    for f in [*folder.glob("input_*"), folder / "net.prototxt", folder / "init.caffemodel"]:
        (dest / f.name).write_bytes(f.read_bytes())
    np.savez_compressed(dest / "caffe.npz", **golden)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caffe_build", type=Path)
    parser.add_argument("cases", nargs="*", default=list(CASES))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/caffe_oracle"
    )
    args = parser.parse_args(argv)
    caffe = args.caffe_build / "build/tools/caffe"
    failed = []
    for name in args.cases:
        with tempfile.TemporaryDirectory(prefix=f"oracle_{name}_") as tmp:
            folder = Path(tmp)
            try:
                prepare(name, CASES[name], folder)
                run_caffe(name, folder, caffe, args.out)
                print(f"{name}: ok")
            except Exception as error:  # report every case, then fail
                failed.append(name)
                print(f"{name}: FAILED {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

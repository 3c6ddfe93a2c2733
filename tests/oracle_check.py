"""Runs our engine on a case of tests/data/caffe_oracle/ the way real Caffe ran it (one SGD step).

`run_case` gives what we computed; `differences` compares it with what Caffe wrote
(`tools/caffe_oracle.py` explains the files). Used by tests/test_caffe_oracle.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline_lib.api import TEST, Net
from pipeline_lib.caffe import SGDSolver
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net

ORACLE = Path(__file__).resolve().parent / "data" / "caffe_oracle"
#: Caffe's start value for a max: a value compared exactly, not within a tolerance
FLT_MAX = float(np.finfo(np.float32).max)


@dataclass
class Ours:
    tops: dict[str, np.ndarray]  # after the forward of the step (the tops Caffe dumped)
    dumps: dict[str, np.ndarray]  # what our HDF5Output layers wrote, by bottom
    before: dict[str, np.ndarray]  # "layer:i" -> initial values
    after: dict[str, np.ndarray]  # "layer:i" -> after the step


def run_case(case: Path, tmp: Path) -> Ours:
    param = read_net(case / "net.prototxt")
    dumps = {}
    for lp in param.layer:
        if lp.type == "HDF5Data":
            lp.hdf5_data_param.source = str(case / lp.hdf5_data_param.source)
        elif lp.type == "HDF5Output":
            dumps[lp.bottom[0]] = tmp / lp.hdf5_output_param.file_name
            lp.hdf5_output_param.file_name = str(dumps[lp.bottom[0]])
    golden = np.load(case / "caffe.npz")
    if str(golden["phase"]) == "TEST":  # Caffe ran `caffe test`: one forward
        net = Net(param, TEST, weights=str(case / "init.caffemodel"))
        net.forward()
        tops = {
            key[5:]: np.array(net.blobs[key[5:]].data, np.float32)
            for key in golden.files
            if key.startswith("dump:")
        }
        return Ours(tops, read_dumps(dumps), {}, {})
    sp = caffe_pb2.SolverParameter(
        net_param=param,
        base_lr=1,
        lr_policy="fixed",
        momentum=0,
        weight_decay=0,
        max_iter=1,
        snapshot_after_train=False,
        snapshot_prefix=str(tmp / "ours"),
        random_seed=1,
        solver_mode=caffe_pb2.SolverParameter.CPU,
    )
    solver = SGDSolver(sp)
    solver.net.copy_from(str(case / "init.caffemodel"))
    params = solver.net.params

    def values():
        return {
            f"{layer}:{i}": np.array(blob.data, np.float32)
            for layer, blobs in params.items()
            for i, blob in enumerate(blobs)
        }

    before = values()
    solver.step(1)
    tops = {
        key[5:]: np.array(solver.net.blobs[key[5:]].data, np.float32)
        for key in golden.files
        if key.startswith("dump:")
    }
    return Ours(tops, read_dumps(dumps), before, values())


def read_dumps(dumps: dict[str, Path]) -> dict[str, np.ndarray]:
    written = {}
    for top, path in dumps.items():
        with h5py.File(path, "r") as f:
            written[top] = np.asarray(f["data"], np.float32)
    return written


def top_difference(ours: np.ndarray, caffe: np.ndarray) -> float:
    """Max abs difference; equal NaNs count as equal, a NaN against a number as infinite."""
    same = (ours == caffe) | (np.isnan(ours) & np.isnan(caffe))
    apart = np.where(same, 0.0, np.abs(ours.astype(np.float64) - caffe))
    return float(np.nan_to_num(apart, nan=np.inf).max())


def differences(case: Path, ours: Ours) -> dict[str, float]:
    """Figures per top and blob: forward max abs diff, one-step max rel diffs."""
    golden = np.load(case / "caffe.npz")
    out: dict[str, float] = {}
    for top, ours_top in ours.tops.items():
        caffe = golden[f"dump:{top}"]
        shape = tuple(golden[f"shape:{top}"])
        if (
            shape and caffe.shape[0] != shape[0]
        ):  # Filter: set up with the whole batch, then the kept rows
            shape = (caffe.shape[0],) + shape[1:]
        assert ours_top.shape == shape, (top, ours_top.shape, shape)
        out[f"forward {top}"] = top_difference(ours_top.reshape(caffe.shape), caffe)
        if top in ours.dumps:
            assert ours.dumps[top].shape == caffe.shape, (top, ours.dumps[top].shape, caffe.shape)
            out[f"hdf5output {top}"] = top_difference(ours.dumps[top], caffe)
        ordinary = np.abs(caffe[np.isfinite(caffe)])
        out[f"scale {top}"] = float(max(1.0, ordinary[ordinary < FLT_MAX].max(initial=0)))
    names = {key.split(":", 1)[1] for key in golden.files if key.startswith("param:")}
    assert names == set(ours.after), (sorted(names), sorted(ours.after))
    for name in sorted(names):
        caffe = golden[f"param:{name}"]
        init, mine = ours.before[name], ours.after[name]
        assert mine.shape == caffe.shape, (name, mine.shape, caffe.shape)
        out[f"after {name}"] = float(np.abs(mine - caffe).max() / max(np.abs(caffe).max(), 1e-6))
        step_caffe, step_ours = init - caffe, init - mine
        # a step is read back as a difference of float32 weights: two ulps of the weight
        # are rounding (a bias whose gradient is about zero "steps" by an ulp either way)
        rounding = 2 * np.spacing(np.maximum(np.abs(init), np.abs(caffe)))
        beyond = np.maximum(np.abs(step_ours - step_caffe) - rounding, 0)
        out[f"step {name}"] = float(beyond.max() / max(np.abs(step_caffe).max(), 1e-6))
    return out

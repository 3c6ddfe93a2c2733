"""Divergence: a NaN or infinite loss stops training with one message naming the iteration
and the layer where the value first appeared, after a snapshot of the last good state."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline_lib.proto.snapshot import load_caffemodel, load_solverstate
from reliability.rel_util import clean_failure, pcaffe, solver_with, tree


def test_exploding_learning_rate(run_dir):
    solver = solver_with(run_dir, "hot.prototxt", base_lr=1000)
    done = pcaffe("train", "--solver", solver, "--output", "results/small_iter_60", cwd=run_dir)
    message = clean_failure(
        done, "NaN loss from a learning rate far too high",
        r"training diverged at iteration (\d+): loss = nan; first non-finite top: blob "
        r"'ip1' of layer 'ip1'",
        r"state before this iteration's update saved to results/small_iter_60\.snapshots/"
        r"small_iter_\d+\.diverged\.solverstate")
    iteration = int(re.search(r"iteration (\d+)", message).group(1))
    assert 0 < iteration < 60
    snaps = run_dir / "results/small_iter_60.snapshots"
    state_path = snaps / f"small_iter_{iteration}.diverged.solverstate"
    state = load_solverstate(state_path)
    assert state.iter == iteration
    model = load_caffemodel(snaps / state.learned_net)
    assert all(np.isfinite(b.data).all() for layer in model.layer for b in layer.blobs)
    assert not (run_dir / "results/small_iter_60.caffemodel").exists()

    # Resuming from the diverged state replays the failure at the same iteration...
    again = pcaffe("train", "--solver", solver, "--snapshot", state_path, cwd=run_dir)
    assert f"training diverged at iteration {iteration}: loss = nan" in again.stderr
    # ... and `--snapshot auto` takes the newest regular snapshot, never a diverged state.
    auto = pcaffe("train", "--solver", solver, "--output", "results/small_iter_60",
                  "--snapshot", "auto", cwd=run_dir)
    restored = re.findall(r"Restoring previous solver status from (\S+)", auto.stderr)
    regular = sorted(int(p.name.split("_iter_")[1].split(".")[0])
                     for p in snaps.glob("small_iter_*.solverstate") if "diverged" not in p.name)
    assert restored == ([f"results/small_iter_60.snapshots/small_iter_{regular[-1]}.solverstate"]
                        if regular else [])
    assert f"training diverged at iteration {iteration}" in auto.stderr


HDF5_NET = """
name: "regress"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param { source: "h5/list.txt" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }
"""

HDF5_SOLVER = """
net: "regress.prototxt" base_lr: 0.001 lr_policy: "fixed" display: 1 max_iter: 20
snapshot: 0 snapshot_prefix: "regress" random_seed: 1 solver_mode: CPU
"""


@pytest.mark.parametrize("case, bad_value, layer, blob, loss", [
    ("NaN in the input data", np.nan, "data", "data", "nan"),
    ("huge input values: the loss overflows to inf", 1e25, "loss", "loss", "inf"),
])
def test_bad_values_in_the_data(tmp_path, case, bad_value, layer, blob, loss):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(16, 3)).astype(np.float32)
    data[9, 1] = bad_value  # in the third batch of 4: iteration 2
    (tmp_path / "h5").mkdir()
    with h5py.File(tmp_path / "h5/rows.h5", "w") as f:
        f["data"] = data
        f["label"] = rng.normal(size=(16, 2)).astype(np.float32)
    (tmp_path / "h5/list.txt").write_text("h5/rows.h5\n")
    (tmp_path / "regress.prototxt").write_text(HDF5_NET)
    (tmp_path / "solver.prototxt").write_text(HDF5_SOLVER)
    before = tree(tmp_path)
    done = pcaffe("train", "--solver", "solver.prototxt", "--output", "out/regress_iter_20",
                  cwd=tmp_path)
    clean_failure(done, case,
                  f"training diverged at iteration 2: loss = {loss}; first non-finite top: "
                  f"blob '{blob}' of layer '{layer}'; the weights are finite",
                  "saved to out/regress_iter_20.snapshots/regress_iter_2.diverged.solverstate")
    written = tree(tmp_path) - before
    assert {Path(p).name for p in written} >= {"regress_iter_2.diverged.caffemodel",
                                               "regress_iter_2.diverged.solverstate"}

"""The layers against real Caffe 1.0: one SGD step on small nets, in both engines.

Each folder of tests/data/caffe_oracle/ holds a net (HDF5Data inputs, learnable
InnerProducts in front of the layers under test, EuclideanLoss against random
targets), its inputs, the initial weights and what real Caffe computed from them
(`tools/caffe_oracle.py` regenerates them from a Caffe build). We run the same step
and want Caffe's top shapes, its forward tops within a few 1e-6 (relative to the
top's size where it exceeds 1; NaN and -FLT_MAX exactly), the same HDF5Output
files, and after the step the same weights: the step itself (initial minus updated:
the gradient, or for BatchNorm's statistics the forward's moving average) within
1e-5 relative, beyond the rounding of the float32 weights it is read from.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle_check import ORACLE, differences, run_case

CASES = sorted(p.name for p in ORACLE.iterdir() if (p / "caffe.npz").exists())

FORWARD_ATOL = 5e-6
STEP_RTOL = 1e-5
# blobs one step leaves as they were: statistics BatchNorm only reads, a layer without backward
STILL = {
    "batchnorm_global": {"bn:0", "bn:1", "bn:2"},
    "neurons": {"pre_threshold:0", "pre_threshold:1"},
}


def test_the_oracle_covers_the_new_layers():
    assert len(CASES) >= 20, CASES


@pytest.mark.parametrize("case", CASES)
def test_matches_caffe(case, tmp_path):
    ours = run_case(ORACLE / case, tmp_path)
    # the files themselves: Caffe's step moved every blob it should (so the step compares)
    golden = np.load(ORACLE / case / "caffe.npz")
    moved = {name for name, init in ours.before.items() if (golden[f"param:{name}"] != init).any()}
    assert moved == set(ours.before) - STILL.get(case, set()), sorted(moved)
    diffs = differences(ORACLE / case, ours)
    bad = []
    for key, value in diffs.items():
        kind, name = key.split(" ", 1)
        if kind in ("forward", "hdf5output") and value > FORWARD_ATOL * diffs[f"scale {name}"]:
            bad.append(f"{key}: {value:.3g}")
        elif kind in ("step", "after") and value > STEP_RTOL:
            bad.append(f"{key}: {value:.3g}")
    assert not bad, f"{case} differs from Caffe: " + "; ".join(bad)

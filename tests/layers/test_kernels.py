"""The compiled kernels (engine/kernels, numba) give the NumPy path's bits exactly: pooling,
convolution's col2im and the SGD update layer by layer, on data with ties, signed
zeros, NaN and infinities, and a whole LeNet training run (same caffemodel bytes).

A NaN's sign and payload are the one thing left free (x86 makes a negative NaN of inf * 0,
NumPy's vector loops sometimes a positive one): NaNs compare as NaNs. No trained model
keeps one (a NaN loss stops training)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from compute_util import backward, forward, make, to_blob
from conftest import DATA
from google.protobuf import text_format

from pipeline_lib.core.blob import Blob
from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.engine import kernels
from pipeline_lib.engine.layers import convolution
from pipeline_lib.engine.solvers import make_update_rule
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net

pytest.importorskip("numba")
pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf * 0

ROOT = DATA.parents[1]


@pytest.fixture
def switch():
    """Call switch(flag) to run with (True) or without (False) the compiled kernels."""
    yield kernels.set_enabled
    kernels.set_enabled(True)


def awkward(shape, seed, dtype, specials=True):
    """Values with many ties (few distinct), signed zeros and, if asked, NaN and infinities."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype) / 2
    x[rng.random(shape) < 0.2] = -0.0
    if specials:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] = np.nan
        flat[rng.integers(0, flat.size, 2)] = np.inf
        flat[rng.integers(0, flat.size, 2)] = -np.inf
    return x


def run_layer(switch, flag, text, bottom_shape, dtype, channels_last, tops=1, seed=0):
    """Bytes of the tops and of the bottom diff after a forward and a backward."""
    switch(flag)
    layer = make(text, np, dtype)
    bottom = [to_blob(awkward(bottom_shape, seed, dtype), np, dtype, channels_last)]
    top = forward(layer, bottom, tops, channels_last)
    diffs = [awkward(t.shape, seed + 1, dtype) for t in top]
    backward(layer, top, bottom, diffs)
    arrays = [t.data for t in top] + [bottom[0].diff] + [p.diff for p in layer.blobs]
    return [np.where(np.isnan(a), np.nan, a).astype(a.dtype).tobytes() for a in arrays]


POOLS = {
    "2x2s2": ("kernel_size: 2 stride: 2", (2, 3, 8, 8)),
    "3x3s2_overlap": ("kernel_size: 3 stride: 2", (2, 5, 7, 8)),
    "pad": ("kernel_size: 3 stride: 2 pad: 1", (1, 4, 6, 7)),
    "non_square_floor": ("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0 "
                         "round_mode: FLOOR", (2, 2, 5, 7)),
    "gaps": ("kernel_size: 2 stride: 3", (1, 2, 8, 8)),
    # last windows past the image: AVE's NaN (0 / 0) and -0, MAX's -FLT_MAX and mask -1
    "past_image": ("kernel_h: 2 kernel_w: 1 stride: 3", (2, 3, 6, 5)),
    "global": ("global_pooling: true", (2, 3, 4, 5)),
}


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("case", sorted(POOLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling_same_bits(switch, case, method, dtype, channels_last):
    body, shape = POOLS[case]
    tops = 2 if method == "MAX" else 1
    text = ('name: "p" type: "Pooling" bottom: "x" top: "y"'
            + (' top: "mask"' if tops > 1 else "") + f" pooling_param {{ pool: {method} {body} }}")
    fast = run_layer(switch, True, text, shape, dtype, channels_last, tops)
    slow = run_layer(switch, False, text, shape, dtype, channels_last, tops)
    assert fast == slow


CONVS = {
    "lenet_conv2": ("num_output: 6 kernel_size: 5", (2, 4, 12, 12)),
    "pad_stride": ("num_output: 4 kernel_size: 3 stride: 2 pad: 1", (2, 3, 9, 8)),
    "groups_dilation": ("num_output: 4 kernel_size: 3 group: 2 dilation: 2", (1, 6, 9, 9)),
    "no_bias": ("num_output: 3 kernel_h: 2 kernel_w: 3 bias_term: false", (2, 1, 7, 6)),
}


@pytest.mark.parametrize("layout", ["rows", "taps"])
@pytest.mark.parametrize("case", sorted(CONVS))
def test_convolution_same_bits(switch, monkeypatch, case, layout, channels_last):
    monkeypatch.setattr(convolution, "LAYOUT", layout)
    body, shape = CONVS[case]
    text = (f'name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param {{ {body} '
            'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" } }')
    fast = run_layer(switch, True, text, shape, np.float32, channels_last)
    slow = run_layer(switch, False, text, shape, np.float32, channels_last)
    assert fast == slow


@pytest.mark.parametrize("decay", [0.0, 5e-4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_update_same_bits(switch, decay, dtype):
    def run(flag):
        switch(flag)
        rng = np.random.default_rng(3)
        params = [Blob(s, np, dtype) for s in ((4, 3, 2, 2), (7,))]
        for p in params:
            p.data[...] = rng.normal(size=p.shape)
        sp = caffe_pb2.SolverParameter(type="SGD", momentum=0.9, weight_decay=decay)
        rule = make_update_rule(sp, params, [1.0, 2.0], [1.0, 0.0])
        for it in range(4):
            for p in params:
                p.diff[...] = rng.normal(size=p.shape)
            rule.apply(0.01 * (1 + 1e-4 * it) ** -0.75, it)
        return [p.data.tobytes() for p in params] + [h.tobytes() for h in rule.history]

    assert run(True) == run(False)


def test_lenet_training_writes_the_same_caffemodel(switch, tmp_path, monkeypatch):
    """Ten LeNet iterations (batch 10) and test passes on 100 MNIST digits, with and without
    the compiled kernels: the same .caffemodel and .solverstate bytes."""
    net = read_net(ROOT / "models/lenet/lenet_train_test.prototxt")
    for lp in net.layer:
        if lp.type == "Data":
            lp.data_param.source = "train" if lp.include[0].phase == caffe_pb2.TRAIN else "test"
            lp.data_param.batch_size = 10
    sp = text_format.Parse('base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" '
                           "gamma: 0.0001 power: 0.75 max_iter: 10 test_iter: 2 "
                           "test_interval: 5 display: 0 random_seed: 1701 solver_mode: CPU",
                           caffe_pb2.SolverParameter())
    files = []
    for flag in (True, False):
        run_dir = tmp_path / str(flag)  # the same relative sources: they are in the model
        for split in ("train", "test"):  # LMDB opens a path once per process
            shutil.copytree(DATA / "golden" / "caffe_train100_lmdb", run_dir / split)
        monkeypatch.chdir(run_dir)
        switch(flag)
        solver = Solver(sp, net_param=net, log=GlogLogger(stream=io.StringIO()),
                        snapshot_prefix="lenet")
        try:
            solver.solve()
        finally:
            solver.close()
        files.append([(run_dir / f"lenet_iter_10{s}").read_bytes()
                      for s in (".caffemodel", ".solverstate")])
    assert files[0] == files[1]

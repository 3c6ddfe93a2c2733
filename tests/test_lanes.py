"""core/lanes: a step's work split over threads, the same bits whatever the lane count.

The layers that split (Convolution, Deconvolution, Pooling, InnerProduct, ReLU, LRN, Eltwise,
the updates) are run with 1, 2 and 3 lanes on nets whose shapes make them split, and every blob,
gradient and trained weight must be equal to the last bit.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from pipeline_lib.core import lanes
from pipeline_lib.core.threads import compute_threads
from pipeline_lib.engine import kernels
from pipeline_lib.engine.layers import convolution
from pipeline_lib.engine.net import Net
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import parse_net_text, parse_solver_text


@pytest.mark.parametrize("n, parts, align", [(64, 2, 1), (64, 3, 16), (10, 4, 1), (501, 2, 16),
                                             (26, 3, 16), (5, 8, 1)])
def test_bounds_cover_the_range_in_order_with_aligned_cuts(n, parts, align):
    pieces = lanes.bounds(n, parts, align)
    assert pieces[0][0] == 0 and pieces[-1][1] == n
    assert all(a < b for a, b in pieces)
    assert all(p[1] == q[0] for p, q in zip(pieces, pieces[1:]))
    assert all(b % align == 0 for _, b in pieces[:-1])
    assert len(pieces) <= parts


def test_split_runs_the_parts_on_several_threads_and_waits_for_them():
    seen: dict[int, int] = {}
    barrier = threading.Barrier(3, timeout=10)  # only passes if 3 parts run at once

    def work(a: int, b: int) -> None:
        barrier.wait()
        seen[a] = threading.get_ident()

    with lanes.lanes(3):
        lanes.split(np, 30, work)
    assert sorted(seen) == [0, 10, 20]
    assert len(set(seen.values())) == 3
    assert seen[0] == threading.get_ident()  # the caller takes the first part


def test_split_is_whole_for_one_lane_small_work_cupy_and_inside_a_lane():
    calls = []
    with lanes.lanes(2):
        lanes.split(np, 7, lambda a, b: calls.append((a, b)), grain=4)  # 7 // 4 = 1 part
        lanes.split(object(), 100, lambda a, b: calls.append((a, b)))   # not NumPy
        lanes.split(np, 4, lambda a, b: lanes.split(np, 10, lambda c, d: calls.append((c, d))))
    assert calls == [(0, 7), (0, 100), (0, 10), (0, 10)]


def _split_in_child(queue) -> None:
    parts = []
    lanes.split(np, 10, lambda a, b: parts.append((a, b)))
    queue.put(parts)


def test_a_forked_child_splits_on_its_own_thread_instead_of_waiting_forever():
    """A child forked while lanes are up (a data worker, say) has none of the parent's lane
    threads: its work runs whole, where handing it to them would hang."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with lanes.lanes(2):
        queue = context.Queue()
        child = context.Process(target=_split_in_child, args=(queue,))
        child.start()
        child.join(timeout=30)
        if child.is_alive():  # waiting for its parent's threads: the bug
            child.kill()
        assert child.exitcode == 0
        assert queue.get(timeout=5) == [(0, 10)]


def test_an_error_in_a_lane_reaches_the_caller():
    def work(a: int, b: int) -> None:
        if a:
            raise ValueError(f"part {a}")

    with lanes.lanes(2), pytest.raises(ValueError, match="part 5"):
        lanes.split(np, 10, work)


def test_lane_count_is_restored_and_checked():
    assert lanes.count() == 1
    with compute_threads(3):
        assert lanes.count() == 3
    assert lanes.count() == 1
    with pytest.raises(ValueError, match="at least 1"), compute_threads(0):
        pass


# -- the same bits with any lane count --------------------------------------------------
LAYERS = """
name: "split"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 64 dim: 3 dim: 31 dim: 29 } shape { dim: 64 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv_pad" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 stride: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "pool_max" type: "Pooling" bottom: "c1" top: "p1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "lrn_across" type: "LRN" bottom: "p1" top: "n1"
  lrn_param { local_size: 5 alpha: 0.1 beta: 0.75 } }
layer { name: "conv_group" type: "Convolution" bottom: "n1" top: "c2"
  convolution_param { num_output: 64 kernel_size: 3 group: 2 stride: 1 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "lrn_within" type: "LRN" bottom: "c2" top: "n2"
  lrn_param { local_size: 3 alpha: 0.1 beta: 0.6 norm_region: WITHIN_CHANNEL } }
layer { name: "relu_copy" type: "ReLU" bottom: "n2" top: "r2" }
layer { name: "pool_ave" type: "Pooling" bottom: "r2" top: "p2"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "p2" top: "fc"
  inner_product_param { num_output: 256
    weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "fc_t" type: "InnerProduct" bottom: "fc" top: "out"
  inner_product_param { num_output: 7 transpose: true
    weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" top: "loss" }
layer { name: "up" type: "Deconvolution" bottom: "p2" top: "up"
  convolution_param { num_output: 32 kernel_size: 4 stride: 2 pad: 1 group: 2
    weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "up_loss" type: "Reduction" bottom: "up" top: "up_loss" loss_weight: 0.001
  reduction_param { operation: SUMSQ } }
layer { name: "conv_b" type: "Convolution" bottom: "data" top: "cb"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "sum" type: "Eltwise" bottom: "c1" bottom: "cb" top: "es"
  eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }
layer { name: "prod" type: "Eltwise" bottom: "es" bottom: "cb" top: "ep"
  eltwise_param { operation: PROD stable_prod_grad: false } }
layer { name: "prod3" type: "Eltwise" bottom: "ep" bottom: "es" bottom: "cb" top: "e3"
  eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "e3" bottom: "es" bottom: "cb" top: "em"
  eltwise_param { operation: MAX } }
layer { name: "el_loss" type: "Reduction" bottom: "em" top: "el_loss" loss_weight: 0.001
  reduction_param { operation: SUMSQ } }
"""


def _blobs_after_a_step(lane_count: int) -> dict[str, np.ndarray]:
    with compute_threads(lane_count):
        net = Net(parse_net_text(LAYERS, "split"), caffe_pb2.TRAIN,
                  rng=np.random.default_rng(3))
        net.forward_backward()
        out = {}
        for name, blob in net.blobs.items():
            out[f"{name} data"] = blob.data.copy()
            out[f"{name} diff"] = blob.diff.copy()
        for lname, layer in zip(net.layer_names, net.layers):
            for k, blob in enumerate(layer.blobs):
                out[f"{lname} param {k} diff"] = blob.diff.copy()
        net.close()
    return out


@pytest.mark.parametrize("layout", ["rows", "taps"])
@pytest.mark.parametrize("compiled", [True, False])
def test_every_blob_and_gradient_is_the_same_with_1_2_and_3_lanes(monkeypatch, layout, compiled):
    """Padding, groups, overlapping MAX windows, AVE, LRN both ways, ReLU in place and not,
    Deconvolution, Eltwise's SUM, PROD and MAX, both patch layouts, with and without the
    compiled kernels; at the real split thresholds (lanes.GEMM_MIN_WORK,
    lanes.ELEMENTWISE_GRAIN)."""
    if compiled:
        pytest.importorskip("numba")
    monkeypatch.setattr(convolution, "LAYOUT", layout)
    kernels.set_enabled(compiled)
    parts = []
    real = lanes._in_lane
    monkeypatch.setattr(lanes, "_in_lane", lambda *a: (parts.append(a[1:]), real(*a))[1])
    try:
        one = _blobs_after_a_step(1)
        assert not parts
        for count in (2, 3):
            other = _blobs_after_a_step(count)
            assert parts, "nothing was split"
            parts.clear()
            for key, value in one.items():
                assert np.array_equal(value, other[key]), f"{key} differs with {count} lanes"
    finally:
        kernels.set_enabled(True)


LENET_SOLVER = """
base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 power: 0.75
max_iter: 100000 display: 0 random_seed: 5 solver_mode: CPU
net_param {
  name: "LeNet"
  layer { name: "data" type: "DummyData" top: "data" top: "label"
    dummy_data_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } shape { dim: 64 }
      data_filler { type: "uniform" min: 0 max: 1 } data_filler { type: "constant" value: 3 } } }
  layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
    param { lr_mult: 1 } param { lr_mult: 2 }
    convolution_param { num_output: 20 kernel_size: 5 stride: 1
      weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
  layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
    pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
  layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
    param { lr_mult: 1 } param { lr_mult: 2 }
    convolution_param { num_output: 50 kernel_size: 5 stride: 1
      weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
  layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
    pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
  layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
    param { lr_mult: 1 } param { lr_mult: 2 }
    inner_product_param { num_output: 500 weight_filler { type: "xavier" }
      bias_filler { type: "constant" } } }
  layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
  layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
    param { lr_mult: 1 } param { lr_mult: 2 }
    inner_product_param { num_output: 10 weight_filler { type: "xavier" }
      bias_filler { type: "constant" } } }
  layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
}
"""


def _lenet_weights(lane_count: int, iterations: int = 3) -> list[np.ndarray]:
    with compute_threads(lane_count):
        solver = Solver(parse_solver_text(LENET_SOLVER, "lenet"), xp=np, metrics=MetricsTable())
        solver.step(iterations)
        weights = [b.data.copy() for b in solver.net.learnable_params]
        solver.close()
    return weights


def test_lenet_at_its_real_size_trains_to_the_same_bits_with_1_2_and_3_lanes():
    """Real LeNet shapes and split thresholds: what a training job runs."""
    one = _lenet_weights(1)
    for count in (2, 3):
        for k, (a, b) in enumerate(zip(one, _lenet_weights(count))):
            assert np.array_equal(a, b), f"param {k} differs with {count} lanes"


def test_pcaffe_train_writes_the_same_model_with_one_and_two_threads(tmp_path, monkeypatch):
    """`--threads` (default: every usable CPU) splits the work; the files are the same."""
    from pipeline_lib import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "solver.prototxt").write_text(LENET_SOLVER.replace("max_iter: 100000",
                                                                   "max_iter: 3"))
    models = []
    for threads in ("1", "2"):
        stem = f"results/t{threads}_iter_3"
        assert cli.main(["train", "-solver", "solver.prototxt", "--output", stem,
                         "-threads", threads]) == 0
        models.append((tmp_path / f"{stem}.caffemodel").read_bytes())
    assert models[0] == models[1]
    assert cli.build_parser().parse_args(["time", "-model", "m"]).threads >= 1


def test_a_run_resumed_with_another_thread_count_ends_with_the_same_bytes(tmp_path, monkeypatch):
    """One thread to iteration 3, two from its snapshot to 6: the files of one thread all the
    way (exact resume and lanes together)."""
    from pipeline_lib import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "snap").mkdir()
    (tmp_path / "solver.prototxt").write_text(LENET_SOLVER.replace(
        "max_iter: 100000", 'max_iter: 6 snapshot: 3 snapshot_prefix: "snap/lenet"'))
    final = tmp_path / "snap" / "lenet_iter_6"
    assert cli.main(["train", "-solver", "solver.prototxt", "-threads", "1"]) == 0
    whole = [final.with_suffix(s).read_bytes() for s in (".caffemodel", ".solverstate")]
    final.with_suffix(".caffemodel").unlink()
    assert cli.main(["train", "-solver", "solver.prototxt", "-threads", "2",
                     "-snapshot", "snap/lenet_iter_3.solverstate"]) == 0
    resumed = [final.with_suffix(s).read_bytes() for s in (".caffemodel", ".solverstate")]
    assert resumed == whole


def test_deconvolution_taps_taken_in_blocks_give_the_same_bits(monkeypatch):
    """A large kernel's contributions come a block of taps at a time: the same additions
    in the same order as all taps at once."""
    from pipeline_lib.engine.layers import deconvolution

    whole = _blobs_after_a_step(2)
    monkeypatch.setattr(deconvolution, "MAX_CONTRIBUTION_BYTES", 1)  # one tap per block
    blocks = _blobs_after_a_step(2)
    for key, value in whole.items():
        assert np.array_equal(value, blocks[key]), key


@pytest.mark.parametrize("settings", [
    'type: "Nesterov" base_lr: 0.01 momentum: 0.9',
    'type: "AdaGrad" base_lr: 0.01 momentum: 0',
    'type: "RMSProp" base_lr: 0.01 momentum: 0 rms_decay: 0.98',
    'type: "AdaDelta" base_lr: 1.0 momentum: 0.95 delta: 1e-6',
    'type: "Adam" base_lr: 0.001 momentum: 0.9 momentum2: 0.999',
    'base_lr: 0.01 momentum: 0.9 regularization_type: "L1" iter_size: 2',
], ids=["nesterov", "adagrad", "rmsprop", "adadelta", "adam", "sgd-l1-iter_size"])
def test_every_update_rule_gives_the_same_bits_with_1_and_2_lanes(monkeypatch, settings):
    """The updates run a range of a large param per lane (ip1's 400,000 weights here)."""
    monkeypatch.setattr(sys.modules[__name__], "LENET_SOLVER",
                        LENET_SOLVER.replace("base_lr: 0.01 momentum: 0.9", "") + settings)
    one = _lenet_weights(1, iterations=2)
    for k, (a, b) in enumerate(zip(one, _lenet_weights(2, iterations=2))):
        assert np.array_equal(a, b), f"param {k} differs with 2 lanes"
    start = _lenet_weights(1, iterations=0)
    assert not np.array_equal(start[4], one[4])  # ip1's weights did move


CHAIN_NET = """
layer { name: "in" type: "Input" top: "x"
        input_param { shape { dim: 24 dim: 3 dim: 12 dim: 12 } } }
layer { name: "c1" type: "Convolution" bottom: "x" top: "c1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" } } }
layer { name: "p1" type: "Pooling" bottom: "c1" top: "p1" top: "where"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "c2" type: "Convolution" bottom: "where" top: "c2"
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" } } }
layer { name: "p2" type: "Pooling" bottom: "c2" top: "p2"
        pooling_param { pool: AVE kernel_size: 2 } }
layer { name: "c3" type: "Convolution" bottom: "p1" top: "c3"
        convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" } } }
"""


@pytest.mark.parametrize("lane_count", [1, 2, 3])
def test_layers_run_together_by_images_give_what_they_give_one_by_one(monkeypatch, lane_count):
    """Net.forward runs the convolutions and poolings as one split over images; each lane's
    images go through all of them. Every top is what running the layers one by one gives,
    the mask top too, which a layer of the same run reads (c2 reads p1's `where`)."""
    monkeypatch.setattr(lanes, "GEMM_MIN_WORK", 1 << 10)  # small enough to cut this batch
    monkeypatch.setattr(lanes, "POOL_GRAIN", 1)
    param = parse_net_text(CHAIN_NET, "chain")
    with compute_threads(lane_count):
        together = Net(param, rng=np.random.default_rng(0))
        together.blobs["x"].data[...] = np.random.default_rng(1).normal(size=(24, 3, 12, 12))
        together.forward()
        one_by_one = Net(param, rng=np.random.default_rng(0))
        one_by_one.blobs["x"].data[...] = together.blobs["x"].data
        for i in range(len(one_by_one.layers)):
            one_by_one.forward_layer(i)
    for name in ("c1", "p1", "where", "c2", "p2", "c3"):
        assert one_by_one.blobs[name].data.any(), name
        np.testing.assert_array_equal(together.blobs[name].data, one_by_one.blobs[name].data,
                                      err_msg=name)


BACKWARD_CHAIN_NET = """
force_backward: true
layer { name: "in" type: "Input" top: "x" top: "t"
        input_param { shape { dim: 24 dim: 3 dim: 12 dim: 12 } shape { dim: 24 dim: 2 dim: 2
                                                                         dim: 2 } } }
layer { name: "c1" type: "Convolution" bottom: "x" top: "c1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "p1" type: "Pooling" bottom: "c1" top: "p1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "c2" type: "Convolution" bottom: "p1" top: "c2"
        convolution_param { num_output: 3 kernel_size: 3 group: 1
                            weight_filler { type: "gaussian" } } }
layer { name: "p2" type: "Pooling" bottom: "c2" top: "p2" pooling_param { pool: AVE kernel_size: 2
                                                                           stride: 2 } }
layer { name: "c3" type: "Convolution" bottom: "p2" top: "c3"
        convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "c3" bottom: "t" top: "loss" }
"""


@pytest.mark.parametrize("lane_count", [1, 2, 3])
def test_backward_run_together_by_images_gives_what_layer_by_layer_gives(monkeypatch,
                                                                         lane_count):
    """Net.backward runs the poolings and convolutions as one split over images, each lane
    summing the weight gradients' blocks inside its images: every gradient, of the params
    and of each blob, is what running the layers' backward one by one gives."""
    monkeypatch.setattr(lanes, "GEMM_MIN_WORK", 1 << 10)
    monkeypatch.setattr(lanes, "POOL_GRAIN", 1)
    param = parse_net_text(BACKWARD_CHAIN_NET, "chain")
    rng = np.random.default_rng(2)
    inputs = {"x": rng.normal(size=(24, 3, 12, 12)), "t": rng.normal(size=(24, 2, 2, 2))}
    nets = []
    with compute_threads(lane_count):
        for together in (True, False):
            net = Net(param, rng=np.random.default_rng(0))
            for name, value in inputs.items():
                net.blobs[name].data[...] = value
            if together:
                net.forward()
                net.backward()
            else:
                for i in range(len(net.layers)):
                    net.forward_layer(i)
                net.seed_loss_diffs()
                for i in range(len(net.layers) - 1, -1, -1):
                    net.backward_layer(i)
            nets.append(net)
    together, one_by_one = nets
    for a, b in zip(together.learnable_params, one_by_one.learnable_params):
        assert b.diff.any()
        np.testing.assert_array_equal(a.diff, b.diff)
    for name in ("x", "c1", "p1", "c2", "p2", "c3"):
        assert one_by_one.blobs[name].diff.any(), name
        np.testing.assert_array_equal(together.blobs[name].diff, one_by_one.blobs[name].diff,
                                      err_msg=name)


@pytest.mark.parametrize("lane_count", [1, 2, 3])
def test_test_phase_slices_give_the_bits_of_the_whole_batch(monkeypatch, lane_count):
    """In the TEST phase a convolution whose patch matrix is over its budget still runs with
    the layers beside it: each lane takes its images a slice at a time through scratch of
    its own. The tops equal those of the whole batch at once (every slice holds a grain of
    images or more), and the slices did happen (a small budget, several lanes' scratch)."""
    monkeypatch.setattr(lanes, "GEMM_MIN_WORK", 1 << 10)
    monkeypatch.setattr(lanes, "POOL_GRAIN", 1)
    param = parse_net_text(CHAIN_NET, "chain")
    x = np.random.default_rng(1).normal(size=(24, 3, 12, 12))

    def tops(budget: int) -> tuple[Net, dict[str, np.ndarray]]:
        monkeypatch.setattr(convolution, "MAX_COLUMN_BYTES_TEST", budget)
        with compute_threads(lane_count):
            net = Net(param, caffe_pb2.TEST, rng=np.random.default_rng(0))
            net.blobs["x"].data[...] = x
            net.forward()
        return net, {name: net.blobs[name].data.copy() for name in ("c1", "p1", "c2", "c3")}

    _, whole = tops(1 << 30)
    sliced_net, sliced = tops(1)
    c1 = sliced_net.layers[sliced_net.layer_names.index("c1")]
    assert c1.chunk < 24  # sliced
    lane_scratch = [k for k in c1.buffers._arrays if k.startswith("col0/")]
    assert len(lane_scratch) == lane_count - 1
    for name, values in whole.items():
        assert values.any(), name
        np.testing.assert_array_equal(sliced[name], values, err_msg=name)

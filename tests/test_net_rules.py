"""Caffe's implicit net rules: automatic loss tops, force_backward, propagate_down, which
layers run backward, loss_weight on any layer, and debug_info's log lines."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.engine.net import AUTOMATIC_TOP, Net, NetError
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2

INPUT = """
layer { name: "in" type: "Input" top: "x" top: "t"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
"""


def ip(name, bottom, top, extra=""):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" {extra}'
            f' inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }}'
            f' bias_filler {{ type: "gaussian" std: 0.5 }} }} }}\n')


def build(text, xp=np, **kwargs) -> Net:
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), caffe_pb2.TRAIN,
              dtype=np.float64, xp=xp, **kwargs)
    rng = np.random.default_rng(5)
    for name in ("x", "t"):
        if name in net.blobs:
            net.blobs[name].data[...] = xp.asarray(rng.standard_normal(net.blobs[name].shape))
    return net


def host(net, blob):
    return to_host(net.blobs[blob].data)


def affine(net, layer, x):
    w, b = (to_host(p.data) for p in net.layer(layer).blobs)
    return x @ w.T + b


def test_a_loss_layer_without_top_gets_an_unnamed_top_that_counts_but_is_no_output(xp):
    net = build(INPUT + ip("ip", "x", "y")
                + 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" }\n'
                + 'layer { name: "loss2" type: "EuclideanLoss" bottom: "y2" bottom: "t2" }\n'
                  .replace("y2", "y").replace("t2", "t"), xp=xp)
    assert [t.name for t in net.tops[-1]] == [AUTOMATIC_TOP]
    assert AUTOMATIC_TOP not in net.blobs and net.output_blob_names == []
    x, t = host(net, "x"), host(net, "t")
    delta = affine(net, "ip", x) - t
    one = (delta ** 2).sum() / 4 / 2
    assert net.forward() == pytest.approx(2 * one, rel=1e-12)  # two unnamed tops, both count
    net.clear_param_diffs()
    net.backward()
    np.testing.assert_allclose(to_host(net.layer("ip").blobs[0].diff), 2 * delta.T @ x / 4,
                               rtol=1e-12)


TRAIN_VAL = """
name: "finetune_style"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 8 channels: 3 height: 1 width: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label"
        include { phase: TRAIN } }
layer { name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "label" top: "accuracy"
        include { phase: TEST } }
"""


def test_a_train_val_net_whose_loss_has_no_top_trains(tmp_path):
    sp = text_format.Parse('base_lr: 0.5 lr_policy: "fixed" display: 10 max_iter: 40 '
                           'test_iter: 3 test_interval: 40 random_seed: 1',
                           caffe_pb2.SolverParameter())
    sp.snapshot_prefix = str(tmp_path / "ft")
    stream = io.StringIO()
    solver = Solver(sp, net_param=text_format.Parse(TRAIN_VAL, caffe_pb2.NetParameter()),
                    log=GlogLogger(stream=stream))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 3, 1, 1)).astype(np.float32)
    y = (x[:, 0, 0, 0] + x[:, 1, 0, 0] > 0).astype(np.float32)
    for net in (solver.net, *solver.test_nets):
        net.layer("data").set_arrays(x, y)
    assert solver.net.output_blob_names == []
    first = solver.net.forward()
    solver.step(40)
    assert solver.net.forward() < first / 2
    losses = [float(v) for v in re.findall(r"Iteration \d+ .*loss = ([\d.e-]+)", stream.getvalue())]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert solver.test(0)["accuracy"] >= 0.9


def test_propagate_down_must_be_given_once_per_bottom():
    with pytest.raises(NetError, match=r"layer 'loss' \(EuclideanLoss\): propagate_down is given "
                                       r"1 time\(s\) but the layer has 2 bottom\(s\)"):
        build(INPUT + ip("ip", "x", "y") + 'layer { name: "loss" type: "EuclideanLoss" '
              'bottom: "y" bottom: "t" top: "l" propagate_down: true }')


def test_propagate_down_false_stops_gradients_and_freezes_the_layers_below():
    net = build(INPUT + ip("ip1", "x", "h") + ip("ip2", "h", "y", 'propagate_down: false')
                + 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }')
    names = net.layer_names
    assert net.layer_needs_backward == [False, False, True, True]
    assert names == ["in", "ip1", "ip2", "loss"]
    assert net.bottom_needs_backward[2] == [False]
    net.forward()
    net.clear_param_diffs()
    net.backward()
    assert not net.layer("ip1").blobs[0].diff.any()  # its only top gets no gradient
    assert net.layer("ip2").blobs[0].diff.any()


def test_params_with_lr_mult_zero_need_no_backward_and_inputs_no_gradient():
    frozen = 'param { lr_mult: 0 } param { lr_mult: 0 }'
    net = build(INPUT + ip("ip1", "x", "h", frozen) + ip("ip2", "h", "y")
                + 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }')
    assert net.layer_needs_backward == [False, False, True, True]
    assert net.bottom_needs_backward[2:] == [[False], [True, False]]


def test_layers_that_feed_no_loss_skip_backward():
    net = build(INPUT + ip("ip", "x", "y") + ip("side", "x", "s")
                + 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" '
                  'loss_weight: 0 }')
    # "side" has learnable params but its output feeds nothing; a 0-weighted loss counts for
    # nothing either, so nothing runs backward
    assert not any(net.layer_needs_backward)
    net.forward()
    net.clear_param_diffs()
    net.backward()
    assert not any(p.diff.any() for p in net.learnable_params)


def test_force_backward_reaches_inputs_but_not_labels():
    text = INPUT + ip("ip", "x", "y") + (
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "y" bottom: "label" top: "l" }')
    text = text.replace('top: "t"', 'top: "label"').replace("dim: 4 dim: 2", "dim: 4")
    plain = build(text)
    assert plain.bottom_needs_backward[1:] == [[False], [True, False]]
    forced = build("force_backward: true\n" + text)
    assert forced.layer_needs_backward == [True, True, True]
    assert forced.bottom_needs_backward[1:] == [[True], [True, False]]
    forced.blobs["label"].data[...] = [0, 1, 1, 0]
    forced.forward()
    forced.backward()
    w = forced.layer("ip").blobs[0].data
    np.testing.assert_allclose(forced.blobs["x"].diff, forced.blobs["y"].diff @ w, rtol=1e-12)
    assert forced.blobs["x"].diff.any()


def test_force_backward_sends_a_gradient_to_both_euclidean_bottoms():
    net = build("force_backward: true\n" + INPUT + ip("ip", "x", "y")
                + 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }')
    assert net.bottom_needs_backward[2] == [True, True]
    net.forward()
    net.backward()
    np.testing.assert_allclose(net.blobs["t"].diff, -net.blobs["y"].diff, rtol=1e-12)


def test_loss_weight_on_a_layer_that_is_no_loss_layer():
    net = build(INPUT + ip("ip", "x", "y", "loss_weight: 2"))
    assert net.loss_weights == {"y": 2.0, "t": 0.0} and net.output_blob_names == ["t", "y"]
    assert net.layer_needs_backward == [False, True]
    x = net.blobs["x"].data.copy()
    assert net.forward() == pytest.approx(2 * affine(net, "ip", x).sum(), rel=1e-12)
    net.clear_param_diffs()
    net.backward()
    np.testing.assert_allclose(net.layer("ip").blobs[0].diff, 2 * np.ones((4, 2)).T @ x)
    np.testing.assert_allclose(net.layer("ip").blobs[1].diff, [8.0, 8.0])


def test_loss_weight_must_be_given_once_per_top():
    with pytest.raises(NetError, match=r"layer 'ip' \(InnerProduct\): loss_weight is given 2 "
                                       r"time\(s\) but the layer has 1 top\(s\)"):
        build(INPUT + ip("ip", "x", "y", "loss_weight: 1 loss_weight: 2"))


DEBUG_NET = "debug_info: true\n" + INPUT + ip("ip", "x", "y", 'param { name: "w" }') + (
    'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }')


def mean_abs(a):
    return format(float(np.abs(to_host(a)).mean()), ".6g")


def test_debug_info_logs_caffe_lines_in_forward_and_backward(xp):
    stream = io.StringIO()
    net = build(DEBUG_NET, xp=xp)
    net.log = GlogLogger(stream=stream, clock=lambda: 0.0, thread_id=1)
    net.forward()
    net.clear_param_diffs()
    net.backward()
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    w, b = net.layer("ip").blobs
    assert f"    [Forward] Layer ip, top blob y data: {mean_abs(net.blobs['y'].data)}" in lines
    assert f"    [Forward] Layer ip, param blob w data: {mean_abs(w.data)}" in lines
    assert f"    [Forward] Layer ip, param blob 1 data: {mean_abs(b.data)}" in lines
    y_diff = mean_abs(net.blobs["y"].diff)
    assert f"    [Backward] Layer loss, bottom blob y diff: {y_diff}" in lines
    assert f"    [Backward] Layer ip, param blob 0 diff: {mean_abs(w.diff)}" in lines
    assert not any("bottom blob x" in line for line in lines)  # x needs no gradient
    w, b = (to_host(w.data), to_host(w.diff)), (to_host(b.data), to_host(b.diff))
    l1 = np.abs(w[0]).sum() + np.abs(b[0]).sum()
    l2 = np.sqrt((w[1] ** 2).sum() + (b[1] ** 2).sum())
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("E")
    assert (f"[Backward] All net params (data, diff): L1 norm = ({format(l1, '.6g')}, "
            in last and "L2 norm = (" in last and last.endswith(f", {format(l2, '.6g')})"))


def test_the_solver_turns_debug_info_on_for_display_iterations_only(tmp_path):
    sp = text_format.Parse('base_lr: 0.1 lr_policy: "fixed" display: 2 max_iter: 4 debug_info: '
                           'true', caffe_pb2.SolverParameter())
    sp.snapshot_prefix = str(tmp_path / "d")
    stream = io.StringIO()
    net = text_format.Parse(DEBUG_NET.replace("debug_info: true", ""), caffe_pb2.NetParameter())
    solver = Solver(sp, net_param=net, log=GlogLogger(stream=stream))
    solver.step(4)
    text = stream.getvalue()
    assert "debug_info is not supported" not in text
    assert text.count("[Forward] Layer ip, top blob y data:") == 2  # iterations 0 and 2
    assert text.count("All net params (data, diff)") == 2


def test_two_layers_may_share_a_name_unless_one_holds_weights():
    # Caffe's own mnist_autoencoder names two loss layers "loss"; both count.
    loss = ('layer {{ name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "{}" '
            'loss_weight: {} }}\n')
    net = build(INPUT + ip("fc", "x", "y") + loss.format("l1", 1) + loss.format("l2", 0.5))
    net.forward()
    d = host(net, "y") - host(net, "t")
    half_sq = float((d * d).sum() / (2 * 4))
    assert net.layer_names.count("loss") == 2
    assert np.isclose(net.forward(), 1.5 * half_sq)
    with pytest.raises(NetError, match="two layers are named 'fc' and one holds weights"):
        build(INPUT + ip("fc", "x", "y") + ip("fc", "y", "z"))


@pytest.mark.parametrize("readers", [1, 2])
def test_a_top_with_a_written_loss_weight_that_others_read_gets_both_gradients(readers):
    # As Caffe, which gives the weight to the top's Split: d/dx = the weight + the readers'
    double = ''.join(f'layer {{ name: "d{k}" type: "Power" bottom: "y" top: "z{k}" loss_weight: 1'
                     f' power_param {{ scale: 2 }} }}\n' for k in range(readers))
    net = build(INPUT + 'force_backward: true\n'
                + 'layer { name: "y" type: "Power" bottom: "x" top: "y" loss_weight: 0.5 }\n'
                + double)
    assert net.forward() == pytest.approx((0.5 + 2 * readers) * host(net, "x").sum())
    net.backward()
    np.testing.assert_allclose(to_host(net.blobs["x"].diff), 0.5 + 2 * readers)


def test_a_loss_layers_implicit_weight_is_lost_when_a_layer_reads_its_top():
    # Caffe's rule, kept: only a written loss_weight counts as one more reader of the top
    text = (INPUT + ip("ip", "x", "y")
            + 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }\n'
            + 'layer { name: "read" type: "Power" bottom: "l" top: "l2" }\n')
    assert build(text).layer_needs_backward == [False, False, False, False]
    written = build(text.replace('top: "l" }', 'top: "l" loss_weight: 1 }'))
    assert written.layer_needs_backward == [False, True, True, False]

"""The Solver on small nets: Caffe's loop, logs, snapshots, exact resume, divergence, signals."""

from __future__ import annotations

import io
import math
import os
import re
import signal
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from caffe_log_parser import parse_caffe_log
from google.protobuf import text_format

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.engine.solvers import SolverParameterError
from pipeline_lib.engine.training.divergence import DivergenceError
from pipeline_lib.engine.training.signals import SignalHandler, SolverAction
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.snapshot import load_caffemodel, load_solverstate

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"

# InnerProduct-like layers as full-size convolutions (kernel = input), so the tests need
# only MemoryData, Convolution, ReLU, Dropout, SoftmaxWithLoss and Accuracy.
NET = """
name: "tiny"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 8 channels: 1 height: 2 width: 3 } }
layer { name: "ip1" type: "Convolution" bottom: "data" top: "ip1"
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 6 kernel_h: 2 kernel_w: 3
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param { dropout_ratio: 0.3 } }
layer { name: "ip2" type: "Convolution" bottom: "ip1" top: "ip2"
        convolution_param { num_output: 3 kernel_size: 1
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
        include { phase: TEST } }
"""

SOLVER = """
base_lr: 0.1 momentum: 0.9 weight_decay: 0.001 lr_policy: "inv" gamma: 0.01 power: 0.75
display: 5 max_iter: 20 test_iter: 2 test_interval: 10 snapshot: 10 random_seed: 3
"""


def data(n=24, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 2, 3)).astype(np.float32)
    y = (x.sum(axis=(1, 2, 3)) > 0).astype(np.float32) + (x[:, 0, 0, 0] > 0)
    return x, y


def make_solver(tmp_path, solver_text=SOLVER, net_text=NET, x=None, y=None, log=None,
                **kwargs) -> Solver:
    sp = text_format.Parse(solver_text, caffe_pb2.SolverParameter())
    sp.snapshot_prefix = str(tmp_path / "tiny")
    net = text_format.Parse(net_text, caffe_pb2.NetParameter())
    if log is None:
        log = GlogLogger(tmp_path / "train.log", stderr=False)
    solver = Solver(sp, net_param=net, log=log, **kwargs)
    if x is None:
        x, y = data()
    for n in [solver.net, *solver.test_nets]:
        n.layer("data").set_arrays(x, y)
    return solver


OUTPUT_LINE = re.compile(r"(Train|Test) net output #(\d+): (\S+) = (\S+)(.*)")


def output_lines(text: str) -> list[tuple]:
    """(kind, index, name, value, loss note) of each net output line of a log."""
    return [(m[1], int(m[2]), m[3], float(m[4]), m[5])
            for m in map(OUTPUT_LINE.search, text.splitlines()) if m]


def test_net_outputs_are_logged_by_name_as_caffe_does(tmp_path, monkeypatch):
    """Outputs made in the order zz_loss, mid_out, aa_loss: real Caffe lists them by name
    (its log in tests/data/golden/caffe_output_order/, same net, solver and data)."""
    golden = GOLDEN / "caffe_output_order"
    monkeypatch.chdir(tmp_path)
    with h5py.File("in.h5", "w") as f:
        f["x"] = ((np.arange(12).reshape(4, 3) % 5 - 2) / 4).astype(np.float32)
        f["t"] = np.linspace(-1, 1, 8).reshape(4, 2).astype(np.float32)
    Path("in.list").write_text("in.h5\n")
    sp = text_format.Parse((golden / "solver.prototxt").read_text(), caffe_pb2.SolverParameter())
    sp.net = str(golden / "net.prototxt")
    solver = Solver(sp, log=GlogLogger(tmp_path / "train.log", stderr=False),
                    snapshot_prefix=str(tmp_path / "order"))
    assert solver.net.output_blob_names == ["aa_loss", "mid_out", "zz_loss"]
    solver.solve()
    solver.log.close()
    ours = output_lines((tmp_path / "train.log").read_text())
    caffe = output_lines((golden / "caffe.log").read_text())
    assert [line[:3] for line in ours] == [line[:3] for line in caffe]
    assert [line[1:3] for line in caffe[:10]] == (
        [(0, "aa_loss")] + [(k, "mid_out") for k in range(1, 9)] + [(9, "zz_loss")])
    np.testing.assert_allclose([line[3] for line in ours], [line[3] for line in caffe],
                               rtol=2e-5, atol=1e-6)
    assert [line[4] for line in ours] == [line[4] for line in caffe]  # "(* 0.5 = ... loss)"


def params_and_history(solver):
    return ([to_host(p.data).copy() for p in solver.net.learnable_params]
            + [to_host(h).copy() for h in solver.history])


def test_solve_logs_like_caffe_and_snapshots(tmp_path):
    solver = make_solver(tmp_path)
    solver.solve()
    solver.log.close()
    text = (tmp_path / "train.log").read_text()
    train, test = parse_caffe_log(text)
    assert [r["NumIters"] for r in train] == [0, 5, 10, 15]
    assert [r["NumIters"] for r in test] == [0, 10, 20]
    assert all(set(r) >= {"accuracy", "loss"} for r in test)
    assert "Iteration 5, lr = 0.0964069" in text  # 0.1 * (1 + 0.01 * 5) ** -0.75
    assert "    Test net output #0: accuracy = " in text  # outputs by name, as Caffe
    assert "Train net output #0: loss = " in text and "(* 1 = " in text
    assert text.rstrip().endswith("Optimization Done.")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["tiny_iter_10.caffemodel", "tiny_iter_10.solverstate",
                     "tiny_iter_20.caffemodel", "tiny_iter_20.solverstate", "tiny_metrics.csv",
                     "train.log"]
    state = caffe_pb2.SolverState.FromString((tmp_path / "tiny_iter_20.solverstate").read_bytes())
    assert state.iter == 20 and state.learned_net == "tiny_iter_20.caffemodel"
    assert len(state.history) == 4 and state.history[0].shape.dim == [6, 1, 2, 3]
    assert state.resume_state_json
    model = load_caffemodel(tmp_path / "tiny_iter_20.caffemodel")
    np.testing.assert_array_equal(
        np.array(model.layer[1].blobs[0].data).reshape(6, 1, 2, 3),
        to_host(solver.net.learnable_params[0].data))
    df = pd.read_csv(tmp_path / "tiny_metrics.csv")
    # a row for the loss Caffe logs after the last update too
    assert list(df[df.kind == "train"]["iter"]) == [0, 5, 10, 15, 20]
    assert list(df[df.kind == "test"]["iter"]) == [0, 10, 20]
    last = df[df.kind == "train"].iloc[-1]
    assert f"Iteration 20, loss = {format(last['smoothed_loss'], '.6g')}\n" in text
    assert not math.isnan(last["out_loss"])
    # the rates as the log prints them, on train and test rows alike
    lines = (tmp_path / "tiny_metrics.csv").read_text().splitlines()
    assert lines[0].startswith("kind,iter,net,seconds,lr,")
    rates = [line.split(",")[4] for line in lines[1:]]
    assert rates[:3] == ["0.1", "0.1", "0.0964069"]  # test 0, train 0, train 5
    for line in lines[1:]:
        kind, it, _, _, rate = line.split(",")[:5]
        if kind == "train" and it != "20":  # no update (and no lr line) at the last iteration
            assert f"Iteration {it}, lr = {rate}\n" in text
    assert df["lr"].notna().all()
    assert df[df.kind == "test"]["out_accuracy"].between(0, 1).all()


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, xp):
    full_dir, half_dir = tmp_path / "full", tmp_path / "half"
    full_dir.mkdir()
    half_dir.mkdir()
    text = SOLVER + " average_loss: 4"
    full = make_solver(full_dir, text, xp=xp)
    full.solve()
    # the first half again, in another directory, then a fresh solver resumes it
    first = make_solver(half_dir, text.replace("max_iter: 20", "max_iter: 10"), xp=xp)
    first.solve()
    resumed = make_solver(half_dir, text, xp=xp)
    resumed.solve(resume_file=half_dir / "tiny_iter_10.solverstate")
    assert resumed.iter == full.iter == 20
    for a, b in zip(params_and_history(resumed), params_and_history(full)):
        np.testing.assert_array_equal(a, b)
    for ext in (".caffemodel", ".solverstate"):
        assert (half_dir / f"tiny_iter_20{ext}").read_bytes() == \
            (full_dir / f"tiny_iter_20{ext}").read_bytes()
    # the resumed run's metrics continue the first half's, smoothed loss included
    df = pd.read_csv(half_dir / "tiny_metrics.csv").drop(columns="seconds")
    assert list(df[df.kind == "test"]["iter"]) == [0, 10, 20]
    assert list(df[df.kind == "train"]["iter"]) == [0, 5, 10, 15, 20]
    pd.testing.assert_frame_equal(df, pd.read_csv(full_dir / "tiny_metrics.csv").drop(
        columns="seconds"))


def test_resume_from_a_moved_snapshot_pair(tmp_path):
    solver = make_solver(tmp_path)
    solver.step(10)
    solver.snapshot()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for ext in (".caffemodel", ".solverstate"):
        os.replace(tmp_path / f"tiny_iter_10{ext}", moved / f"tiny_iter_10{ext}")
    again = make_solver(tmp_path)
    again.restore(moved / "tiny_iter_10.solverstate")
    assert again.iter == 10
    for a, b in zip(params_and_history(again), params_and_history(solver)):
        np.testing.assert_array_equal(a, b)


def test_snapshot_bytes_do_not_depend_on_the_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        make_solver(d).solve()
    for name in ("tiny_iter_10.caffemodel", "tiny_iter_20.solverstate"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_random_seed_changes_the_run(tmp_path):
    a = make_solver(tmp_path)
    b = make_solver(tmp_path, SOLVER.replace("random_seed: 3", "random_seed: 4"))
    assert not np.array_equal(to_host(a.net.learnable_params[0].data),
                              to_host(b.net.learnable_params[0].data))
    c = make_solver(tmp_path, SOLVER.replace("random_seed: 3", ""))  # -1 means seed 0
    d = make_solver(tmp_path, SOLVER.replace("random_seed: 3", "random_seed: 0"))
    np.testing.assert_array_equal(to_host(c.net.learnable_params[0].data),
                                  to_host(d.net.learnable_params[0].data))


def test_test_outputs_are_averages_over_test_iter_batches(tmp_path):
    solver = make_solver(tmp_path)
    solver.step(3)
    net = solver.test_nets[0]
    start = net.get_state()
    got = solver.test(0)
    net.set_state(start)
    acc, loss = [], []
    for _ in range(2):
        net.forward()
        acc.append(float(to_host(net.blobs["accuracy"].data)))
        loss.append(float(to_host(net.blobs["loss"].data)))
    assert got["accuracy"] == pytest.approx(np.mean(acc), rel=1e-6)
    assert got["loss"] == pytest.approx(np.mean(loss), rel=1e-6)


def test_smoothed_loss_averages_the_last_average_loss_iterations(tmp_path):
    solver = make_solver(tmp_path, SOLVER.replace("display: 5", "display: 1 average_loss: 3"),
                         metrics=tmp_path / "m.csv")
    solver.step(7)
    rows = pd.DataFrame(solver.metrics.rows)
    train = rows[rows.kind == "train"]
    losses = list(train["loss"])
    want = [np.mean(losses[max(0, k - 2):k + 1]) for k in range(len(losses))]
    np.testing.assert_allclose(train["smoothed_loss"], want, rtol=1e-9)


EUCLID_NET = """
name: "regression"
layer { name: "data" type: "MemoryData" top: "data" top: "target"
        memory_data_param { batch_size: BATCH channels: 3 height: 1 width: 1 } }
layer { name: "ip" type: "Convolution" bottom: "data" top: "pred"
        convolution_param { num_output: 1 kernel_size: 1
                            weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "flat" type: "Flatten" bottom: "pred" top: "flat" }
layer { name: "shape" type: "Reshape" bottom: "target" top: "target2"
        reshape_param { shape { dim: -1 dim: 1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "flat" bottom: "target2" top: "loss" }
"""


def test_iter_size_two_equals_a_doubled_batch(tmp_path, xp):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3, 1, 1))
    y = x[:, :, 0, 0] @ np.array([0.5, -1.0, 2.0]) + 0.3
    text = 'base_lr: 0.05 momentum: 0.9 weight_decay: 0.01 lr_policy: "fixed" max_iter: 6'
    results = []
    for batch, iter_size in ((8, 1), (4, 2)):
        solver = make_solver(tmp_path, f"{text} iter_size: {iter_size}",
                             EUCLID_NET.replace("BATCH", str(batch)), x=x, y=y, dtype=np.float64,
                             xp=xp)
        solver.step(6)
        results.append(params_and_history(solver))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # a single batch of 4 is a different run: the comparison above has teeth
    solver = make_solver(tmp_path, text, EUCLID_NET.replace("BATCH", "4"), x=x, y=y,
                         dtype=np.float64)
    solver.step(6)
    assert not np.allclose(params_and_history(solver)[0], results[0][0])


def test_nan_loss_stops_with_the_iteration_and_first_bad_layer(tmp_path, xp):
    x, y = data()
    x[16] = np.nan  # in the third batch (iteration 2)
    solver = make_solver(tmp_path, x=x, y=y, xp=xp)
    with pytest.raises(DivergenceError, match="iteration 2: loss = nan.*layer 'data'") as err:
        solver.solve()
    assert err.value.iteration == 2 and err.value.layer == "data"
    model, state = err.value.snapshot
    assert model.endswith("tiny_iter_2.diverged.caffemodel")
    assert state.endswith("tiny_iter_2.diverged.solverstate")
    assert load_solverstate(state).iter == 2
    # the snapshot is the state before iteration 2: resuming replays iteration 2
    again = make_solver(tmp_path, x=x, y=y, xp=xp)
    again.restore(state)
    for a, b in zip(params_and_history(again), params_and_history(solver)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DivergenceError, match="iteration 2"):
        again.step(1)
    assert "training diverged at iteration 2" in (tmp_path / "train.log").read_text()


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_nan_in_a_hidden_layer_is_blamed_on_that_layer(tmp_path):
    solver = make_solver(tmp_path)
    solver.step(1)
    solver.net.layer("ip2").blobs[0].data[...] = np.inf
    with pytest.raises(DivergenceError, match="layer 'ip2'.*weights of 'ip2' are already"):
        solver.step(1)


def test_signal_actions_snapshot_and_stop(tmp_path):
    requests = {3: SolverAction.SNAPSHOT, 6: SolverAction.STOP}
    solver = make_solver(tmp_path, SOLVER.replace("snapshot: 10", "snapshot: 0"))
    solver.action_request = lambda: requests.pop(solver.iter - 1, SolverAction.NONE)
    seen = []
    solver.on_iteration.append(lambda s: seen.append(s.iter))
    solver.solve()
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert solver.iter == 7 and solver.requested_early_exit
    names = sorted(p.name for p in tmp_path.glob("tiny_iter_*"))
    assert names == ["tiny_iter_4.caffemodel", "tiny_iter_4.solverstate",
                     "tiny_iter_7.caffemodel", "tiny_iter_7.solverstate"]
    assert "Optimization stopped early." in (tmp_path / "train.log").read_text()


def test_signal_handler_maps_signals_to_actions():
    before = signal.getsignal(signal.SIGINT)
    with SignalHandler(sigint_effect="stop", sighup_effect="snapshot") as handler:
        assert handler() == SolverAction.NONE
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGHUP)
        assert handler() == SolverAction.SNAPSHOT  # SIGHUP is answered first, as in Caffe
        assert handler() == SolverAction.STOP
        assert handler() == SolverAction.NONE
        os.kill(os.getpid(), signal.SIGTERM)
        assert handler() == SolverAction.STOP
    assert signal.getsignal(signal.SIGINT) is before  # restored on exit
    with pytest.raises(ValueError, match="unknown signal effect 'pause'"):
        SignalHandler(sigint_effect="pause")


def test_weights_fine_tune_from_a_caffemodel(tmp_path):
    solver = make_solver(tmp_path)
    solver.step(5)
    model, _ = solver.snapshot()
    tuned = make_solver(tmp_path, SOLVER + f' weights: "{model}"',
                        log=GlogLogger(stream=io.StringIO()))
    for a, b in zip(tuned.net.learnable_params, solver.net.learnable_params):
        np.testing.assert_array_equal(to_host(a.data), to_host(b.data))
    assert tuned.iter == 0 and not any(to_host(h).any() for h in tuned.history)
    # the test net shares the train net's weights
    assert tuned.test_nets[0].layer("ip1").blobs[0] is tuned.net.layer("ip1").blobs[0]


def test_restoring_a_solverstate_of_another_solver_type_is_refused(tmp_path):
    solver = make_solver(tmp_path)
    solver.step(1)
    _, state = solver.snapshot()
    adam = make_solver(tmp_path, SOLVER + ' type: "Adam"')
    with pytest.raises(SolverParameterError, match="holds 4 history blobs but the Adam solver"):
        adam.restore(state)


@pytest.mark.parametrize("extra, words", [
    ("test_iter: 2", "test_iter must be given for each test net"),
    ("average_loss: 0", "average_loss must be >= 1"),
    ("snapshot_format: HDF5", "HDF5 is not supported"),
])
def test_bad_solver_parameters_are_named(tmp_path, extra, words):
    text = SOLVER + " " + extra
    if "test_iter" in extra:
        text = text.replace("test_iter: 2", "") + ' test_net: "a.prototxt" test_net: "b.prototxt"'
    with pytest.raises(SolverParameterError, match=words):
        make_solver(tmp_path, text)


def test_missing_snapshot_directory_is_reported_up_front(tmp_path):
    sp = text_format.Parse(SOLVER, caffe_pb2.SolverParameter())
    sp.snapshot_prefix = str(tmp_path / "no" / "such" / "dir" / "tiny")
    with pytest.raises(SolverParameterError, match="cannot write to snapshot prefix"):
        Solver(sp, net_param=text_format.Parse(NET, caffe_pb2.NetParameter()),
               log=GlogLogger(stream=io.StringIO()))


def test_test_initialization_and_test_compute_loss(tmp_path):
    solver = make_solver(tmp_path, SOLVER + " test_initialization: false test_compute_loss: true")
    solver.solve()
    solver.log.close()
    text = (tmp_path / "train.log").read_text()
    assert "Iteration 0, Testing net" not in text
    assert text.count("Testing net (#0)") == 2  # iterations 10 and 20
    assert text.count("] Test loss: ") == 2


def test_train_net_and_test_net_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.prototxt").write_text(NET)
    (tmp_path / "test.prototxt").write_text(NET.replace('name: "tiny"', 'name: "tiny_test"'))
    sp = text_format.Parse(SOLVER, caffe_pb2.SolverParameter())
    sp.train_net = "train.prototxt"
    sp.test_net.append("test.prototxt")
    sp.test_net_param.add().CopyFrom(text_format.Parse(NET, caffe_pb2.NetParameter()))
    sp.test_iter.append(1)
    sp.snapshot_prefix = "tiny"
    solver = Solver(sp, log=GlogLogger(stream=io.StringIO()))
    # Caffe's order: test_net_param entries first, then test_net files
    assert [n.name for n in solver.test_nets] == ["tiny", "tiny_test"]
    assert all("acc" in n.layer_names for n in solver.test_nets)
    assert "acc" not in solver.net.layer_names


def test_stages_and_level_select_train_layers(tmp_path):
    staged = NET.replace('dropout_param { dropout_ratio: 0.3 } }',
                         'dropout_param { dropout_ratio: 0.3 } include { stage: "drop" } }')
    plain = make_solver(tmp_path, net_text=staged)
    with_stage = make_solver(tmp_path, net_text=staged, stages=["drop"], level=2)
    assert "drop" not in plain.net.layer_names
    assert "drop" in with_stage.net.layer_names
    assert with_stage.param.train_state.level == 2
    assert "drop" not in with_stage.test_nets[0].layer_names  # test nets keep test_state


def test_a_solver_that_will_snapshot_needs_a_prefix(tmp_path):
    sp = text_format.Parse(SOLVER.replace("snapshot: 10", "snapshot: 0"),
                           caffe_pb2.SolverParameter())
    net = text_format.Parse(NET, caffe_pb2.NetParameter())
    with pytest.raises(SolverParameterError, match=r"\(snapshot_after_train\) but sets no"):
        Solver(sp, net_param=net, log=GlogLogger(stream=io.StringIO()))
    sp.snapshot_after_train = False
    solver = Solver(sp, net_param=net, log=GlogLogger(stream=io.StringIO()))
    assert solver.metrics.path is None


@pytest.mark.parametrize("solver_type", ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta",
                                         "Adam"])
def test_metrics_have_the_same_columns_for_every_solver_type(tmp_path, solver_type):
    extra = {"AdaDelta": " delta: 1e-6", "RMSProp": " rms_decay: 0.98 momentum: 0",
             "AdaGrad": " momentum: 0"}.get(solver_type, "")
    text = SOLVER.replace("momentum: 0.9", "momentum: 0.9" if not extra.count("momentum")
                          else "") + f' type: "{solver_type}"' + extra
    solver = make_solver(tmp_path, text.replace("max_iter: 20", "max_iter: 10"))
    solver.solve()
    lines = (tmp_path / "tiny_metrics.csv").read_text().splitlines()
    assert lines[0] == "kind,iter,net,seconds,lr,loss,smoothed_loss,out_accuracy,out_loss"
    kinds = [(line.split(",")[0], line.split(",")[1]) for line in lines[1:]]
    assert kinds == [("test", "0"), ("train", "0"), ("train", "5"), ("train", "10"),
                     ("test", "10")]
    assert all(line.split(",")[4] for line in lines[1:])  # a rate on every row

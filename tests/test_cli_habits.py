"""Caffe's command-line habits in `pcaffe`: -gpu lists, -stage/-level, device_query,
--version, single-dash flags, help on every flag, one line for a bad value."""

from __future__ import annotations

import argparse
import io

import pytest

from pipeline_lib import cli
from pipeline_lib.core import backend, glog
from pipeline_lib.core.cli_args import gpu_list, name_list

STATE_NET = """
name: "states"
layer { name: "data" type: "DummyData" top: "data"
        dummy_data_param { shape { dim: 1 dim: 2 } data_filler { type: "constant" value: 1 } } }
layer { name: "plain" type: "Power" bottom: "data" top: "out"
        exclude { stage: "double" } }
layer { name: "double" type: "Power" bottom: "data" top: "out" power_param { scale: 2 }
        include { stage: "double" max_level: 1 } }
layer { name: "many" type: "Power" bottom: "data" top: "out" power_param { scale: 3 }
        include { stage: "double" min_level: 2 } }
"""


def every_action(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for inner in every_action(sub):
                    yield f"{name} {inner[0]}", inner[1]
        else:
            yield "/".join(action.option_strings) or action.dest, action


def test_every_flag_has_help():
    missing = [name for name, action in every_action(cli.build_parser()) if not action.help]
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("pcaffe ")


def test_gpu_values():
    assert gpu_list("0") == (0,) and gpu_list("0,1") == (0, 1) and gpu_list("all") == "all"
    for bad in ("x", "-1", "0,0", "1,,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a GPU number"):
            gpu_list(bad)
    assert name_list("deploy,fast") == ("deploy", "fast")
    args = cli.build_parser().parse_args(["test", "-model", "m", "-gpu", "0,1"])
    assert args.gpu == (0, 1)
    assert cli.build_parser().parse_args(["test", "-model", "m", "--gpu"]).gpu == (0,)
    assert cli.build_parser().parse_args(["test", "-model", "m"]).gpu is None


def test_bad_gpu_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["test", "-model", "m.prototxt", "-gpu", "first"])
    assert done.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "-gpu: got 'first'; expected a GPU number" in err
    with pytest.raises(SystemExit):
        cli.main(["test", "-model", "m.prototxt", "-level", "high"])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "-level: got 'high'; expected a whole number" in err


def test_a_gpu_list_uses_the_first_and_says_so(monkeypatch):
    used = []
    monkeypatch.setattr(backend, "gpu_count", lambda: 2)
    monkeypatch.setattr(backend, "use_gpu", used.append)
    log = io.StringIO()
    monkeypatch.setattr(glog, "_default", glog.GlogLogger(stream=log))
    for value, expect in (((1, 0), 1), ("all", 0), ((1,), 1)):
        args = argparse.Namespace(gpu=value, command="test")
        assert cli._gpu(args) == expect
    assert used == [1, 0, 1]
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("-gpu 1,0: multi-GPU runs are not implemented yet; using GPU 1 only")
    assert "-gpu 0,1:" in lines[1]


def test_gpu_without_a_device_is_one_line(tmp_path, capsys):
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    net = tmp_path / "net.prototxt"
    net.write_text(STATE_NET)
    assert cli.main(["test", "-model", str(net), "-gpu", "0", "-iterations", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "GPU 0 does not exist" in err
    assert cli.main(["device_query"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA device is visible" in err


@pytest.mark.gpu
def test_device_query_lists_the_gpu(capsys):
    if not backend.gpu_available():
        pytest.skip("needs CuPy and a CUDA device")
    assert cli.main(["device_query", "-gpu", "0"]) == 0
    out = capsys.readouterr().out
    assert "Device id:                     0" in out and "Total global memory:" in out


@pytest.mark.parametrize("flags, value", [([], 1), (["-stage", "double"], 2),
                                          (["-stage", "x,double", "-level", "2"], 3)])
def test_stage_and_level_choose_the_layers(tmp_path, capsys, flags, value):
    net = tmp_path / "net.prototxt"
    net.write_text(STATE_NET)
    assert cli.main(["test", "-model", str(net), "-iterations", "1", *flags]) == 0
    out = capsys.readouterr().out
    assert f"out[0] = {value}\n" in out and f"out[1] = {value}\n" in out


def test_train_stage_and_level_reach_the_train_state(tmp_path):
    from pipeline_lib.engine.training.job import TrainingJob

    (tmp_path / "net.prototxt").write_text(STATE_NET)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.1\nmax_iter: 1\n'
                      f'snapshot_prefix: "{tmp_path}/s"\ntrain_state {{ stage: "own" }}\n')
    job = TrainingJob.create(solver, stages=("double",), level=2)
    assert list(job.effective.train_state.stage) == ["own", "double"]
    assert job.effective.train_state.level == 2
    args = cli.build_parser().parse_args(["train", "-solver", str(solver), "-stage", "a,b",
                                          "-level", "3"])
    assert args.stage == ("a", "b") and args.level == 3

"""Fine-tuning and testing from weights of another net (`--weights`, the solver's
`weights`, `api.Net(model, weights)`): a file that matches no layer of the net is an
error naming both sides' layers; a layer of the net that the file lacks keeps its filler
values, with a warning, and a layer of the file that the net lacks is ignored, logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.api import Net
from pipeline_lib.engine.net import NetError
from pipeline_lib.proto import caffe_pb2
from reliability.rel_util import clean_failure, pcaffe, record, solver_with, tree

NO_MATCH = [r"other\.caffemodel: matches no layer of net 'small'",
            r"the file \(net 'small'\) has weights for 'convX', 'ipX'",
            r"the net has learnable layers 'conv1', 'ip1'"]


def _renamed(model: Path, out: Path, names: dict[str, str]) -> None:
    param = caffe_pb2.NetParameter.FromString(model.read_bytes())
    for layer in param.layer:
        layer.name = names.get(layer.name, layer.name)
    out.write_bytes(param.SerializeToString())


@pytest.fixture
def run(run_dir) -> Path:
    """The run folder with weights of the small net trained 10 iterations, renamed:
    other.caffemodel (every learnable layer) and half.caffemodel (ip1 only)."""
    done = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 10, "--output",
                  "w/small_iter_10", cwd=run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    model = run_dir / "w/small_iter_10.caffemodel"
    _renamed(model, run_dir / "other.caffemodel", {"conv1": "convX", "ip1": "ipX"})
    _renamed(model, run_dir / "half.caffemodel", {"ip1": "ipX"})
    return run_dir


@pytest.mark.parametrize("case, args", [
    ("`pcaffe train --weights` of another net",
     ("train", "--solver", "solver.prototxt", "--weights", "other.caffemodel",
      "--iterations", 10, "--output", "results/ft_iter_10")),
    ("solver `weights:` of another net",
     ("train", "--solver", "weights_solver.prototxt", "--iterations", 10, "--output",
      "results/ft_iter_10")),
    ("`pcaffe test --weights` of another net",
     ("test", "--model", "small.prototxt", "--weights", "other.caffemodel", "--iterations", 1)),
    ("`pcaffe time --weights` of another net",
     ("time", "--model", "small.prototxt", "--weights", "other.caffemodel", "--iterations", 1)),
])
def test_weights_that_match_no_layer(run, case, args):
    solver_with(run, "weights_solver.prototxt", weights="other.caffemodel")
    before = tree(run)
    done = pcaffe(*args, cwd=run)
    clean_failure(done, case, *NO_MATCH)
    assert tree(run) == before


def test_api_net_with_weights_that_match_no_layer(run, monkeypatch):
    monkeypatch.chdir(run)
    with pytest.raises(NetError, match=" ".join(NO_MATCH[:1])):
        Net("small.prototxt", "other.caffemodel")


def _glog_lines(stderr: str, level: str, text: str) -> list[str]:
    """The messages (prefix removed) of the glog lines of `level` that contain `text`."""
    return [line.split("] ", 1)[1] for line in stderr.splitlines()
            if line.startswith(level) and text in line]


@pytest.mark.parametrize("case, args", [
    ("`pcaffe train --weights` of a net that lacks a layer",
     ("train", "--solver", "solver.prototxt", "--weights", "half.caffemodel", "--iterations",
      10, "--output", "results/ft_iter_10")),
    ("`pcaffe test --weights` of a net that lacks a layer",
     ("test", "--model", "small.prototxt", "--weights", "half.caffemodel", "--iterations", 1)),
])
def test_weights_that_match_some_layers(run, case, args):
    done = pcaffe(*args, cwd=run)
    assert done.returncode == 0, done.stderr[-3000:]
    warned = _glog_lines(done.stderr, "W", "holds no weights")
    assert warned == ["half.caffemodel holds no weights for layer 'ip1' of net 'small'; it "
                      "keeps its initial (filler) values"]
    assert _glog_lines(done.stderr, "I", "Ignoring") == ["Ignoring source layer ipX"]
    record(case, warned[0], done.returncode)


def test_training_without_weights_warns_of_none(run_dir):
    """A run that fine-tunes from nothing copies nothing and says nothing about weights
    (it once warned, with an empty file name, for every learnable layer)."""
    done = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 10, "--output",
                  "results/plain_iter_10", cwd=run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _glog_lines(done.stderr, "W", "weights") == []
    assert "Finetuning" not in done.stderr

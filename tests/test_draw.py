"""Drawing a net: the DOT graph we write, and Graphviz's picture of it (when installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline_lib import draw
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net

REPO = Path(__file__).resolve().parents[1]
TRAIN_TEST = REPO / "models" / "lenet" / "lenet_train_test.prototxt"


def test_dot_text_has_every_layer_and_blob_of_the_phase():
    net = read_net(TRAIN_TEST)
    text = draw.to_dot(net, "TB", caffe_pb2.TEST)
    assert text.startswith('digraph "LeNet" {') and "rankdir=TB;" in text
    assert "(Accuracy)" in text  # a TEST-only layer
    assert text.count("(Data)") == 1  # the TRAIN data layer is left out
    assert "kernel 5, stride 1, pad 0\\n20 outputs" in text
    # relu1 rewrites ip1 in place: a second ip1 node, so the graph stays a chain
    assert '"blob:ip1:0" -> ' in text and '-> "blob:ip1:1"' in text
    every = draw.to_dot(net)
    assert every.count("(Data)") == 2
    with pytest.raises(ValueError, match="rankdir 'UP'"):
        draw.to_dot(net, "UP")


def test_missing_dot_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert draw.main([str(TRAIN_TEST), str(tmp_path / "net.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Graphviz's `dot` program" in err
    assert not (tmp_path / "net.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's dot is not installed (apt-get install graphviz)")
def test_draws_png_and_svg(tmp_path):
    from pipeline_lib.cli import main

    assert draw.main([str(TRAIN_TEST), str(tmp_path / "lenet.png"), "--phase", "TRAIN"]) == 0
    assert (tmp_path / "lenet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["draw", str(TRAIN_TEST), str(tmp_path / "lenet.svg"), "-rankdir", "TB"]) == 0
    svg = (tmp_path / "lenet.svg").read_text()
    assert "<svg" in svg and "conv1" in svg and "(Convolution)" in svg

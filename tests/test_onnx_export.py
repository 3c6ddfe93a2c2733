"""ONNX export, run in onnxruntime against our forward (skipped without the [onnx] extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.cli import main
from pipeline_lib.engine.net import Net
from pipeline_lib.export.onnx_export import ExportError, export_onnx, to_onnx
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
ROOT = Path(__file__).resolve().parents[1]


def run_both(net: Net, extra_outputs=(), seed=0):
    """Our outputs and onnxruntime's (each output, and the blobs in `extra_outputs`)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for layer, tops in zip(net.layers, net.tops):
        if layer.type == "Input":
            for blob in tops:
                blob.data[...] = rng.standard_normal(blob.shape)
                feeds[blob.name] = blob.data.astype(np.float32)
    net.forward()
    model = to_onnx(net, extra_outputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    theirs = dict(zip(names, session.run(names, feeds)))
    return {n: net.blobs[n].data for n in names}, theirs


def random_weights(net: Net, seed: int, std: float = 0.05) -> None:
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, std, blob.shape)


def max_diff(ours, theirs):
    return {n: float(np.abs(ours[n] - theirs[n]).max()) for n in ours}


def test_lenet_deploy_matches_onnxruntime():
    net = Net(read_net(ROOT / "models/lenet/lenet.prototxt"), caffe_pb2.TEST,
              rng=np.random.default_rng(1))  # weights from the prototxt's fillers, seeded
    ours, theirs = run_both(net, ["ip1", "ip2"])
    diff = max_diff(ours, theirs)
    print("LeNet max abs difference", diff)
    assert max(diff.values()) < 1e-5 and np.abs(ours["ip2"]).max() > 0.1


@pytest.mark.slow
def test_caffenet_deploy_matches_onnxruntime():
    param = read_net(ROOT / "models/caffenet/deploy.prototxt")
    param.layer[0].input_param.shape[0].dim[0] = 2
    net = Net(param, caffe_pb2.TEST)
    random_weights(net, seed=2, std=0.02)
    ours, theirs = run_both(net, ["pool5", "fc8"])
    diff = max_diff(ours, theirs)
    print("CaffeNet max abs difference", diff)
    scale = np.abs(ours["fc8"]).max()
    assert scale > 0.01 and diff["fc8"] < 1e-4 * scale and diff["prob"] < 1e-6


MIXED = """
name: "mixed"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 dim: 7 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 group: 2 stride: 1
                            weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu" type: "ReLU" bottom: "c" top: "c" relu_param { negative_slope: 0.1 } }
layer { name: "maxp" type: "Pooling" bottom: "c" top: "m"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "avep" type: "Pooling" bottom: "c" top: "a"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "avep2" type: "Pooling" bottom: "c" top: "a2"
        pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "m" bottom: "a" top: "s"
        eltwise_param { operation: SUM coeff: 2 coeff: -1 } }
layer { name: "prod" type: "Eltwise" bottom: "m" bottom: "a" top: "p"
        eltwise_param { operation: PROD } }
layer { name: "cat" type: "Concat" bottom: "s" bottom: "p" top: "cat" }
layer { name: "lrn" type: "LRN" bottom: "cat" top: "n" lrn_param { local_size: 3 alpha: 0.5 } }
layer { name: "sig" type: "Sigmoid" bottom: "n" top: "n" }
layer { name: "lrn2" type: "LRN" bottom: "a" top: "n2"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.6 norm_region: WITHIN_CHANNEL } }
layer { name: "flat" type: "Flatten" bottom: "n" top: "f" }
layer { name: "ip" type: "InnerProduct" bottom: "f" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "tanh" type: "TanH" bottom: "ip" top: "t" }
layer { name: "drop" type: "Dropout" bottom: "t" top: "t" }
layer { name: "prob" type: "Softmax" bottom: "t" top: "prob" }
layer { name: "ip3" type: "InnerProduct" bottom: "a2" top: "ip3"
        inner_product_param { num_output: 3 axis: 2 weight_filler { type: "xavier" } } }
layer { name: "shape" type: "Reshape" bottom: "ip3" top: "r"
        reshape_param { shape { dim: 0 dim: -1 } } }
"""


def test_every_exported_layer_type_matches_onnxruntime():
    net = Net(text_format.Parse(MIXED, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    # Caffe's ceil rounding: 7x8 pooled by 3/2 gives 3x4 (floor would give 3x3)
    assert net.blobs["m"].shape == (2, 6, 3, 4) and net.blobs["a2"].shape == (2, 6, 7, 8)
    ours, theirs = run_both(net, ["m", "a", "a2", "c", "ip3"])
    diff = max_diff(ours, theirs)
    assert set(ours) == {"prob", "r", "n2", "m", "a", "a2", "c", "ip3"}
    assert max(diff.values()) < 1e-5, diff


#: MIXED and a Filter, whose top's size depends on the data: no ONNX export
UNSUPPORTED = MIXED + """
layer { name: "sel" type: "Input" top: "keep" input_param { shape { dim: 2 } } }
layer { name: "filter" type: "Filter" bottom: "prob" bottom: "keep" top: "kept" }
"""


def test_an_unsupported_layer_is_named_in_one_line():
    net = Net(text_format.Parse(UNSUPPORTED, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    with pytest.raises(ExportError, match=r"^layer 'filter': type Filter has no ONNX export; "
                                          r"exported types: Input, Convolution.*Scale"):
        to_onnx(net)


def test_ave_pooling_that_caffe_averages_over_part_of_its_padding_is_refused():
    text = MIXED.replace("kernel_size: 3 stride: 1 pad: 1", "kernel_size: 3 stride: 2 pad: 1")
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    with pytest.raises(ExportError, match=r"layer 'avep2' \(Pooling\): AVE pooling with pad "
                                          r"\[1, 1\] whose ceil rounding adds a window"):
        to_onnx(net)


def pooling_net(*bodies: str) -> Net:
    text = ('layer { name: "in" type: "Input" top: "x" '
            'input_param { shape { dim: 2 dim: 3 dim: 5 dim: 7 } } }\n')
    for i, body in enumerate(bodies):
        text += (f'layer {{ name: "p{i}" type: "Pooling" bottom: "x" top: "y{i}" '
                 f"pooling_param {{ {body} }} }}\n")
    return Net(text_format.Parse(text, caffe_pb2.NetParameter()), caffe_pb2.TEST)


def test_ceil_pooling_with_an_overhanging_last_window_matches_onnxruntime():
    # end padding of a whole stride would reach the kernel size, which onnxruntime refuses
    net = pooling_net("pool: MAX kernel_size: 2 stride: 2", "pool: AVE kernel_size: 2 stride: 2",
                      "pool: MAX kernel_size: 2 stride: 3 pad_h: 1 pad_w: 0")
    assert [net.blobs[f"y{i}"].shape[2:] for i in range(3)] == [(3, 4), (3, 4), (2, 3)]
    ours, theirs = run_both(net)
    assert max(max_diff(ours, theirs).values()) < 1e-6


def test_a_pooling_window_past_the_image_is_refused():
    net = pooling_net("pool: MAX kernel_size: 1 stride: 3")  # rows 0, 3 and 6: past 5 rows
    with pytest.raises(ExportError, match=r"^layer 'p0' \(Pooling\): ceil rounding with stride "
                                          r"3 above kernel 1 leaves a last window past the "
                                          r"5-pixel image"):
        to_onnx(net)


def test_a_training_net_is_refused():
    param = text_format.Parse(MIXED + (
        'layer { name: "lab" type: "Input" top: "label" input_param { shape { dim: 2 } } }'
        'layer { name: "acc" type: "Accuracy" bottom: "prob" bottom: "label" top: "acc" }'),
        caffe_pb2.NetParameter())
    with pytest.raises(ExportError, match=r"layer 'acc' \(Accuracy\): export a deploy net"):
        to_onnx(Net(param, caffe_pb2.TEST))


def test_the_command_writes_a_model_that_runs(tmp_path, capsys):
    net = Net(read_net(ROOT / "models/lenet/lenet.prototxt"), caffe_pb2.TEST,
              rng=np.random.default_rng(3))
    weights = tmp_path / "lenet.caffemodel"
    weights.write_bytes(net.to_proto().SerializeToString())
    out = tmp_path / "lenet.onnx"
    assert main(["export-onnx", "-model", str(ROOT / "models/lenet/lenet.prototxt"),
                 "-weights", str(weights), "-output", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(4).standard_normal((64, 1, 28, 28)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    (prob,) = session.run(["prob"], {"data": x})
    assert np.abs(prob - net.blobs["prob"].data).max() < 1e-6
    assert [o.name for o in session.get_outputs()] == ["prob"]
    # a bad model: one line, exit 1, nothing written
    bad = tmp_path / "bad.prototxt"
    bad.write_text(UNSUPPORTED)
    assert main(["export-onnx", "-model", str(bad), "-output", str(tmp_path / "bad.onnx")]) == 1
    assert "type Filter has no ONNX export" in capsys.readouterr().err
    assert not (tmp_path / "bad.onnx").exists()
    assert export_onnx(ROOT / "models/lenet/lenet.prototxt", [weights], out).name == "LeNet"

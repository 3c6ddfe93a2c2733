"""ONNX export of the newer layer types, each run in onnxruntime against our forward, and
a ResNet-style and an FCN-style deploy net (skipped without the [onnx] extra)."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.cli import main
from pipeline_lib.engine.net import Net
from pipeline_lib.export.onnx_export import ExportError, to_onnx
from pipeline_lib.export.onnx_layers import CONVERTERS
from pipeline_lib.proto import caffe_pb2

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

G = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'


def build(text: str) -> Net:
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), caffe_pb2.TEST,
              rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for layer in net.layers:
        if layer.type == "BatchNorm" and layer.name != "fresh":  # sums and a factor, trained
            c = layer.channels
            factor = 2.5
            layer.blobs[0].data[...] = rng.normal(0, 1, c) * factor
            layer.blobs[1].data[...] = rng.uniform(0.2, 2, c) * factor
            layer.blobs[2].data[...] = factor
        elif layer.type in ("Scale", "Bias", "PReLU", "Parameter"):
            for blob in layer.blobs:
                blob.data[...] = rng.normal(0, 1, blob.shape)
    return net


def run_both(net: Net, feeds: dict | None = None, seed: int = 0):
    """Every top of every layer, ours and onnxruntime's, for the same inputs."""
    rng = np.random.default_rng(seed)
    feeds = dict(feeds or {})
    for layer, tops in zip(net.layers, net.tops):
        if layer.type == "Input":
            for blob in tops:
                if blob.name not in feeds:
                    feeds[blob.name] = rng.standard_normal(blob.shape).astype(np.float32)
                blob.data[...] = feeds[blob.name]
    net.forward()
    blobs = [b.name for layer, tops in zip(net.layers, net.tops) if layer.type != "Input"
             for b in tops]
    model = to_onnx(net, blobs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(net.output_blob_names) + [b for b in blobs if b not in net.output_blob_names]
    theirs = dict(zip(names, session.run([o.name for o in model.graph.output], feeds)))
    ours = {n: np.array(net.blobs[n].data) for n in names}
    for n in names:
        assert theirs[n].shape == ours[n].shape, (n, theirs[n].shape, ours[n].shape)
    return ours, theirs


def relative_diff(ours, theirs) -> float:
    """The largest |difference| over all tops, each relative to its top's largest value
    (at least 1)."""
    return max(float(np.abs(ours[n] - theirs[n]).max() / max(1.0, np.abs(ours[n]).max()))
               for n in ours)


def net_text(shape, layers: str, extra_inputs: str = "") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}'
            + extra_inputs + layers)


def one(type_: str, params: str = "", name: str = "l", bottom: str = 'bottom: "x"',
        top: str = "y") -> str:
    return f'layer {{ name: "{name}" type: "{type_}" {bottom} top: "{top}" {params} }}'


CASES = {
    "BatchNorm": ((2, 3, 4, 5), one("BatchNorm")),
    "BatchNorm in place": ((2, 3, 4, 5), one("BatchNorm", top="x")),
    "BatchNorm 2-D": ((4, 6), one("BatchNorm")),
    # factor 0 (never trained): Caffe reads the estimates as 0 whatever the sums hold
    "BatchNorm factor 0": ((2, 3, 4), one("BatchNorm", name="fresh")),
    "BatchNorm batch stats": ((3, 3, 4, 5), one(
        "BatchNorm", "batch_norm_param { use_global_stats: false eps: 0.001 }")),
    "Scale axis 1": ((2, 3, 4, 5), one("Scale", "scale_param { bias_term: true }")),
    "Scale two axes": ((2, 3, 4, 5), one("Scale", "scale_param { axis: 1 num_axes: 2 }")),
    "Scale to the end": ((2, 3, 4, 5), one("Scale", "scale_param { axis: 2 num_axes: -1 }")),
    "Scale scalar": ((2, 3, 4), one("Scale", "scale_param { num_axes: 0 bias_term: true }")),
    "Scale by a bottom": ((2, 3, 4, 5), one(
        "Scale", "scale_param { axis: 1 bias_term: true }", bottom='bottom: "x" bottom: "s"'),
        ' layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 3 dim: 4 } } }'),
    "Bias axis 1": ((2, 3, 4, 5), one("Bias")),
    "Bias by a bottom": ((2, 3, 4, 5), one(
        "Bias", "bias_param { axis: 0 }", bottom='bottom: "x" bottom: "b"'),
        ' layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 2 dim: 3 } } }'),
    "Deconvolution": ((2, 4, 5, 6), one("Deconvolution", (
        "convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 "
        f"dilation: 2 {G} }}"))),
    "Deconvolution rect, two bottoms": ((1, 3, 4, 4), one("Deconvolution", (
        "convolution_param { num_output: 2 kernel_h: 4 kernel_w: 2 stride_h: 2 stride_w: 3 "
        f"pad_h: 1 pad_w: 0 bias_term: false {G} }}"), bottom='bottom: "x" bottom: "x2"',
        top='y" top: "y2'),
        ' layer { name: "x2" type: "Input" top: "x2" input_param { shape { dim: 1 dim: 3 '
        'dim: 4 dim: 4 } } }'),
    "Crop": ((2, 3, 9, 8), one("Crop", "crop_param { axis: 2 offset: 2 offset: 1 }",
                               bottom='bottom: "x" bottom: "ref"'),
             ' layer { name: "r" type: "Input" top: "ref" input_param { shape { dim: 1 dim: 1 '
             'dim: 5 dim: 6 } } }'),
    "Crop from axis 1": ((2, 5, 6, 6), one("Crop", "crop_param { axis: 1 offset: 1 }",
                                           bottom='bottom: "x" bottom: "ref"'),
                         ' layer { name: "r" type: "Input" top: "ref" input_param { shape { '
                         'dim: 2 dim: 3 dim: 4 dim: 5 } } }'),
    "PReLU": ((2, 3, 4, 5), one("PReLU")),
    "PReLU shared": ((2, 3, 4), one("PReLU", "prelu_param { channel_shared: true }")),
    "ELU": ((2, 3, 4, 5), one("ELU", "elu_param { alpha: 0.7 }")),
    "Power": ((2, 3, 4), one("Power", "power_param { power: 3 scale: 0.5 shift: 1 }")),
    "Power fractional": ((2, 3, 4), one("Power", "power_param { power: 0.5 scale: 0.7 "
                                                 "shift: 10 }")),
    "Power 0": ((2, 3), one("Power", "power_param { power: 0 scale: 2 }")),
    "Power scale 0": ((2, 3), one("Power", "power_param { power: 2 scale: 0 shift: 3 }")),
    "Power 1": ((2, 3), one("Power", "power_param { scale: -2 shift: 0.5 }")),
    "Exp": ((2, 3, 4), one("Exp")),
    "Exp base 2": ((2, 3, 4), one("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }")),
    "Log": ((2, 3, 4), one("Log", "log_param { shift: 5 }")),
    "Log base 2": ((2, 3, 4), one("Log", "log_param { base: 2 scale: 0.5 shift: 10 }")),
    "Clip": ((2, 3, 4), one("Clip", "clip_param { min: -0.5 max: 0.7 }")),
    "Clip min over max": ((2, 3), one("Clip", "clip_param { min: 0.5 max: -0.7 }")),
    "Swish": ((2, 3, 4), one("Swish", "swish_param { beta: 1.5 }")),
    "BNLL": ((2, 3, 4), one("Power", "power_param { scale: 60 }", "big", top="big")
             + one("BNLL", bottom='bottom: "big"')),
    "Threshold": ((2, 3, 4), one("Threshold", "threshold_param { threshold: 0.3 }")),
    "Tile": ((2, 3, 4), one("Tile", "tile_param { axis: 1 tiles: 3 }")),
    "ArgMax": ((3, 2, 4, 5), one("ArgMax", "argmax_param { top_k: 3 }")),
    "ArgMax values": ((3, 2, 4, 5), one("ArgMax", "argmax_param { top_k: 2 out_max_val: "
                                                  "true }")),
    "ArgMax axis": ((3, 5, 4), one("ArgMax", "argmax_param { axis: 1 top_k: 2 }")),
    "ArgMax axis values": ((3, 5, 4), one("ArgMax", "argmax_param { axis: -1 out_max_val: "
                                                    "true }")),
    # 0/1 values: every choice is a tie, which Caffe gives to the larger index
    "ArgMax ties": ((3, 6, 2), one("Threshold", name="t", top="t")
                    + one("ArgMax", "argmax_param { axis: 1 top_k: 4 }", bottom='bottom: "t"')
                    + one("ArgMax", "argmax_param { top_k: 5 }", "a2", 'bottom: "t"', "y2")),
    "Reduction": ((2, 3, 4), one("Reduction")),
    "Reduction ASUM": ((2, 3, 4), one("Reduction", "reduction_param { operation: ASUM "
                                                   "axis: 1 }")),
    "Reduction SUMSQ": ((2, 3, 4), one("Reduction", "reduction_param { operation: SUMSQ "
                                                    "axis: 2 coeff: 0.5 }")),
    "Reduction MEAN": ((2, 3, 4), one("Reduction", "reduction_param { operation: MEAN "
                                                   "axis: -2 coeff: -3 }")),
    "MVN": ((2, 3, 4, 5), one("MVN")),
    "MVN across channels": ((2, 3, 4, 5), one("MVN", "mvn_param { across_channels: true "
                                                     "eps: 0.01 }")),
    "MVN mean only, 3-D": ((3, 2, 7), one("MVN", "mvn_param { normalize_variance: false }")),
    "Softmax axis 2": ((2, 3, 4, 5), one("Softmax", "softmax_param { axis: 2 }")),
    "Softmax axis -1": ((2, 3, 4), one("Softmax", "softmax_param { axis: -1 }")),
    "Im2col": ((2, 3, 7, 6), one("Im2col", "convolution_param { kernel_size: 3 stride: 2 "
                                           "pad: 1 }")),
    "Im2col dilated": ((1, 2, 8, 8), one("Im2col", "convolution_param { kernel_h: 2 "
                                                   "kernel_w: 3 dilation: 2 }")),
    "SPP": ((2, 3, 7, 9), one("SPP", "spp_param { pyramid_height: 3 }")),
    "SPP AVE": ((2, 3, 7, 9), one("SPP", "spp_param { pyramid_height: 3 pool: AVE }")),
    "SPP one level": ((2, 3, 5, 6), one("SPP", "spp_param { pyramid_height: 1 }")),
    "Slice": ((2, 6, 3), one("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 4 }",
                             top='y" top: "y2" top: "y3')),
    "Slice equal": ((4, 3), one("Slice", "slice_param { axis: 0 }", top='y" top: "y2')),
    "Parameter": ((2, 3), one("Parameter", "parameter_param { shape { dim: 2 dim: 3 } }",
                              bottom="") + one("Eltwise", name="e", bottom='bottom: "x" '
                                               'bottom: "y"', top="sum")),
    "LSTMUnit": ((1, 3, 4), one("LSTMUnit", bottom='bottom: "x" bottom: "gates" bottom: "cont"',
                                top='c" top: "h'),
                 ' layer { name: "gates" type: "Input" top: "gates" top: "cont" input_param { '
                 'shape { dim: 1 dim: 3 dim: 16 } shape { dim: 1 dim: 3 } } }'),
    "LSTM": ((5, 3, 2, 2), one("LSTM", f"recurrent_param {{ num_output: 4 {G} }}",
                               bottom='bottom: "x" bottom: "cont"'), ' layer { name: "c" '
             'type: "Input" top: "cont" input_param { shape { dim: 5 dim: 3 } } }'),
    "LSTM static, exposed": ((4, 2, 3), one(
        "LSTM", f"recurrent_param {{ num_output: 3 expose_hidden: true {G} }}",
        bottom='bottom: "x" bottom: "cont" bottom: "xs" bottom: "h0" bottom: "c0"',
        top='y" top: "hT" top: "cT'),
        ' layer { name: "c" type: "Input" top: "cont" top: "xs" top: "h0" top: "c0" '
        'input_param { shape { dim: 4 dim: 2 } shape { dim: 2 dim: 5 } '
        'shape { dim: 1 dim: 2 dim: 3 } shape { dim: 1 dim: 2 dim: 3 } } }'),
    "LSTM one step": ((1, 2, 3), one("LSTM", f"recurrent_param {{ num_output: 2 {G} }}",
                                     bottom='bottom: "x" bottom: "cont"'),
                      ' layer { name: "c" type: "Input" top: "cont" input_param { shape { '
                      'dim: 1 dim: 2 } } }'),
    "RNN": ((5, 3, 2), one("RNN", f"recurrent_param {{ num_output: 4 {G} }}",
                           bottom='bottom: "x" bottom: "cont"'), ' layer { name: "c" '
            'type: "Input" top: "cont" input_param { shape { dim: 5 dim: 3 } } }'),
    "RNN static, exposed": ((3, 2, 4), one(
        "RNN", f"recurrent_param {{ num_output: 3 expose_hidden: true {G} }}",
        bottom='bottom: "x" bottom: "cont" bottom: "xs" bottom: "h0"', top='y" top: "hT'),
        ' layer { name: "c" type: "Input" top: "cont" top: "xs" top: "h0" '
        'input_param { shape { dim: 3 dim: 2 } shape { dim: 2 dim: 5 } '
        'shape { dim: 1 dim: 2 dim: 3 } } }'),
    "Silence": ((2, 3), one("AbsVal", top="a") + ' layer { name: "s" type: "Silence" '
                'bottom: "x" }'),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_new_type_matches_onnxruntime(case):
    shape, layers, *extra = CASES[case]
    net = build(net_text(shape, layers, *extra))
    ours, theirs = run_both(net)
    diff = relative_diff(ours, theirs)
    print(f"{case}: max abs difference (relative to the top's scale) {diff:.2e}")
    assert diff < 2e-6, (case, diff)
    assert any(np.abs(v).max() > 0.1 for v in ours.values()), case  # not all zeros


def test_embed_and_batch_reindex_gather_rows():
    text = net_text((3, 4), one("Embed", f"embed_param {{ input_dim: 7 num_output: 5 {G} }}")
                    + one("Embed", f"embed_param {{ input_dim: 7 num_output: 2 bias_term: "
                          f"false {G} }}", "e2", top="y2")
                    + one("BatchReindex", name="r", bottom='bottom: "y" bottom: "i"', top="r"),
                    ' layer { name: "i" type: "Input" top: "i" input_param { shape { dim: 5 } '
                    '} }')
    net = build(text)
    rng = np.random.default_rng(2)
    feeds = {"x": rng.integers(0, 7, (3, 4)).astype(np.float32),
             "i": np.array([2, 0, 0, 1, 2], np.float32)}
    ours, theirs = run_both(net, feeds)
    assert ours["y"].shape == (3, 4, 5) and ours["r"].shape == (5, 4, 5)
    assert relative_diff(ours, theirs) < 1e-6 and np.abs(ours["r"]).max() > 0.1


def test_the_coverage_of_the_cases():
    covered = {c.split(" ")[0] for c in CASES} | {"Embed", "BatchReindex"}
    assert set(CONVERTERS) | {"SPP"} <= covered, set(CONVERTERS) - covered


RESNET = """
name: "resnet_block"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 16
        dim: 16 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 bias_term: false
                            weight_filler { type: "msra" } } }
layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale_conv1" type: "Scale" bottom: "conv1" top: "conv1"
        scale_param { bias_term: true } }
layer { name: "conv1_relu" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "res2a_branch2a" type: "Convolution" bottom: "conv1" top: "res2a_branch2a"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 bias_term: false
                            weight_filler { type: "msra" } } }
layer { name: "bn2a_branch2a" type: "BatchNorm" bottom: "res2a_branch2a" top: "res2a_branch2a" }
layer { name: "scale2a_branch2a" type: "Scale" bottom: "res2a_branch2a"
        top: "res2a_branch2a" scale_param { bias_term: true } }
layer { name: "res2a_branch2a_relu" type: "ReLU" bottom: "res2a_branch2a"
        top: "res2a_branch2a" }
layer { name: "res2a_branch2b" type: "Convolution" bottom: "res2a_branch2a"
        top: "res2a_branch2b" convolution_param { num_output: 8 kernel_size: 3 pad: 1
        bias_term: false weight_filler { type: "msra" } } }
layer { name: "bn2a_branch2b" type: "BatchNorm" bottom: "res2a_branch2b" top: "res2a_branch2b" }
layer { name: "scale2a_branch2b" type: "Scale" bottom: "res2a_branch2b"
        top: "res2a_branch2b" scale_param { bias_term: true } }
layer { name: "res2a" type: "Eltwise" bottom: "conv1" bottom: "res2a_branch2b" top: "res2a" }
layer { name: "res2a_relu" type: "ReLU" bottom: "res2a" top: "res2a" }
layer { name: "pool5" type: "Pooling" bottom: "res2a" top: "pool5"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc10" type: "InnerProduct" bottom: "pool5" top: "fc10"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" }
                              bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc10" top: "prob" }
"""


def test_a_resnet_block_matches_onnxruntime(tmp_path):
    net = build(RESNET)
    ours, theirs = run_both(net)
    diff = {n: float(np.abs(ours[n] - theirs[n]).max()) for n in ("res2a", "fc10", "prob")}
    print("ResNet block max abs difference", diff)
    assert np.abs(ours["fc10"]).max() > 0.1 and np.ptp(ours["prob"]) > 0.01
    assert diff["res2a"] < 1e-5 * np.abs(ours["res2a"]).max() and diff["prob"] < 1e-6
    # the Caffe names of the in-place blobs are the graph outputs; the intermediate
    # writes (conv, BatchNorm, Scale before the ReLU) got fresh names
    # through files: the .caffemodel's BatchNorm blobs (sums and factor) and the command
    (tmp_path / "net.prototxt").write_text(RESNET)
    net.params["bn_conv1"][0].data[...] = 7  # not trained: the factor 0 rule, in the file too
    net.params["bn_conv1"][2].data[...] = 0
    net.forward()
    (tmp_path / "net.caffemodel").write_bytes(net.to_proto().SerializeToString())
    assert main(["export-onnx", "-model", str(tmp_path / "net.prototxt"), "-weights",
                 str(tmp_path / "net.caffemodel"), "-output", str(tmp_path / "net.onnx")]) == 0
    model = onnx.load(str(tmp_path / "net.onnx"))
    assert [o.name for o in model.graph.output] == ["prob"]
    assert {n.op_type for n in model.graph.node} >= {"BatchNormalization", "Mul", "Add", "Sum"}
    session = ort.InferenceSession(str(tmp_path / "net.onnx"),
                                   providers=["CPUExecutionProvider"])
    (prob,) = session.run(["prob"], {"data": net.blobs["data"].data.astype(np.float32)})
    assert np.abs(prob - net.blobs["prob"].data).max() < 1e-6
    assert np.abs(prob - ours["prob"]).max() > 1e-3  # the stored statistics did change it


FCN = """
name: "fcn_head"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 20
        dim: 22 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 10
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "score" type: "Convolution" bottom: "conv1" top: "score"
        convolution_param { num_output: 3 kernel_size: 1
                            weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "upscore" type: "Deconvolution" bottom: "score" top: "upscore"
        convolution_param { num_output: 3 kernel_size: 4 stride: 2 bias_term: false
                            group: 3 weight_filler { type: "bilinear" } } }
layer { name: "crop" type: "Crop" bottom: "upscore" bottom: "data" top: "cropped"
        crop_param { axis: 2 offset: 9 } }
layer { name: "prob" type: "Softmax" bottom: "cropped" top: "prob" }
"""


def test_an_fcn_head_matches_onnxruntime():
    net = build(FCN)
    assert net.blobs["upscore"].shape == (1, 3, 40, 42)
    assert net.blobs["prob"].shape == (1, 3, 20, 22)
    ours, theirs = run_both(net)
    diff = {n: float(np.abs(ours[n] - theirs[n]).max()) for n in ("cropped", "prob")}
    print("FCN max abs difference", diff)
    assert np.abs(ours["cropped"]).max() > 0.1
    assert diff["cropped"] < 1e-5 and diff["prob"] < 1e-6


def test_a_filter_layer_is_refused_in_one_line():
    text = net_text((4, 3), one("Filter", bottom='bottom: "x" bottom: "keep"'),
                    ' layer { name: "k" type: "Input" top: "keep" input_param { shape { '
                    'dim: 4 } } }')
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    with pytest.raises(ExportError, match=r"^layer 'l': type Filter has no ONNX export; "
                                          r"exported types: [^\n]*Deconvolution, Crop"):
        to_onnx(net)

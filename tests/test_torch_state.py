"""PyTorch state_dict interchange: a torch LeNet with our weights computes our forward,
and a torch state_dict loads into a Caffe net (skipped where torch is absent)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.engine.net import Net
from pipeline_lib.export.torch_state import (
    StateDictError,
    caffemodel_to_torch,
    load_state_dict,
    to_state_dict,
    torch_to_caffemodel,
)
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net
from pipeline_lib.proto.snapshot import load_caffemodel

torch = pytest.importorskip("torch")
nn = torch.nn
LENET = Path(__file__).resolve().parents[1] / "models/lenet/lenet.prototxt"


def torch_lenet():
    """Caffe's LeNet deploy net, module by module under the Caffe layer names."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 20, 5)), ("pool1", nn.MaxPool2d(2, 2, ceil_mode=True)),
        ("conv2", nn.Conv2d(20, 50, 5)), ("pool2", nn.MaxPool2d(2, 2, ceil_mode=True)),
        ("flat", nn.Flatten()), ("ip1", nn.Linear(800, 500)), ("relu1", nn.ReLU()),
        ("ip2", nn.Linear(500, 10)), ("prob", nn.Softmax(dim=1))])).eval()


def lenet(seed: int) -> Net:
    return Net(read_net(LENET), caffe_pb2.TEST, rng=np.random.default_rng(seed))


def forward(net: Net, x: np.ndarray) -> np.ndarray:
    net.blobs["data"].data[...] = x
    net.forward()
    return net.blobs["prob"].data.copy(), net.blobs["ip2"].data.copy()


def test_a_torch_lenet_with_our_weights_computes_our_forward():
    net = lenet(seed=1)
    state = to_state_dict(net)
    assert list(state) == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                           "ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias"]
    model = torch_lenet()
    model.load_state_dict(state)
    x = np.random.default_rng(2).standard_normal((64, 1, 28, 28)).astype(np.float32)
    prob, ip2 = forward(net, x)
    with torch.no_grad():
        scores = model[:-1](torch.from_numpy(x)).numpy()
        theirs = model(torch.from_numpy(x)).numpy()
    print("LeNet torch max abs difference: ip2", np.abs(scores - ip2).max(),
          "prob", np.abs(theirs - prob).max())
    assert np.abs(ip2).max() > 0.1
    assert np.abs(scores - ip2).max() < 1e-5 and np.abs(theirs - prob).max() < 1e-6


def test_a_torch_state_dict_loads_into_the_caffe_net_and_back(tmp_path):
    torch.manual_seed(0)
    model = torch_lenet()
    net = lenet(seed=3)
    assert load_state_dict(net, model.state_dict()) == list(to_state_dict(net))
    x = np.random.default_rng(4).standard_normal((64, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert np.abs(forward(net, x)[0] - theirs).max() < 1e-6
    # files: state_dict -> caffemodel -> state_dict
    torch.save(model.state_dict(), tmp_path / "lenet.pt")
    torch_to_caffemodel(LENET, tmp_path / "lenet.pt", tmp_path / "lenet.caffemodel")
    saved = load_caffemodel(tmp_path / "lenet.caffemodel")
    assert [lp.name for lp in saved.layer if lp.blobs] == ["conv1", "conv2", "ip1", "ip2"]
    caffemodel_to_torch(LENET, [tmp_path / "lenet.caffemodel"], tmp_path / "back.pt")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(back[key], value), key


def test_a_mismatched_state_dict_is_refused_in_one_line_and_nothing_is_copied():
    net = lenet(seed=5)
    before = net.params["conv1"][0].data.copy()
    state = to_state_dict(lenet(seed=6))
    state["ip2.weight"] = torch.zeros(12, 500)
    with pytest.raises(StateDictError, match=r"^state_dict key 'ip2.weight' has shape \[12, 500\] "
                                             r"but layer 'ip2' blob 0 has shape \[10, 500\]$"):
        load_state_dict(net, state)
    np.testing.assert_array_equal(net.params["conv1"][0].data, before)
    del state["ip2.weight"]
    with pytest.raises(StateDictError, match=r"state_dict lacks ip2.weight of net 'LeNet'"):
        load_state_dict(net, state)
    state["fc9.weight"] = torch.zeros(1)
    with pytest.raises(StateDictError, match=r"key 'fc9.weight' names no learnable blob"):
        load_state_dict(net, state)


def test_a_transposed_inner_product_is_stored_as_torch_lays_out_linear():
    text = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 3 dim: 4 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y"
            inner_product_param { num_output: 2 transpose: true
                                  weight_filler { type: "gaussian" std: 1 } } }
    """
    net = Net(text_format.Parse(text, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    assert net.params["fc"][0].shape == (4, 2)
    linear = nn.Linear(4, 2)
    linear.load_state_dict({k.split(".")[1]: v for k, v in to_state_dict(net).items()})
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    with torch.no_grad():
        np.testing.assert_allclose(linear(torch.from_numpy(x)).numpy(), net.blobs["y"].data,
                                   rtol=1e-5, atol=1e-6)


BN_NET = """
name: "bn"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 dim: 5 dim: 5 } } }
layer { name: "conv1" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 6 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { eps: 0.001 } }
layer { name: "scale1" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "c" top: "c" }
layer { name: "scale2" type: "Scale" bottom: "c" top: "s" scale_param { bias_term: true } }
"""


def torch_bn_net():
    """BN_NET in torch: BatchNorm + Scale are one BatchNorm2d under the BatchNorm's name;
    scale2 follows a ReLU, so it stays a per-channel affine of its own."""
    class Affine(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(c))
            self.bias = nn.Parameter(torch.zeros(c))

        def forward(self, x):
            return x * self.weight[:, None, None] + self.bias[:, None, None]

    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 6, 3)), ("bn1", nn.BatchNorm2d(6, eps=0.001)),
        ("relu1", nn.ReLU()), ("scale2", Affine(6))])).eval()


def test_batchnorm_and_scale_are_a_torch_batchnorm2d_both_ways(tmp_path):
    net = Net(text_format.Parse(BN_NET, caffe_pb2.NetParameter()), caffe_pb2.TEST,
              rng=np.random.default_rng(7))
    rng = np.random.default_rng(8)
    bn = net.params["bn1"]
    bn[0].data[...] = rng.normal(0, 1, 6) * 3.5  # Caffe's sums, over a factor of 3.5
    bn[1].data[...] = rng.uniform(0.5, 2, 6) * 3.5
    bn[2].data[...] = 3.5
    for name in ("scale1", "scale2"):
        for blob in net.params[name]:
            blob.data[...] = rng.normal(0, 1, blob.shape)
    state = to_state_dict(net)
    assert list(state) == ["conv1.weight", "conv1.bias", "bn1.running_mean", "bn1.running_var",
                           "bn1.weight", "bn1.bias", "scale2.weight", "scale2.bias"]
    np.testing.assert_allclose(state["bn1.running_mean"].numpy(), bn[0].data / 3.5, rtol=1e-6)
    model = torch_bn_net()
    model.load_state_dict(state)  # torch fills num_batches_tracked in
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    diff = np.abs(theirs - net.blobs["s"].data).max()
    print("BatchNorm + Scale vs torch BatchNorm2d: max abs difference", diff)
    assert np.abs(theirs).max() > 0.5 and diff < 1e-5
    # back: torch's state (with num_batches_tracked) into a fresh net, factor 1
    torch.manual_seed(1)
    model = torch_bn_net()
    with torch.no_grad():
        model.bn1.running_mean.normal_()
        model.bn1.running_var.uniform_(0.5, 2)
        model.bn1.weight.normal_()
    other = Net(text_format.Parse(BN_NET, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    copied = load_state_dict(other, model.state_dict())
    assert "bn1.num_batches_tracked" not in copied and len(copied) == 8
    assert float(other.params["bn1"][2].data[0]) == 1
    np.testing.assert_array_equal(other.params["bn1"][1].data, model.bn1.running_var.numpy())
    np.testing.assert_array_equal(other.params["scale1"][0].data, model.bn1.weight.detach().numpy())
    other.blobs["x"].data[...] = x
    other.forward()
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert np.abs(theirs - other.blobs["s"].data).max() < 1e-5
    for key, value in to_state_dict(other).items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_a_batchnorm_whose_factor_is_zero_gives_zero_estimates():
    net = Net(text_format.Parse(BN_NET, caffe_pb2.NetParameter()), caffe_pb2.TEST)
    net.params["bn1"][0].data[...] = 5  # sums without a factor: Caffe reads the estimates as 0
    state = to_state_dict(net, tensors=False)
    assert not state["bn1.running_mean"].any() and not state["bn1.running_var"].any()
    # one estimate given (not strict): the other keeps its value, the factor becomes 1
    net.params["bn1"][2].data[...] = 2
    load_state_dict(net, {"bn1.running_var": np.full(6, 3.0, np.float32)}, strict=False)
    np.testing.assert_array_equal(net.params["bn1"][0].data, np.full(6, 2.5, np.float32))
    np.testing.assert_array_equal(net.params["bn1"][1].data, np.full(6, 3.0, np.float32))
    assert float(net.params["bn1"][2].data[0]) == 1

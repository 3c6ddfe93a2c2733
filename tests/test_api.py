"""The pycaffe-style Net: Caffe's trained LeNet through the deploy net gives Caffe's activations."""

from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.api import Net, phase_value
from pipeline_lib.core.backend import Device, to_host
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import parse_net_text, read_net_binary

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
DEPLOY = REPO / "models" / "lenet" / "lenet.prototxt"
WEIGHTS = GOLDEN / "lenet_iter_10000.caffemodel"


@pytest.fixture(scope="module")
def caffe_blobs():
    with np.load(GOLDEN / "caffe_lenet_test100_blobs.npz") as blobs:
        return dict(blobs)


def lenet_input(digits: np.ndarray) -> np.ndarray:
    return digits[:, None].astype(np.float32) * np.float32(0.00390625)


def test_forward_matches_caffes_activations(xp, caffe_blobs):
    net = Net(DEPLOY, WEIGHTS, "TEST", device=Device.CPU if xp is np else Device.GPU)
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    out = net.forward(blobs=["conv1", "pool1", "conv2", "pool2", "ip1", "ip2"],
                      data=lenet_input(caffe_blobs["data"]))
    assert net.blobs["data"].shape == (100, 1, 28, 28)  # reshaped from the prototxt's 64
    for name in ("conv1", "pool1", "conv2", "pool2", "ip1", "ip2"):
        want = caffe_blobs[name]
        got = out[name].reshape(want.shape)
        assert isinstance(out[name], np.ndarray) and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max())), name
    prob = out["prob"]
    assert prob.shape == (100, 10)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(prob.argmax(axis=1), caffe_blobs["label"])


def test_blobs_and_params_are_the_nets_arrays(caffe_blobs):
    net = Net(DEPLOY, WEIGHTS)
    model = {lp.name: lp for lp in read_net_binary(WEIGHTS).layer}
    assert list(net.params) == ["conv1", "conv2", "ip1", "ip2"]
    w = net.params["conv1"][0].data
    assert isinstance(w, np.ndarray) and w.shape == (20, 1, 5, 5)
    np.testing.assert_array_equal(w.ravel(), np.asarray(model["conv1"].blobs[0].data, np.float32))
    # writing in place through blobs[...].data is what forward() reads (pycaffe's idiom)
    net.blobs["data"].reshape((3, 1, 28, 28))
    net.blobs["data"].data[...] = lenet_input(caffe_blobs["data"][:3])
    out = net.forward()
    np.testing.assert_array_equal(out["prob"].argmax(axis=1), caffe_blobs["label"][:3])
    assert out["prob"] is not net.blobs["prob"].data  # a copy


def test_batch_size_follows_the_input(caffe_blobs):
    net = Net(DEPLOY, WEIGHTS)
    x = lenet_input(caffe_blobs["data"][:12])
    full = net.forward(data=x)["prob"]
    assert net.blobs["ip2"].shape == (12, 10)
    one = net.forward(data=x[5:6])["prob"]
    assert net.blobs["ip2"].shape == (1, 10)
    np.testing.assert_allclose(one[0], full[5], rtol=1e-5, atol=1e-7)


def test_forward_from_start_to_end(caffe_blobs):
    net = Net(DEPLOY, WEIGHTS)
    x = lenet_input(caffe_blobs["data"][:4])
    part = net.forward(end="pool1", data=x)
    assert list(part) == ["pool1"]
    np.testing.assert_allclose(part["pool1"], caffe_blobs["pool1"][:4], atol=1e-5)
    rest = net.forward(start="conv2")
    np.testing.assert_array_equal(rest["prob"].argmax(axis=1), caffe_blobs["label"][:4])
    with pytest.raises(KeyError, match="no layer 'nope'"):
        net.forward(end="nope")


def test_bad_inputs_are_named():
    net = Net(DEPLOY, WEIGHTS)
    with pytest.raises(KeyError, match="no input blob 'image'.*inputs: data"):
        net.forward(image=np.zeros((1, 1, 28, 28)))
    with pytest.raises(ValueError, match="same number of axes"):
        net.forward(data=np.zeros((28, 28)))
    with pytest.raises(KeyError, match="not an output blob"):
        net.backward(ip1=np.zeros((64, 500)))


TINY = """
name: "tiny"
force_backward: true
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "constant" value: 0.5 } } }
"""


def test_backward_gives_input_and_param_gradients():
    net = Net(parse_net_text(TINY, "tiny"), phase=caffe_pb2.TRAIN)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = net.forward(x=x)
    w, b = (p.data for p in net.params["fc"])
    np.testing.assert_allclose(out["y"], x @ w.T + b, rtol=1e-6)
    top = np.array([[1, 0, 2, 0], [0, 1, 0, -1]], np.float32)
    diffs = net.backward(y=top)
    np.testing.assert_allclose(diffs["x"], top @ w, rtol=1e-6)
    np.testing.assert_allclose(net.params["fc"][0].diff, top.T @ x, rtol=1e-6)
    np.testing.assert_allclose(net.params["fc"][1].diff, top.sum(axis=0), rtol=1e-6)


def test_save_writes_a_caffemodel_that_loads_back(tmp_path, caffe_blobs):
    net = Net(DEPLOY, WEIGHTS)
    net.params["ip2"][1].data[...] += 1.0
    net.save(tmp_path / "copy.caffemodel")
    saved = read_net_binary(tmp_path / "copy.caffemodel")
    assert [lp.name for lp in saved.layer if len(lp.blobs)] == ["conv1", "conv2", "ip1", "ip2"]
    again = Net(DEPLOY, tmp_path / "copy.caffemodel")
    for layer, blobs in net.params.items():
        for mine, theirs in zip(blobs, again.params[layer]):
            np.testing.assert_array_equal(to_host(mine.data), to_host(theirs.data))
    assert not any(f.name.endswith(".tmp") for f in tmp_path.iterdir())


def test_phase_names_and_values():
    assert phase_value("test") == caffe_pb2.TEST and phase_value(caffe_pb2.TRAIN) == 0
    with pytest.raises(ValueError, match="TRAIN or TEST"):
        phase_value("deploy")
    assert Net(DEPLOY, phase=caffe_pb2.TEST).core.phase == caffe_pb2.TEST


def test_outputs_by_name_and_the_last_one_written():
    """Caffe lists outputs by name; classify and evaluate read the one written last."""
    net = Net(parse_net_text('''
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "side" type: "Power" bottom: "x" top: "zeta" }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
                inner_product_param { num_output: 4 } }
        layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }''', "two_outputs"),
        phase="TEST")
    assert net.outputs == ["prob", "zeta"] and net.last_output == "prob"
    assert list(net.forward(x=np.ones((2, 3), np.float32))) == ["prob", "zeta"]

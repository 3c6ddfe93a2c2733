"""pycaffe's habits through `pipeline_lib.caffe`: Net's forms and attributes, blob
reshapes, NetSpec's keyword rules, the io Transformer, Classifier and the modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline_lib import caffe, mode
from pipeline_lib.caffe import layers as L
from pipeline_lib.caffe import params as P
from pipeline_lib.caffe.net_spec import NetSpecError
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import parse_net_text, read_net

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "models" / "lenet" / "lenet.prototxt"
WEIGHTS = REPO / "tests" / "data" / "golden" / "lenet_iter_10000.caffemodel"


@pytest.fixture(scope="module")
def digits():
    with np.load(REPO / "tests" / "data" / "golden" / "caffe_lenet_test100_blobs.npz") as b:
        return b["data"][:6, None].astype(np.float32) / 256, b["label"][:6]


# -- Net ---------------------------------------------------------------------------------
def test_pycaffes_three_ways_to_make_a_net(digits):
    x, labels = digits
    a = caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST)
    b = caffe.Net(str(DEPLOY), caffe.TEST, weights=str(WEIGHTS))
    c = caffe.Net(str(DEPLOY), caffe.TEST)  # untrained: zero biases, filled weights
    assert a.phase == b.phase == caffe.TEST
    pa, pb = a.forward(data=x)["prob"], b.forward(data=x)["prob"]
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(pa.argmax(1), labels)
    assert not np.array_equal(c.params["conv1"][0].data, a.params["conv1"][0].data)
    c.copy_from(str(WEIGHTS))
    np.testing.assert_array_equal(c.forward(data=x)["prob"], pa)
    with pytest.raises(TypeError, match="weights given twice"):
        caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST, weights=str(WEIGHTS))


def test_attributes_as_pycaffe_names_them():
    net = caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST)
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert net._layer_names == ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1",
                                "ip2", "prob"]
    assert [layer.type for layer in net.layers][:3] == ["Input", "Convolution", "Pooling"]
    assert net.layer_dict["conv1"] is net.layers[1]
    assert net.layer_dict["conv1"].blobs[0] is net.params["conv1"][0]
    assert net.top_names["relu1"] == ["ip1"] and net.bottom_names["ip2"] == ["ip1"]
    blob = net.blobs["conv1"]
    assert (blob.num, blob.channels, blob.height, blob.width) == (64, 20, 24, 24)
    assert blob.count == 64 * 20 * 24 * 24
    assert net.blobs["ip2"].height == 1  # axes a blob lacks count as 1, as in Caffe


def test_blob_reshape_then_net_reshape(digits):
    x, labels = digits
    net = caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST)
    net.blobs["data"].reshape(3, 1, 28, 28)  # pycaffe's spelling: the dimensions
    net.reshape()
    assert net.blobs["prob"].shape == (3, 10) and net.blobs["conv1"].num == 3
    net.blobs["data"].data[...] = x[:3]
    out = net.forward()
    np.testing.assert_array_equal(out["prob"].argmax(1), labels[:3])
    net.blobs["data"].reshape((2, 1, 28, 28))  # and the tuple form
    net.reshape()
    assert net.blobs["ip1"].shape == (2, 500)


def test_forward_all_batches_any_count(digits):
    x, _ = digits
    net = caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST)
    net.blobs["data"].reshape(4, 1, 28, 28)
    every = net.forward_all(data=x)["prob"]  # 6 inputs through a batch of 4: 4 + 2
    assert every.shape == (6, 10)
    np.testing.assert_allclose(every, net.forward(data=x)["prob"], rtol=1e-5, atol=1e-7)


def test_backward_save_and_share_with(tmp_path, digits):
    x, _ = digits
    net = caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST)
    net.forward(data=x)
    grads = net.backward(prob=np.ones((6, 10), np.float32))
    assert grads["data"].shape == (6, 1, 28, 28)
    net.save(tmp_path / "copy.caffemodel")
    other = caffe.Net(str(DEPLOY), caffe.TEST)
    other.share_with(net)
    assert other.params["ip2"][0] is net.params["ip2"][0]
    reread = caffe.Net(str(DEPLOY), str(tmp_path / "copy.caffemodel"), caffe.TEST)
    np.testing.assert_array_equal(reread.params["conv2"][0].data, net.params["conv2"][0].data)


def test_modes_and_seed(monkeypatch):
    caffe.set_mode_cpu()
    assert mode.device().value == "CPU"
    net_param = read_net(DEPLOY)
    caffe.set_random_seed(7)
    try:
        a = caffe.Net(net_param, caffe.TEST).params["conv1"][0].data.copy()
        b = caffe.Net(net_param, caffe.TEST).params["conv1"][0].data.copy()
        caffe.set_random_seed(8)
        c = caffe.Net(net_param, caffe.TEST).params["conv1"][0].data.copy()
    finally:
        monkeypatch.setattr(mode, "_seed", None)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="set_device: expected a GPU number"):
        caffe.set_device(-1)
    if not caffe_gpu():
        with pytest.raises(ValueError, match="GPU 0 does not exist"):
            caffe.set_device(0)
        caffe.set_mode_gpu()
        try:
            with pytest.raises(RuntimeError, match="needs CuPy and a CUDA device"):
                caffe.Net(net_param, caffe.TEST)
        finally:
            caffe.set_mode_cpu()


def caffe_gpu() -> bool:
    from pipeline_lib.core.backend import gpu_available

    return gpu_available()


@pytest.mark.gpu
def test_gpu_mode_runs_on_the_device(digits):
    if not caffe_gpu():
        pytest.skip("needs CuPy and a CUDA device")
    x, labels = digits
    caffe.set_device(0)
    caffe.set_mode_gpu()
    try:
        net = caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST)
        assert type(net.blobs["conv1"].data).__module__.startswith("cupy")
        np.testing.assert_array_equal(net.forward(data=x)["prob"].argmax(1), labels)
    finally:
        caffe.set_mode_cpu()


# -- NetSpec -----------------------------------------------------------------------------
def test_netspec_keywords_follow_pycaffes_rules():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1, bias_term=False,
                           param=[dict(lr_mult=1, decay_mult=1)],
                           weight_filler=dict(type="gaussian", std=0.1), loss_weight=0)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.AVE, global_pooling=True)
    n.drop = L.Dropout(n.pool, dropout_ratio=0.3, in_place=True,
                       include=dict(phase=caffe.TRAIN))
    n.a, n.b = L.Slice(n.pool, slice_point=[2], ntop=2)
    n.silence = L.Silence(n.b, ntop=0)
    n.out = L.Eltwise(n.a, n.a, operation=P.Eltwise.SUM)
    net = n.to_proto()
    layers = {lp.name: lp for lp in net.layer}
    assert list(layers) == ["data", "conv", "pool", "drop", "a", "silence", "out"]
    assert list(layers["data"].input_param.shape[0].dim) == [2, 3, 8, 8]
    conv = layers["conv"]
    cp = conv.convolution_param
    assert (cp.num_output, list(cp.kernel_size), list(cp.pad), cp.bias_term) == (4, [3], [1],
                                                                                 False)
    assert cp.weight_filler.std == pytest.approx(0.1)
    assert conv.param[0].lr_mult == 1 and list(conv.loss_weight) == [0]
    assert layers["pool"].pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    drop = layers["drop"]
    assert list(drop.top) == ["pool"] and drop.include[0].phase == caffe.TRAIN
    assert list(layers["a"].top) == ["a", "b"] and list(layers["a"].slice_param.slice_point) == [2]
    assert list(layers["silence"].bottom) == ["b"] and not layers["silence"].top
    assert list(layers["out"].bottom) == ["a", "a"]
    # printed by our writer, read back and built by our Net
    text = str(net)
    built = caffe.Net(parse_net_text(text, "spec.prototxt"), caffe.TEST)
    assert built.blobs["out"].shape == (2, 2, 1, 1)


def test_netspec_unnamed_tops_and_bad_keywords():
    data = L.Input(shape=dict(dim=[1, 2]))
    net = caffe.to_proto(L.InnerProduct(L.ReLU(data), num_output=3))
    assert [(lp.name, list(lp.top)) for lp in net.layer] == [
        ("Input1", ["Input1"]), ("ReLU1", ["ReLU1"]), ("InnerProduct1", ["InnerProduct1"])]
    deconv = caffe.to_proto(L.Deconvolution(data, num_output=2, kernel_size=2))
    assert deconv.layer[-1].convolution_param.num_output == 2
    with pytest.raises(NetSpecError, match="L.Pooling .*keyword num_outputs=3: neither "
                                           "pooling_param nor LayerParameter"):
        caffe.to_proto(L.Pooling(data, num_outputs=3))
    with pytest.raises(TypeError, match="bottom 0 is a list"):
        L.ReLU([data])
    with pytest.raises(AttributeError, match="PoolingParameter has no value 'MAXIMUM'"):
        _ = P.Pooling.MAXIMUM


# -- io and Classifier ---------------------------------------------------------------------
def test_transformer_preprocess_and_deprocess():
    t = caffe.io.Transformer({"data": (1, 3, 4, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([104.0, 117.0, 123.0]))
    t.set_input_scale("data", 0.5)
    image = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)  # RGB in [0, 1]
    out = t.preprocess("data", image)
    want = (image.transpose(2, 0, 1)[::-1] * 255 - np.array([104, 117, 123])[:, None, None]) * 0.5
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(t.deprocess("data", out), image, atol=1e-6)
    resized = t.preprocess("data", np.full((8, 10, 3), 0.5, np.float32))  # resized first
    np.testing.assert_allclose(resized[0], (0.5 * 255 - 104) * 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="mean of 2 channel values for input 'data' of 3"):
        t.set_mean("data", np.zeros(2))
    with pytest.raises(ValueError, match="'image' is not one of the net's inputs"):
        t.set_raw_scale("image", 1)
    with pytest.raises(ValueError, match="channel swap"):
        t.set_channel_swap("data", (1, 0))


def test_oversample_and_resize():
    image = np.arange(6 * 8 * 2, dtype=np.float32).reshape(6, 8, 2)
    crops = caffe.io.oversample([image], (4, 4))
    assert crops.shape == (10, 4, 4, 2)
    np.testing.assert_array_equal(crops[0], image[:4, :4])       # top left
    np.testing.assert_array_equal(crops[3], image[2:, 4:])       # bottom right
    np.testing.assert_array_equal(crops[4], image[1:5, 2:6])     # centre
    np.testing.assert_array_equal(crops[5:], crops[:5, :, ::-1])  # mirrored
    ramp = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))[:, :, None]
    up = caffe.io.resize_image(ramp, (16, 16))
    assert up.shape == (16, 16, 1)
    assert np.all(np.diff(up[5, :, 0]) >= -1e-6) and up.min() >= -1e-6 and up.max() <= 1 + 1e-6


def test_load_image_is_rgb_in_unit_range(tmp_path):
    from PIL import Image

    pixels = np.zeros((5, 7, 3), np.uint8)
    pixels[..., 0] = 255  # red
    Image.fromarray(pixels).save(tmp_path / "red.png")
    image = caffe.io.load_image(tmp_path / "red.png")
    assert image.shape == (5, 7, 3) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0, 0], [1, 0, 0])
    grey = caffe.io.load_image(tmp_path / "red.png", color=False)
    assert grey.shape == (5, 7, 1)


def test_classifier_predicts_lenets_digits(digits):
    x, labels = digits
    images = [im.transpose(1, 2, 0) * (256 / 255) for im in x]  # H x W x 1 in [0, 1]
    clf = caffe.Classifier(str(DEPLOY), str(WEIGHTS), raw_scale=255 * 0.00390625)
    centre = clf.predict(images, oversample=False)
    assert centre.shape == (6, 10)
    np.testing.assert_array_equal(centre.argmax(1), labels)
    assert isinstance(clf, caffe.Net)
    net = caffe.Net(str(DEPLOY), str(WEIGHTS), caffe.TEST)
    np.testing.assert_allclose(centre, net.forward(data=x)["prob"], atol=2e-6)
    padded = caffe.Classifier(str(DEPLOY), str(WEIGHTS), image_dims=(32, 32),
                              raw_scale=255 * 0.00390625)
    ten = padded.predict(images)  # 10 crops of 28 from 32, averaged
    assert ten.shape == (6, 10)
    np.testing.assert_allclose(ten.sum(1), 1, rtol=1e-5)
    assert (ten.argmax(1) == labels).mean() >= 0.5


def test_io_record_codecs():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    blob = caffe.io.array_to_blobproto(arr, diff=-arr)
    assert list(blob.shape.dim) == [2, 3, 4]
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(blob), arr)
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(blob, return_diff=True), -arr)
    image = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    datum = caffe.io.array_to_datum(image, 7)
    assert (datum.channels, datum.height, datum.width, datum.label) == (3, 2, 2, 7)
    np.testing.assert_array_equal(caffe.io.datum_to_array(datum), image)
    with pytest.raises(ValueError, match="expected a C x H x W array"):
        caffe.io.array_to_datum(image[0])

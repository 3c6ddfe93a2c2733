"""ImageData layer: listed image files as BGR batches, transforms, shuffle, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from pipeline_lib.cli import main
from pipeline_lib.core import backend as xp_backend
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import LayerSetupError, layer_class
from pipeline_lib.engine.layers.data_layer import set_batch_size
from pipeline_lib.engine.model_files import net_data_files
from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def rgb_ramp(i: int, h: int = 6, w: int = 6) -> np.ndarray:
    """An H x W x 3 RGB image whose every pixel and channel differs, offset by i."""
    return ((np.arange(h * w * 3).reshape(h, w, 3) * 5 + i * 11) % 256).astype(np.uint8)


@pytest.fixture
def images(tmp_path, monkeypatch):
    """Five 6x6 PNGs under images/ (one name with a space) and a listing in the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    names = ["a.png", "b.png", "c d.png", "e.png", "f.png"]
    for i, name in enumerate(names):
        Image.fromarray(rgb_ramp(i)).save(tmp_path / "images" / name)
    (tmp_path / "list.txt").write_text("".join(f"{n} {i + 10}\n" for i, n in enumerate(names)))
    return [rgb_ramp(i) for i in range(len(names))]


def image_data(body: str, phase=TRAIN, seed=0, xp=np):
    text = f'name: "images" type: "ImageData" top: "data" top: "label" {body}'
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    layer = layer_class("ImageData")(lp, phase, xp, np.random.default_rng(seed), np.float32)
    blobs = [Blob((), xp, np.float32, name=t) for t in ("data", "label")]
    layer.setup([], blobs)
    layer.reshape([], blobs)
    return layer, blobs


def run(layer, blobs, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n):
        layer.forward([], blobs)
        out.append(tuple(xp_backend.to_host(b.data).copy() for b in blobs))
    return out


def bgr(rgb: np.ndarray) -> np.ndarray:
    return rgb[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)


def test_batch_is_bgr_centre_cropped_mean_subtracted_and_scaled(images, xp):
    layer, blobs = image_data('transform_param { crop_size: 4 scale: 0.5 mean_value: 1 '
                              'mean_value: 2 mean_value: 3 } image_data_param { '
                              'source: "list.txt" root_folder: "images/" batch_size: 2 }',
                              phase=TEST, xp=xp)
    assert blobs[0].shape == (2, 3, 4, 4) and blobs[1].shape == (2,)
    [(data, label)] = run(layer, blobs, 1)
    mean = np.array([1, 2, 3], np.float32).reshape(3, 1, 1)
    want = np.stack([(bgr(images[i])[:, 1:5, 1:5] - mean) * np.float32(0.5) for i in (0, 1)])
    np.testing.assert_array_equal(data, want)
    np.testing.assert_array_equal(label, [10, 11])
    layer.close()


def test_resize_and_grey(images):
    layer, blobs = image_data('image_data_param { source: "list.txt" root_folder: "images/" '
                              'batch_size: 1 new_height: 3 new_width: 9 is_color: false }')
    assert blobs[0].shape == (1, 1, 3, 9)
    [(data, _)] = run(layer, blobs, 1)
    grey = Image.fromarray(images[0]).convert("L").resize((9, 3), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(data[0, 0], np.asarray(grey, np.float32))
    layer.close()


def test_wraps_around_at_the_end_of_the_listing(images):
    layer, blobs = image_data('data_param { prefetch: 0 } image_data_param { '
                              'source: "list.txt" root_folder: "images/" batch_size: 3 }')
    got = run(layer, blobs, 3)
    for (data, label), idx in zip(got, ([0, 1, 2], [3, 4, 0], [1, 2, 3]), strict=True):
        np.testing.assert_array_equal(label, np.array(idx) + 10)
        np.testing.assert_array_equal(data, np.stack([bgr(images[i]) for i in idx]))


def labels_of(seed: int, batches: int = 5) -> list[int]:
    layer, blobs = image_data('transform_param { mirror: true } image_data_param { '
                              'source: "list.txt" root_folder: "images/" batch_size: 2 '
                              'shuffle: true }', seed=seed)
    out = [int(v) for _, label in run(layer, blobs, batches) for v in label]
    layer.close()
    return out


def test_shuffle_is_reproducible_and_each_pass_is_a_permutation(images):
    first, again, other = labels_of(1), labels_of(1), labels_of(2)
    assert first == again
    assert first != other
    assert sorted(first[:5]) == sorted(first[5:]) == list(range(10, 15))
    assert first[:5] != first[5:]  # the second pass has an order of its own


@pytest.mark.parametrize("prefetch", [0, 3])
def test_resume_continues_exactly(images, prefetch):
    body = (f'transform_param {{ crop_size: 4 mirror: true }} data_param {{ prefetch: '
            f'{prefetch} }} image_data_param {{ source: "list.txt" root_folder: "images/" '
            'batch_size: 2 shuffle: true rand_skip: 4 }')
    layer, blobs = image_data(body, seed=5)
    run(layer, blobs, 3)
    state = layer.get_state()
    want = run(layer, blobs, 4)
    layer.close()

    fresh, fresh_blobs = image_data(body, seed=99)
    fresh.set_state(state)
    got = run(fresh, fresh_blobs, 4)
    for (d1, l1), (d2, l2) in zip(want, got, strict=True):
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(l1, l2)
    with pytest.raises(LayerSetupError, match="outside the listing's 5 images"):
        fresh.set_state({**state, "pos": 5})
    with pytest.raises(LayerSetupError, match="does not fit this layer"):
        fresh.set_state({})
    fresh.close()


def test_setup_errors_name_the_problem(images):
    with pytest.raises(LayerSetupError, match="both new_height and new_width"):
        image_data('image_data_param { source: "list.txt" new_height: 4 }')
    with pytest.raises(LayerSetupError, match="image_data_param.source 'nope.txt' does not exist"):
        image_data('image_data_param { source: "nope.txt" }')
    with pytest.raises(LayerSetupError, match=r"list.txt line 1: a.png: no such image file"):
        image_data('image_data_param { source: "list.txt" }')  # no root_folder


NET = """
name: "tiny"
layer { name: "images" type: "ImageData" top: "data" top: "label"
  transform_param { scale: 0.00390625 mean_file: "mean.binaryproto" }
  image_data_param { source: "list.txt" root_folder: "images/" batch_size: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 15 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_model_files_list_the_listing_and_the_mean_file(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    assert net_data_files(read_net(tmp_path / "net.prototxt")) == (["list.txt"],
                                                                   ["mean.binaryproto"])


def test_batch_size_override_and_pcaffe_time(images, tmp_path, capsys):
    (tmp_path / "net.prototxt").write_text(NET.replace(' mean_file: "mean.binaryproto"', ""))
    param = read_net("net.prototxt")
    set_batch_size(param, 3)
    net = Net(param, TRAIN)
    assert net.blobs["data"].shape == (3, 3, 6, 6)
    net.forward()
    np.testing.assert_array_equal(xp_backend.to_host(net.blobs["label"].data), [10, 11, 12])
    net.close()

    assert main(["time", "--model", "net.prototxt", "--iterations", "1",
                 "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "images" in out and "ImageData" in out and "per batch of 4 " in out

    assert main(["time", "--model", "net.prototxt", "--iterations", "1",
                 "--dummy-data", "3,5,5"]) == 0
    out = capsys.readouterr().out
    assert "DummyData" in out and "per batch of 2 " in out

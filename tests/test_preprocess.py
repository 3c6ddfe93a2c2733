"""Preprocessor: the TEST-phase transform_param, bit for bit, plus image decoding and sizing."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.data.db import open_db
from pipeline_lib.engine.net import Net
from pipeline_lib.preprocess import (
    PreprocessError,
    Preprocessor,
    find_transform_param,
    input_shape,
)
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import write_mean_binaryproto
from pipeline_lib.proto.datum import array_to_datum
from pipeline_lib.proto.prototxt import parse_net_text, read_net, read_net_binary

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"


def write_lmdb(path: Path, images: np.ndarray, labels) -> None:
    with open_db(path, "w", "lmdb") as db:
        for i, (image, label) in enumerate(zip(images, labels)):
            db.put(f"{i:08d}".encode(), array_to_datum(image, int(label)).SerializeToString())


def data_layer_batch(tmp_path: Path, images: np.ndarray, transform: str) -> np.ndarray:
    """What a TEST-phase Data layer with `transform` gives for `images` (one batch)."""
    write_lmdb(tmp_path / "db", images, range(len(images)))
    net = Net(parse_net_text(f"""
        layer {{ name: "d" type: "Data" top: "data" top: "label"
                 transform_param {{ {transform} }}
                 data_param {{ source: "{tmp_path / 'db'}" batch_size: {len(images)}
                               backend: LMDB prefetch: 0 }} }}
    """, "test"), caffe_pb2.TEST)
    net.forward()
    out = np.array(net.blobs["data"].data)
    net.close()
    return out


def colour_images(n=4, c=3, h=10, w=10, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def test_mean_file_crop_and_scale_match_the_data_layer(tmp_path):
    images = colour_images()
    mean = np.random.default_rng(1).uniform(0, 255, (3, 10, 10)).astype(np.float32)
    write_mean_binaryproto(mean, tmp_path / "mean.binaryproto")
    transform = f'crop_size: 6 scale: 0.017 mean_file: "{tmp_path / "mean.binaryproto"}"'
    want = data_layer_batch(tmp_path, images, transform)

    tp = caffe_pb2.TransformationParameter(crop_size=6, scale=0.017,
                                           mean_file=str(tmp_path / "mean.binaryproto"))
    pp = Preprocessor.from_transform_param(tp, (3, 6, 6))
    assert pp.image_size == (10, 10) and pp.crop_size == 6
    got = pp(images)
    assert got.dtype == np.float32 and got.shape == (4, 3, 6, 6)
    np.testing.assert_array_equal(got, want)
    # the crop is centred: rows/cols 2..7 of (x - mean) * scale
    expect = (images[:, :, 2:8, 2:8].astype(np.float32) - mean[:, 2:8, 2:8]) * np.float32(0.017)
    np.testing.assert_array_equal(got, expect)


def test_mean_values_match_the_data_layer(tmp_path):
    images = colour_images(h=5, w=7)
    want = data_layer_batch(tmp_path, images, "mean_value: 104 mean_value: 117 "
                                              "mean_value: 123 scale: 0.5")
    tp = caffe_pb2.TransformationParameter(mean_value=[104, 117, 123], scale=0.5)
    got = Preprocessor.from_transform_param(tp, (3, 5, 7))(images)
    np.testing.assert_array_equal(got, want)


def test_lenet_transform_comes_from_the_caffemodel():
    deploy = read_net(REPO / "models/lenet/lenet.prototxt")
    trained = read_net_binary(GOLDEN / "lenet_iter_10000.caffemodel")
    assert find_transform_param(trained).scale == pytest.approx(0.00390625)
    pp = Preprocessor.for_net(deploy, transform_from=trained)
    assert pp.input_shape == (1, 28, 28) and pp.gray and pp.crop_size == 0
    assert pp.scale == 0.00390625
    digits = np.load(GOLDEN / "caffe_lenet_test100_blobs.npz")["data"][:5]
    got = pp(digits[:, None])
    np.testing.assert_array_equal(got, digits[:, None].astype(np.float32) * np.float32(1 / 256))
    # the deploy net alone carries no transform: nothing but the overrides
    assert Preprocessor.for_net(deploy).scale == 1.0
    assert Preprocessor.for_net(deploy, scale=0.5, channel_order=None).scale == 0.5


def test_test_phase_data_layer_is_preferred():
    net = parse_net_text("""
        layer { name: "a" type: "Data" top: "d" include { phase: TRAIN }
                transform_param { scale: 2 mirror: true } }
        layer { name: "b" type: "Data" top: "d" include { phase: TEST }
                transform_param { scale: 3 } }
    """, "t")
    assert find_transform_param(net).scale == 3
    assert find_transform_param(net, caffe_pb2.TRAIN).scale == 2


def test_png_is_read_in_the_nets_channel_order_resized_and_cropped(tmp_path):
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    rgb[0, 0] = (1, 2, 3)  # cropped away
    Image.fromarray(rgb).save(tmp_path / "c.png")
    pp = Preprocessor((3, 8, 8), image_size=(10, 10), resample="nearest")
    image = pp.load(tmp_path / "c.png")
    assert image.shape == (3, 10, 10) and image.dtype == np.uint8
    assert list(image[:, 5, 5]) == [50, 100, 200]  # BGR, Caffe's order
    batch = pp([image])
    assert batch.shape == (1, 3, 8, 8)
    assert (batch[0, 0] == 50).all() and (batch[0, 2] == 200).all()
    rgb_net = pp.replace(channel_order="RGB")
    assert list(rgb_net.load(tmp_path / "c.png")[:, 5, 5]) == [200, 100, 50]


def test_grey_net_reads_colour_files_as_grey(tmp_path):
    Image.fromarray(np.full((28, 28, 3), 128, np.uint8)).save(tmp_path / "g.png")
    image = Preprocessor((1, 28, 28)).load(tmp_path / "g.png")
    assert image.shape == (1, 28, 28) and (image == 128).all()


def test_raw_scale_for_float_images_in_unit_range():
    images = colour_images(n=2, h=4, w=4)
    pp = Preprocessor((3, 4, 4), scale=0.5, mean_values=(10.0,))
    floats = pp.replace(raw_scale=255.0)(images.astype(np.float32) / 255)
    np.testing.assert_allclose(floats, pp(images), rtol=1e-5, atol=1e-4)


def test_fit_resizes_array_images():
    pp = Preprocessor((1, 28, 28))
    small = np.zeros((14, 14), np.uint8)
    small[7:, :] = 255
    fitted = pp.fit(small)
    assert fitted.shape == (1, 28, 28)
    assert fitted[0, 0, 0] == 0 and fitted[0, -1, -1] == 255
    with pytest.raises(PreprocessError, match="3 channel"):
        Preprocessor((3, 28, 28)).fit(small, "x.idx[0]")


def test_overrides_replace_single_settings(tmp_path):
    mean = np.full((3, 10, 10), 5, np.float32)
    write_mean_binaryproto(mean, tmp_path / "m.binaryproto")
    pp = Preprocessor((3, 8, 8), mean=mean, scale=2.0)
    assert pp.crop_size == 8
    replaced = pp.replace(mean_values=[1, 2, 3])
    assert replaced.mean is None and replaced.mean_values == (1.0, 2.0, 3.0)
    assert replaced.image_size == (10, 10) and replaced.scale == 2.0
    from_file = Preprocessor((3, 8, 8), mean_values=(1,)).replace(mean=tmp_path / "m.binaryproto")
    assert from_file.mean_values == () and from_file.image_size == (10, 10)
    assert pp.replace(scale=None) is pp
    assert pp.describe()["mean"] == "image" and pp.describe()["crop_size"] == 8


def test_inconsistent_settings_are_refused():
    with pytest.raises(PreprocessError, match="not both"):
        Preprocessor((1, 4, 4), mean=np.zeros((1, 4, 4)), mean_values=(1,))
    with pytest.raises(PreprocessError, match="crop_size 24"):
        Preprocessor.from_transform_param(caffe_pb2.TransformationParameter(crop_size=24),
                                          (1, 28, 28))
    with pytest.raises(PreprocessError, match="mean image is 6x6"):
        Preprocessor((1, 4, 4), mean=np.zeros((1, 6, 6)), image_size=(5, 5))
    with pytest.raises(PreprocessError, match="smaller"):
        Preprocessor((1, 4, 4), image_size=(3, 3))
    with pytest.raises(PreprocessError, match="2 mean values"):
        Preprocessor((3, 4, 4), mean_values=(1, 2))
    with pytest.raises(PreprocessError, match="expected N x 1x4x4"):
        Preprocessor((1, 4, 4))(np.zeros((2, 1, 5, 5), np.uint8))
    with pytest.raises(PreprocessError, match="no Input layer"):
        input_shape(read_net(REPO / "models/lenet/lenet_train_test.prototxt"))

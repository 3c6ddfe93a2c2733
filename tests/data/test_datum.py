"""Datum records: byte-identical to Caffe's, and decoding of raw, float and encoded images."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.data.db import open_db
from pipeline_lib.data.idx import read_mnist_pair
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.datum import (
    DatumError,
    array_to_datum,
    datum_to_array,
    encoded_datum,
    parse_datum,
    plain_batch,
    read_datum,
)

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_our_datums_equal_caffes_records(tmp_path, backend):
    images, labels = read_mnist_pair(
        GOLDEN / "train100-images-idx3-ubyte", GOLDEN / "train100-labels-idx1-ubyte"
    )
    copy = shutil.copytree(GOLDEN / f"caffe_train100_{backend}", tmp_path / "db")
    with open_db(copy, "r", backend) as reader:
        records = list(reader)
    assert len(records) == 100
    for i, (key, value) in enumerate(records):
        assert key == b"%08d" % i
        assert array_to_datum(images[i][None], labels[i]).SerializeToString() == value


def test_raw_round_trip_and_fields():
    image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    datum = array_to_datum(image, 0)
    assert (datum.channels, datum.height, datum.width, datum.label) == (2, 3, 4, 0)
    assert datum.HasField("label")  # Caffe writes label 0 too
    assert not datum.encoded
    again = parse_datum(datum.SerializeToString())
    np.testing.assert_array_equal(datum_to_array(again), image)


def test_two_d_image_is_one_channel():
    datum = array_to_datum(np.zeros((5, 6), np.uint8), 3)
    assert (datum.channels, datum.height, datum.width) == (1, 5, 6)


def test_float_data_round_trip():
    image = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 3, 4)
    datum = array_to_datum(image, 2)
    assert not datum.data and len(datum.float_data) == 12
    out = datum_to_array(parse_datum(datum.SerializeToString()))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image)


def test_wrong_data_size_names_where():
    datum = caffe_pb2.Datum(channels=1, height=28, width=28, data=b"\x00" * 700, label=1)
    with pytest.raises(DatumError, match=r"db key 00000007: data has 700 bytes, expected 1x28x28"):
        datum_to_array(datum, where="db key 00000007")
    with pytest.raises(DatumError, match="holds no data"):
        datum_to_array(caffe_pb2.Datum(channels=1, height=2, width=2))


def _png(array: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_encoded_datum_fields_are_caffes():
    datum = encoded_datum(b"\x89PNG...", 4)
    assert datum.encoded and datum.label == 4 and datum.data == b"\x89PNG..."
    assert not datum.HasField("channels")  # Caffe's ReadFileToDatum sets no shape
    # field order data(4), label(5), encoded(7), as protobuf (and Caffe) serialize
    assert datum.SerializeToString() == b'"\x07\x89PNG...(\x048\x01'


def test_encoded_colour_png_decodes_to_bgr():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30  # R, G, B
    datum = encoded_datum(_png(rgb, "RGB"), 1)
    native = datum_to_array(datum)
    assert native.shape == (3, 2, 3)
    assert native[:, 0, 0].tolist() == [30, 20, 10]  # B, G, R as OpenCV gives
    np.testing.assert_array_equal(datum_to_array(datum, color=True), native)
    grey = datum_to_array(datum, color=False)
    assert grey.shape == (1, 2, 3)
    assert grey[0, 0, 0] == round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)


def test_encoded_grey_png_native_and_forced_colour():
    grey = np.array([[0, 128], [255, 7]], np.uint8)
    datum = encoded_datum(_png(grey, "L"), 0)
    np.testing.assert_array_equal(datum_to_array(datum), grey[None])
    colour = datum_to_array(datum, color=True)
    assert colour.shape == (3, 2, 2)
    for c in range(3):
        np.testing.assert_array_equal(colour[c], grey)


def test_encoded_jpeg_decodes_close_to_source():
    rgb = np.full((8, 8, 3), (200, 100, 50), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=95)
    out = datum_to_array(encoded_datum(buf.getvalue(), 0))
    assert out.shape == (3, 8, 8)
    assert np.abs(out[:, 4, 4].astype(int) - [50, 100, 200]).max() <= 3


def test_undecodable_encoded_bytes():
    with pytest.raises(DatumError, match="where: cannot decode encoded image"):
        datum_to_array(encoded_datum(b"not an image", 0), where="where")


def test_corrupt_record_names_database_and_key(tmp_path):
    good = array_to_datum(np.zeros((1, 2, 2), np.uint8), 1).SerializeToString()
    with open_db(tmp_path / "db", "w", "lmdb") as writer:
        writer.put(b"00000000", good)
        writer.put(b"00000001", b"\xff\xff\xff garbage")
    with open_db(tmp_path / "db", "r") as reader:
        assert read_datum(reader, 0).label == 1
        with pytest.raises(DatumError, match=r"db key 00000001: corrupt record, not a serialized"):
            read_datum(reader, 1)


def _serialized(images, labels):
    return [array_to_datum(image, int(label)).SerializeToString()
            for image, label in zip(images, labels)]


def _one_by_one(values):
    datums = [parse_datum(v) for v in values]
    return (np.stack([datum_to_array(d) for d in datums]),
            np.array([d.label for d in datums]))


def test_plain_batch_equals_parsing_each_record():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (9, 3, 5, 4), dtype=np.uint8)
    labels = [0, 127, 5, 0, 1, 2, 3, 4, 99]
    values = _serialized(images, labels)
    pixels, got_labels = plain_batch(values)
    want_pixels, want_labels = _one_by_one(values)
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, want_pixels)
    assert np.array_equal(got_labels, want_labels)
    # no label field at all (a writer that never set one): labels are 0, as parsed
    bare = [caffe_pb2.Datum(channels=3, height=5, width=4, data=image.tobytes())
            .SerializeToString() for image in images]
    pixels, got_labels = plain_batch(bare)
    assert np.array_equal(pixels, images) and not got_labels.any()


def _variants(images):
    """Batches plain_batch must leave to the record-by-record parse, by what differs."""
    ok = _serialized(images, [1] * len(images))
    flipped = array_to_datum(images[1].reshape(1, 8, 3), 1).SerializeToString()
    with_float = caffe_pb2.Datum.FromString(ok[1])
    with_float.float_data.append(1.0)
    explicit = caffe_pb2.Datum.FromString(ok[1])
    explicit.encoded = False
    return {
        "a label of 128 and more takes two bytes": _serialized(images, [1, 128, 1]),
        "a negative label": _serialized(images, [-1, 1, 1]),
        "another shape of the same size": [ok[0], flipped, ok[2]],
        "another field besides": [ok[0], with_float.SerializeToString(), ok[2]],
        "encoded written out as false": [ok[0], explicit.SerializeToString(), ok[2]],
        "a longer record": [ok[0], ok[1] + b"\x28\x01", ok[2]],
        "a label cut short (corrupt)": [ok[0], ok[1][:-1] + b"\x85", ok[2]],
        "an encoded image": [encoded_datum(b"PNG", 1).SerializeToString()] * 3,
        "float pixels": [array_to_datum(images[0].astype(np.float32), 1)
                         .SerializeToString()] * 3,
        "not a Datum": [b"\xff\xff\xff"] * 3,
    }


@pytest.mark.parametrize("case", list(_variants(np.zeros((3, 1, 4, 6), np.uint8))))
def test_plain_batch_leaves_any_other_layout_to_the_parse(case):
    images = np.arange(3 * 24, dtype=np.uint8).reshape(3, 1, 4, 6)
    assert plain_batch(_variants(images)[case]) is None

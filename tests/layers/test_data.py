"""Data layer: LMDB/LevelDB batches in key order, transforms, prefetch and exact resume."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.core import backend as xp_backend
from pipeline_lib.core.blob import Blob
from pipeline_lib.data.db import open_db
from pipeline_lib.data.db.base import READERS
from pipeline_lib.engine.layers.base import LayerSetupError, layer_class
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.datum import array_to_datum, encoded_datum

GOLDEN = Path(__file__).parent.parent / "data" / "golden"
TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST
SCALE = np.float32(0.00390625)


def make_images(n: int, c: int = 1, h: int = 6, w: int = 6) -> np.ndarray:
    """Distinct images: image i is a ramp offset by i, so every record is recognisable."""
    ramp = np.arange(c * h * w).reshape(c, h, w)
    return ((ramp[None] * 3 + np.arange(n)[:, None, None, None] * 7) % 256).astype(np.uint8)


def write_db(path: Path, backend: str, images: np.ndarray, labels) -> None:
    order = np.random.default_rng(1).permutation(len(images))  # insertion order != key order
    with open_db(path, "w", backend) as db:
        for i in order:
            datum = array_to_datum(images[i], int(labels[i]))
            db.put(f"{i:08d}".encode(), datum.SerializeToString())


def data_layer(body: str, phase=TRAIN, seed=0, xp=np, dtype=np.float32, tops=("data", "label")):
    text = f'name: "mnist" type: "Data" {" ".join(f"top: {t!r}" for t in tops)} {body}'
    lp = text_format.Parse(text.replace("'", '"'), caffe_pb2.LayerParameter())
    layer = layer_class("Data")(lp, phase, xp, np.random.default_rng(seed), dtype)
    blobs = [Blob((), xp, dtype, name=t) for t in tops]
    layer.check_counts([], blobs)
    layer.setup([], blobs)
    layer.reshape([], blobs)
    return layer, blobs


def run(layer, blobs, n: int) -> list[tuple[np.ndarray, ...]]:
    out = []
    for _ in range(n):
        layer.forward([], blobs)
        out.append(tuple(xp_backend.to_host(b.data).copy() for b in blobs))
    return out


@pytest.fixture
def db10(tmp_path, monkeypatch, request):
    """A 10-record database of 1x6x6 images in the working directory, per backend."""
    monkeypatch.chdir(tmp_path)
    images, labels = make_images(10), np.arange(10) % 3
    write_db(tmp_path / "train_db", request.param, images, labels)
    return request.param, images, labels


@pytest.mark.parametrize("db10", ["lmdb", "leveldb"], indirect=True)
def test_batches_in_key_order_wrap_around_with_labels(db10, xp):
    backend, images, labels = db10
    layer, blobs = data_layer(f'transform_param {{ scale: 0.00390625 }} data_param {{ '
                              f'source: "train_db" backend: {backend.upper()} batch_size: 4 }}',
                              xp=xp)
    assert blobs[0].shape == (4, 1, 6, 6) and blobs[1].shape == (4,)
    got = run(layer, blobs, 3)
    for (data, label), idx in zip(got, ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]), strict=True):
        np.testing.assert_array_equal(data, images[idx].astype(np.float32) * SCALE)
        assert label.dtype == np.float32
        np.testing.assert_array_equal(label, labels[idx].astype(np.float32))
    assert layer.get_state()["cursor"] == 2
    layer.close()


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_one_top_and_float64(db10):
    _, images, _ = db10
    layer, blobs = data_layer('data_param { source: "train_db" backend: LMDB batch_size: 10 }',
                              dtype=np.float64, tops=("data",))
    (data,), = run(layer, blobs, 1)
    assert data.dtype == np.float64
    np.testing.assert_array_equal(data, images.astype(np.float64))
    layer.close()


TRAIN_AUG = ('transform_param {{ crop_size: 4 mirror: true mean_value: 100 scale: 0.5 }} '
             'data_param {{ source: "train_db" backend: LMDB batch_size: 3 prefetch: {p} }}')


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_prefetch_on_and_off_give_the_same_batches(db10):
    runs = []
    for p in (0, 1, 4):
        layer, blobs = data_layer(TRAIN_AUG.format(p=p), seed=11)
        runs.append(run(layer, blobs, 11))
        layer.close()
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    # the randomness is real: batch 10 holds records 0..2 again, cropped/flipped anew
    np.testing.assert_array_equal(runs[0][0][1], runs[0][10][1])
    assert not np.array_equal(runs[0][0][0], runs[0][10][0])
    seed12, blobs = data_layer(TRAIN_AUG.format(p=0), seed=12)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(runs[0], run(seed12, blobs, 11),
                                                              strict=True))
    seed12.close()


@pytest.mark.parametrize("db10", ["lmdb", "leveldb"], indirect=True)
@pytest.mark.parametrize("prefetch", [0, 4])
def test_resume_from_state_matches_an_uninterrupted_run(db10, prefetch):
    backend = db10[0].upper()
    body = TRAIN_AUG.format(p=prefetch).replace("LMDB", backend)
    whole, blobs = data_layer(body, seed=5)
    expected = run(whole, blobs, 9)
    whole.close()

    first, blobs = data_layer(body, seed=5)
    run(first, blobs, 4)
    state = json.loads(json.dumps(first.get_state()))  # as stored in a .solverstate
    assert state["cursor"] == (4 * 3) % 10  # what the net consumed, not what was read ahead
    first.close()  # LevelDB allows one handle at a time

    resumed, blobs = data_layer(body, seed=99)  # a different net seed: the state decides
    resumed.set_state(state)
    for got, want in zip(run(resumed, blobs, 5), expected[4:], strict=True):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    # a state taken mid-run and set on the same layer rewinds it
    again = resumed.get_state()
    later = run(resumed, blobs, 2)
    resumed.set_state(again)
    for got, want in zip(run(resumed, blobs, 2), later, strict=True):
        np.testing.assert_array_equal(got[0], want[0])
    resumed.close()


class CountingReader:
    """Mixed into a reader: counts the records its cursors hand out and refuses
    whole-database reads (listing the keys, or counting a LevelDB's records)."""

    touched = 0

    def keys(self):
        raise AssertionError("keys() reads every record of the database")

    def __iter__(self):
        raise AssertionError("iterating reads every record of the database")

    def __len__(self):
        if self.backend == "leveldb":
            raise AssertionError("a LevelDB is counted by reading every record")
        return super().__len__()


class CountingCursor:
    """Mixed into the reader's cursor: counts for CountingReader."""

    def peek(self):
        CountingReader.touched += 1
        return super().peek()

    def read(self, count):
        CountingReader.touched += count
        return super().read(count)

    def skip(self, count):
        CountingReader.touched += count
        super().skip(count)


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_setup_and_resume_touch_only_the_records_they_read(tmp_path, monkeypatch, backend):
    monkeypatch.chdir(tmp_path)
    images = make_images(200)
    write_db(tmp_path / "train_db", backend, images, np.zeros(200))
    reader = READERS[backend]
    cursor = type("CountingCursor", (CountingCursor, reader.cursor_class), {})
    monkeypatch.setitem(READERS, backend, type("CountingReader", (CountingReader, reader),
                                               {"cursor_class": cursor}))
    monkeypatch.setattr(CountingReader, "touched", 0)
    body = (f'data_param {{ source: "train_db" backend: {backend.upper()} batch_size: 4 '
            'prefetch: 0 }')
    layer, blobs = data_layer(body)
    assert CountingReader.touched == 1  # the first record, for the top's shape
    run(layer, blobs, 2)
    assert CountingReader.touched == 1 + 8
    state = layer.get_state()
    assert state["cursor"] == 8 and state["key"] == "00000008"
    layer.close()

    resumed, blobs = data_layer(body)
    resumed.set_state(state)
    (data, _), = run(resumed, blobs, 1)
    np.testing.assert_array_equal(data, images[8:12])
    assert CountingReader.touched == 2 * (1 + 8) - 4  # no step over records 0..7
    resumed.close()


@pytest.mark.parametrize("db10", ["lmdb", "leveldb"], indirect=True)
def test_a_state_without_a_key_steps_to_its_cursor(db10):
    backend, images, _ = db10
    layer, blobs = data_layer(f'data_param {{ source: "train_db" backend: {backend.upper()} '
                              'batch_size: 4 }')
    state = layer.get_state()
    del state["key"]  # as a solverstate written before keys were saved
    state["cursor"] = 7
    layer.set_state(state)
    assert layer.get_state()["key"] == "00000007"
    (data, _), = run(layer, blobs, 1)
    np.testing.assert_array_equal(data, images[[7, 8, 9, 0]])
    with pytest.raises(LayerSetupError, match="outside the database's 10 records"):
        layer.set_state({**state, "cursor": 12})
    (data, _), = run(layer, blobs, 1)  # a refused state leaves the layer where it was
    np.testing.assert_array_equal(data, images[1:5])
    layer.close()


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_forward_adopts_the_prefetched_batch(db10):
    layer, blobs = data_layer('transform_param { scale: 0.5 } '
                              'data_param { source: "train_db" backend: LMDB batch_size: 4 }')
    layer.forward([], blobs)
    first = blobs[0].data
    layer.forward([], blobs)
    assert blobs[0].data is not first  # a new array, not a copy into the old one
    assert blobs[0].data.dtype == np.float32 and blobs[0].data.flags.writeable
    layer.close()


PEAK_SCRIPT = """
import numpy as np
from google.protobuf import text_format
import pipeline_lib.engine.layers.data
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import layer_class
from pipeline_lib.proto import caffe_pb2

pipeline_lib.engine.layers.data.UNMAP_BYTES = 2 << 20

def peak_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

lp = text_format.Parse('name: "d" type: "Data" top: "data" top: "label" '
                       'data_param { source: "big_db" backend: LMDB batch_size: 64 }',
                       caffe_pb2.LayerParameter())
before = peak_mib()
layer = layer_class("Data")(lp, caffe_pb2.TRAIN, np, np.random.default_rng(0), np.float32)
tops = [Blob(name="data"), Blob(name="label")]
layer.setup([], tops)
for _ in range(400):  # the whole database, and a little more
    layer.reshape([], tops)
    layer.forward([], tops)
assert layer.get_state()["cursor"] == 400 * 64 % 24000
layer.close()
print(peak_mib() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_reading_a_large_lmdb_keeps_memory_bounded(tmp_path):
    """The structure check, setup and a pass over a 32 MiB LMDB add a few MiB at most:
    no page stays mapped for long, and no parsed record is kept."""
    value = array_to_datum(np.zeros((1, 30, 32), np.uint8), 0).SerializeToString()
    with open_db(tmp_path / "big_db", "w", "lmdb") as db:
        for i in range(24000):  # about 32 MiB of leaf pages
            db.put(b"%08d" % i, value)
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    assert float(out) < 12, f"peak memory grew by {float(out):.1f} MiB"


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_rand_skip_is_drawn_from_the_seed(db10):
    _, images, _ = db10
    body = 'data_param { source: "train_db" backend: LMDB batch_size: 2 rand_skip: 10 }'
    starts = []
    for seed in range(6):
        layer, blobs = data_layer(body, seed=seed)
        start = layer.get_state()["cursor"]
        assert 0 <= start < 10
        (data, _), = run(layer, blobs, 1)
        np.testing.assert_array_equal(data, images[[start, (start + 1) % 10]])
        starts.append(start)
        layer.close()
    assert len(set(starts)) > 1
    again, _ = data_layer(body, seed=3)
    assert again.get_state()["cursor"] == starts[3]
    again.close()


def test_missing_source_names_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LayerSetupError, match=r"'no_such_lmdb' does not exist.*no_such_lmdb"):
        data_layer('data_param { source: "no_such_lmdb" backend: LMDB batch_size: 4 }')


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_leveldb_default_on_an_lmdb_says_add_backend_lmdb(db10):
    with pytest.raises(LayerSetupError, match=r"LMDB database.*LEVELDB \(Caffe's default.*"
                                              r"add `backend: LMDB`"):
        data_layer('data_param { source: "train_db" batch_size: 4 }')


@pytest.mark.parametrize("db10", ["leveldb"], indirect=True)
def test_leveldb_default_reads_a_leveldb_and_lmdb_setting_is_refused(db10):
    _, images, _ = db10
    layer, blobs = data_layer('data_param { source: "train_db" batch_size: 5 }')
    np.testing.assert_array_equal(run(layer, blobs, 1)[0][0], images[:5])
    layer.close()
    with pytest.raises(LayerSetupError, match=r"LEVELDB database.*add `backend: LEVELDB`"):
        data_layer('data_param { source: "train_db" backend: LMDB batch_size: 4 }')


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_bad_state_and_batch_size_are_refused(db10):
    with pytest.raises(LayerSetupError, match="batch_size"):
        data_layer('data_param { source: "train_db" backend: LMDB }')
    layer, _ = data_layer('data_param { source: "train_db" backend: LMDB batch_size: 2 }')
    with pytest.raises(LayerSetupError, match="outside the database's 10 records"):
        layer.set_state({"cursor": 10, "rng": layer.get_state()["rng"]})
    with pytest.raises(LayerSetupError, match="lacks 'cursor'"):
        layer.set_state({})
    layer.close()


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_close_stops_the_prefetch_thread(db10):
    layer, blobs = data_layer('data_param { source: "train_db" backend: LMDB batch_size: 2 }')
    run(layer, blobs, 1)
    thread = layer._res.prefetcher._thread
    assert thread.is_alive() and thread.daemon
    layer.close()
    assert not thread.is_alive()
    layer.close()  # twice is fine


def test_corrupt_record_error_names_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_db(tmp_path / "bad_db", "w", "lmdb") as db:
        for i in range(4):
            db.put(f"{i:08d}".encode(), array_to_datum(make_images(1)[0], 0).SerializeToString())
        db.put(b"00000004", b"\xff\xff\xff not a datum")
    layer, blobs = data_layer('data_param { source: "bad_db" backend: LMDB batch_size: 4 }')
    run(layer, blobs, 1)
    with pytest.raises(ValueError, match="key 00000004.*not a serialized Datum"):
        run(layer, blobs, 1)
    with pytest.raises(ValueError, match="key 00000004"):  # the failure sticks
        run(layer, blobs, 1)
    layer.close()


@pytest.mark.parametrize("db10", ["lmdb"], indirect=True)
def test_mean_file_and_deprecated_data_param_scale(db10, tmp_path):
    from pipeline_lib.proto.blobproto import write_mean_binaryproto

    _, images, _ = db10
    mean = images.astype(np.float32).mean(axis=0)
    write_mean_binaryproto(mean, tmp_path / "mean.binaryproto")
    layer, blobs = data_layer('transform_param { mean_file: "mean.binaryproto" crop_size: 4 } '
                              'data_param { source: "train_db" backend: LMDB batch_size: 10 '
                              'scale: 0.5 }', phase=TEST)
    (data, _), = run(layer, blobs, 1)
    want = (images[:, :, 1:5, 1:5].astype(np.float32) - mean[:, 1:5, 1:5]) * np.float32(0.5)
    np.testing.assert_array_equal(data, want)
    layer.close()


def test_encoded_png_records_with_force_gray(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, 5, 4, 3), dtype=np.uint8)
    with open_db(tmp_path / "png_db", "w", "lmdb") as db:
        for i, img in enumerate(rgb):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            db.put(f"{i:08d}".encode(), encoded_datum(buf.getvalue(), i).SerializeToString())
    color, blobs = data_layer('data_param { source: "png_db" backend: LMDB batch_size: 3 }')
    assert blobs[0].shape == (3, 3, 5, 4)
    (data, label), = run(color, blobs, 1)
    np.testing.assert_array_equal(data, rgb[..., ::-1].transpose(0, 3, 1, 2))  # BGR, as OpenCV
    np.testing.assert_array_equal(label, [0, 1, 2])
    color.close()
    gray, blobs = data_layer('transform_param { force_gray: true } '
                             'data_param { source: "png_db" backend: LMDB batch_size: 3 }')
    assert blobs[0].shape == (3, 1, 5, 4)
    (data, _), = run(gray, blobs, 1)
    want = np.stack([np.asarray(Image.fromarray(i).convert("L")) for i in rgb])[:, None]
    np.testing.assert_array_equal(data, want)
    gray.close()


def _idx(path: Path, header: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes()[header:], dtype=np.uint8)


@pytest.mark.parametrize("name,backend", [("caffe_train100_lmdb", "LMDB"),
                                          ("caffe_train100_leveldb", "LEVELDB")])
def test_golden_caffe_database_reads_as_the_idx_images_times_scale(tmp_path, monkeypatch,
                                                                   name, backend):
    shutil.copytree(GOLDEN / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    images = _idx(GOLDEN / "train100-images-idx3-ubyte", 16).reshape(100, 1, 28, 28)
    labels = _idx(GOLDEN / "train100-labels-idx1-ubyte", 8)
    layer, blobs = data_layer(f'transform_param {{ scale: 0.00390625 }} data_param {{ '
                              f'source: "{name}" backend: {backend} batch_size: 64 }}')
    got = run(layer, blobs, 2)
    order = np.r_[0:100, 0:28]  # the second batch wraps around to the first keys
    for k, (data, label) in enumerate(got):
        idx = order[64 * k: 64 * (k + 1)]
        np.testing.assert_array_equal(data, images[idx].astype(np.float32) * SCALE)
        np.testing.assert_array_equal(label, labels[idx].astype(np.float32))
    layer.close()

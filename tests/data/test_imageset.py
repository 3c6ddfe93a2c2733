"""convert_imageset: Caffe's keys and Datum bytes, seeded shuffle, options, errors; shards."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from imagenet_tiny import CMYK, CORRUPT, GRAY, PNG, make_tiny_imagenet
from PIL import Image

from pipeline_lib.data.db import open_db
from pipeline_lib.data.images import ImageError, ResizeSpec, read_image
from pipeline_lib.data.imageset import (
    ConvertOptions,
    convert_imageset,
    gather_resized,
    read_skipped_report,
    record_key,
    resize_imageset,
    shard,
    write_skipped_report,
)
from pipeline_lib.data.listing import ListingEntry, ListingError, read_listing, write_listing
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.datum import datum_to_array, parse_datum


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = make_tiny_imagenet(tmp_path_factory.mktemp("tiny"))
    good = [(p, label) for p, label in data.train if p != CORRUPT]
    write_listing([ListingEntry(p, label) for p, label in good], data.base / "good.txt")
    return data


def _records(path) -> list[tuple[bytes, bytes]]:
    with open_db(path, "r") as reader:
        return list(reader)


def test_keys_and_datum_bytes_as_caffe_writes_them(tiny, tmp_path):
    out = tmp_path / "db"
    result = convert_imageset(tiny.train_root, tiny.base / "good.txt", out)
    listed = read_listing(tiny.base / "good.txt")
    assert result.count == len(listed) == 12 and not result.skipped
    records = _records(out)
    assert [k for k, _ in records] == [record_key(i, e.path) for i, e in enumerate(listed)]
    assert records[0][0] == b"00000000_n01000000/n01000000_0.JPEG"
    for (key, value), entry in zip(records, listed):
        pixels = read_image(tiny.train_root / entry.path)
        expected = caffe_pb2.Datum(channels=3, height=pixels.shape[1], width=pixels.shape[2],
                                   data=pixels.tobytes(), label=entry.label, encoded=False)
        assert value == expected.SerializeToString(), key  # encoded: false is written, as Caffe
        assert value.endswith(b"8\x00")


def test_gray_cmyk_and_png_inputs_become_three_channels(tiny, tmp_path):
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "db")
    shapes = {k.split(b"_", 1)[1].decode(): datum_to_array(parse_datum(v)).shape
              for k, v in _records(tmp_path / "db")}
    for rel in (GRAY, CMYK, PNG):
        assert shapes[rel][0] == 3


def test_same_seed_same_bytes_other_seed_other_order(tiny, tmp_path):
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        options = ConvertOptions(shuffle=True, seed=seed)
        convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / name, options)
        runs[name] = _records(tmp_path / name)
    assert runs["a"] == runs["b"]  # every key and value, byte for byte
    order = [k.split(b"_", 1)[1] for k, _ in runs["a"]]
    listed = [e.path.encode() for e in read_listing(tiny.base / "good.txt")]
    assert sorted(order) == sorted(listed) and order != listed
    assert [k for k, _ in runs["c"]] != [k for k, _ in runs["a"]]


def _files(folder, skip=()) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name not in skip}


def test_same_seed_leveldb_files_are_identical(tiny, tmp_path):
    for name in ("a", "b"):
        convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / name,
                         ConvertOptions(backend="leveldb", shuffle=True, seed=5))
    # LOG is LevelDB's own diary (timestamps); the tables, log and manifest are the data
    assert _files(tmp_path / "a", skip={"LOG"}) == _files(tmp_path / "b", skip={"LOG"})


def test_same_seed_lmdb_files_are_identical(tiny, tmp_path):
    for name in ("a", "b"):
        convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / name,
                         ConvertOptions(shuffle=True, seed=5))
    assert _files(tmp_path / "a", skip={"lock.mdb"}) == _files(tmp_path / "b", skip={"lock.mdb"})


def test_leveldb_holds_the_same_records(tiny, tmp_path):
    options = ConvertOptions(shuffle=True, seed=3)
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "l", options)
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "v",
                     ConvertOptions(backend="leveldb", shuffle=True, seed=3))
    with open_db(tmp_path / "v", "r") as reader:
        assert reader.backend == "leveldb"
    assert _records(tmp_path / "v") == _records(tmp_path / "l")


def test_threads_do_not_change_the_result(tiny, tmp_path):
    one = ConvertOptions(shuffle=True, seed=1, workers=1)
    two = ConvertOptions(shuffle=True, seed=1, workers=3)
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "1", one)
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "2", two)
    assert _records(tmp_path / "1") == _records(tmp_path / "2")


def test_gray_option_stores_one_channel(tiny, tmp_path):
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "g",
                     ConvertOptions(gray=True))
    for _, value in _records(tmp_path / "g"):
        assert parse_datum(value).channels == 1


def test_encoded_keeps_plain_jpegs_and_reencodes_the_rest(tiny, tmp_path):
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "e",
                     ConvertOptions(encoded=True))
    for key, value in _records(tmp_path / "e"):
        rel = key.split(b"_", 1)[1].decode()
        datum = parse_datum(value)
        assert datum.encoded and not datum.HasField("channels")
        own = (tiny.train_root / rel).read_bytes()
        if rel in (GRAY, CMYK, PNG):
            assert datum.data != own  # would decode to 1 or 4 channels (or CMYK) as it is
        else:
            assert datum.data == own
        native = datum_to_array(datum)  # what the Data layer decodes without force_color
        assert native.shape[0] == 3
        if rel == PNG:  # lossless: the same pixels as a plain conversion
            np.testing.assert_array_equal(native, read_image(tiny.train_root / rel))


def test_encode_type_png_reencodes_jpegs(tiny, tmp_path):
    convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "p",
                     ConvertOptions(encoded=True, encode_type="png"))
    key, value = _records(tmp_path / "p")[0]
    data = parse_datum(value).data
    assert data.startswith(b"\x89PNG")
    rel = key.split(b"_", 1)[1].decode()
    np.testing.assert_array_equal(datum_to_array(parse_datum(value)),
                                  read_image(tiny.train_root / rel))


def test_check_size_names_the_first_odd_image(tiny, tmp_path):
    with pytest.raises(ImageError, match=r"good.txt:2: n01000000/n01000000_1.JPEG is 3x\d+x\d+"):
        convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "s",
                         ConvertOptions(check_size=True))
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.*"))
    resized = ConvertOptions(check_size=True, resize=ResizeSpec(20, 30))
    result = convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "s", resized)
    assert result.shape == (3, 20, 30)


def test_corrupt_image_fails_naming_line_and_file(tiny, tmp_path):
    line = 1 + [p for p, _ in tiny.train].index(CORRUPT)
    with pytest.raises(ImageError) as err:
        convert_imageset(tiny.train_root, tiny.base / "train.txt", tmp_path / "f")
    message = str(err.value)
    assert f"train.txt:{line}:" in message and str(tiny.train_root / CORRUPT) in message
    assert not (tmp_path / "f").exists()


def test_corrupt_image_skipped_and_reported(tiny, tmp_path):
    result = convert_imageset(tiny.train_root, tiny.base / "train.txt", tmp_path / "k",
                              ConvertOptions(on_error="skip"))
    line = 1 + [p for p, _ in tiny.train].index(CORRUPT)
    assert result.count == len(tiny.train) - 1
    assert [(s.path, s.line) for s in result.skipped] == [(CORRUPT, line)]
    keys = [k for k, _ in _records(tmp_path / "k")]
    assert record_key(line - 1, CORRUPT) not in keys  # its number is left as a gap
    assert record_key(line, tiny.train[line][0]) in keys
    write_skipped_report(result.skipped, tmp_path / "skipped.tsv")
    assert read_skipped_report(tmp_path / "skipped.tsv") == result.skipped


def test_existing_output_and_bad_labels_are_refused(tiny, tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "exists")
    with pytest.raises(ListingError, match="out of range for 2 synsets"):
        convert_imageset(tiny.train_root, tiny.base / "good.txt", tmp_path / "x",
                         num_classes=2)


def test_shards_cover_the_listing_in_order():
    entries = [ListingEntry(f"{i}.JPEG", 0, i + 1) for i in range(10)]
    parts = [shard(entries, i, 3) for i in (1, 2, 3)]
    assert [len(p) for p in parts] == [3, 3, 4]
    assert sum(parts, []) == entries
    assert shard(entries[:2], 1, 4) == []
    with pytest.raises(ValueError):
        shard(entries, 4, 3)


def test_resize_shards_then_gather(tiny, tmp_path):
    entries = read_listing(tiny.base / "train.txt")
    spec = ResizeSpec(16, 24)
    shard_dirs, listings, reports = [], [], []
    for i in (1, 2):
        out = tmp_path / f"shard{i}"
        done, skipped = resize_imageset(tiny.train_root, shard(entries, i, 2), out, spec,
                                        on_error="skip")
        write_listing(done, tmp_path / f"shard{i}.txt")
        write_skipped_report(skipped, tmp_path / f"shard{i}.tsv")
        shard_dirs.append(out)
        listings.append(tmp_path / f"shard{i}.txt")
        reports.append(tmp_path / f"shard{i}.tsv")
    images, skipped = gather_resized(shard_dirs, listings, reports, tmp_path / "all",
                                     tmp_path / "all.txt", tmp_path / "all.tsv")
    assert (images, skipped) == (len(entries) - 1, 1)
    gathered = read_listing(tmp_path / "all.txt")
    assert [e.path for e in gathered] == [e.path for e in entries if e.path != CORRUPT]
    assert read_skipped_report(tmp_path / "all.tsv")[0].path == CORRUPT
    for entry in gathered:
        with Image.open(tmp_path / "all" / entry.path) as img:
            assert img.size == (24, 16) and img.mode == "RGB"
    # the gathered tree shares the shards' files (hard links), so shards can go
    assert (tmp_path / "all" / gathered[0].path).stat().st_nlink == 2
    shutil.rmtree(shard_dirs[0])
    assert (tmp_path / "all" / gathered[0].path).is_file()


def test_resize_fails_naming_the_listing_line(tiny, tmp_path):
    entries = read_listing(tiny.base / "train.txt")
    with pytest.raises(ImageError, match=r"train.txt:\d+: .*corrupt.JPEG: cannot read image"):
        resize_imageset(tiny.train_root, entries, tmp_path / "r", ResizeSpec(8, 8),
                        where=tiny.base / "train.txt")

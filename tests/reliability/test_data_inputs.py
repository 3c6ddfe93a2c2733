"""Bad data, as the data tools and the Data layer meet it: empty IDX files, listings saved on
Windows, decompression bombs in encoded records, mirrors that send without end, records
smaller than the crop, nets without layers, and every bad option of `python -m
pipeline_lib.data`. Each gets one message naming the file, record, layer or option, exit
status 1, and nothing half-written; or, where a file is merely unusual, it is accepted."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from imagenet_tiny import make_tiny_imagenet

from pipeline_lib.data.db import open_db
from pipeline_lib.data.mnist_sources import FILE_NAMES
from pipeline_lib.proto.datum import array_to_datum, encoded_datum
from reliability.rel_util import ENV, GOLDEN, clean_failure, data_cli, pcaffe, record, tree

# -- IDX -------------------------------------------------------------------------------------


def test_idx_pair_without_images(tmp_path):
    (tmp_path / "images").write_bytes(struct.pack(">IIII", 2051, 0, 28, 28))
    (tmp_path / "labels").write_bytes(struct.pack(">II", 2049, 0))
    done = data_cli("convert-mnist", "images", "labels", "db", cwd=tmp_path)
    clean_failure(done, "IDX images file holding 0 images",
                  r"^images: holds no images \(its header's count is 0\)")
    assert tree(tmp_path) == {"images", "labels"}


# -- listings saved on Windows -------------------------------------------------------------


def _records(db: Path) -> list[tuple[bytes, bytes]]:
    with open_db(db, "r") as reader:
        return [(reader.key(i), reader.value(i)) for i in range(len(reader))]


@pytest.mark.parametrize("case, bom, newline", [
    ("listing and synsets with a UTF-8 byte order mark", b"\xef\xbb\xbf", b"\n"),
    ("listing and synsets with CRLF line endings", b"", b"\r\n"),
    ("listing and synsets with a byte order mark and CRLF", b"\xef\xbb\xbf", b"\r\n"),
])
def test_windows_listing_is_accepted(tmp_path, case, bom, newline):
    tiny = make_tiny_imagenet(tmp_path / "inet")
    base = tiny.base
    plain = b"".join(line + b"\n" for line in (base / "train.txt").read_bytes().splitlines()
                     if b"corrupt" not in line)
    (base / "plain.txt").write_bytes(plain)
    (base / "windows.txt").write_bytes(bom + plain.replace(b"\n", newline))
    synsets = (base / "synset_words.txt").read_bytes()
    (base / "windows_synsets.txt").write_bytes(bom + synsets.replace(b"\n", newline))
    args = ("--resize", "16x16")
    done = data_cli("convert-imageset", tiny.train_root, "plain.txt", "plain_db", *args,
                    "--synsets", "synset_words.txt", cwd=base)
    assert done.returncode == 0, done.stderr[-2000:]
    done = data_cli("convert-imageset", tiny.train_root, "windows.txt", "windows_db", *args,
                    "--synsets", "windows_synsets.txt", cwd=base)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _records(base / "windows_db") == _records(base / "plain_db")
    record(case, f"accepted: {done.stdout.strip()} (the same records as the plain listing's)",
           done.returncode)


def test_synsets_with_a_byte_order_mark_keep_their_labels(tmp_path):
    from pipeline_lib.data.listing import read_synsets

    path = tmp_path / "synset_words.txt"
    path.write_bytes(b"\xef\xbb\xbfn02 second\r\nn01 first\r\nn03 third\r\n")
    assert read_synsets(path).ids == ("n01", "n02", "n03")


# -- decompression bombs in encoded records ---------------------------------------------------


def _png_bomb(width: int, height: int) -> bytes:
    """A grey PNG of width x height zero pixels, a few hundred KB for hundreds of MB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte, then the row
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                                0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    return _png_bomb(20000, 20000)  # 400 million pixels from about 390 KB


def test_decompression_bomb_in_an_encoded_datum(run_dir, bomb_png):
    small = _png_bomb(24, 24)
    shutil.rmtree(run_dir / "db/test_lmdb")
    with open_db(run_dir / "db/test_lmdb", "w", "lmdb") as writer:
        for i in range(30):
            writer.put(b"%08d" % i, encoded_datum(bomb_png if i == 0 else small, 1)
                       .SerializeToString())
    pattern = (r"test_lmdb'? key 00000000: encoded image of 400000000 pixels is larger than "
               r"the \d+ pixels an image may have \(from \d+ bytes: a decompression bomb\?\)")
    done = data_cli("inspect", "db/test_lmdb", cwd=run_dir)
    clean_failure(done, "decompression bomb in an encoded Datum (inspect)", pattern)
    done = data_cli("compute-mean", "db/test_lmdb", "mean.binaryproto", cwd=run_dir)
    clean_failure(done, "decompression bomb in an encoded Datum (compute-mean)", pattern)
    assert not (run_dir / "mean.binaryproto").exists()
    before = tree(run_dir)
    done = pcaffe("test", "--model", "small.prototxt", "--iterations", 1, cwd=run_dir)
    clean_failure(done, "decompression bomb in an encoded Datum, read by a Data layer",
                  r"^pcaffe test: error: layer 'data' \(Data\): LMDB '.*" + pattern)
    assert tree(run_dir) == before


def test_image_just_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    from pipeline_lib.proto.datum import DatumError, datum_to_array

    with pytest.raises(DatumError, match=r"rec: encoded image of 10000 x 10000 pixels is "
                                         "larger than the"):
        datum_to_array(encoded_datum(_png_bomb(10000, 10000), 0), where="rec")


# -- downloads ---------------------------------------------------------------------------------


class _EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 and zeros until the client hangs up (no Content-Length)."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        block = bytes(1 << 16)
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def endless_mirror():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/mnist/"
    httpd.shutdown()
    httpd.server_close()


def _mnist_config(tmp_path: Path, sources: list[dict]) -> Path:
    files = {}
    for name in FILE_NAMES:
        raw = (GOLDEN / ("train100-labels-idx1-ubyte" if "labels" in name
                         else "train100-images-idx3-ubyte")).read_bytes()
        files[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    config = tmp_path / "config.yaml"
    mnist = {"format": "idx", "files": files, "sources": sources}
    config.write_text(yaml.safe_dump({"datasets": {"mnist": mnist},
                                      "download": {"connect_timeout": 2, "read_timeout": 5}}))
    return config


def test_mirror_that_sends_without_end(tmp_path, endless_mirror):
    config = _mnist_config(tmp_path, [{"type": "http", "url": endless_mirror}])
    env = {k: v for k, v in ENV.items() if "proxy" not in k.lower()}
    done = data_cli("download-mnist", "--config", config, "--dest", "out", cwd=tmp_path,
                    env=env, timeout=120)
    shown = clean_failure(done, "an HTTP mirror that sends without end (no size cap before)",
                          f"{endless_mirror}train-labels-idx1-ubyte.gz: stopped after \\d+ "
                          "bytes: more than this file can take")
    assert f"{endless_mirror}train-images-idx3-ubyte.gz: stopped after" in shown
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert not list(tmp_path.glob(".*"))  # no download folder left


def test_gzip_bomb_in_a_local_folder(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    bomb = gzip.compress(bytes(64 << 20))  # 64 MiB of zeros in about 64 KB
    for name in FILE_NAMES:
        (folder / f"{name}.gz").write_bytes(bomb)
    config = _mnist_config(tmp_path, [{"type": "local", "path": str(folder)}])
    done = data_cli("download-mnist", "--config", config, "--dest", "out", cwd=tmp_path)
    clean_failure(done, "a .gz that decompresses far past the file's size (gzip bomb)",
                  r"train-labels-idx1-ubyte.gz: decompresses to more than the 108 bytes "
                  "expected; stopped there")
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("case, change, pattern", [
    ("download config: a timeout that is not a positive number",
     lambda c: c["download"].update(read_timeout=-1),
     r"config.yaml: config download.read_timeout: -1 is not a positive number of seconds"),
    ("download config: a file without its size", lambda c: c["datasets"]["mnist"]["files"][
        "t10k-labels-idx1-ubyte"].pop("size"),
     r"config.yaml: config datasets.mnist.files.t10k-labels-idx1-ubyte: needs a sha256 and a "
     "size"),
    ("download config: sources that are not a list",
     lambda c: c["datasets"]["mnist"].update(sources="http://x/"),
     r"config.yaml: config datasets.mnist.sources: expected a list of sources"),
    ("download config without an mnist dataset", lambda c: c.pop("datasets"),
     r"config.yaml: no IDX dataset 'mnist' under 'datasets:'"),
])
def test_bad_download_config(tmp_path, case, change, pattern):
    config = _mnist_config(tmp_path, [{"type": "local", "path": str(tmp_path / "none")}])
    settings = yaml.safe_load(config.read_text())
    change(settings)
    config.write_text(yaml.safe_dump(settings))
    done = data_cli("download-mnist", "--config", config, "--dest", "out", cwd=tmp_path)
    clean_failure(done, case, pattern)
    assert not (tmp_path / "out").exists()


# -- records smaller than the crop --------------------------------------------------------------


def _small_records(db: Path, smaller: range) -> None:
    """Rewrite `db` with the records at `smaller` replaced by 20 x 20 images."""
    records = _records(db)
    shutil.rmtree(db)
    with open_db(db, "w", "lmdb") as writer:
        for i, (key, value) in enumerate(records):
            if i in smaller:
                value = array_to_datum(np.zeros((1, 20, 20), np.uint8), 3).SerializeToString()
            writer.put(key, value)


def test_crop_larger_than_the_image(run_dir):
    _small_records(run_dir / "db/train_lmdb", range(20, 30))  # the third batch of 10
    before = tree(run_dir)
    done = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 5, "--output",
                  "results/small_iter_5", cwd=run_dir)
    clean_failure(done, "crop_size larger than a record met during training",
                  r"^pcaffe train: error: layer 'data' \(Data\): LMDB '\S*train_lmdb' key "
                  "00000020: crop_size 24 is larger than the input image 20 x 20")
    assert tree(run_dir) == before
    _small_records(run_dir / "db/test_lmdb", range(0, 1))
    done = pcaffe("test", "--model", "small.prototxt", "--iterations", 1, cwd=run_dir)
    clean_failure(done, "crop_size larger than the first record",
                  r"^pcaffe test: error: layer 'data' \(Data\): LMDB '\S*test_lmdb' key "
                  "00000000: crop_size 24 is larger than the input image 20 x 20")


# -- nets without layers -----------------------------------------------------------------------


def test_net_without_layers(run_dir):
    (run_dir / "empty.prototxt").write_text("")
    (run_dir / "named.prototxt").write_text('name: "nothing"\n')
    text = (run_dir / "solver.prototxt").read_text()
    (run_dir / "empty_solver.prototxt").write_text(
        text.replace('net: "small.prototxt"', 'net: "empty.prototxt"'))
    (run_dir / "inline_solver.prototxt").write_text(
        text.replace('net: "small.prototxt"', 'net_param { name: "inline" }'))
    before = tree(run_dir)
    message = "defines no layers; a net needs at least one `layer"
    done = pcaffe("train", "--solver", "empty_solver.prototxt", cwd=run_dir)
    clean_failure(done, "solver whose net prototxt is empty (trained and exited 0 before)",
                  f"^pcaffe train: error: empty.prototxt: {message}")
    done = pcaffe("train", "--solver", "inline_solver.prototxt", cwd=run_dir)
    clean_failure(done, "solver whose inline net_param has no layers",
                  f"^pcaffe train: error: inline_solver.prototxt: net_param {message}")
    done = pcaffe("time", "--model", "named.prototxt", "--iterations", 2, cwd=run_dir)
    clean_failure(done, "pcaffe time of a net without layers (timed nothing before)",
                  f"^pcaffe time: error: named.prototxt: {message}")
    assert tree(run_dir) == before


# -- options of python -m pipeline_lib.data ------------------------------------------------------

CONVERT = ("convert-imageset", "inet/train", "inet/train.txt", "db")


@pytest.mark.parametrize("case, args, pattern", [
    ("--resize of zero height", (*CONVERT, "--resize", "0x16"),
     r"argument --resize: got '0x16'; expected 2 whole numbers of at least 1 as HxW"),
    ("--resize that is not HxW", (*CONVERT, "--resize", "256"),
     r"argument --resize: got '256'; expected 2 whole numbers of at least 1 as HxW, e.g. 256x256"),
    ("--resize larger than any image may be", (*CONVERT, "--resize", "100000x100000"),
     r"argument --resize: got '100000x100000'; expected an image of at most \d+ pixels "
     r"\(HxW is 10000000000\)"),
    ("negative --seed", (*CONVERT, "--shuffle", "--seed", "-1"),
     r"argument --seed: got '-1'; expected a whole number of at least 0"),
    ("--workers 0", (*CONVERT, "--workers", "0"),
     r"argument --workers: got '0'; expected a whole number of at least 1 and at most 256"),
    ("--workers that is not a number", (*CONVERT, "--workers", "two"),
     r"argument --workers: got 'two'; expected a whole number of at least 1 and at most "
     r"256"),
    ("--backend that is no backend", (*CONVERT, "--backend", "sqlite"),
     r"argument --backend: invalid choice: 'sqlite' \(choose from '?lmdb'?, '?leveldb'?\)"),
    ("--on-error that is no policy", (*CONVERT, "--on-error", "ignore"),
     r"argument --on-error: invalid choice: 'ignore'"),
    ("--skipped naming a folder", (*CONVERT, "--on-error", "skip", "--skipped", "inet"),
     r"^inet: is a folder; --skipped must name a file to write"),
    ("negative --show", ("inspect", "inet", "--show", "-2"),
     r"argument --show: got '-2'; expected a whole number of at least 0"),
    ("compute-mean output naming a folder", ("compute-mean", "golden_lmdb", "inet"),
     r"^inet: is a folder; OUT \(the mean .binaryproto\) must name a file to write"),
    ("data command that does not exist", ("convert-cifar",),
     r"argument command: invalid choice: 'convert-cifar'"),
])
def test_bad_data_options(tmp_path, golden_lmdb, case, args, pattern):
    make_tiny_imagenet(tmp_path / "inet")
    before = tree(tmp_path)
    done = data_cli(*args, cwd=tmp_path)
    assert len([line for line in done.stderr.splitlines() if line.strip()
                and " INFO " not in line]) == 1, done.stderr
    clean_failure(done, f"python -m pipeline_lib.data: {case}", pattern)
    assert tree(tmp_path) == before

"""Bad files, as a user meets them through `pcaffe` and `python -m pipeline_lib.data`:
each gets one message naming the file (and line, layer, record) and exit status 1, no
traceback unless --debug, and nothing half-written left behind."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
from imagenet_tiny import make_tiny_imagenet

from pipeline_lib.proto import caffe_pb2
from reliability.rel_util import GOLDEN, clean_failure, data_cli, pcaffe, record, tree

TEST = ("test", "--model", "small.prototxt", "--iterations", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder whose small net trained 20 iterations: results/small_iter_20.*"""
    from reliability.rel_util import make_run_dir

    run = make_run_dir(tmp_path_factory.mktemp("trained") / "run")
    done = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 20, "--output",
                  "results/small_iter_20", cwd=run)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def edit(run: Path, name: str, old: str, new: str, source: str = "small.prototxt") -> str:
    text = (run / source).read_text()
    assert old in text, old
    (run / name).write_text(text.replace(old, new, 1))
    return name


# -- prototxt and solver files ----------------------------------------------------------------

@pytest.mark.parametrize("case, old, new, patterns", [
    ("prototxt syntax error (missing ':')", "num_output: 4", "num_output 4",
     [r"^pcaffe test: error: bad\.prototxt:\d+:\d+: ", "Expected \":\""]),
    ("unknown field in a prototxt", "num_output: 4", "num_outputs: 4",
     [r"bad\.prototxt:\d+:\d+: `num_outputs` is not a field of convolution_param",
      "did you mean `num_output`"]),
    ("unknown layer type", '"ReLU"', '"ReLu"',
     ["layer 'relu1': unknown layer type 'ReLu'; did you mean 'ReLU'\\? "
      r"\(layer types are case-sensitive\)"]),
    ("a bottom that no layer produces", 'bottom: "conv1" top: "ip1"',
     'bottom: "conv2" top: "ip1"',
     ["layer 'ip1' \\(InnerProduct\\): bottom blob 'conv2' is produced by no layer"]),
    ("shape mismatch between layers", 'layer { name: "loss"',
     'layer { name: "sum" type: "Eltwise" bottom: "ip1" bottom: "data" top: "sum" }\n'
     'layer { name: "loss"',
     ["layer 'sum' \\(Eltwise\\): bottoms must have the same shape", r"\(20, 10\)",
      r"\(20, 1, 24, 24\)"]),
    ("label blob of the wrong size", 'bottom: "ip1" bottom: "label" top: "loss"',
     'bottom: "ip1" bottom: "data" top: "loss"',
     ["layer 'loss' \\(SoftmaxWithLoss\\)"]),
    ("propagate_down not given once per bottom", 'bottom: "ip1" bottom: "label" top: "loss"',
     'bottom: "ip1" bottom: "label" top: "loss" propagate_down: true',
     [r"layer 'loss' \(SoftmaxWithLoss\): propagate_down is given 1 time\(s\) but the layer "
      r"has 2 bottom\(s\); give it once per bottom, or not at all"]),
    ("loss_weight not given once per top", 'bottom: "ip1" bottom: "label" top: "loss"',
     'bottom: "ip1" bottom: "label" top: "loss" loss_weight: 1 loss_weight: 0.5',
     [r"layer 'loss' \(SoftmaxWithLoss\): loss_weight is given 2 time\(s\) but the layer "
      r"has 1 top\(s\)"]),
])
def test_bad_net_prototxt(run_dir, case, old, new, patterns):
    edit(run_dir, "bad.prototxt", old, new)
    before = tree(run_dir)
    done = pcaffe("test", "--model", "bad.prototxt", "--iterations", 1, cwd=run_dir)
    clean_failure(done, case, *patterns)
    assert tree(run_dir) == before


def test_missing_and_binary_and_non_utf8_prototxt(run_dir, trained):
    done = pcaffe("test", "--model", "nope.prototxt", cwd=run_dir)
    clean_failure(done, "net prototxt that does not exist",
                  "nope.prototxt: No such file or directory$")
    shutil.copy(trained / "results/small_iter_20.caffemodel", run_dir / "w.caffemodel")
    done = pcaffe("test", "--model", "w.caffemodel", cwd=run_dir)
    clean_failure(done, "a .caffemodel given where a prototxt is expected",
                  "w.caffemodel: is not a text protobuf")
    (run_dir / "latin1.prototxt").write_bytes('name: "caf\xe9"\n'.encode("latin-1"))
    done = pcaffe("test", "--model", "latin1.prototxt", cwd=run_dir)
    clean_failure(done, "prototxt that is not UTF-8", r"latin1.prototxt:1:\d+: is not UTF-8")


def test_bad_solver_files(run_dir):
    (run_dir / "typo.prototxt").write_text((run_dir / "solver.prototxt").read_text()
                                           + "\nmax_iters: 5\n")
    before = tree(run_dir)
    done = pcaffe("train", "--solver", "typo.prototxt", "--output", "results/x_iter_5",
                  cwd=run_dir)
    clean_failure(done, "unknown field in a solver",
                  r"typo.prototxt:\d+:\d+: `max_iters` is not a field of the solver",
                  "did you mean `max_iter`")
    edit(run_dir, "nonet.prototxt", "small.prototxt", "missing_net.prototxt",
         source="solver.prototxt")
    done = pcaffe("train", "--solver", "nonet.prototxt", "--output", "results/x_iter_5",
                  cwd=run_dir)
    clean_failure(done, "solver naming a net file that does not exist",
                  "missing_net.prototxt: No such file or directory")
    assert tree(run_dir) == before | {"nonet.prototxt"}  # no results/ left behind


# -- weights and solver states --------------------------------------------------------------

def test_caffemodel_that_does_not_fit_the_net(run_dir, trained):
    shutil.copy(trained / "results/small_iter_20.caffemodel", run_dir / "w.caffemodel")
    edit(run_dir, "wide.prototxt", "num_output: 10", "num_output: 12")
    done = pcaffe("test", "--model", "wide.prototxt", "--weights", "w.caffemodel",
                  "--iterations", 1, cwd=run_dir)
    clean_failure(done, ".caffemodel whose blob shapes do not fit the net",
                  r"w.caffemodel: layer 'ip1' blob 0 has shape \[10, 400\] but the net "
                  r"expects \[12, 400\]")
    edit(run_dir, "nobias.prototxt", "num_output: 10", "num_output: 10 bias_term: false")
    done = pcaffe("test", "--model", "nobias.prototxt", "--weights", "w.caffemodel",
                  "--iterations", 1, cwd=run_dir)
    clean_failure(done, ".caffemodel with another number of blobs for a layer",
                  "w.caffemodel: layer 'ip1' has 2 blobs but the net expects 1")


@pytest.mark.parametrize("case, cut", [
    ("truncated .caffemodel", lambda data: data[: len(data) * 2 // 3]),
    ("corrupted .caffemodel (bytes overwritten)",
     lambda data: data[:600] + b"\xff" * 64 + data[664:]),
    ("empty .caffemodel", lambda data: b""),
])
def test_damaged_caffemodel(run_dir, trained, case, cut):
    data = (trained / "results/small_iter_20.caffemodel").read_bytes()
    (run_dir / "w.caffemodel").write_bytes(cut(data))
    done = pcaffe(*TEST, "--weights", "w.caffemodel", cwd=run_dir)
    clean_failure(done, case, "^pcaffe test: error: w.caffemodel: ",
                  "empty|truncated or corrupt")


def _cut_between_layers(data: bytes, keep: int) -> bytes:
    """The .caffemodel `data` cut right after its first `keep` layers (still parses)."""
    model = caffe_pb2.NetParameter.FromString(data)
    del model.layer[keep:]
    prefix = model.SerializeToString(deterministic=True)
    assert data.startswith(prefix)
    return prefix


def test_caffemodel_cut_between_layers(run_dir, trained):
    data = (trained / "results/small_iter_20.caffemodel").read_bytes()
    (run_dir / "w.caffemodel").write_bytes(_cut_between_layers(data, 3))
    done = pcaffe(*TEST, "--weights", "w.caffemodel", cwd=run_dir)
    warning = next(line.split("] ", 1)[1] for line in done.stderr.splitlines()
                   if line.startswith("W") and "holds no weights" in line)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert warning == ("w.caffemodel holds no weights for layer 'ip1' of net 'small'; it keeps "
                       "its initial (filler) values")
    record(".caffemodel cut between two layers, used as test weights", warning, 0)

    # As a snapshot to resume from, the missing layer is an error.
    snap = run_dir / "snap"
    snap.mkdir()
    (snap / "small_iter_20.caffemodel").write_bytes(_cut_between_layers(data, 3))
    shutil.copy(trained / "results/small_iter_20.solverstate", snap)
    before = tree(run_dir)
    done = pcaffe("train", "--solver", "solver.prototxt", "--snapshot",
                  "snap/small_iter_20.solverstate", "--iterations", 40, "--output",
                  "results/small_iter_40", cwd=run_dir)
    clean_failure(done, "snapshot .caffemodel cut between two layers, resumed",
                  "small_iter_20.caffemodel: holds no weights for layer\\(s\\) 'ip1'")
    assert tree(run_dir) == before


@pytest.mark.parametrize("case, make, pattern", [
    ("truncated .solverstate",
     lambda d, s: (d / "s.solverstate").write_bytes(s.read_bytes()[:5000]),
     "s.solverstate: not a valid solverstate .*truncated or corrupt"),
    ("empty .solverstate", lambda d, s: (d / "s.solverstate").write_bytes(b""),
     "s.solverstate: empty file, expected a solverstate"),
    (".caffemodel given as the solver state",
     lambda d, s: shutil.copy(s.with_suffix(".caffemodel"), d / "s.solverstate"),
     "s.solverstate: has no `iter` field; not a solverstate"),
    (".solverstate whose .caffemodel is missing",
     lambda d, s: shutil.copy(s, d / "s.solverstate"),
     "s.solverstate: learned_net 'small_iter_20.caffemodel' not found"),
])
def test_damaged_solverstate(run_dir, trained, case, make, pattern):
    make(run_dir, trained / "results/small_iter_20.solverstate")
    before = tree(run_dir)
    done = pcaffe("train", "--solver", "solver.prototxt", "--snapshot", "s.solverstate",
                  "--iterations", 40, "--output", "results/small_iter_40", cwd=run_dir)
    clean_failure(done, case, pattern)
    assert tree(run_dir) == before


@pytest.mark.parametrize("case, cut, pattern", [
    ("truncated mean .binaryproto", lambda b: b[:1000], "truncated or not a binary BlobProto"),
    ("mean .binaryproto cut short of its values", lambda b: b[:len(b) - 400],
     "truncated|values"),
    ("mean .binaryproto of random bytes", lambda b: os.urandom(300),
     "truncated or not a binary BlobProto|expected a BlobProto of shape"),
])
def test_damaged_mean_file(run_dir, case, cut, pattern):
    done = data_cli("compute-mean", "db/train_lmdb", "mean.binaryproto", cwd=run_dir)
    assert done.returncode == 0, done.stderr
    good = (run_dir / "mean.binaryproto").read_bytes()
    (run_dir / "mean.binaryproto").write_bytes(cut(good))
    edit(run_dir, "meannet.prototxt", "scale: 0.00390625 crop_size: 24",
         'scale: 0.00390625 crop_size: 24 mean_file: "mean.binaryproto"')
    done = pcaffe("test", "--model", "meannet.prototxt", "--iterations", 1, cwd=run_dir)
    clean_failure(done, case, "layer 'data' \\(Data\\): mean file 'mean.binaryproto'", pattern)


# -- databases ----------------------------------------------------------------------------------

def _corrupt_record(db: Path, key: bytes) -> None:
    """Overwrite the start of `key`'s value (a serialized Datum) in an LMDB file."""
    path = db / "data.mdb"
    data = bytearray(path.read_bytes())
    start = data.find(key)
    assert start > 0
    while start > 0:  # every copy (a page may have been copied on write)
        value = start + len(key)
        data[value:value + 6] = b"\xff" * 6
        start = data.find(key, start + 1)
    path.write_bytes(bytes(data))


def test_corrupt_lmdb_record_stops_training(run_dir):
    _corrupt_record(run_dir / "db/train_lmdb", b"00000050")
    before = tree(run_dir)
    done = pcaffe("train", "--solver", "solver.prototxt", "--output", "results/small_iter_60",
                  cwd=run_dir)
    clean_failure(done, "corrupt LMDB record (a Datum that does not parse), in training",
                  "train_lmdb' key 00000050: corrupt record, not a serialized Datum")
    assert tree(run_dir) == before  # no snapshot folder, metrics or solver copy left


@pytest.mark.parametrize("case, damage, pattern", [
    ("truncated LMDB data.mdb",
     lambda p: os.truncate(p, p.stat().st_size // 3),
     "truncated or damaged: .* last page ends at byte"),
    ("LMDB with zeroed pages",
     lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]
                             + bytes(p.stat().st_size - p.stat().st_size // 2)),
     "page \\d+: holds the header of page 0 \\(damaged or zeroed\\)"),
    ("data.mdb that is not an LMDB file", lambda p: p.write_bytes(b"not a database\n" * 500),
     "not an LMDB file"),
])
def test_damaged_lmdb_file(golden_lmdb, tmp_path, case, damage, pattern):
    damage(golden_lmdb / "data.mdb")
    for command in (("inspect", golden_lmdb, "--show", 100),
                    ("compute-mean", golden_lmdb, tmp_path / "mean.binaryproto")):
        done = data_cli(*command, cwd=tmp_path)
        clean_failure(done, case, f"{golden_lmdb.name}: cannot open LMDB database", pattern,
                      "rebuild it")
    assert not (tmp_path / "mean.binaryproto").exists()


def test_corrupt_lmdb_record_in_tools(golden_lmdb, tmp_path):
    _corrupt_record(golden_lmdb, b"00000042")
    done = data_cli("compute-mean", golden_lmdb, tmp_path / "mean.binaryproto", cwd=tmp_path)
    clean_failure(done, "corrupt LMDB record, computing the mean",
                  "golden_lmdb key 00000042: corrupt record")
    assert not (tmp_path / "mean.binaryproto").exists()


def test_not_a_database(tmp_path):
    (tmp_path / "folder").mkdir()
    done = data_cli("inspect", "folder", cwd=tmp_path)
    clean_failure(done, "a folder that is no database", "folder: not a database: no data.mdb")


def test_corrupt_leveldb(tmp_path):
    caffe_db = Path(shutil.copytree(GOLDEN / "caffe_train100_leveldb", tmp_path / "caffe_ldb"))
    log = next(caffe_db.glob("*.log"))
    data = bytearray(log.read_bytes())
    data[20000:20010] = bytes(b ^ 0xFF for b in data[20000:20010])
    log.write_bytes(bytes(data))
    done = data_cli("inspect", caffe_db, "--show", 100, cwd=tmp_path)
    clean_failure(done, "corrupt LevelDB log (checksum)",
                  "caffe_ldb: cannot open LevelDB database \\(Corruption: checksum mismatch")

    import plyvel  # a compacted copy: the records now sit in a table file

    table_db = Path(shutil.copytree(GOLDEN / "caffe_train100_leveldb", tmp_path / "table_ldb"))
    db = plyvel.DB(str(table_db))
    db.compact_range()
    db.close()
    table = next(table_db.glob("*.ldb"))
    data = bytearray(table.read_bytes())
    data[8000:8010] = bytes(b ^ 0xFF for b in data[8000:8010])
    table.write_bytes(bytes(data))
    done = data_cli("compute-mean", table_db, "mean.binaryproto", cwd=tmp_path)
    clean_failure(done, "corrupt LevelDB table block (checksum), computing the mean",
                  "table_ldb: corrupt record after key \\d+ \\(Corruption: block checksum")
    assert not (tmp_path / "mean.binaryproto").exists()


def test_bad_idx_files(tmp_path):
    images = (GOLDEN / "train100-images-idx3-ubyte").read_bytes()
    labels = (GOLDEN / "train100-labels-idx1-ubyte").read_bytes()
    (tmp_path / "images").write_bytes(images[:50000])
    (tmp_path / "labels").write_bytes(labels)
    done = data_cli("convert-mnist", "images", "labels", "db", cwd=tmp_path)
    clean_failure(done, "truncated IDX file",
                  r"images: truncated: header says shape \(100, 28, 28\)")
    (tmp_path / "images").write_bytes(images)
    (tmp_path / "labels").write_bytes(labels[:8] + labels[8:50])  # header still says 100
    (tmp_path / "few").write_bytes(labels[:4] + (42).to_bytes(4, "big") + labels[8:50])
    done = data_cli("convert-mnist", "images", "few", "db", cwd=tmp_path)
    clean_failure(done, "IDX images and labels of different counts",
                  "count mismatch: images holds 100 images but few holds 42 labels")
    (tmp_path / "images.gz").write_bytes(gzip.compress(images[:-10]))
    (tmp_path / "labels100").write_bytes(labels)
    done = data_cli("convert-mnist", "images.gz", "labels100", "db", cwd=tmp_path)
    clean_failure(done, "gzipped IDX file cut short",
                  r"images\.gz: truncated: the decompressed data ends inside item 100 ")
    assert not (tmp_path / "db").exists()


# -- listings of images --------------------------------------------------------------------------

@pytest.fixture
def tiny_imagenet(tmp_path):
    return make_tiny_imagenet(tmp_path / "inet")


def _listing(tiny, extra: str) -> Path:
    lines = [line for line in (tiny.base / "train.txt").read_text().splitlines()
             if "corrupt" not in line]
    path = tiny.base / "bad.txt"
    path.write_text("\n".join([*lines, extra]) + "\n")
    return path


@pytest.mark.parametrize("case, line, pattern", [
    ("listing naming an image that does not exist", "n01000000/missing.JPEG 0",
     r"bad.txt:\d+: .*n01000000/missing.JPEG: no such image file"),
    ("listing label out of range", "n01000000/n01000000_0.JPEG 3",
     r"bad.txt:\d+: label 3 is out of range for 3 synsets \(labels run 0..2\)"),
    ("listing path leaving the image root (../)", "../val/val_0.JPEG 1",
     r"bad.txt:\d+: image path '../val/val_0.JPEG' leaves the image root"),
    ("listing with an absolute path", "/etc/hostname 1",
     r"bad.txt:\d+: image path '/etc/hostname' is absolute"),
    ("listing line without a label", "n01000000/n01000000_0.JPEG",
     r"bad.txt:\d+: (expected 'relative/path label'|label .* is not an integer)"),
])
def test_bad_listing(tiny_imagenet, case, line, pattern):
    listing = _listing(tiny_imagenet, line)
    done = data_cli("convert-imageset", tiny_imagenet.train_root, listing, "db",
                    "--resize", "16x16", "--synsets", tiny_imagenet.base / "synset_words.txt",
                    cwd=tiny_imagenet.base)
    clean_failure(done, case, pattern)
    assert not (tiny_imagenet.base / "db").exists()
    assert not list(tiny_imagenet.base.glob(".db.*"))  # no temporary database left


def test_corrupt_image_and_mixed_sizes(tiny_imagenet):
    base = tiny_imagenet.base
    done = data_cli("convert-imageset", tiny_imagenet.train_root, base / "train.txt", "db",
                    "--resize", "16x16", cwd=base)
    clean_failure(done, "listing naming a corrupt image file",
                  r"train.txt:\d+: .*n02000000_corrupt.JPEG: cannot read image")
    assert not (base / "db").exists()
    done = data_cli("convert-imageset", tiny_imagenet.train_root, base / "train.txt", "db",
                    "--on-error", "skip", cwd=base)  # kept at their own sizes
    assert done.returncode == 0, done.stderr
    done = data_cli("compute-mean", "db", "mean.binaryproto", cwd=base)
    clean_failure(done, "mean over images of different sizes",
                  r"db key \S+: image is 3x\d+x\d+, earlier records 3x\d+x\d+; the mean "
                  "needs one size")
    assert not (base / "mean.binaryproto").exists()


def test_existing_output_is_not_overwritten(tmp_path, golden_lmdb):
    shutil.copy(GOLDEN / "train100-images-idx3-ubyte", tmp_path / "images")
    shutil.copy(GOLDEN / "train100-labels-idx1-ubyte", tmp_path / "labels")
    before = tree(golden_lmdb)
    done = data_cli("convert-mnist", "images", "labels", golden_lmdb, cwd=tmp_path)
    clean_failure(done, "output database that already exists",
                  "golden_lmdb: output database already exists")
    assert tree(golden_lmdb) == before


# -- --debug ---------------------------------------------------------------------------------

def test_debug_shows_the_traceback(run_dir):
    for args in (("--debug", "test", "--model", "nope.prototxt"),
                 ("test", "--debug", "--model", "nope.prototxt")):
        done = pcaffe(*args, cwd=run_dir)
        assert done.returncode == 1 and "Traceback" in done.stderr
        assert done.stderr.rstrip().endswith(
            "FileNotFoundError: [Errno 2] No such file or directory: 'nope.prototxt'")
    done = data_cli("--debug", "inspect", "nodb", cwd=run_dir)
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "DatabaseError: nodb: no such database" in done.stderr


DEPLOY = """
name: "small"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 24 dim: 24 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 5 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
        inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
"""


def test_classify_bad_images(trained, tmp_path):
    (tmp_path / "deploy.prototxt").write_text(DEPLOY)
    weights = trained / "results/small_iter_20.caffemodel"
    tiny = make_tiny_imagenet(tmp_path / "inet")
    jpeg = (tiny.train_root / tiny.train[0][0]).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[:2000])
    (tmp_path / "text.png").write_text("not an image")
    for name, case, pattern in (
            ("cut.jpg", "truncated JPEG given to classify", "cut.jpg: cannot read image "
                                                            r"\(OSError: image file is truncated"),
            ("text.png", "a text file named .png given to classify",
             r"text.png: cannot read image \(UnidentifiedImageError"),
            ("gone.png", "image file that does not exist, given to classify",
             "gone.png: no such file")):
        done = pcaffe("classify", "--model", "deploy.prototxt", "--weights", weights, name,
                      cwd=tmp_path)
        clean_failure(done, case, f"^pcaffe classify: error: {pattern}")

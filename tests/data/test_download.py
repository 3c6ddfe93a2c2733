"""Verified downloads: sources tried in order, corrupt files rejected, failures reported."""

import functools
import gzip
import hashlib
import http.server
import logging
import socket
import threading
import time

import pytest

from pipeline_lib.data.download import (
    DownloadError,
    ExpectedFile,
    HttpSource,
    LocalSource,
    Timeouts,
    fetch_verified,
)

CONTENT = {"alpha-ubyte": b"alpha bytes " * 100, "beta-ubyte": b"beta" * 7}
FAST = Timeouts(connect=2.0, read=5.0)


def _expected():
    return [
        ExpectedFile(name, hashlib.sha256(data).hexdigest(), len(data))
        for name, data in CONTENT.items()
    ]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        self.server.requests.append(self.path)


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/www: good/ holds the files, bad/ corrupt ones."""
    root = tmp_path / "www"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    (root / "notgz").mkdir()
    for name, data in CONTENT.items():
        (root / "good" / f"{name}.gz").write_bytes(gzip.compress(data))
        (root / "bad" / f"{name}.gz").write_bytes(gzip.compress(data[:-1] + b"!"))
        (root / "notgz" / f"{name}.gz").write_bytes(b"this is not gzip")
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_source_fetches_and_verifies(tmp_path, server):
    _, url = server
    got = fetch_verified(_expected(), [HttpSource(f"{url}/good", FAST)], tmp_path / "out")
    for name, data in CONTENT.items():
        assert got[name] == tmp_path / "out" / name
        assert got[name].read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(CONTENT)


def test_corrupt_source_falls_through_to_next(tmp_path, server, caplog):
    httpd, url = server
    sources = [HttpSource(f"{url}/bad/", FAST), HttpSource(f"{url}/good/", FAST)]
    with caplog.at_level(logging.WARNING):
        got = fetch_verified(_expected(), sources, tmp_path / "out")
    assert all(got[name].read_bytes() == data for name, data in CONTENT.items())
    assert "/bad/alpha-ubyte.gz" in httpd.requests and "/good/alpha-ubyte.gz" in httpd.requests
    assert "sha256 mismatch" in caplog.text


def test_unreachable_source_fails_fast(tmp_path, server):
    _, url = server
    sources = [
        HttpSource(f"http://127.0.0.1:{_closed_port()}/mnist/", FAST),  # refused
        HttpSource("http://no-such-host.invalid/mnist/", FAST),  # no name
        HttpSource(f"{url}/good/", FAST),
    ]
    start = time.monotonic()
    got = fetch_verified(_expected(), sources, tmp_path / "out")
    assert time.monotonic() - start < 3.0
    assert set(got) == set(CONTENT)


def test_all_sources_failing_lists_each(tmp_path, server):
    _, url = server
    sources = [
        HttpSource(f"http://127.0.0.1:{_closed_port()}/", FAST),
        HttpSource(f"{url}/bad/", FAST),
        HttpSource(f"{url}/notgz/", FAST),
        HttpSource(f"{url}/missing/", FAST),
        LocalSource(tmp_path / "nowhere"),
    ]
    with pytest.raises(DownloadError) as info:
        fetch_verified(_expected(), sources, tmp_path / "out")
    message = str(info.value)
    assert message.startswith("could not obtain alpha-ubyte, beta-ubyte; sources tried:")
    assert "unreachable" in message and "Connection refused" in message
    assert f"{url}/bad/: alpha-ubyte: sha256 mismatch" in message
    assert f"{url}/notgz/: alpha-ubyte: " in message and "not a valid gzip file" in message
    assert f"{url}/missing/: beta-ubyte: HTTP 404" in message
    assert f"local folder {tmp_path / 'nowhere'}: no such folder" in message
    assert len(info.value.failures) == 1 + 2 + 2 + 2 + 1
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written


def test_gz_sha256_is_checked_when_given(tmp_path, server):
    _, url = server
    expected = [ExpectedFile(f.name, f.sha256, f.size, gz_sha256="0" * 64) for f in _expected()]
    with pytest.raises(DownloadError, match="sha256 of the .gz mismatch"):
        fetch_verified(expected, [HttpSource(f"{url}/good/", FAST)], tmp_path / "out")


def test_present_verified_files_are_not_fetched_again(tmp_path, server):
    httpd, url = server
    out = tmp_path / "out"
    fetch_verified(_expected(), [HttpSource(f"{url}/good/", FAST)], out)
    count = len(httpd.requests)
    (out / "beta-ubyte").write_bytes(b"tampered")
    fetch_verified(_expected(), [HttpSource(f"{url}/good/", FAST)], out)
    assert httpd.requests[count:] == ["/good/beta-ubyte.gz"]
    assert (out / "beta-ubyte").read_bytes() == CONTENT["beta-ubyte"]


def test_local_folder_and_file_url(tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "alpha-ubyte").write_bytes(CONTENT["alpha-ubyte"])  # plain
    (folder / "beta-ubyte.gz").write_bytes(gzip.compress(CONTENT["beta-ubyte"]))  # gzipped
    got = fetch_verified(_expected(), [LocalSource(folder)], tmp_path / "a")
    assert got["beta-ubyte"].read_bytes() == CONTENT["beta-ubyte"]
    got = fetch_verified(_expected(), [LocalSource(folder.as_uri())], tmp_path / "b")
    assert got["alpha-ubyte"].read_bytes() == CONTENT["alpha-ubyte"]
    assert (folder / "alpha-ubyte").exists()  # the source is copied, not moved


def test_local_folder_with_wrong_file(tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "alpha-ubyte").write_bytes(b"wrong")
    with pytest.raises(DownloadError) as info:
        fetch_verified(_expected()[:1], [LocalSource(folder)], tmp_path / "out")
    assert "alpha-ubyte: size 5 bytes, expected 1200" in str(info.value)


def test_file_url_http_source(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, data in CONTENT.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    got = fetch_verified(_expected(), [HttpSource(folder.as_uri())], tmp_path / "out")
    assert got["alpha-ubyte"].read_bytes() == CONTENT["alpha-ubyte"]

"""Tests for webiml.download against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from webiml.download import (
    DownloadPolicy,
    ManifestRow,
    cache_path,
    download,
    fetch_pair,
    read_url_manifest,
)

FAST = DownloadPolicy(timeout=2.0, retries=2, backoff=0.01)
SLOW_SLEEP = 1.0


def _make_png() -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


class _State:
    def __init__(self, png: bytes) -> None:
        self.png = png
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []
        self.flaky_failures_left = 0

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.flaky_failures_left = 0

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)

    def ranges(self, path: str) -> list[str | None]:
        with self.lock:
            return [r for p, r in self.requests if p == path]


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, fmt, *args):
        pass

    def _send(self, code: int, body: bytes, ctype: str | None, extra: dict | None = None,
              length: int | None = -1) -> None:
        try:
            self.send_response(code)
            if ctype is not None:
                self.send_header("Content-Type", ctype)
            if length is not None:
                self.send_header("Content-Length", str(len(body) if length == -1 else length))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send_png_with_range(self) -> None:
        body = self.state.png
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
            if start >= len(body):
                self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(body)}"})
                return
            self._send(206, body[start:], "image/png",
                       {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
            return
        self._send(200, body, "image/png")

    def do_GET(self) -> None:
        st = self.state
        path = self.path.split("?", 1)[0]
        with st.lock:
            st.requests.append((path, self.headers.get("Range")))
        if path in ("/img.png", "/photo"):
            self._send_png_with_range()
        elif path == "/pic.JPG":
            self._send(200, st.png, "image/jpeg; charset=binary")
        elif path == "/missing.png":
            self._send(404, b"not found", "text/plain")
        elif path == "/slow.png":
            time.sleep(SLOW_SLEEP)
            self._send(200, st.png, "image/png")
        elif path == "/html":
            self._send(200, b"<html>hi</html>", "text/html; charset=utf-8")
        elif path == "/octet":
            self._send(200, st.png, "application/octet-stream")
        elif path == "/big.png":
            self._send(200, b"\0" * 4096, "image/png", length=10_000_000)
        elif path == "/nolength.png":
            self._send(200, b"\0" * 5000, "image/png", length=None)
        elif path == "/flaky.png":
            with st.lock:
                fail = st.flaky_failures_left > 0
                if fail:
                    st.flaky_failures_left -= 1
            if fail:
                self._send(503, b"busy", "text/plain")
            else:
                self._send(200, st.png, "image/png")
        elif path == "/ratelimited.png":
            self._send(429, b"slow down", "text/plain")
        elif path == "/cut.png":
            if self.headers.get("Range"):
                self._send_png_with_range()
            else:
                half = len(st.png) // 2
                self._send(200, st.png[:half], "image/png", length=len(st.png))
                self.close_connection = True
        elif path == "/stall.png":
            if self.headers.get("Range"):
                self._send_png_with_range()
            else:
                half = len(st.png) // 2
                self._send(200, st.png[:half], "image/png", length=len(st.png))
                self.wfile.flush()
                time.sleep(SLOW_SLEEP)
                self.close_connection = True
        elif path == "/norange.png":
            self._send(200, st.png, "image/png")
        else:
            self._send(404, b"", "text/plain")


@pytest.fixture(scope="module")
def server():
    state = _State(_make_png())
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield base, state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def srv(server, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    base, state = server
    state.reset()
    return base, state


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _partial(dest: Path, url: str, data: bytes) -> None:
    """A .part left by an interrupted download of ``url`` (with its record, as download writes it)."""
    _part(dest).write_bytes(data)
    dest.with_name(dest.name + ".json").write_text(json.dumps({"url": url, "sha256": None}))


def test_success_bytes_identical(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "sub" / "a.png"
    res = download(f"{base}/img.png", dest, FAST)
    assert res.ok and res.reason is None and not res.cached
    assert res.path == dest and res.attempts == 1
    assert dest.read_bytes() == state.png
    assert res.n_bytes == len(state.png)
    assert not _part(dest).exists()
    assert state.ranges("/img.png") == [None]


def test_cached_second_call_makes_no_request(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "a.png"
    first = download(f"{base}/img.png", dest, FAST)
    assert first.ok and state.count("/img.png") == 1
    second = download(f"{base}/img.png", dest, FAST)
    assert second.ok and second.cached and second.attempts == 0
    assert second.n_bytes == len(state.png) and second.path == dest
    assert state.count("/img.png") == 1


def test_404_not_retried(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "m.png"
    res = download(f"{base}/missing.png", dest, FAST)
    assert not res.ok and res.reason == "http-404" and res.attempts == 1 and res.path is None
    assert state.count("/missing.png") == 1
    assert not dest.exists() and not _part(dest).exists()


def test_timeout_retried_then_reported(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "s.png"
    policy = DownloadPolicy(timeout=0.3, retries=1, backoff=0.01)
    t0 = time.monotonic()
    res = download(f"{base}/slow.png", dest, policy)
    elapsed = time.monotonic() - t0
    assert not res.ok and res.reason == "timeout"
    assert res.attempts == 2
    assert elapsed < 2 * SLOW_SLEEP
    assert not dest.exists() and not _part(dest).exists()


def test_connection_refused_retried_not_timeout(srv, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = download(f"http://127.0.0.1:{port}/x.png", tmp_path / "x.png", FAST)
    assert not res.ok and res.reason == "connection-error" and res.attempts == FAST.retries + 1


def test_flaky_503_recovers(srv, tmp_path):
    base, state = srv
    state.flaky_failures_left = 2
    dest = tmp_path / "f.png"
    res = download(f"{base}/flaky.png", dest, FAST)
    assert res.ok and res.attempts == 3
    assert state.count("/flaky.png") == 3
    assert dest.read_bytes() == state.png


def test_flaky_503_exhausts_retries(srv, tmp_path):
    base, state = srv
    state.flaky_failures_left = 10
    dest = tmp_path / "f.png"
    res = download(f"{base}/flaky.png", dest, DownloadPolicy(retries=1, backoff=0.01))
    assert not res.ok and res.reason == "http-503" and res.attempts == 2
    assert not dest.exists() and not _part(dest).exists()


def test_429_is_retried(srv, tmp_path):
    base, state = srv
    res = download(f"{base}/ratelimited.png", tmp_path / "r.png", FAST)
    assert res.reason == "http-429" and res.attempts == FAST.retries + 1
    assert state.count("/ratelimited.png") == FAST.retries + 1


def test_bad_content_type(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "h.png"
    res = download(f"{base}/html", dest, FAST)
    assert not res.ok and res.reason == "bad-content-type" and res.attempts == 1
    assert not dest.exists() and not _part(dest).exists()


def test_octet_stream_accepted(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "o.bin"
    res = download(f"{base}/octet", dest, FAST)
    assert res.ok and dest.read_bytes() == state.png


def test_too_large_by_content_length(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "b.png"
    res = download(f"{base}/big.png", dest, DownloadPolicy(max_bytes=1000, retries=2, backoff=0.01))
    assert not res.ok and res.reason == "too-large" and res.attempts == 1
    assert not dest.exists() and not _part(dest).exists()


def test_too_large_while_streaming(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "n.png"
    res = download(f"{base}/nolength.png", dest, DownloadPolicy(max_bytes=1000, backoff=0.01))
    assert not res.ok and res.reason == "too-large" and res.attempts == 1
    assert not dest.exists() and not _part(dest).exists()


def test_resume_with_range(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "r.png"
    _partial(dest, f"{base}/img.png", state.png[:1000])
    res = download(f"{base}/img.png", dest, FAST)
    assert res.ok and res.attempts == 1
    assert state.ranges("/img.png") == ["bytes=1000-"]
    assert dest.read_bytes() == state.png
    assert res.n_bytes == len(state.png)
    assert not _part(dest).exists()


def test_truncated_body_is_retried_and_resumed(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "c.png"
    res = download(f"{base}/cut.png", dest, FAST)
    assert res.ok and res.attempts == 2
    assert state.ranges("/cut.png") == [None, f"bytes={len(state.png) // 2}-"]
    assert dest.read_bytes() == state.png


def test_read_timeout_mid_body_is_resumed(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "st.png"
    res = download(f"{base}/stall.png", dest, DownloadPolicy(timeout=0.3, retries=2, backoff=0.01))
    assert res.ok and res.attempts == 2
    assert state.ranges("/stall.png") == [None, f"bytes={len(state.png) // 2}-"]
    assert dest.read_bytes() == state.png


def test_resume_against_server_ignoring_range_restarts(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "nr.png"
    _partial(dest, f"{base}/norange.png", b"X" * 500)
    res = download(f"{base}/norange.png", dest, FAST)
    assert res.ok and res.attempts == 1
    assert state.ranges("/norange.png") == ["bytes=500-"]
    assert dest.read_bytes() == state.png
    assert not _part(dest).exists()


def test_oversized_part_416_restarts(srv, tmp_path):
    base, state = srv
    dest = tmp_path / "o.png"
    _partial(dest, f"{base}/img.png", b"X" * (len(state.png) + 10))
    res = download(f"{base}/img.png", dest, DownloadPolicy(retries=0, backoff=0.01))
    assert res.ok and res.attempts == 2
    assert state.ranges("/img.png") == [f"bytes={len(state.png) + 10}-", None]
    assert dest.read_bytes() == state.png


def test_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"not really an image")
    dest = tmp_path / "out" / "copy.bin"
    res = download(src.as_uri(), dest, DownloadPolicy(file_root=str(tmp_path)))
    assert res.ok and res.attempts == 1 and dest.read_bytes() == b"not really an image"
    assert not _part(dest).exists()
    # without a root that holds it, a file URL is refused
    res = download(src.as_uri(), tmp_path / "out" / "no.bin")
    assert not res.ok and res.reason == "outside-file-root" and not (tmp_path / "out" / "no.bin").exists()


def test_missing_file_url_does_not_raise(tmp_path):
    res = download((tmp_path / "nope.png").as_uri(), tmp_path / "x.png", replace(FAST, file_root=str(tmp_path)))
    assert not res.ok and res.attempts == 1 and res.path is None
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.png", "javascript:alert(1)", "img.png", "http:///x.png"])
def test_bad_url(url, tmp_path):
    res = download(url, tmp_path / "x.png")
    assert not res.ok and res.reason == "bad-url" and res.attempts == 0
    assert not (tmp_path / "x.png").exists()


def test_retries_are_urllib3_retry():
    from urllib3 import HTTPResponse
    from urllib3.util.retry import Retry

    from webiml.download import MAX_WAIT, RETRY_STATUSES, _session

    policy = DownloadPolicy(retries=4, backoff=0.25)
    with _session(policy) as session:
        for scheme in ("http", "https"):
            retry = session.get_adapter(f"{scheme}://example.org/x.png").max_retries
            assert isinstance(retry, Retry)
            assert retry.total == 4 and retry.backoff_factor == 0.25
            assert set(retry.status_forcelist) == set(RETRY_STATUSES) == {429, 500, 502, 503, 504}
            assert retry.raise_on_status is False
    # A server's Retry-After is honoured but capped; a malformed one falls back to the backoff.
    wait = retry.get_retry_after
    assert wait(HTTPResponse(headers={"Retry-After": "2"})) == 2
    assert wait(HTTPResponse(headers={"Retry-After": "86400"})) == MAX_WAIT
    assert wait(HTTPResponse(headers={"Retry-After": "soon"})) is None
    assert wait(HTTPResponse(headers={})) is None


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        DownloadPolicy(retries=-1)


def _expected_id(forged: str, authentic: str) -> str:
    return "url-" + hashlib.sha1((forged + "\n" + authentic).encode()).hexdigest()[:12]


def test_manifest_header_csv_with_aliases(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text(
        "Original,ID,Photoshop_URL\n"
        "https://e.org/a.jpg,p1,https://e.org/a_ps.jpg\n"
        "https://e.org/b.jpg,,https://e.org/b_ps.png\n"
    )
    rows = read_url_manifest(m)
    assert rows == [
        ManifestRow("p1", "https://e.org/a_ps.jpg", "https://e.org/a.jpg"),
        ManifestRow(_expected_id("https://e.org/b_ps.png", "https://e.org/b.jpg"),
                    "https://e.org/b_ps.png", "https://e.org/b.jpg"),
    ]


def test_manifest_headerless_tsv_comments_and_blanks(tmp_path):
    m = tmp_path / "m.tsv"
    m.write_text(
        "# a comment\n"
        "\n"
        "https://e.org/f1.png\thttps://e.org/a1.png\tpair one\n"
        "   \n"
        "#https://e.org/skip.png\thttps://e.org/skip2.png\n"
        "https://e.org/f2.png\thttps://e.org/a2.png\n"
    )
    rows = read_url_manifest(m)
    assert rows == [
        ManifestRow("pair_one", "https://e.org/f1.png", "https://e.org/a1.png"),
        ManifestRow(_expected_id("https://e.org/f2.png", "https://e.org/a2.png"),
                    "https://e.org/f2.png", "https://e.org/a2.png"),
    ]


def test_manifest_derived_ids_stable(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("forged,authentic\nhttps://e.org/f.png,https://e.org/a.png\n")
    first = read_url_manifest(m)
    second = read_url_manifest(m)
    assert first == second
    assert first[0].id == _expected_id("https://e.org/f.png", "https://e.org/a.png")
    assert len(first[0].id) == len("url-") + 12


def test_manifest_duplicate_and_unsafe_ids(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text(
        "id,fake,source\n"
        "x,f1,a1\n"
        "x,f2,a2\n"
        "x-1,f3,a3\n"
        "a b/c,f4,a4\n"
        "..,f5,a5\n"
        "dup,f6,a6\n"
        ",f7,a7\n"
        ",f7,a7\n"
    )
    ids = [r.id for r in read_url_manifest(m)]
    derived = _expected_id("f7", "a7")
    assert ids == ["x", "x-1", "x-1-1", "a_b_c", "__", "dup", derived, derived + "-1"]


def test_manifest_bad_row_names_line(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("forged_url,authentic_url\n# c\nhttps://e.org/f.png,https://e.org/a.png\nhttps://e.org/only.png,\n")
    with pytest.raises(ValueError, match=r"line 4\b"):
        read_url_manifest(m)


def test_manifest_single_column_headerless_raises(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("https://e.org/f.png\n")
    with pytest.raises(ValueError, match=r"line 1\b"):
        read_url_manifest(m)


def test_fetch_pair_extensions(srv, tmp_path):
    base, state = srv
    row = ManifestRow("p-1", f"{base}/pic.JPG?size=large", f"{base}/photo")
    forged, authentic = fetch_pair(row, tmp_path, FAST)
    assert forged.ok and authentic.ok
    assert forged.path == cache_path(row.forged_url, tmp_path) and forged.path.suffix == ".jpg"
    assert authentic.path == cache_path(row.authentic_url, tmp_path) and authentic.path.suffix == ".img"
    assert forged.path.read_bytes() == state.png == authentic.path.read_bytes()


def test_fetch_pair_attempts_both_on_failure(srv, tmp_path):
    base, state = srv
    row = ManifestRow("p2", f"{base}/missing.png", f"{base}/img.png")
    forged, authentic = fetch_pair(row, tmp_path, FAST)
    assert forged.reason == "http-404" and not cache_path(row.forged_url, tmp_path).exists()
    assert authentic.ok and cache_path(row.authentic_url, tmp_path).read_bytes() == state.png

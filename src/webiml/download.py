"""Careful, resumable downloader for URL manifests of forged/authentic image pairs.

Used only when the ``url-manifest`` source is picked explicitly; nothing here
touches the network unless :func:`download` or :func:`fetch_pair` is called.
HTTP(S) goes through a ``requests.Session`` whose adapter retries with urllib3's
``Retry``; ``file://`` URLs are copied locally, from inside the policy's ``file_root`` only.
Each download has a deadline for all its requests, retries and waits together; the cache is
keyed by URL and a cached file is used only when its recorded URL and SHA-256 still match.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import logging
import os
import re
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from . import io
from .paths import UnsafePath, inside

__all__ = ["DownloadPolicy", "DownloadResult", "ManifestRow", "cache_path", "download", "fetch_pair",
           "read_pair_table", "read_url_manifest"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_WAIT = 30.0  # seconds: cap on backoff and on a server's Retry-After
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
#: column names (any case; spaces and hyphens read as ``_``) of the forged and authentic sides in
#: a header of a pairs CSV or URL manifest
FORGED_ALIASES = ("forged", "forged_url", "forged_path", "photoshop", "photoshop_url", "fake", "tampered", "url_forged")
AUTHENTIC_ALIASES = ("authentic", "authentic_url", "authentic_path", "original", "original_url", "original_path",
                     "source", "url_original")
LOCAL = "local"  # cache_dir/local/<id>/: copies of file:// URLs, for the caller to remove once read

_ALLOWED_SCHEMES = ("http", "https", "file")
_RESTART = "restart"  # internal reason: the answer cannot extend the .part file


@dataclass(frozen=True)
class DownloadPolicy:
    """Limits and retry behaviour for :func:`download`; ``backoff`` is urllib3's ``backoff_factor``."""

    timeout: float = 15.0
    retries: int = 3
    backoff: float = 0.5
    max_bytes: int = 50_000_000
    allowed_types: tuple[str, ...] = ("image/",)
    user_agent: str = "webiml-collect/0.1 (research; +offline-by-default)"
    deadline: float | None = None  # seconds for one download in all; None: 4 x timeout x (retries + 1)
    file_root: str | None = None  # the folder file:// URLs must lie in; None: file:// URLs are refused

    @property
    def seconds_allowed(self) -> float:
        """The deadline of one download: every request, retry and wait of it together."""
        return self.deadline if self.deadline is not None else 4 * self.timeout * (self.retries + 1)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {self.max_bytes}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {self.deadline}")


@dataclass
class DownloadResult:
    """Outcome of one :func:`download` call; ``reason`` is None on success."""

    url: str
    path: Path | None
    ok: bool
    reason: str | None
    detail: str = ""
    n_bytes: int = 0
    attempts: int = 0
    cached: bool = False


class _Failure(Exception):
    """A failed fetch. ``transient``: keep a non-empty .part; ``resume``: worth another request now."""

    def __init__(self, reason: str, detail: str, transient: bool, resume: bool = False) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.transient, self.resume = reason, detail, transient, resume


class _OutOfTime(Exception):
    """The download's deadline leaves no time for the wait before another request."""


class _Deadline:
    """The time one download has left. When it runs out, a timer shuts down every socket the
    download opened, so that a server sending a byte now and then (headers or body) cannot keep
    a read going: the per-request timeout bounds one silence, this bounds the whole download."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def failure(self) -> _Failure:
        return _Failure("deadline", f"not done within the deadline of {self.seconds:g} s", transient=False)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> "_Deadline":
        _ACTIVE.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        _ACTIVE.deadline = None


_ACTIVE = threading.local()  # the deadline of the download running in this thread


def _deadline() -> _Deadline | None:
    return getattr(_ACTIVE, "deadline", None)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain-socket call: also under TLS


def _pause(seconds: float) -> None:
    """Wait before another request, unless the deadline comes first."""
    d = _deadline()
    if d is not None and seconds >= d.left():
        raise _OutOfTime()
    if seconds > 0:
        time.sleep(seconds)


class _Retry(Retry):
    """urllib3 ``Retry`` that caps a server's Retry-After at ``MAX_WAIT``, ignores a malformed one,
    and gives up when the wait would pass the download's deadline."""

    def get_retry_after(self, response) -> float | None:
        try:
            after = super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            return None  # fall back to the exponential backoff
        return None if after is None else min(after, MAX_WAIT)

    def sleep_for_retry(self, response) -> bool:
        after = self.get_retry_after(response)
        if after:
            _pause(after)
            return True
        return False

    def _sleep_backoff(self) -> None:
        _pause(self.get_backoff_time())


class _WatchedHTTP(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        if (d := _deadline()) is not None:
            d.watch(self.sock)


class _WatchedHTTPS(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        if (d := _deadline()) is not None:
            d.watch(self.sock)


class _Adapter(HTTPAdapter):
    """An adapter whose connections are watched by the running download's deadline."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("_Pool", (HTTPConnectionPool,), {"ConnectionCls": _WatchedHTTP}),
            "https": type("_TLSPool", (HTTPSConnectionPool,), {"ConnectionCls": _WatchedHTTPS}),
        }


def _session(policy: DownloadPolicy, retries: int | None = None) -> requests.Session:
    """A session whose http(s) adapter retries errors and 429/5xx answers with urllib3's ``Retry``."""
    total = policy.retries if retries is None else retries
    # raise_on_status=False: once retries run out, the last 429/5xx answer comes back as a response.
    retry = _Retry(total=total, backoff_factor=policy.backoff, backoff_max=MAX_WAIT,
                   status_forcelist=RETRY_STATUSES, raise_on_status=False)
    session = requests.Session()
    adapter = _Adapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # identity: Range offsets and Content-Length then count the bytes we store.
    session.headers.update({"User-Agent": policy.user_agent, "Accept-Encoding": "identity"})
    return session


def _check_url(url: str) -> str | None:
    """Return an error message for an unusable URL, else None."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"unparseable URL: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        return f"unsupported scheme {scheme!r}"
    if scheme in ("http", "https") and not parts.hostname:
        return "missing host"
    if scheme == "file" and (not parts.path or parts.netloc not in ("", "localhost")):
        return "file URL must name a local path"
    return None


def _content_type_ok(content_type: str | None, allowed: tuple[str, ...]) -> bool:
    if not content_type:
        return True
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not ctype or ctype == "application/octet-stream":
        return True
    return any(ctype.startswith(prefix.lower()) for prefix in allowed)


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """Parse ``bytes START-END/TOTAL`` into (start, total-or-None)."""
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value, flags=re.IGNORECASE)
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), total


def _caused_by(exc: BaseException | None, types) -> bool:
    """True if ``exc`` or an exception it wraps (requests -> urllib3 -> socket) is one of ``types``."""
    while exc is not None:
        if isinstance(exc, types):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _error_failure(exc: BaseException, what: str, resume: bool) -> _Failure:
    timeout = _caused_by(exc, (TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError))
    # urllib3's NewConnectionError (e.g. refused) subclasses its ConnectTimeoutError: not a timeout.
    refused = _caused_by(exc, urllib3.exceptions.NewConnectionError)
    reason = "timeout" if timeout and not refused else "connection-error"
    return _Failure(reason, f"{what}: {type(exc).__name__}: {exc}", transient=True, resume=resume)


def _save(resp: requests.Response, part: Path, offset: int, policy: DownloadPolicy) -> None:
    """Stream ``resp`` into ``part`` (appending to ``offset`` bytes on a matching 206); raises _Failure."""
    status = resp.status_code
    if status == 416 and offset:
        raise _Failure(_RESTART, f"HTTP 416 for Range bytes={offset}-", transient=False, resume=True)
    if not 200 <= status < 300:
        raise _Failure(f"http-{status}", f"HTTP {status} {resp.reason}", transient=status in RETRY_STATUSES)
    ctype = resp.headers.get("Content-Type")
    if not _content_type_ok(ctype, policy.allowed_types):
        raise _Failure("bad-content-type", f"Content-Type {ctype!r}", transient=False)

    length_header = resp.headers.get("Content-Length", "").strip()
    length = int(length_header) if length_header.isdecimal() else None
    start, expected, mode = 0, length, "wb"  # a 200 to a Range request: the server restarts us
    if status == 206:
        content_range = _parse_content_range(resp.headers.get("Content-Range"))
        if content_range is None or content_range[0] != offset:
            detail = f"206 with Content-Range {resp.headers.get('Content-Range')!r} for offset {offset}"
            raise _Failure(_RESTART, detail, transient=False, resume=True)
        start, total = content_range
        expected = total if total is not None else (start + length if length is not None else None)
        mode = "ab"
    if expected is not None and expected > policy.max_bytes:
        raise _Failure("too-large", f"{expected} bytes > max_bytes={policy.max_bytes}", transient=False)

    written = start
    with open(part, mode) as fh:
        try:
            # Raw bytes as served (counts match the headers); read1 returns what has arrived,
            # so a stall mid-body still leaves that much in ``part`` to resume from.
            for chunk in iter(lambda: resp.raw.read1(CHUNK_SIZE, decode_content=False), b""):
                written += len(chunk)
                if written > policy.max_bytes:
                    raise _Failure("too-large", f"body exceeds max_bytes={policy.max_bytes}", transient=False)
                fh.write(chunk)
                if (d := _deadline()) is not None and d.expired:
                    raise d.failure()
        except urllib3.exceptions.HTTPError as exc:  # urllib3 wraps socket errors and short reads
            raise _error_failure(exc, f"reading after {written} bytes", resume=True) from None
    if (d := _deadline()) is not None and d.expired:  # the timer's shutdown reads as the end of the body
        raise d.failure()
    if expected is not None and written != expected:
        detail = f"incomplete body: got {written} of {expected} bytes"
        raise _Failure("connection-error", detail, transient=True, resume=True)


def _fetch(session: requests.Session, url: str, part: Path, policy: DownloadPolicy) -> tuple[int, _Failure | None]:
    """One GET, retried by urllib3, into ``part``; returns (requests made, failure or None)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else None
    deadline = _deadline()
    timeout = policy.timeout if deadline is None else max(0.001, min(policy.timeout, deadline.left()))
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout)
    except _OutOfTime:
        return 1, deadline.failure()
    except requests.RequestException as exc:
        if isinstance(exc, ValueError):  # InvalidURL, InvalidSchema (e.g. a redirect to file://), ...
            return 1, _Failure("bad-url", f"{type(exc).__name__}: {exc}", transient=False)
        # Retry raises MaxRetryError once its budget is spent: every allowed request was made.
        exhausted = _caused_by(exc, urllib3.exceptions.MaxRetryError)
        n = session.get_adapter(url).max_retries.total + 1 if exhausted else 1
        return n, _or_deadline(_error_failure(exc, "request failed", resume=False))
    with resp:
        n = 1 + len(resp.raw.retries.history)  # the retries urllib3 made before this answer
        try:
            _save(resp, part, offset, policy)
        except _Failure as failure:
            return n, _or_deadline(failure)
    return n, None


def _or_deadline(failure: _Failure) -> _Failure:
    """A request the deadline's timer cut short fails by the deadline, whatever it looked like."""
    d = _deadline()
    return d.failure() if d is not None and d.expired else failure


def _download_http(url: str, part: Path, policy: DownloadPolicy) -> tuple[int, _Failure | None]:
    """Fetch ``url`` into ``part``; returns (requests made, failure or None)."""
    # urllib3's Retry only covers failures up to the response headers. A body cut short
    # (or a read timeout mid-stream) surfaces later, while we read; this loop resumes it
    # with a Range request, from the same budget of ``retries + 1`` requests.
    attempts, budget, restarted = 0, policy.retries + 1, False
    failure: _Failure | None = None
    while attempts < budget:
        with _session(policy, retries=budget - attempts - 1) as session:
            n, failure = _fetch(session, url, part, policy)
        attempts += n
        if failure is None or not failure.resume:
            break
        if failure.reason == _RESTART:
            part.unlink(missing_ok=True)
            if not restarted:  # one free restart: a stale .part is our problem, not the server's
                restarted, budget = True, budget + 1
                log.debug("restarting %s from scratch: %s", url, failure.detail)
                continue
            detail = f"unusable partial response: {failure.detail}"
            failure = _Failure("connection-error", detail, transient=True, resume=True)
        if attempts < budget:
            log.debug("resuming %s after %s (%s)", url, failure.reason, failure.detail)
            try:
                _pause(policy.backoff)
            except _OutOfTime:
                return attempts, _deadline().failure()
    return attempts, failure


def _local_path(url: str, policy: DownloadPolicy) -> Path:
    """The file a ``file://`` URL names, checked to lie in ``policy.file_root`` (symlinks resolved)."""
    if policy.file_root is None:
        raise UnsafePath("file:// URLs are read only from a folder you allow (--file-root; "
                         "by default the manifest's folder)")
    return inside(policy.file_root, url2pathname(urlsplit(url).path), "file URL")


def _copy_file(url: str, part: Path, policy: DownloadPolicy) -> _Failure | None:
    """The ``file://`` branch (requests has no file adapter): copy a regular file from inside
    ``policy.file_root`` into ``part``, counting the bytes read (a device or ``/proc`` file
    reports a size of 0 and may never end)."""
    try:
        src = _local_path(url, policy)
    except UnsafePath as exc:
        return _Failure("outside-file-root", str(exc), transient=False)
    deadline = _deadline()
    try:
        if not stat.S_ISREG(os.stat(src).st_mode):
            return _Failure("not-a-file", f"{src} is not a regular file", transient=False)
        # O_NONBLOCK: opening a fifo swapped in after the check does not wait for a writer
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fin, open(part, "wb") as fout:
            if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode):
                return _Failure("not-a-file", f"{src} is not a regular file", transient=False)
            written = 0
            while chunk := fin.read(CHUNK_SIZE):
                written += len(chunk)
                if written > policy.max_bytes:
                    return _Failure("too-large", f"more than max_bytes={policy.max_bytes} bytes", transient=False)
                fout.write(chunk)
                if deadline is not None and deadline.expired:
                    return deadline.failure()
    except FileNotFoundError as exc:
        return _Failure("http-404", f"file not found: {exc}", transient=False)
    except OSError as exc:
        return _Failure("connection-error", f"cannot read local file: {exc}", transient=False)
    return None


def _sidecar(dest: Path) -> Path:
    """``<dest>.json``: the URL a cached file (or its ``.part``) came from, and its SHA-256."""
    return dest.with_name(dest.name + ".json")


def _recorded(dest: Path) -> dict:
    try:
        d = json.loads(_sidecar(dest).read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


@contextlib.contextmanager
def _lock(dest: Path):
    """Hold ``<dest>.lock`` (fcntl, where available): two processes fetching one URL take turns,
    and the second finds the first's file in the cache. The lock file is removed on release."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): no lock
        yield
        return
    path = dest.with_name(dest.name + ".lock")
    while True:
        f = open(path, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break  # else the holder before us removed it: lock the new one
        except FileNotFoundError:
            pass
        f.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()


def download(url: str, dest: Path, policy: DownloadPolicy = DownloadPolicy()) -> DownloadResult:
    """Fetch ``url`` to ``dest`` atomically, resuming a ``.part`` file of the same URL if present.

    Network and HTTP problems never raise; they come back as a result with a ``reason``. An
    existing ``dest`` whose record (``<dest>.json``) names this URL and its SHA-256 is returned as
    cached without any request; any other is fetched again. ``file://`` URLs are always copied
    anew. A failure leaves nothing behind but the ``.part`` of an HTTP download cut short (and
    its record), for a later run to resume.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be str, got {type(url).__name__}")
    dest = Path(dest)
    url = url.strip()
    if dest.is_dir():
        raise IsADirectoryError(f"destination is not a file: {dest}")

    problem = _check_url(url)
    if problem is not None:
        log.info("bad url %r: %s", url, problem)
        return DownloadResult(url=url, path=None, ok=False, reason="bad-url", detail=problem)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    local = urlsplit(url).scheme.lower() == "file"
    with _lock(dest):
        record = _recorded(dest)
        if record.get("url") != url or local:
            for p in (dest, part):  # another URL's bytes, or unverifiable: never used
                p.unlink(missing_ok=True)
        elif dest.is_file() and record.get("sha256") == io.sha256_file(dest):
            n = dest.stat().st_size
            return DownloadResult(url=url, path=dest, ok=True, reason=None, n_bytes=n, cached=True)
        else:
            dest.unlink(missing_ok=True)
        io.write_json(_sidecar(dest), {"url": url, "sha256": None})
        with _Deadline(policy.seconds_allowed):
            if local:
                attempts, failure = 1, _copy_file(url, part, policy)
            else:
                attempts, failure = _download_http(url, part, policy)

        if failure is None:
            sha = io.sha256_file(part)
            os.replace(part, dest)
            io.write_json(_sidecar(dest), {"url": url, "sha256": sha})
            return DownloadResult(
                url=url, path=dest, ok=True, reason=None, n_bytes=dest.stat().st_size, attempts=attempts
            )
        # Keep a non-empty .part after transient failures so a later run can resume it.
        if not failure.transient or (part.exists() and part.stat().st_size == 0):
            part.unlink(missing_ok=True)
        if not part.exists():
            _sidecar(dest).unlink(missing_ok=True)
    log.info("download failed for %s after %d attempt(s): %s (%s)", url, attempts, failure.reason, failure.detail)
    return DownloadResult(
        url=url, path=None, ok=False, reason=failure.reason, detail=failure.detail, attempts=attempts
    )


@dataclass(frozen=True)
class ManifestRow:
    """One forged/authentic URL pair with a filesystem-safe id."""

    id: str
    forged_url: str
    authentic_url: str


def _sanitise_id(raw: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", raw)
    if cleaned.strip(".") == "":
        cleaned = cleaned.replace(".", "_")
    return cleaned


def _derived_id(forged_url: str, authentic_url: str) -> str:
    digest = hashlib.sha1((forged_url + "\n" + authentic_url).encode("utf-8")).hexdigest()
    return "url-" + digest[:12]


def _column_name(cell: str) -> str:
    return re.sub(r"[\s-]+", "_", cell.strip().lower())


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_ -]*")  # a column name; a path or URL has '/', '.' or ':'


def _find_column(header: list[str], aliases: tuple[str, ...]) -> int | None:
    for i, name in enumerate(header):
        if name in aliases:
            return i
    return None


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each row of a CSV, or a TSV when its first row has a tab;
    blank rows and rows starting with ``#`` are skipped. A file that is not UTF-8 or a field over
    the csv module's limit (128 KiB) is a ``ValueError`` naming the file and line."""
    reader = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip() and not line.lstrip().startswith("#")), "")
            f.seek(0)
            reader = csv.reader(f, delimiter="\t" if "\t" in first else ",")
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells) and not cells[0].startswith("#"):
                    yield reader.line_num, cells
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}, line {reader.line_num if reader else 1}: {exc}") from None


def read_pair_table(path: str | os.PathLike, what: str = "path") -> Iterator[tuple[int, str, str, str]]:
    """(line number, forged, authentic, id) of each row of a table of forged/authentic pairs (a
    pairs CSV or a URL manifest; ``what`` names its cells in messages).

    A first row that names columns is a header: the forged and authentic columns are found by
    name (:data:`FORGED_ALIASES`, :data:`AUTHENTIC_ALIASES`; ``id`` for the id), and a header
    naming no forged or no authentic column is refused. Without a header the columns are forged,
    authentic and an optional id. A row without both sides is a ``ValueError`` naming its line.
    """
    path = Path(path)
    rows = _csv_rows(path)
    forged_col, authentic_col, id_col = 0, 1, 2
    for lineno, cells in rows:
        header = [_column_name(c) for c in cells]
        f_idx, a_idx = _find_column(header, FORGED_ALIASES), _find_column(header, AUTHENTIC_ALIASES)
        if f_idx is not None or a_idx is not None or all(_WORD.fullmatch(c) for c in cells if c):
            if f_idx is None or a_idx is None:
                raise ValueError(
                    f"{path}, line {lineno}: the header {cells!r} names no {'forged' if f_idx is None else 'authentic'} "
                    f"column; name them e.g. 'forged,authentic' (forged: {', '.join(FORGED_ALIASES)}; "
                    f"authentic: {', '.join(AUTHENTIC_ALIASES)}), or leave the header out (forged first)")
            forged_col, authentic_col, id_col = f_idx, a_idx, _find_column(header, ("id",))
        else:
            rows = itertools.chain([(lineno, cells)], rows)
        break

    def cell(cells: list[str], idx: int | None) -> str:
        return cells[idx] if idx is not None and idx < len(cells) else ""

    for lineno, cells in rows:
        forged, authentic = cell(cells, forged_col), cell(cells, authentic_col)
        if not forged or not authentic:
            raise ValueError(f"{path}, line {lineno}: expected a forged and an authentic {what}, got {cells!r}")
        yield lineno, forged, authentic, cell(cells, id_col)


def _absolute_file_url(url: str, base: Path) -> str:
    """A relative ``file:`` URL made absolute against ``base`` (the manifest's folder, not the
    working directory); other URLs as they are."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or parts.netloc or not parts.path or parts.path.startswith("/"):
        return url
    return Path(os.path.abspath(base / url2pathname(parts.path))).as_uri()


def read_url_manifest(path: Path) -> list[ManifestRow]:
    """Read a CSV/TSV manifest of forged/authentic URL pairs (see :func:`read_pair_table`).

    Relative ``file:`` URLs are made absolute against the manifest's folder. Raises
    ``ValueError`` (with the line number) for rows lacking two URLs.
    """
    path = Path(path)
    rows: list[ManifestRow] = []
    used: set[str] = set()
    for _, forged, authentic, raw_id in read_pair_table(path, "URL"):
        base = _sanitise_id(raw_id) if raw_id else _derived_id(forged, authentic)
        forged, authentic = (_absolute_file_url(u, path.parent) for u in (forged, authentic))
        row_id, n = base, 0
        while row_id in used:
            n += 1
            row_id = f"{base}-{n}"
        used.add(row_id)
        rows.append(ManifestRow(id=row_id, forged_url=forged, authentic_url=authentic))
    return rows


def _suffix_for(url: str) -> str:
    try:
        suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower()
    except ValueError:
        return ".img"
    return suffix if suffix in IMAGE_SUFFIXES else ".img"


def cache_path(url: str, cache_dir: str | os.PathLike) -> Path:
    """Where :func:`fetch_pair` keeps the download of ``url``: named by the URL's SHA-256, so a
    changed URL is never answered with another's bytes."""
    return Path(cache_dir) / (hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:32] + _suffix_for(url))


def fetch_pair(
    row: ManifestRow, cache_dir: Path, policy: DownloadPolicy = DownloadPolicy()
) -> tuple[DownloadResult, DownloadResult]:
    """Download both sides of ``row`` into ``cache_dir`` (:func:`cache_path`); both are always
    attempted. ``file://`` URLs are copied to ``cache_dir/local/<id>/``, which the caller removes
    once it has read them (a local file is not worth a cache)."""
    results = []
    for side, url in (("forged", row.forged_url), ("authentic", row.authentic_url)):
        local = url.strip().lower().startswith("file:")
        dest = Path(cache_dir) / LOCAL / row.id / (side + _suffix_for(url)) if local else cache_path(url, cache_dir)
        results.append(download(url, dest, policy))
    return results[0], results[1]

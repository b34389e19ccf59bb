"""Careful, resumable downloader for URL manifests of forged/authentic image pairs.

Used only when the ``url-manifest`` source is picked explicitly; nothing here
touches the network unless :func:`download` or :func:`fetch_pair` is called.
HTTP(S) goes through a ``requests.Session`` whose adapter retries with urllib3's
``Retry``; ``file://`` URLs are copied locally.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__all__ = ["DownloadPolicy", "DownloadResult", "ManifestRow", "download", "fetch_pair", "read_url_manifest"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_WAIT = 30.0  # seconds: cap on backoff and on a server's Retry-After
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
FORGED_ALIASES = ("forged", "forged_url", "photoshop", "photoshop_url", "fake", "url_forged")
AUTHENTIC_ALIASES = ("authentic", "authentic_url", "original", "original_url", "source", "url_original")

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

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {self.max_bytes}")


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


class _Retry(Retry):
    """urllib3 ``Retry`` that caps a server's Retry-After at ``MAX_WAIT`` and ignores a malformed one."""

    def get_retry_after(self, response) -> float | None:
        try:
            after = super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            return None  # fall back to the exponential backoff
        return None if after is None else min(after, MAX_WAIT)


def _session(policy: DownloadPolicy, retries: int | None = None) -> requests.Session:
    """A session whose http(s) adapter retries errors and 429/5xx answers with urllib3's ``Retry``."""
    total = policy.retries if retries is None else retries
    # raise_on_status=False: once retries run out, the last 429/5xx answer comes back as a response.
    retry = _Retry(total=total, backoff_factor=policy.backoff, backoff_max=MAX_WAIT,
                   status_forcelist=RETRY_STATUSES, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
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
        except urllib3.exceptions.HTTPError as exc:  # urllib3 wraps socket errors and short reads
            raise _error_failure(exc, f"reading after {written} bytes", resume=True) from None
    if expected is not None and written != expected:
        detail = f"incomplete body: got {written} of {expected} bytes"
        raise _Failure("connection-error", detail, transient=True, resume=True)


def _fetch(session: requests.Session, url: str, part: Path, policy: DownloadPolicy) -> tuple[int, _Failure | None]:
    """One GET, retried by urllib3, into ``part``; returns (requests made, failure or None)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else None
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=policy.timeout)
    except requests.RequestException as exc:
        if isinstance(exc, ValueError):  # InvalidURL, InvalidSchema (e.g. a redirect to file://), ...
            return 1, _Failure("bad-url", f"{type(exc).__name__}: {exc}", transient=False)
        # Retry raises MaxRetryError once its budget is spent: every allowed request was made.
        exhausted = _caused_by(exc, urllib3.exceptions.MaxRetryError)
        n = session.get_adapter(url).max_retries.total + 1 if exhausted else 1
        return n, _error_failure(exc, "request failed", resume=False)
    with resp:
        n = 1 + len(resp.raw.retries.history)  # the retries urllib3 made before this answer
        try:
            _save(resp, part, offset, policy)
        except _Failure as failure:
            return n, failure
    return n, None


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
            time.sleep(policy.backoff)
    return attempts, failure


def _copy_file(url: str, part: Path, policy: DownloadPolicy) -> _Failure | None:
    """The ``file://`` branch (requests has no file adapter): copy the local file into ``part``."""
    src = Path(url2pathname(urlsplit(url).path))
    try:
        size = src.stat().st_size
        if size > policy.max_bytes:
            return _Failure("too-large", f"{size} bytes > max_bytes={policy.max_bytes}", transient=False)
        shutil.copyfile(src, part)
    except FileNotFoundError as exc:
        return _Failure("http-404", f"file not found: {exc}", transient=False)
    except OSError as exc:
        return _Failure("connection-error", f"cannot read local file: {exc}", transient=False)
    return None


def download(url: str, dest: Path, policy: DownloadPolicy = DownloadPolicy()) -> DownloadResult:
    """Fetch ``url`` to ``dest`` atomically, resuming a ``.part`` file if present.

    Network and HTTP problems never raise; they come back as a result with a
    ``reason``. An existing ``dest`` is returned as cached without any request.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be str, got {type(url).__name__}")
    dest = Path(dest)
    url = url.strip()

    if dest.exists():
        if not dest.is_file():
            raise IsADirectoryError(f"destination is not a file: {dest}")
        return DownloadResult(
            url=url, path=dest, ok=True, reason=None, n_bytes=dest.stat().st_size, cached=True
        )

    problem = _check_url(url)
    if problem is not None:
        log.info("bad url %r: %s", url, problem)
        return DownloadResult(url=url, path=None, ok=False, reason="bad-url", detail=problem)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if urlsplit(url).scheme.lower() == "file":
        attempts, failure = 1, _copy_file(url, part, policy)
    else:
        attempts, failure = _download_http(url, part, policy)

    if failure is None:
        os.replace(part, dest)
        return DownloadResult(
            url=url, path=dest, ok=True, reason=None, n_bytes=dest.stat().st_size, attempts=attempts
        )
    # Keep a non-empty .part after transient failures so a later run can resume it.
    if not failure.transient or (part.exists() and part.stat().st_size == 0):
        part.unlink(missing_ok=True)
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


def _find_column(header: list[str], aliases: tuple[str, ...]) -> int | None:
    for i, name in enumerate(header):
        if name in aliases:
            return i
    return None


def read_url_manifest(path: Path) -> list[ManifestRow]:
    """Read a CSV/TSV manifest of forged/authentic URL pairs.

    Raises ``ValueError`` (with the line number) for rows lacking two URLs.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    lines = [
        (lineno, line)
        for lineno, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        return []

    delimiter = "\t" if "\t" in lines[0][1] else ","
    parsed = [
        (lineno, [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))])
        for lineno, line in lines
    ]

    forged_col, authentic_col, id_col = 0, 1, 2
    header = [cell.lower() for cell in parsed[0][1]]
    f_idx = _find_column(header, FORGED_ALIASES)
    a_idx = _find_column(header, AUTHENTIC_ALIASES)
    if f_idx is not None and a_idx is not None:
        forged_col, authentic_col = f_idx, a_idx
        id_col = _find_column(header, ("id",))
        parsed = parsed[1:]

    def cell(cells: list[str], idx: int | None) -> str:
        return cells[idx] if idx is not None and idx < len(cells) else ""

    rows: list[ManifestRow] = []
    used: set[str] = set()
    for lineno, cells in parsed:
        forged = cell(cells, forged_col)
        authentic = cell(cells, authentic_col)
        if not forged or not authentic:
            raise ValueError(
                f"{path}, line {lineno}: expected a forged and an authentic URL, got {cells!r}"
            )
        raw_id = cell(cells, id_col)
        base = _sanitise_id(raw_id) if raw_id else _derived_id(forged, authentic)
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


def fetch_pair(
    row: ManifestRow, cache_dir: Path, policy: DownloadPolicy = DownloadPolicy()
) -> tuple[DownloadResult, DownloadResult]:
    """Download both sides of ``row`` into ``cache_dir/<id>/``; both are always attempted."""
    pair_dir = Path(cache_dir) / row.id
    forged = download(row.forged_url, pair_dir / ("forged" + _suffix_for(row.forged_url)), policy)
    authentic = download(
        row.authentic_url, pair_dir / ("authentic" + _suffix_for(row.authentic_url)), policy
    )
    return forged, authentic

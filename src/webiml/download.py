"""Careful, resumable downloader for URL manifests of forged/authentic image pairs.

Used only when the ``url-manifest`` source is picked explicitly; nothing here
touches the network unless :func:`download` or :func:`fetch_pair` is called.
Standard library only.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

__all__ = [
    "DownloadPolicy",
    "DownloadResult",
    "ManifestRow",
    "download",
    "fetch_pair",
    "read_url_manifest",
]

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
FORGED_ALIASES = ("forged", "forged_url", "photoshop", "photoshop_url", "fake", "url_forged")
AUTHENTIC_ALIASES = ("authentic", "authentic_url", "original", "original_url", "source", "url_original")

_ALLOWED_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class DownloadPolicy:
    """Limits and retry behaviour for :func:`download`."""

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
    def __init__(self, reason: str, detail: str, retryable: bool) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


class _RestartFromScratch(Exception):
    """The server's partial answer cannot extend the existing .part file."""


def _build_opener() -> urllib.request.OpenerDirector:
    # Hand-built so that no FTP/data handlers exist: a redirect can never
    # leave http/https, and file:// is only reachable when asked for directly.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.FileHandler(),
    ):
        opener.add_handler(handler)
    return opener


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
    if scheme == "file" and not parts.path:
        return "missing path"
    return None


def _content_type_ok(content_type: str | None, allowed: tuple[str, ...]) -> bool:
    if not content_type:
        return True
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not ctype or ctype == "application/octet-stream":
        return True
    return any(ctype.startswith(prefix.lower()) for prefix in allowed)


def _int_header(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value.strip())
    except ValueError:
        return None
    return n if n >= 0 else None


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """Parse ``bytes START-END/TOTAL`` into (start, total-or-None)."""
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value, flags=re.IGNORECASE)
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), total


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout)) or "timed out" in str(exc).lower()


def _attempt(
    opener: urllib.request.OpenerDirector, url: str, part: Path, policy: DownloadPolicy, is_file: bool
) -> None:
    """One request; on success ``part`` holds the complete body. Raises _Failure / _RestartFromScratch."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": policy.user_agent}
    if offset and not is_file:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)

    try:
        response = opener.open(request, timeout=policy.timeout)
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
        if code == 416 and offset:
            raise _RestartFromScratch(f"HTTP 416 for Range bytes={offset}-") from None
        retryable = code >= 500 or code == 429
        raise _Failure(f"http-{code}", f"HTTP {code} {exc.reason}", retryable) from None
    except urllib.error.URLError as exc:
        inner = exc.reason
        if is_file:
            if isinstance(inner, FileNotFoundError):
                raise _Failure("http-404", f"file not found: {inner}", False) from None
            raise _Failure("connection-error", f"cannot open local file: {inner}", False) from None
        if isinstance(inner, BaseException) and _is_timeout(inner):
            raise _Failure("timeout", f"timed out: {inner}", True) from None
        raise _Failure("connection-error", f"{inner}", True) from None
    except (http.client.InvalidURL, ValueError) as exc:
        raise _Failure("bad-url", str(exc), False) from None
    except (OSError, http.client.HTTPException) as exc:
        if _is_timeout(exc):
            raise _Failure("timeout", f"timed out: {exc}", True) from None
        raise _Failure("connection-error", f"{type(exc).__name__}: {exc}", True) from None

    with response:
        status = response.status if not is_file else 200
        if not is_file and not _content_type_ok(response.headers.get("Content-Type"), policy.allowed_types):
            raise _Failure(
                "bad-content-type", f"Content-Type {response.headers.get('Content-Type')!r}", False
            )

        length = _int_header(response.headers.get("Content-Length"))
        if status == 206:
            content_range = _parse_content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range[0] != offset:
                raise _RestartFromScratch(
                    f"206 with Content-Range {response.headers.get('Content-Range')!r} for offset {offset}"
                )
            start, total = content_range
            expected = total if total is not None else (start + length if length is not None else None)
            mode = "ab"
        else:
            start = 0
            expected = length
            mode = "wb"

        if expected is not None and expected > policy.max_bytes:
            raise _Failure("too-large", f"{expected} bytes > max_bytes={policy.max_bytes}", False)

        written = start
        with open(part, mode) as fh:
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (socket.timeout, TimeoutError):
                    raise _Failure("timeout", f"timed out while reading after {written} bytes", True) from None
                except (ConnectionError, http.client.HTTPException) as exc:
                    raise _Failure(
                        "connection-error", f"{type(exc).__name__} after {written} bytes", True
                    ) from None
                if not chunk:
                    break
                written += len(chunk)
                if written > policy.max_bytes:
                    raise _Failure("too-large", f"body exceeds max_bytes={policy.max_bytes}", False)
                fh.write(chunk)

        if expected is not None and written != expected:
            raise _Failure(
                "connection-error", f"incomplete body: got {written} of {expected} bytes", True
            )


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

    is_file = urlsplit(url).scheme.lower() == "file"
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    opener = _build_opener()

    attempts = 0
    restarted = False
    failure: _Failure | None = None
    max_attempts = policy.retries + 1
    while attempts < max_attempts:
        attempts += 1
        try:
            _attempt(opener, url, part, policy, is_file)
        except _RestartFromScratch as exc:
            _unlink(part)
            if not restarted:
                # One free restart: a stale .part is our problem, not the server's.
                restarted = True
                max_attempts += 1
                log.debug("restarting %s from scratch: %s", url, exc)
                continue
            failure = _Failure("connection-error", f"unusable partial response: {exc}", True)
        except _Failure as exc:
            failure = exc
        else:
            os.replace(part, dest)
            return DownloadResult(
                url=url, path=dest, ok=True, reason=None, n_bytes=dest.stat().st_size, attempts=attempts
            )

        if not failure.retryable:
            break
        if attempts < max_attempts:
            delay = policy.backoff * 2 ** (attempts - 1)
            log.debug(
                "attempt %d/%d for %s failed (%s: %s); retrying in %.2fs",
                attempts, max_attempts, url, failure.reason, failure.detail, delay,
            )
            time.sleep(delay)

    assert failure is not None
    # Keep a non-empty .part after transient failures so a later run can resume it.
    if not failure.retryable or (part.exists() and part.stat().st_size == 0):
        _unlink(part)
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

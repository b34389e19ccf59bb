"""Images, masks, dataset indexes and pair manifests.

Every reader here either returns clean data or raises :class:`Rejected` with a short machine
reason (``reason``) and a human detail, so that stages can quarantine bad items and go on.
Writers are atomic (temp file + rename): an interrupted stage never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import stat
import struct
import tempfile
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError, UserError

DEFAULT_MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
NEGATIVE = "Negative"

# Reasons a reader may give. Stages count rejections by these strings.
REASONS = (
    "missing-file",
    "name-too-long",
    "unreadable",
    "empty-file",
    "not-an-image",
    "truncated",
    "corrupt",
    "too-large",
    "too-small",
    "size-mismatch",
)


class Rejected(UserError):
    """An input that cannot be used; ``reason`` is one of :data:`REASONS` (or a stage's own).
    ``side`` says which file of an item failed (``"image"``/``"mask"``, ``"forged"``/``"authentic"``)."""

    def __init__(self, reason: str, detail: str = "", path: str | os.PathLike | None = None, side: str | None = None):
        self.reason = reason
        self.detail = detail
        self.path = None if path is None else str(path)
        self.side = side
        super().__init__(f"{reason}: {detail}" + (f" ({path})" if path else ""))


@dataclass
class ImageInfo:
    """What decoding did to a file: original mode/size and the conversions applied."""

    path: str
    format: str | None
    mode: str
    width: int
    height: int
    sha256: str
    flags: list[str] = field(default_factory=list)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _to_rgb(img: Image.Image, flags: list[str]) -> np.ndarray:
    """Convert any PIL mode to uint8 RGB, recording what was done in ``flags``."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        flags.append("16bit" if top > 255 else "int32")
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        flags.append("float")
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        return np.repeat(np.clip(a + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "P":
        flags.append("palette")
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        if np.asarray(rgba)[..., 3].min() < 255:
            flags.append("alpha-composited")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "CMYK":
        flags.append("cmyk")
    elif mode in ("L", "1"):
        flags.append("grayscale")
    elif mode not in ("RGB",):
        flags.append(f"mode-{mode}")
    return np.asarray(img.convert("RGB"))


_OS_REASONS = {errno.ENOENT: "missing-file", errno.ENOTDIR: "missing-file", errno.ENAMETOOLONG: "name-too-long"}
#: what a decoder may raise on a broken or hostile file (beyond OSError)
_DECODE_ERRORS = (ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, MemoryError, RecursionError,
                  struct.error, zlib.error)


def _os_rejected(e: OSError, path: Path) -> Rejected:
    """A file-system error (missing, name too long, symlink loop, permission) as a rejection."""
    detail = "file does not exist" if e.errno == errno.ENOENT else (e.strerror or str(e))
    return Rejected(_OS_REASONS.get(e.errno, "unreadable"), detail, path)


def _check_file(path: Path) -> None:
    """Refuse what is not a non-empty regular file, before opening it (a FIFO or device would block)."""
    try:
        st = path.stat()
    except OSError as e:
        raise _os_rejected(e, path) from None
    except ValueError as e:  # an embedded NUL byte
        raise Rejected("unreadable", str(e), path) from None
    if not stat.S_ISREG(st.st_mode):
        raise Rejected("not-an-image", "a folder, not a file" if stat.S_ISDIR(st.st_mode) else "not a regular file", path)
    if st.st_size == 0:
        raise Rejected("empty-file", "zero bytes", path)


@contextlib.contextmanager
def _decoding(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """The one way files are opened for decoding: yields the opened image, its header size already
    checked against ``max_pixels``; any failure, in opening or in the block, raises :class:`Rejected`
    (``missing-file``, ``name-too-long``, ``unreadable``, ``empty-file``, ``not-an-image``,
    ``too-large``, ``truncated``, ``corrupt``)."""
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise Rejected("too-large", f"{w}x{h} = {w * h} px > limit {max_pixels}", path)
                yield img
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise Rejected("too-large", str(e), path) from None
    except UnidentifiedImageError:
        raise Rejected("not-an-image", "no image decoder recognises this file", path) from None
    except OSError as e:
        if e.errno is not None:  # from the file system (permission, a folder), not from the decoder
            raise _os_rejected(e, path) from None
        msg = str(e)
        reason = "truncated" if "truncated" in msg.lower() or "premature end" in msg.lower() else "corrupt"
        raise Rejected(reason, msg, path) from None
    except _DECODE_ERRORS as e:
        raise Rejected("corrupt", f"{type(e).__name__}: {e}", path) from None


def read_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 8,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode an image file to an ``HxWx3`` uint8 RGB array.

    EXIF orientation is applied; grayscale, palette, RGBA/LA (composited on white), CMYK and
    16-bit images are converted; of a multi-page file (TIFF, animation) the first page is read,
    flagged ``multi-page``. Raises :class:`Rejected` for a missing, unreadable, empty, non-image,
    truncated or corrupt file, and for images above ``max_pixels`` (checked from the header,
    before decoding) or with a side below ``min_side``.
    """
    path = Path(path)
    flags: list[str] = []
    with _decoding(path, max_pixels) as img:
        w, h = img.size
        if min(w, h) < min_side:
            raise Rejected("too-small", f"{w}x{h}, a side < {min_side} px", path)
        fmt, mode = img.format, img.mode
        if getattr(img, "n_frames", 1) > 1:
            flags.append("multi-page")
        img.load()
        if _exif_orientation(img) not in (None, 1):
            flags.append("exif-rotated")
        oriented = ImageOps.exif_transpose(img)
        arr = _to_rgb(oriented, flags)
    info = ImageInfo(str(path), fmt, mode, w, h, sha256_file(path), flags)
    return np.ascontiguousarray(arr), info


def image_size(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image as :func:`read_image` returns it (after EXIF orientation),
    from its header, without decoding the pixels. Raises :class:`Rejected` as :func:`read_image`."""
    with _decoding(Path(path), max_pixels) as img:
        w, h = img.size
        transposed = _exif_orientation(img) in (5, 6, 7, 8)
    return (h, w) if transposed else (w, h)


def _exif_orientation(img: Image.Image) -> int | None:
    with contextlib.suppress(Exception):
        return img.getexif().get(0x0112)
    return None


def unique_name(name: str, taken: set[str], alt: str | None = None) -> str:
    """``name`` if it is not in ``taken``, else ``alt`` (when given and free), else the first free
    ``name-2``, ``name-3``, ...; the result is added to ``taken``. Output files named from input
    names (``a.png`` and ``a.jpg``, ``sub/x.png`` and ``sub__x.png``) stay distinct this way."""
    out, k = name, 1
    if out in taken and alt is not None:
        out = alt
    while out in taken:
        k += 1
        out = f"{name}-{k}"
    taken.add(out)
    return out


# ---------------------------------------------------------------------------- atomic writing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should be as readable as any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def to_json(obj: Any, **kw: Any) -> str:
    """``json.dumps`` that always gives valid JSON: NumPy values and paths converted, NaN and
    infinities written as ``null``."""
    return json.dumps(_finite(obj), allow_nan=False, default=_json_default, **kw)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, to_json(obj, indent=2, sort_keys=False) + "\n")


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a matplotlib figure atomically (format from the suffix, PNG by default)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def write_jsonl(path: str | os.PathLike, rows: Any) -> None:
    """One JSON object per line (atomic)."""
    write_text_atomic(path, "".join(to_json(r) + "\n" for r in rows))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(o: Any) -> Any:
    """``o`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    return o


def write_image(path: str | os.PathLike, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB (or single-channel) uint8 array; format from the suffix. Atomic."""
    path = Path(path)
    img = Image.fromarray(np.ascontiguousarray(rgb))
    with atomic_path(path) as tmp:
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}.get(
            path.suffix.lower(), "PNG"
        )
        kwargs = {"quality": int(jpeg_quality)} if fmt in ("JPEG", "WEBP") else {}
        if fmt == "PNG":
            kwargs["compress_level"] = 1
        img.save(tmp, format=fmt, **kwargs)


# ---------------------------------------------------------------------------------- masks


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a binary mask as a 0/255 single-channel PNG (bool or {0,1} or {0,255} input)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    out = np.where(m > (127 if m.dtype == np.uint8 and m.max() > 1 else 0.5), 255, 0).astype(np.uint8)
    write_image(path, out)


def write_soft_mask(path: str | os.PathLike, prob: np.ndarray) -> None:
    """Write a probability map in [0, 1] as a 0–255 grey PNG."""
    p = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0)
    write_image(path, (p * 255.0 + 0.5).astype(np.uint8))


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def read_mask_pixels(
    path: str | os.PathLike, size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """A raw mask file as uint8 ``HxW`` (grey) or ``HxWx3`` (colour).

    Mode ``1`` reads as 0/255; 16-bit, 32-bit and float masks whose maximum exceeds 255 are
    scaled by 255/65535 (others taken as 8-bit values), then rounded. ``size`` is the expected
    ``(width, height)`` (that of the image): a mask of another size is refused from its header,
    before decoding (``size-mismatch``), and one of that size is never ``too-large``. Raises
    :class:`Rejected` as :func:`read_image`.
    """
    path = Path(path)
    with _mask_decoding(path, size, max_pixels) as img:
        img.load()
        if img.mode in _WIDE_MODES:
            a = np.asarray(img, dtype=np.float64)
            a = a * (255.0 / 65535.0) if a.max() > 255 else a
            return np.clip(a + 0.5, 0, 255).astype(np.uint8)
        if img.mode == "1":
            return np.asarray(img, dtype=np.uint8) * 255
        if img.mode == "L":
            return np.asarray(img).copy()
        return np.asarray(img.convert("RGB")).copy()


@contextlib.contextmanager
def _mask_decoding(path: Path, size: tuple[int, int] | None, max_pixels: int) -> Iterator[Image.Image]:
    """:func:`_decoding` for a mask expected at ``size`` (refused from its header otherwise)."""
    with _decoding(path, max(max_pixels, size[0] * size[1]) if size is not None else max_pixels) as img:
        if size is not None and img.size != tuple(size):
            w, h = img.size
            raise Rejected("size-mismatch", f"mask {w}x{h} vs image {size[0]}x{size[1]}", path)
        yield img


def read_soft_mask(path: str | os.PathLike, size: tuple[int, int] | None = None,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a soft mask as a uint8 grey ``HxW`` array (value/255 = probability); colour is
    reduced by PIL's luma (as ``convert("L")``). Raises as :func:`read_mask_pixels`."""
    a = read_mask_pixels(path, size, max_pixels)
    return np.asarray(Image.fromarray(a, "RGB").convert("L")) if a.ndim == 3 else a


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a mask as bool ``HxW``: a pixel is set when its channel mean is > 127.5.

    ``size`` is the expected ``(width, height)`` (that of the image); a different size raises
    :class:`Rejected` ``size-mismatch``. Otherwise raises as :func:`read_mask_pixels`.
    """
    a = read_mask_pixels(path, size, max_pixels)
    return (a.mean(axis=2) if a.ndim == 3 else a) > 127.5


def read_entry(image: str | os.PathLike, mask: str | os.PathLike | None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """One entry of a dataset index: the RGB image and its truth (bool, at the image's size;
    ``None`` for an authentic image). A failure raises :class:`Rejected` whose ``side`` says
    which file is bad (``"image"`` or ``"mask"``)."""
    with side("image"):
        rgb, _ = read_image(image, max_pixels)
    with side("mask"):
        truth = None if mask is None else read_mask(mask, (rgb.shape[1], rgb.shape[0]))
    return rgb, truth


def check_entry(image: str | os.PathLike, mask: str | os.PathLike | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """What :func:`read_entry` checks before decoding (headers only: readable files, sizes, the
    mask at the image's size), raising the same :class:`Rejected`."""
    with side("image"):
        size = image_size(image, max_pixels)
    if mask is not None:
        with side("mask"), _mask_decoding(Path(mask), size, max_pixels):
            pass


@contextlib.contextmanager
def side(name: str) -> Iterator[None]:
    """A :class:`Rejected` raised in the block comes from the item's ``name`` file (its ``side``)."""
    try:
        yield
    except Rejected as e:
        e.side = name
        raise


def rejection(e: Rejected, **item: Any) -> dict:
    """A rejection as a JSON record: the item's fields, then side (if known), reason, detail, path."""
    out = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in item.items()}
    if e.side is not None:
        out["side"] = e.side
    out.update(reason=e.reason, detail=e.detail, path=e.path)
    return out


# ------------------------------------------------------------------------ dataset indexes


INDEX_PATHS = ("absolute", "relative")


def read_benco_index(path: str | os.PathLike) -> list[tuple[Path, Path | None]]:
    """Read an IMDL-BenCo JSON index: a list of ``[image, mask]``, mask ``"Negative"`` = authentic.

    Relative paths are resolved against the index file's folder. An absolute path that does not
    exist but whose tail does under the index's folder (an index written with absolute paths,
    then moved or pulled into another checkout) is read from there, with a warning.
    """
    path = Path(path)
    entries = read_json(path)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: a BenCo index is a JSON list of [image, mask] pairs")
    out: list[tuple[Path, Path | None]] = []
    moved = 0
    for i, e in enumerate(entries):
        if not (isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(s, str) for s in e)):
            raise ValueError(f"{path}: entry {i} is not [image, mask]: {e!r}")
        img, img_moved = _resolve(path.parent, e[0])
        mask, mask_moved = (None, False) if e[1] == NEGATIVE else _resolve(path.parent, e[1])
        moved += img_moved + mask_moved
        out.append((img, mask))
    if moved:
        warnings.warn(f"{path}: {moved} absolute paths do not exist; read them from the index's folder instead "
                      "(rebuild the index for tools that resolve paths as written)", stacklevel=2)
    return out


def _resolve(base: Path, p: str) -> tuple[Path, bool]:
    """(path, whether an absolute path was relocated under ``base``)."""
    q = Path(p)
    if not q.is_absolute():
        return base / q, False
    if not _exists(q):
        for i in range(1, len(q.parts)):  # the longest tail that exists under base
            cand = base.joinpath(*q.parts[i:])
            if _exists(cand):
                return cand, True
    return q, False


def _exists(p: Path) -> bool:
    """``p.exists()``, False also for a name the system refuses (too long, NUL byte): the reader says why."""
    try:
        return p.exists()
    except (OSError, ValueError):
        return False


def check_path(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """``stat`` of a path given by the user: a missing one raises ``FileNotFoundError``, one the
    system refuses (name too long, symlink loop, no permission) ``ValueError``, each naming it."""
    path = Path(path)
    try:
        return path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{what} {path}: {getattr(e, 'strerror', None) or e}") from None


def write_benco_index(
    path: str | os.PathLike, entries: Iterable[tuple[str | os.PathLike, str | os.PathLike | None]], paths: str = "absolute"
) -> None:
    """Write a BenCo JSON index. ``paths="absolute"`` (default) stores absolute paths, which load
    from any working directory (IMDL-BenCo resolves paths as written, against the current
    directory); ``"relative"`` stores them relative to the index folder where possible, for a
    dataset that is to be moved (our readers resolve those against the index's folder)."""
    if paths not in INDEX_PATHS:
        raise ValueError(f"paths must be one of {INDEX_PATHS}, got {paths!r}")
    path = Path(path)
    base = Path(os.path.abspath(path.parent))

    def fmt(p: str | os.PathLike) -> str:
        q = Path(os.path.abspath(p))
        if paths == "relative":
            with contextlib.suppress(ValueError):
                return Path(os.path.relpath(q, base)).as_posix()
        return q.as_posix()

    data = [[fmt(img), NEGATIVE if mask is None else fmt(mask)] for img, mask in entries]
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def read_tp_gt_dir(root: str | os.PathLike, au_dir: str = "Au") -> list[tuple[Path, Path | None]]:
    """Read a ``Tp/`` + ``Gt/`` folder pair (masks matched by file stem, optional ``_gt``/``_mask``
    suffix); images in an optional ``Au/`` folder are authentic (mask ``None``).

    Raises ``ValueError`` listing tampered images that have no mask.
    """
    root = Path(root)
    tp, gt = root / "Tp", root / "Gt"
    if not tp.is_dir():
        raise ValueError(f"{root}: no Tp/ folder")
    exact: dict[str, Path] = {}
    stripped: dict[str, Path] = {}
    if gt.is_dir():
        for m in sorted(gt.iterdir()):
            if m.suffix.lower() in IMAGE_SUFFIXES:
                exact.setdefault(m.stem, m)
                for suffix in ("_gt", "_mask", "-gt", "-mask"):
                    if m.stem.endswith(suffix):
                        stripped.setdefault(m.stem[: -len(suffix)], m)
                        break
    masks = {**stripped, **exact}  # a mask named exactly like the image wins
    out: list[tuple[Path, Path | None]] = []
    missing = []
    for img in sorted(tp.iterdir()):
        if img.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if img.stem in masks:
            out.append((img, masks[img.stem]))
        else:
            missing.append(img.name)
    if missing:
        raise ValueError(f"{root}: {len(missing)} tampered image(s) without a mask in Gt/: {missing[:5]}")
    au = root / au_dir
    if au.is_dir():
        out += [(img, None) for img in sorted(au.iterdir()) if img.suffix.lower() in IMAGE_SUFFIXES]
    return out


def write_tp_gt_dir(
    root: str | os.PathLike, entries: Iterable[tuple[str | os.PathLike, str | os.PathLike | None]]
) -> None:
    """Copy images into ``Tp/`` (with masks into ``Gt/`` as ``<stem>.png``) or ``Au/`` (authentic)."""
    import shutil

    root = Path(root)
    for img, mask in entries:
        img = Path(img)
        if mask is None:
            dest = root / "Au" / img.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(img, dest)
            continue
        (root / "Tp").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(img, root / "Tp" / img.name)
        m = read_mask(mask)
        write_mask(root / "Gt" / f"{img.stem}.png", m)


def read_index(spec: str | os.PathLike) -> list[tuple[Path, Path | None]]:
    """Read a dataset given either a BenCo JSON file or a ``Tp/``+``Gt/`` folder."""
    p = Path(spec)
    if stat.S_ISDIR(check_path(p, "dataset").st_mode):
        return read_tp_gt_dir(p)
    return read_benco_index(p)


# ---------------------------------------------------------------------------- pair manifest


@dataclass
class PairRecord:
    """One collected forged/authentic pair (a line of ``pairs.jsonl``).

    Paths are relative to the collection folder. ``transform`` is the 3x3 matrix mapping
    authentic (as collected) pixel coordinates to forged pixel coordinates, or ``None`` when the
    pair could not be registered (typically SDG).
    """

    id: str
    source: str
    forged: str
    authentic: str
    authentic_registered: str | None
    overlap: str | None
    transform: list[list[float]] | None
    transform_model: str | None
    forged_size: tuple[int, int]
    authentic_size: tuple[int, int]
    forged_sha256: str
    authentic_sha256: str
    origin: dict[str, str]
    inliers: int = 0
    overlap_fraction: float = 0.0
    residual: float | None = None
    phash: str = ""
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return to_json(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "PairRecord":
        d = dict(d)
        d["forged_size"] = tuple(d["forged_size"])
        d["authentic_size"] = tuple(d["authentic_size"])
        return cls(**d)


def parse_json(text: str | bytes, where: str | os.PathLike) -> Any:
    """``json.loads(text)``; text that is not UTF-8 JSON raises :class:`DataError` naming ``where``."""
    try:
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file; one that is not UTF-8 JSON raises :class:`DataError` naming it."""
    return parse_json(Path(path).read_bytes(), path)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The objects of a JSON-lines file (none when it is absent); a bad line raises
    :class:`DataError` naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if line:
                out.append(parse_json(line, f"{path}, line {lineno}"))
    return out


def read_pairs(folder_or_file: str | os.PathLike) -> list[PairRecord]:
    """Read ``pairs.jsonl`` from a collection folder (or the file itself)."""
    p = Path(folder_or_file)
    if p.is_dir():
        p = p / "pairs.jsonl"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no pair manifest (run the collect stage first)")
    return [PairRecord.from_dict(d) for d in read_jsonl(p)]


class JsonlWriter:
    """Append JSON lines to ``<path>.tmp`` and rename onto ``path`` on :meth:`close`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._f = open(self._tmp, "w")
        self.count = 0

    def write(self, obj: Any) -> None:
        line = obj.to_json() if hasattr(obj, "to_json") else to_json(obj)
        self._f.write(line + "\n")
        self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
            os.replace(self._tmp, self.path)

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)

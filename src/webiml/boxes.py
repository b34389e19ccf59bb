"""Bounding boxes: the coarse annotations BoxPromptIML learns from.

A box is ``(x0, y0, x1, y1)`` in float pixel coordinates of its image, ``x1``/``y1`` exclusive
(an integer box covers columns ``x0 .. x1-1``). Image sizes are ``(width, height)``, as in OpenCV.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Iterable, Literal, Sequence

import cv2
import numpy as np

from .io import read_json

Box = tuple[float, float, float, float]


def boxes_from_mask(
    mask: np.ndarray,
    rng: np.random.Generator,
    looseness: tuple[float, float] = (0.0, 0.15),
    jitter: float = 0.05,
    min_area: int = 16,
) -> list[Box]:
    """The simulated annotator: one box per 8-connected region of ``mask`` (regions smaller than
    ``min_area`` pixels are ignored), widened by a fraction drawn from ``looseness`` of its size
    (half on each side), shifted by up to ``jitter`` of its size on each axis, clipped to the image."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    lo, hi = looseness
    if not 0 <= lo <= hi:
        raise ValueError(f"looseness must be (lo, hi) with 0 <= lo <= hi, got {looseness}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    h, w = m.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats((m > 0.5).astype(np.uint8), connectivity=8)
    out: list[Box] = []
    for x, y, bw, bh, area in stats[1:]:
        if area < min_area:
            continue
        grow = rng.uniform(lo, hi)
        dx, dy = rng.uniform(-jitter, jitter, size=2)
        cx, cy = x + bw / 2 + dx * bw, y + bh / 2 + dy * bh
        hw, hh = bw * (1 + grow) / 2, bh * (1 + grow) / 2
        out.append((float(max(0.0, cx - hw)), float(max(0.0, cy - hh)), float(min(w, cx + hw)), float(min(h, cy + hh))))
    return out


def boxes_to_mask(boxes: Iterable[Sequence[float]], size: tuple[int, int]) -> np.ndarray:
    """A bool (H, W) mask of every pixel a box touches; ``size`` is ``(width, height)``."""
    w, h = size
    out = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        c1, r1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
        if c1 > c0 and r1 > r0:
            out[r0:r1, c0:c1] = True
    return out


def check_boxes(
    boxes: Iterable[Sequence[float]],
    size: tuple[int, int],
    on_bad: Literal["clip", "error"] = "clip",
    name: str = "image",
) -> list[Box]:
    """Validate boxes against an image of ``size`` ``(width, height)``.

    A box partly outside the image is clipped (with a warning). A box with no area (non-finite,
    ``x1 <= x0`` or ``y1 <= y0``) or entirely outside raises ValueError when ``on_bad="error"``
    and is dropped with a warning when ``on_bad="clip"``. ``name`` labels the messages.
    """
    if on_bad not in ("clip", "error"):
        raise ValueError(f"on_bad must be 'clip' or 'error', got {on_bad!r}")
    w, h = size
    out: list[Box] = []
    for i, b in enumerate(boxes):
        if len(b) != 4:
            raise ValueError(f"{name}: box {i} must be (x0, y0, x1, y1), got {tuple(b)}")
        x0, y0, x1, y1 = (float(v) for v in b)
        problem = None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            problem = "has zero area"
        elif x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            problem = f"lies entirely outside the {w}x{h} image"
        if problem:
            msg = f"{name}: box {i} {(x0, y0, x1, y1)} {problem}"
            if on_bad == "error":
                raise ValueError(msg)
            warnings.warn(msg + "; dropped", stacklevel=2)
            continue
        clipped = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
        if clipped != (x0, y0, x1, y1):
            warnings.warn(f"{name}: box {i} {(x0, y0, x1, y1)} extends outside the {w}x{h} image; clipped to {clipped}", stacklevel=2)
        out.append(clipped)
    return out


#: header names the CSV reader understands (case-insensitive), by column role
CSV_COLUMNS = {"image": ("image", "file", "file_name", "filename", "path", "name"), "x0": ("x0", "xmin", "x_min", "left"),
               "y0": ("y0", "ymin", "y_min", "top"), "x1": ("x1", "xmax", "x_max", "right"),
               "y1": ("y1", "ymax", "y_max", "bottom")}


def read_boxes(path: str | Path, bad: dict[str, str] | None = None) -> dict[str, list[Box]]:
    """Boxes per image file name from a COCO-style JSON (``images`` with ``id``/``file_name``,
    ``annotations`` with ``image_id`` and ``bbox`` = x, y, w, h; every listed image appears, maybe
    with no boxes) or a CSV of ``image,x0,y0,x1,y1`` rows (several rows per image; an optional
    header names the columns, in any order, from :data:`CSV_COLUMNS`).

    A box that cannot be read (a CSV row without 5 fields, a coordinate that is not a finite
    number, a malformed ``bbox``) raises ``ValueError`` naming the file and row, or, when ``bad``
    is given, leaves its image out of the result with the problem recorded in ``bad[image]``
    (a partial set of boxes would give a wrong mask). A file that cannot be read at all (not
    UTF-8, not JSON, a header it cannot map, ids that are not numbers or strings) always raises."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise ValueError(f"{path}: boxes must be a COCO-style .json or an image,x0,y0,x1,y1 .csv, not {suffix or 'no suffix'}")
    problems: dict[str, str] = {}

    def problem(name: str, msg: str) -> None:
        if bad is None:
            raise ValueError(msg)
        problems.setdefault(name, msg)

    out = _read_coco(path, problem) if suffix == ".json" else _read_csv(path, problem)
    for name in problems:
        out.pop(name, None)
    if bad is not None:
        bad.update(problems)
    return out


def _numbers(values: Sequence, where: str) -> list[float] | str:
    """The values as finite floats, or what is wrong with them."""
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return f"{where}: coordinates must be numbers, got {list(values)}"
    if not all(math.isfinite(v) for v in out):
        return f"{where}: coordinates must be finite, got {out}"
    return out


def _is_id(v) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _read_coco(path: Path, problem) -> dict[str, list[Box]]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: a COCO-style boxes file needs 'images' and 'annotations' lists")
    names: dict = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ValueError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        if not _is_id(im["id"]) or not isinstance(im["file_name"], str):
            raise ValueError(f"{path}: images[{i}]: 'id' must be a number or a string and 'file_name' a string, "
                             f"got {type(im['id']).__name__} and {type(im['file_name']).__name__}")
        names[im["id"]] = im["file_name"]
    out: dict[str, list[Box]] = {n: [] for n in names.values()}
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, dict) or "image_id" not in ann or "bbox" not in ann:
            raise ValueError(f"{where} needs 'image_id' and 'bbox'")
        if not _is_id(ann["image_id"]) or ann["image_id"] not in names:
            raise ValueError(f"{where} refers to image_id {ann['image_id']!r}, which is not in 'images'")
        name, bbox = names[ann["image_id"]], ann["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            problem(name, f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
        elif isinstance(v := _numbers(bbox, where), str):
            problem(name, v)
        else:
            x, y, bw, bh = v
            out[name].append((x, y, x + bw, y + bh))
    return out


def _read_csv(path: Path, problem) -> dict[str, list[Box]]:
    out: dict[str, list[Box]] = {}
    order = [0, 1, 2, 3, 4]  # columns of image, x0, y0, x1, y1
    first, line = True, 0
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if not row or all(not c.strip() for c in row):
                    continue
                cells = [c.strip() for c in row]
                if first:
                    first = False
                    if (header := _csv_header(cells, path)) is not None:
                        order = header
                        continue
                name = cells[order[0]] if len(cells) == 5 else cells[0]
                if len(cells) != 5:
                    problem(name, f"{path}:{line}: expected image,x0,y0,x1,y1 (5 fields), got {len(cells)}")
                elif isinstance(v := _numbers([cells[k] for k in order[1:]], f"{path}:{line}"), str):
                    problem(name, v)
                else:
                    out.setdefault(name, []).append(tuple(v))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:  # a field over the size limit, a NUL byte
        raise ValueError(f"{path}:{line + 1}: not a readable CSV row ({e})") from None
    return out


def _csv_header(cells: list[str], path: Path) -> list[int] | None:
    """The column of each role if ``cells`` is a header (every cell a known name), None if it is
    data; raises for a header it cannot map (names unknown or missing, no coordinate a number)."""
    roles = {alias: role for role, aliases in CSV_COLUMNS.items() for alias in aliases}
    found = [roles.get(c.lower()) for c in cells]
    if all(found) and sorted(found) == sorted(CSV_COLUMNS):
        return [found.index(role) for role in CSV_COLUMNS]
    if any(found[1:]) or (len(cells) == 5 and not any(_is_number(c) for c in cells[1:])):
        raise ValueError(f"{path}: header {','.join(cells)!r} cannot be mapped; name the columns "
                         f"{','.join(CSV_COLUMNS)} (any order) or leave the header out")
    return None


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True

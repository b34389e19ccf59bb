"""A fixed, seeded chain of web degradations for real pairs with truth: what the sites that carry a
forgery do to it (crop, rescale, a colour shift, JPEG re-compression), applied to the forged image and,
for the geometric steps, to its truth. The authentic image is left as it is, as on the web, where the
source is usually the better-kept copy.

Each step alone and the whole chain make one *condition* each (:func:`conditions`), so the check_real
stage can say which degradation costs an annotator what.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .. import io
from ..collect import Candidate
from ..geometry import resize_by
from ..synth import apply_matrix_to_mask, crop_resize_matrix

STEPS = ("crop", "rescale", "colour", "jpeg")  # the order a chain applies them in
CLEAN = "clean"
CHAIN = "chain"


@dataclass(frozen=True)
class WebDegradation:
    """The strength of each step; ``None`` leaves the step out."""

    crop: float | None = None     # share of each side kept, at a seeded offset per pair
    rescale: float | None = None  # scale factor of the forged image
    colour: float | None = None   # colour shift: gains (1 + c, 1, 1 - c) on R, G, B and gamma 1 + c
    jpeg: int | None = None       # JPEG quality the forged image is re-saved at

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "WebDegradation":
        d = dict(d or {})
        unknown = sorted(set(d) - set(STEPS))
        if unknown:
            raise ValueError(f"unknown web degradation{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(STEPS)}")
        out = cls(**d)
        if out.crop is not None and not 0.2 <= out.crop <= 1:
            raise ValueError(f"crop keeps a share of each side in [0.2, 1], got {out.crop}")
        if out.rescale is not None and not 0.1 <= out.rescale <= 4:
            raise ValueError(f"rescale must lie in [0.1, 4], got {out.rescale}")
        if out.colour is not None and not 0 <= out.colour <= 0.5:
            raise ValueError(f"colour must lie in [0, 0.5], got {out.colour}")
        if out.jpeg is not None and not 1 <= out.jpeg <= 100:
            raise ValueError(f"jpeg quality must lie in [1, 100], got {out.jpeg}")
        return out

    def steps(self) -> tuple[str, ...]:
        return tuple(s for s in STEPS if getattr(self, s) is not None)


def conditions(deg: WebDegradation) -> dict[str, WebDegradation]:
    """``{name: degradation}``: each step alone, then the chain of all of them (when more than one)."""
    out = {s: WebDegradation(**{s: getattr(deg, s)}) for s in deg.steps()}
    if len(out) > 1:
        out[CHAIN] = deg
    return out


def colour_shift(rgb: np.ndarray, c: float) -> np.ndarray:
    """A warm colour cast and a darker gamma of strength ``c``, as uint8."""
    x = (rgb.astype(np.float32) / 255.0) ** (1.0 + c)
    x *= np.array([1.0 + c, 1.0, 1.0 - c], np.float32)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _window(coords: np.ndarray, size: int, full: int) -> tuple[int, int]:
    """``[low, high)`` of the offsets of a ``size`` window in ``[0, full)`` that hold every coordinate
    in ``coords`` when they fit in one window; else every offset."""
    if coords.size and coords.max() + 1 - coords.min() <= size:
        return max(0, int(coords.max()) + 1 - size), min(int(coords.min()), full - size) + 1
    return 0, full - size + 1


def degrade_pair(rgb: np.ndarray, truth: np.ndarray, deg: WebDegradation, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, dict]:
    """The forged image and its truth after ``deg`` (crop, rescale, colour; JPEG is left to the
    writer); ``meta`` says what was done. The crop keeps the whole edit when it fits in the window."""
    h, w = rgb.shape[:2]
    meta: dict = {}
    x0, y0, cw, ch = 0, 0, w, h
    if deg.crop is not None:  # the window keeps the whole edit where it fits: a web copy crops around its subject
        cw, ch = min(w, max(16, round(w * deg.crop))), min(h, max(16, round(h * deg.crop)))
        ys, xs = np.nonzero(truth)
        x0 = int(rng.integers(*_window(xs, cw, w)))
        y0 = int(rng.integers(*_window(ys, ch, h)))
        meta["crop"] = [x0, y0, x0 + cw, y0 + ch]
    out = rgb[y0:y0 + ch, x0:x0 + cw]
    sx = sy = 1.0
    if deg.rescale is not None:
        scaled = resize_by(out, deg.rescale, min_side=16)
        sx, sy = scaled.shape[1] / out.shape[1], scaled.shape[0] / out.shape[0]
        out = scaled
        meta["scale"] = [sx, sy]
    mask = apply_matrix_to_mask(truth, crop_resize_matrix(x0, y0, sx, sy), (out.shape[1], out.shape[0]))
    if deg.colour is not None:
        out = colour_shift(out, deg.colour)
        meta["colour"] = deg.colour
    if deg.jpeg is not None:
        meta["jpeg"] = deg.jpeg
    return np.ascontiguousarray(out), mask, meta


def degraded_candidates(candidates: Iterable[Candidate], deg: WebDegradation, out_dir: str | Path, seed: int = 0) -> list[Candidate]:
    """Each candidate with its forged image and truth degraded, written under ``out_dir`` (the inputs
    are only read). The offsets depend on ``seed`` and the pair's id only. A candidate that has no truth,
    was refused or cannot be read is passed on unchanged: collect quarantines or leaves it unscored as
    it would the clean one."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for c in candidates:
        if c.refused or c.truth_mask is None or c.forged is None:
            out.append(c)
            continue
        try:
            rgb, truth = io.read_entry(c.forged, c.truth_mask)
        except io.Rejected:
            out.append(c)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(c.id.encode())])
        img, mask, _ = degrade_pair(rgb, truth, deg, rng)
        forged = out_dir / f"{c.id}.{'jpg' if deg.jpeg is not None else 'png'}"
        io.write_image(forged, img, jpeg_quality=deg.jpeg or 95)
        io.write_mask(out_dir / f"{c.id}_truth.png", mask)
        out.append(dataclasses.replace(c, forged=str(forged), truth_mask=str(out_dir / f"{c.id}_truth.png")))
    return out

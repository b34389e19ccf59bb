"""Training samples shared by the Web-IML mixture and the BoxPromptIML pool: synthetic forgeries with
truth and authentic crops of the ``train`` photos, and the samples of a BenCo index (read from disk
on demand).

A :class:`GeneratedSource` makes its item ``i`` from ``numpy.random.default_rng([seed, salt, i])``
when it is asked for (kept in a :class:`webiml.cache.MemoryCache`): the data do not depend on the
order they are drawn in, on DataLoader workers or on DDP ranks, and memory does not grow with ``n``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from . import io, synth
from .cache import MemoryCache
from .geometry import resize_long_side

log = logging.getLogger(__name__)


class ListSource:
    """Samples held in memory."""

    def __init__(self, items: Sequence[tuple[np.ndarray, np.ndarray]]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.items[i]


class GeneratedSource:
    """``n`` samples, item ``i`` made by ``make(rng)`` with ``rng = default_rng([seed, salt, i])``;
    made items are kept up to ``cache_mb`` MiB (None: all)."""

    def __init__(self, n: int, make: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]], seed: int,
                 salt: int, cache_mb: float | None = None):
        self.n, self.make, self.seed, self.salt = int(n), make, int(seed), int(salt)
        self.cache = MemoryCache(cache_mb)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.cache.get(i, lambda: self.make(np.random.default_rng([self.seed, self.salt, i])))


class IndexSource:
    """Image/mask pairs of a BenCo index (or ``Tp/``+``Gt/`` folder), read on demand.

    Opening checks every entry's header (readable image, mask of the same size) without decoding;
    entries that fail are left out with their reason in ``rejected``. An image that fails to decode
    later (e.g. truncated data) is also recorded there and replaced by the next entry.
    ``"Negative"`` entries get an empty mask. ``max_side``: larger images (and their masks) are
    downscaled to this long side when read.
    """

    def __init__(self, index: str | Path, max_side: int | None = None):
        self.max_side = max_side
        self.entries: list[tuple[Path, Path | None]] = []
        self.rejected: list[dict] = []
        for img, mask in io.read_index(index):
            try:
                io.check_entry(img, mask)
            except io.Rejected as e:
                self.rejected.append(io.rejection(e, image=img, mask=mask))
                continue
            self.entries.append((img, mask))
        self._get = functools.lru_cache(maxsize=512)(self._read)

    def __len__(self) -> int:
        return len(self.entries)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        for k in range(len(self.entries)):
            img, mask = self.entries[(i + k) % len(self.entries)]
            try:
                rgb, truth = io.read_entry(img, mask)
            except io.Rejected as e:
                self.rejected.append(io.rejection(e, image=img, mask=mask))
                log.warning("training image left out: %s (%s)", img, e)
                continue
            target = np.zeros(rgb.shape[:2], bool) if truth is None else truth
            if self.max_side and max(rgb.shape[:2]) > self.max_side:
                rgb = resize_long_side(rgb, self.max_side, interpolation=cv2.INTER_AREA)
                target = resize_long_side(target.astype(np.uint8), self.max_side, mask=True)
            return rgb, target.astype(np.float32)
        raise ValueError("no entry of the index can be read")

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._get(i)


def handcrafted_sample(rng: np.random.Generator, photos: Sequence, base_side=(320, 512)) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic forgery (forged image, truth) from ``photos`` with web degradations."""
    pair = synth.make_web_pair(rng, photos, synth.WebPairConfig(base_side=tuple(base_side)))
    return synth.decode(pair.forged_bytes), pair.mask.astype(np.float32)


def authentic_sample(rng: np.random.Generator, photos: Sequence, base_side=(320, 512)) -> tuple[np.ndarray, np.ndarray]:
    """A crop of one of ``photos``, a JPEG with p = 0.7 (as authentic images on the web), empty truth."""
    base, _ = synth.random_base(photos[int(rng.integers(len(photos)))].rgb, rng, tuple(base_side))
    if rng.random() < 0.7:
        base = synth.decode(synth.encode(base, "jpeg", int(rng.integers(70, 96))))
    return base, np.zeros(base.shape[:2], np.float32)


def handcrafted_samples(photos: Sequence, n: int, rng: np.random.Generator, base_side=(320, 512)) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` :func:`handcrafted_sample` drawn in turn from one ``rng`` (held in memory)."""
    return [handcrafted_sample(rng, photos, base_side) for _ in range(n)]


def authentic_samples(photos: Sequence, n: int, rng: np.random.Generator, base_side=(320, 512)) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` :func:`authentic_sample` drawn in turn from one ``rng`` (held in memory)."""
    return [authentic_sample(rng, photos, base_side) for _ in range(n)]

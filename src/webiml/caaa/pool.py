"""The CAAAv2 annotators' training pairs: synthetic constrained-IML pairs made on demand.

Pairs come from :func:`webiml.synth.make_web_pair` on the ``train`` photo split (disjoint from the
photos of the synthetic web corpus), so the collected corpus is a held-out test. The pool's pair
``i`` is made from ``default_rng([seed, 7919, i])`` when first used and kept up to ``cache_mb``
(memory does not grow with ``n_pairs``); it is shared by all models and carries what each needs:
the forged image, the authentic image as collected, the authentic registered to the forged frame
(by the true transform, as the collect stage would estimate it), the truth mask and the labels of
the pair classifier. :class:`PairStream` is a training run's stream of samples: sample ``k`` is a
pool pair, cropped (DASS: at the scale it annotates) and flipped, all drawn from ``default_rng([seed, k])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..cache import MemoryCache
from ..synth import EVIDENT_PAIRS, Degradation, WebPairConfig, decode, make_web_pair
from .views import corners_in_forged, crop_on_mask, native_view, registered_view


@dataclass(frozen=True)
class PoolConfig:
    n_pairs: int = 600
    size: int = 256  # classifier and Corr-DINO-lite see whole pairs squashed to size²
    photo_split: str = "train"
    sdg_fraction: float = 0.5
    base_side: tuple[int, int] = (320, 512)
    max_side: int = 768  # DASS sees images at their own scale, long side capped at this (as at inference)
    min_side: int = 512  # ... and smaller images upsampled to this long side (see native_scale)
    crop: int = 192  # ... in crop² windows drawn afresh at every step
    min_changed: float = EVIDENT_PAIRS.min_changed  # SPG edits with evidence in the pair (synth.WebPairConfig)
    authentic_keeps_edit: bool = EVIDENT_PAIRS.authentic_keeps_edit
    cache_mb: float = 2048  # pairs kept in memory once made (the mini pool fits); the rest are remade when drawn


@dataclass
class PoolPair:
    """One training pair at ``size``², uint8: forged, authentic (squashed), registered (or the
    resized authentic when the pair is SDG), mask; labels: category (0 SPG, 1 SDG), aligned, box.
    ``native``: (forged, registered, mask) at the annotator's scale, to crop from."""

    forged: np.ndarray
    authentic: np.ndarray
    registered: np.ndarray
    mask: np.ndarray
    category: int
    aligned: int
    box: np.ndarray
    native: list
    meta: dict


class Pool:
    """``cfg.n_pairs`` synthetic pairs, pair ``i`` made on demand (:meth:`__getitem__`). The
    categories are known up front (``category``, 0 SPG, 1 SDG): they are the first draw of each
    pair's generator."""

    SALT = 7919

    def __init__(self, photos, cfg: PoolConfig, seed: int):
        self.photos, self.cfg, self.seed, self.crop = photos, cfg, int(seed), cfg.crop
        self.wcfg = WebPairConfig(sdg_fraction=cfg.sdg_fraction, base_side=cfg.base_side, degradation=Degradation(),
                                  min_changed=cfg.min_changed, authentic_keeps_edit=cfg.authentic_keeps_edit)
        self.category = np.array([int(self._rng(i).random() < cfg.sdg_fraction) for i in range(cfg.n_pairs)], np.int64)
        self.cache = MemoryCache(cfg.cache_mb)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.SALT, i])

    def __len__(self) -> int:
        return len(self.category)

    def __getitem__(self, i: int) -> PoolPair:
        return self.cache.get(int(i), lambda: self._make(int(i)))

    def _make(self, i: int) -> PoolPair:
        rng = self._rng(i)
        category = "sdg" if rng.random() < self.cfg.sdg_fraction else "spg"  # as make_web_pair would draw it
        p = make_web_pair(rng, self.photos, self.wcfg, category=category)
        f, a = decode(p.forged_bytes), decode(p.authentic_bytes)
        reg = registered_view(f, a, p.transform)
        S = self.cfg.size
        box, aligned = np.zeros(8, np.float32), 0
        if p.transform is not None:
            box = corners_in_forged(p.transform, (f.shape[1], f.shape[0]), (a.shape[1], a.shape[0]))
            aligned = int(np.abs(box - np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32)).max() < 0.03)
        return PoolPair(
            forged=_square(f, S), authentic=_square(a, S), registered=_square(reg, S),
            mask=(_square(p.mask.astype(np.uint8) * 255, S) > 127).astype(np.uint8),
            category=0 if p.category == "spg" else 1, aligned=aligned, box=box,
            native=native_view([f, reg, p.mask.astype(np.uint8)], self.cfg.crop, self.cfg.max_side, self.cfg.min_side),
            meta={"category": p.category, "photo": p.meta.get("photo")},
        )


def _square(img: np.ndarray, size: int, interp: int = cv2.INTER_AREA) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=interp if min(img.shape[:2]) > size else cv2.INTER_LINEAR)


def make_pool(photos, cfg: PoolConfig, seed: int, progress: bool = True) -> Pool:
    """The pool, with its first pairs made now while they fit the cache (``progress``: a bar)."""
    from tqdm import tqdm

    pool = Pool(photos, cfg, seed)
    for i in tqdm(range(len(pool)), desc="synthetic pairs", disable=not progress, mininterval=2):
        pool[i]
        if pool.cache.budget is not None and pool.cache.held > 0.9 * pool.cache.budget:
            break  # the rest are made when drawn
    return pool


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)


def pair_sample(pool: Pool, i: int, rng: np.random.Generator, flip: bool = True, native: bool = False) -> dict:
    """Pair ``i`` as a training sample (uint8 CHW images, float mask 1xHxW, labels): ``native``
    swaps in a fresh native-scale crop of forged/registered/mask; ``flip`` mirrors it with p = 0.5."""
    p = pool[i]
    if native:
        f, r, m = crop_on_mask(p.native, pool.crop, rng)
    else:
        f, r, m = p.forged, p.registered, p.mask
    a = p.authentic
    flipped = bool(flip and rng.random() < 0.5)
    if flipped:
        f, a, r, m = f[:, ::-1], a[:, ::-1], r[:, ::-1], m[:, ::-1]
    return {
        "index": int(i), "flipped": flipped, "forged": _chw(f), "authentic": _chw(a), "registered": _chw(r),
        "mask": torch.from_numpy((m > 0).astype(np.float32))[None],
        "category": p.category, "aligned": p.aligned, "box": torch.from_numpy(p.box),
    }


def batch(pool: Pool, idx, rng: np.random.Generator, flip: bool = True, native: bool = False) -> dict:
    """Pairs ``idx`` as one collated batch (images uint8, as a DataLoader gives them)."""
    return torch.utils.data.default_collate([pair_sample(pool, int(i), rng, flip, native) for i in idx])


class PairStream(torch.utils.data.Dataset):
    """Sample ``k`` of an annotator's training run: one of the pairs ``indices``, drawn, cropped and
    flipped with ``default_rng([seed, k])`` (see :func:`pair_sample`)."""

    def __init__(self, pool: Pool, indices, seed: int, flip: bool = True, native: bool = False):
        self.pool, self.indices, self.seed, self.flip, self.native = pool, np.asarray(indices), int(seed), flip, native
        if not len(self.indices):
            raise ValueError("no training pairs for this annotator (check the pool's sdg_fraction and n_pairs)")

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int) -> dict:
        rng = np.random.default_rng([self.seed, int(k)])
        return pair_sample(self.pool, int(self.indices[rng.integers(len(self.indices))]), rng, self.flip, self.native)

"""The training data of Web-IML: a mixture of sources with repeat factors.

- ``handcrafted``: synthetic forgeries with exact truth (``synth.make_web_pair`` on the ``train``
  photos: in-place SPG edits and SDG pastes, each with web degradations), the stand-in for the
  public hand-crafted training sets;
- ``web``: the auto-annotated web dataset written by the filter stage (a BenCo index);
- ``jitter``: Object Jitter samples (``jitter.object_jitter``) on instance masks from COCO, the
  offline photos' own instances or object-like synthetic masks;
- ``authentic``: crops of the ``train`` photos with empty masks;
- ``real``: a hand-labelled real training set (a BenCo index: NIST16's ``train`` part in the
  pipeline, as CASIAv2 is in the paper), read from disk on demand at long side ``real_side``.

Generated sources make each sample from a seed of (data seed, source, index) and keep it up to
``cache_mb`` (:class:`webiml.samples.GeneratedSource`): :func:`build_mixture` makes them up front
while they fit (all of them at the default size, so training steps do not wait for them; DataLoader
workers inherit them), and the rest are made when first drawn. The web source is read from disk on
demand, as is the real source. Nothing holds more of the mixture in memory than ``cache_mb`` per source.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from . import jitter
from .geometry import long_side_scale, resize_by, resize_long_side
from .samples import GeneratedSource, IndexSource, authentic_sample, handcrafted_sample
from .train import Mixture

log = logging.getLogger(__name__)

SOURCES = ("handcrafted", "web", "jitter", "authentic", "real")
#: the generated sources' seed salts: sample i of a source comes from default_rng([seed, salt, i])
SALTS = {"handcrafted": 1, "jitter": 2, "authentic": 3}


@dataclass(frozen=True)
class MixtureConfig:
    handcrafted: int = 300  # synthetic forgeries with truth
    jitter: int = 150  # Object Jitter samples
    authentic: int = 80  # authentic crops, empty masks
    repeat: dict = field(default_factory=lambda: {"handcrafted": 1.0, "web": 2.0, "jitter": 1.0, "authentic": 1.0, "real": 1.0})
    base_side: tuple[int, int] = (320, 512)  # long side of generated images
    real_side: int = 512  # long side the real training images are read at (inference caps images at benchmark.max_side)
    instances: tuple[str, ...] = ("photos", "synthetic")  # Object Jitter instance sources
    coco_annotations: str | None = None  # instances: coco -> a COCO instances JSON ...
    coco_images: str | None = None  # ... and its image folder
    photo_dir: str | None = None  # a folder of the user's own photos instead of the bundled `train` split
    cache_mb: float = 2048  # generated samples kept in memory per source (and DataLoader worker); the rest are remade

    def __post_init__(self) -> None:
        unknown = sorted(set(self.repeat) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown source{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
                             f"params section 'train_webiml.mixture.repeat'; allowed: {', '.join(SOURCES)}")


def _fit_side(rgb: np.ndarray, masks: Sequence[np.ndarray], long_side: int) -> tuple[np.ndarray, list[np.ndarray]]:
    s = long_side_scale(*rgb.shape[:2], long_side)
    if abs(s - 1) < 1e-3:
        return rgb, list(masks)
    return resize_by(rgb, s, min_side=8), [resize_by(m, s, min_side=8, mask=True) for m in masks]


def instance_images(cfg: MixtureConfig, photos: Sequence, rng: np.random.Generator, rejected: list | None = None) -> list:
    """The images with instance masks that Object Jitter draws from, per ``cfg.instances``."""
    from . import instances as inst

    out = []
    for kind in cfg.instances:
        if kind == "coco":
            if not cfg.coco_annotations:
                raise ValueError("mixture.instances lists 'coco' but coco_annotations is not set")
            out.extend(inst.coco_instances(cfg.coco_annotations, cfg.coco_images or Path(cfg.coco_annotations).parent, rejected=rejected))
        elif kind == "photos":
            out.extend(inst.photo_instances("train") if cfg.photo_dir is None else [])
        elif kind == "synthetic":
            out.extend(inst.synthetic_instances(photos, rng))
        else:
            raise ValueError(f"unknown instance source {kind!r}; expected coco, photos or synthetic")
    return out


def jitter_sample(rng: np.random.Generator, images: Sequence, base_side=(320, 512), max_tries: int = 20,
                  rejected: Counter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One Object Jitter sample from ``images`` (with instance masks); rejected draws (counted by
    reason in ``rejected``) are redrawn up to ``max_tries`` times."""
    for _ in range(max_tries):
        item = images[int(rng.integers(len(images)))]
        rgb, masks = _fit_side(item.rgb, item.masks, int(rng.integers(base_side[0], base_side[1] + 1)))
        try:
            j = jitter.object_jitter(rgb, masks, rng)
        except jitter.JitterRejected as e:
            if rejected is not None:
                rejected[e.reason] += 1
            continue
        return j.image, j.mask.astype(np.float32)
    raise ValueError(f"no Object Jitter sample in {max_tries} draws (rejected so far: {dict(rejected or {})}): "
                     "check the instance masks (mixture.instances)")


class JitterSource(GeneratedSource):
    """Object Jitter samples made on demand; ``rejected`` counts the draws redrawn, by reason."""

    def __init__(self, n: int, images: Sequence, seed: int, base_side=(320, 512), cache_mb: float | None = None):
        self.rejected: Counter = Counter()
        super().__init__(n, functools.partial(jitter_sample, images=images, base_side=base_side, rejected=self.rejected),
                         seed, SALTS["jitter"], cache_mb)


def make_up_front(source: GeneratedSource, name: str = "samples", progress: bool = False) -> int:
    """Make ``source``'s items in order while its cache holds them; returns how many were made."""
    from tqdm import tqdm

    budget = source.cache.budget
    made = 0
    for i in tqdm(range(len(source)), desc=f"making {name}", disable=not progress, mininterval=2):
        if budget is not None and source.cache.held > 0.9 * budget:
            break
        source[i]
        made += 1
    return made


def build_mixture(
    cfg: MixtureConfig,
    seed: int,
    web_index: str | Path | None = None,
    use_jitter: bool = True,
    progress: bool = False,
    real_index: str | Path | None = None,
) -> tuple[Mixture, dict]:
    """The training mixture and a report (per-source counts, samples made up front, rejections).
    ``web_index``: the web dataset; ``real_index``: the real training set (None: none)."""
    from .photos import load_photos

    rng = np.random.default_rng(seed)
    photos = load_photos("train", folder=cfg.photo_dir)
    sources: dict = {}
    report: dict = {"sources": {}}

    def generated(name: str, make) -> GeneratedSource:
        return GeneratedSource(getattr(cfg, name), functools.partial(make, photos=photos, base_side=cfg.base_side),
                               seed, SALTS[name], cfg.cache_mb)

    sources["handcrafted"] = generated("handcrafted", handcrafted_sample)
    if web_index is not None:
        web = IndexSource(web_index)
        sources["web"] = web
        report["web_rejected"] = web.rejected
        if not len(web):
            log.warning("web dataset %s is empty", web_index)
    if use_jitter and cfg.jitter:
        rejected: list = []
        images = instance_images(cfg, photos, rng, rejected)
        report["instance_images"] = len(images)
        report["instance_rejected"] = rejected
        if images:
            sources["jitter"] = JitterSource(cfg.jitter, images, seed, cfg.base_side, cfg.cache_mb)
        else:
            report["jitter_rejected"] = {"no-instance-images": 1}
    sources["authentic"] = generated("authentic", authentic_sample)
    if real_index is not None:
        real = IndexSource(real_index, max_side=cfg.real_side)
        sources["real"] = real
        report["real_rejected"] = real.rejected
    report["made_up_front"] = {k: make_up_front(src, k, progress) for k, src in sources.items() if isinstance(src, GeneratedSource)}
    if isinstance(sources.get("jitter"), JitterSource):  # draws rejected while making the samples made so far
        report["jitter_rejected"] = dict(sources["jitter"].rejected)
    mixture = Mixture(sources, dict(cfg.repeat))
    report["sources"] = mixture.describe()
    return mixture, report


def samples_figure(mixture: Mixture, n_per_source: int = 4, seed: int = 0, max_side: int = 200):
    """A few samples of each training source, the truth outlined in yellow."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    names = mixture.names
    fig, axes = plt.subplots(len(names), n_per_source, figsize=(2.0 * n_per_source, 2.0 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        src = mixture.sources[name]
        for c in range(n_per_source):
            ax = axes[r][c]
            ax.axis("off")
            if not len(src):
                continue
            rgb, target = src[int(rng.integers(len(src)))]
            img = resize_long_side(rgb, max_side, interpolation=cv2.INTER_AREA)
            m = resize_long_side((target > 0.5).astype(np.uint8), max_side, mask=True)
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, contours, -1, (255, 255, 0), 1)
            ax.imshow(img)
            ax.set_title(f"{name} ({100 * float((target > 0.5).mean()):.0f}%)", fontsize=8)
    fig.tight_layout()
    return fig

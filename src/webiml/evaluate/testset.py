"""The synthetic benchmark: forgeries with exact truth made from the held-out ``test`` photos.

The same generator as the training data (``synth.make_web_pair``: SPG edits and SDG pastes, then
web degradations), but on photos no model or annotator ever trains on. Written as a BenCo index
with authentic images (``"Negative"``) mixed in, so image-level metrics are defined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import io, synth
from ..photos import load_photos

_SUFFIX = {"jpeg": ".jpg", "png": ".png"}


def build_synthetic_testset(
    out: str | Path,
    n: int = 60,
    seed: int = 1234,
    authentic_fraction: float = 0.25,
    base_side: tuple[int, int] = (320, 512),
    photo_dir: str | Path | None = None,
) -> dict:
    """Write ``n`` images (``authentic_fraction`` of them authentic) to ``out``; return a report.

    Layout: ``imgs/``, ``masks/``, ``index.json`` (BenCo), ``truth.jsonl`` (category, ops per image).
    """
    out = Path(out)
    (out / "imgs").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    photos = load_photos("test", folder=photo_dir)
    rng = np.random.default_rng(seed)
    cfg = synth.WebPairConfig(base_side=tuple(base_side))
    entries: list[tuple[Path, Path | None]] = []
    counts = {"spg": 0, "sdg": 0, "authentic": 0}
    with io.JsonlWriter(out / "truth.jsonl") as truth:
        for k in range(n):
            name = f"test-{k:04d}"
            pair = synth.make_web_pair(rng, photos, cfg)
            if rng.random() < authentic_fraction:
                data, fmt, mask, category = pair.authentic_bytes, pair.authentic_format, None, "authentic"
            else:
                data, fmt, mask, category = pair.forged_bytes, pair.forged_format, pair.mask, pair.category
            img = out / "imgs" / f"{name}{_SUFFIX[fmt]}"
            with io.atomic_path(img) as tmp:
                tmp.write_bytes(data)
            mpath = None
            if mask is not None:
                mpath = out / "masks" / f"{name}.png"
                io.write_mask(mpath, mask)
            entries.append((img, mpath))
            counts[category] += 1
            truth.write({"id": name, "category": category, "image": img.name,
                         "mask_fraction": None if mask is None else round(float(mask.mean()), 4),
                         "ops": [o.get("op") for o in pair.meta.get("ops", [])]})
    io.write_benco_index(out / "index.json", entries)
    report = {"n": n, "seed": seed, "counts": counts, "photos": [p.name for p in photos]}
    io.write_json(out / "report.json", report)
    return report

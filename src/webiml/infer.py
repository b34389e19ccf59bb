"""Localize edits in single images with a trained model (``webiml predict`` and the benchmark).

Models run at the image's own scale (they were trained on native-scale crops, and resampling
would wash out the traces they look for); an image whose long side exceeds ``max_side`` is
downscaled for the model and the map upscaled back. The output is a soft mask at the input size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch
import torch.nn as nn

from . import io
from .models import registry
from .device import model_device, place, resolve, to
from .geometry import resize_long_side
from .models.boxprompt import BoxPromptConfig, BoxPromptStudent
from .models.checkpoint import load_checkpoint
from .models.webiml import WebIML, WebIMLConfig

log = logging.getLogger(__name__)

#: the (model, config) classes a detector checkpoint may name: Web-IML and its variants, the BoxPromptIML students
DETECTORS = ((WebIML, WebIMLConfig), (BoxPromptStudent, BoxPromptConfig))


@dataclass
class LoadedModel:
    name: str
    model: nn.Module
    path: Path
    extra: dict = field(default_factory=dict)

    @property
    def resize_to(self) -> int | None:
        """Square input size for models that must see a fixed size (e.g. TinyViT), else None."""
        return self.extra.get("resize_to")


def load_model(name_or_path: str | Path, root: str | Path = ".", device: str = "auto") -> LoadedModel:
    """A trained model by run name (``webiml@seed0``) or checkpoint path, on ``device``, channels-last."""
    path = registry.resolve(name_or_path, root)
    model, extra = load_checkpoint(path, DETECTORS)
    place(model, resolve(device)).eval()
    name = str(name_or_path) if not Path(str(name_or_path)).suffix else path.parent.name
    return LoadedModel(name, model, path, extra)


@torch.no_grad()
def predict_prob(lm: LoadedModel, rgb: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """The model's manipulation probability map (float32 HxW in [0, 1]) at ``rgb``'s size."""
    h, w = rgb.shape[:2]
    x = rgb
    if lm.resize_to:
        x = cv2.resize(rgb, (lm.resize_to, lm.resize_to), interpolation=cv2.INTER_AREA if min(h, w) > lm.resize_to else cv2.INTER_LINEAR)
    elif max(h, w) > max_side:
        x = resize_long_side(rgb, max_side)
    t = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None].div_(255.0)  # astype copies: inputs may be read-only
    prob = torch.sigmoid(lm.model(to(t, model_device(lm.model)))["logits"])[0, 0].float().cpu().numpy()
    if prob.shape != (h, w):
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(prob, 0.0, 1.0)


def image_score(prob: np.ndarray) -> float:
    """Image-level score: the maximum of the map after a light blur (one hot pixel is not an edit)."""
    k = max(3, (min(prob.shape) // 64) | 1)
    return float(cv2.blur(prob, (k, k)).max())


def overlay(rgb: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The image with the predicted region tinted red and outlined."""
    mask = prob > threshold
    out = rgb.astype(np.float32)
    out[mask] = 0.55 * out[mask] + 0.45 * np.array([255, 0, 0], np.float32)
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), max(1, min(rgb.shape[:2]) // 300))
    return out


def predict_files(
    lm: LoadedModel,
    paths: Iterable[str | Path],
    out: str | Path,
    max_side: int = 1024,
    max_pixels: int = io.DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> dict:
    """Write ``<stem>_mask.png`` (soft mask, 0–255) and ``<stem>_overlay.jpg`` per image into ``out``.

    Unreadable, odd or oversized inputs are listed in ``out/rejected.jsonl`` with the reason, and the
    run goes on; ``out/predictions.jsonl`` has one line per image (score, mask fraction, paths).
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_ok = n_bad = 0
    used: set[str] = set()
    with io.JsonlWriter(out / "predictions.jsonl") as preds, io.JsonlWriter(out / "rejected.jsonl") as rejected:
        for p in tqdm(list(paths), desc=f"predict {lm.name}", disable=not progress, unit="img"):
            p = Path(p)
            try:
                rgb, info = io.read_image(p, max_pixels=max_pixels)
            except io.Rejected as e:
                rejected.write({"path": str(p), "reason": e.reason, "detail": e.detail})
                n_bad += 1
                continue
            stem = io.unique_name(p.stem, used)  # same stem from different folders
            prob = predict_prob(lm, rgb, max_side=max_side)
            io.write_soft_mask(out / f"{stem}_mask.png", prob)
            io.write_image(out / f"{stem}_overlay.jpg", overlay(rgb, prob), jpeg_quality=90)
            preds.write({"image": str(p), "mask": f"{stem}_mask.png", "overlay": f"{stem}_overlay.jpg",
                         "score": round(image_score(prob), 4), "fraction": round(float((prob > 0.5).mean()), 4),
                         "size": [rgb.shape[1], rgb.shape[0]], "flags": list(getattr(info, "flags", []))})
            n_ok += 1
    return {"model": lm.name, "checkpoint": str(lm.path), "n_predicted": n_ok, "n_rejected": n_bad, "out": str(out)}

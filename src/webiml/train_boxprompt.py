"""The train_boxprompt stage's recipe: simulated boxes, the teacher's pseudo-masks and the students."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import boxes as B
from .config import from_dict
from .evaluate.metrics import mean_scores, pixel_scores
from .geometry import long_side_scale, resize_by
from .models.boxprompt import BoxPromptConfig, BoxPromptStudent
from .models.registry import STUDENTS
from .models.teachers import make_teacher
from .photos import load_photos
from .samples import IndexSource, ListSource, authentic_samples, handcrafted_samples
from .train import Mixture, TrainConfig, fit


def image_level_loss(model: nn.Module, out: dict, y: torch.Tensor, r: float = 4.0) -> tuple[torch.Tensor, dict]:
    """CAM-style weak supervision: BCE between the log-sum-exp pooled map and the image label
    (tampered iff the target has any positive pixel). The map itself is never supervised."""
    logits = out["logits"].flatten(1)
    pooled = (torch.logsumexp(r * logits, dim=1) - math.log(logits.shape[1])) / r
    label = (y.flatten(1).amax(1) > 0.5).float()
    loss = nn.functional.binary_cross_entropy_with_logits(pooled, label)
    return loss, {"image_bce": loss.item()}


@dataclass
class BoxPromptData:
    """The students' training pool: images, truth, simulated boxes and every kind of target."""

    images: list[np.ndarray]
    truth: list[np.ndarray]
    boxes: list[list[tuple[float, float, float, float]]]
    targets: dict[str, list[np.ndarray]]  # kind (teacher, truth, box, image) -> per-image float masks
    report: dict


@dataclass(frozen=True)
class BoxPromptDataConfig:
    """``train_boxprompt.data``: the students' training forgeries (``train`` photos) and real images."""

    handcrafted: int = 300
    authentic: int = 80
    base_side: tuple[int, int] = (320, 512)
    real_side: int = 512  # long side the real training images (NIST16 train) are read at


@dataclass(frozen=True)
class SimulatedBoxes:
    """``train_boxprompt.boxes``: the simulated annotator (see :func:`webiml.boxes.boxes_from_mask`)."""

    looseness: tuple[float, float] = (0.0, 0.15)
    jitter: float = 0.05


def prepare_boxprompt_data(params: dict, data_seed: int = 0, progress: bool = True,
                           real_index: str | Path | None = None) -> BoxPromptData:
    """Forgeries with truth from the ``train`` photos (plus authentic crops) and the real training
    set ``real_index`` (a BenCo index, None: none), one simulated box per connected truth region, and
    the teacher's pseudo-masks from those boxes.

    ``params`` is the ``train_boxprompt`` section. The teacher's pseudo-mask quality (IoU/F1 against
    truth, tampered images only) is in ``report["teacher"]`` (``report["teacher_by_source"]`` per
    source); the box lower bound in ``report["box"]``.
    """
    from tqdm import tqdm

    for name in params.get("students", ()):  # a typo in any setting fails now, not after the pseudo-masks
        student_configs(name, params)
    d = from_dict(BoxPromptDataConfig, params.get("data"), "train_boxprompt.data")
    bcfg = from_dict(SimulatedBoxes, params.get("boxes"), "train_boxprompt.boxes")
    rng = np.random.default_rng(data_seed)
    photos = load_photos("train")
    samples = [("synthetic", *x) for x in handcrafted_samples(photos, d.handcrafted, rng, d.base_side)]
    samples += [("synthetic", *x) for x in authentic_samples(photos, d.authentic, rng, d.base_side)]
    real = IndexSource(real_index, max_side=d.real_side) if real_index is not None else None
    if real is not None:
        samples += [("real", *real[i]) for i in range(len(real))]
    kind = params.get("teacher", "grabcut")
    kw = {"checkpoint": params.get("sam_checkpoint"), "model_type": params.get("sam_model_type", "vit_b"),
          "device": (params.get("train") or {}).get("device", "auto")} if kind == "sam" else {}  # SAM runs where the students train
    teacher = make_teacher(kind, **kw)
    images, truth, all_boxes = [], [], []
    targets: dict[str, list] = {"teacher": [], "truth": [], "box": [], "image": []}
    scores: dict[str, list] = {"teacher": [], "box": []}
    by_source: dict[str, list] = {}
    t0 = time.perf_counter()
    for source, rgb, mask in tqdm(samples, desc=f"{kind} pseudo-masks", disable=not progress, unit="img"):
        m = mask > 0.5
        bx = B.boxes_from_mask(m, rng, looseness=bcfg.looseness, jitter=bcfg.jitter) if m.any() else []
        filled = B.boxes_to_mask(bx, (rgb.shape[1], rgb.shape[0])).astype(np.float32) if bx else np.zeros(m.shape, np.float32)
        pseudo = teacher(rgb, bx).astype(np.float32) if bx else np.zeros(m.shape, np.float32)
        images.append(rgb)
        truth.append(m)
        all_boxes.append(bx)
        targets["teacher"].append(pseudo)
        targets["truth"].append(m.astype(np.float32))
        targets["box"].append(filled)
        targets["image"].append(m.astype(np.float32))  # only its image-level label is used
        if m.any():
            scores["teacher"].append(pixel_scores(pseudo > 0.5, m))
            scores["box"].append(pixel_scores(filled > 0.5, m))
            by_source.setdefault(source, []).append(scores["teacher"][-1])
    report = {
        "n_images": len(images),
        "n_by_source": dict(Counter(s[0] for s in samples)),
        "n_tampered": int(sum(t.any() for t in truth)),
        "n_boxes": int(sum(len(b) for b in all_boxes)),
        "teacher_name": kind,
        "teacher": mean_scores(scores["teacher"]),
        "teacher_by_source": {k: mean_scores(v) for k, v in by_source.items()},
        "real_rejected": real.rejected if real is not None else [],
        "box": mean_scores(scores["box"]),
        "teacher_seconds": round(time.perf_counter() - t0, 2),
    }
    return BoxPromptData(images, truth, all_boxes, targets, report)


def student_configs(name: str, params: dict, seed: int = 0) -> tuple[TrainConfig, BoxPromptConfig]:
    """The training and model settings of one student from the ``train_boxprompt`` section."""
    if name not in STUDENTS:
        raise KeyError(f"unknown student {name!r}; known: {', '.join(STUDENTS)}")
    tcfg = from_dict(TrainConfig, {**params.get("train", {}), "seed": seed}, "train_boxprompt.train")
    mcfg = from_dict(BoxPromptConfig, {**params.get("model", {}), **STUDENTS[name].model, "input_size": tcfg.size},
                     "train_boxprompt.model")
    return tcfg, mcfg


def train_student(
    name: str,
    data: BoxPromptData,
    params: dict,
    seed: int,
    out: str | Path,
    progress: bool = True,
) -> dict:
    """Train one BoxPromptIML student (see ``models.registry.STUDENTS``) into ``out``."""
    tcfg, mcfg = student_configs(name, params, seed)
    kind = STUDENTS[name].supervision
    mixture = Mixture({kind: ListSource(list(zip(data.images, data.targets[kind])))})
    torch.manual_seed(seed)
    model = BoxPromptStudent(mcfg)
    soft = bool(getattr(mcfg, "soft_labels", False))
    target_fn = None if soft or kind == "image" else (lambda x, y: (y > 0.5).float())
    loss_fn = image_level_loss if kind == "image" else None
    extra = {"student": name, "supervision": kind, "seed": seed, "teacher": data.report.get("teacher_name")}
    if getattr(model, "resize_to", None):
        extra["resize_to"] = model.resize_to
    summary = fit(model, mixture, tcfg, out, mcfg, extra=extra, target_fn=target_fn, loss_fn=loss_fn, progress=progress)
    summary.update({"student": name, "supervision": kind, "parameters": sum(p.numel() for p in model.parameters())})
    return summary


def supervision_figure(pool: BoxPromptData, n: int = 6, seed: int = 0, max_side: int = 200):
    """Rows of image with boxes | truth | teacher pseudo-mask | filled boxes for tampered samples."""
    import cv2
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    idx = [i for i, t in enumerate(pool.truth) if t.any()]
    idx = [idx[i] for i in sorted(rng.choice(len(idx), size=min(n, len(idx)), replace=False))] if idx else []
    fig, axes = plt.subplots(max(1, len(idx)), 4, figsize=(8, 2.0 * max(1, len(idx))), squeeze=False)
    for r, i in enumerate(idx):
        rgb = pool.images[i]
        s = long_side_scale(*rgb.shape[:2], max_side)
        img = resize_by(rgb, s, interpolation=cv2.INTER_AREA)
        for x0, y0, x1, y1 in pool.boxes[i]:
            cv2.rectangle(img, (round(x0 * s), round(y0 * s)), (round(x1 * s) - 1, round(y1 * s) - 1), (255, 255, 0), 1)
        panels = [img] + [resize_by(np.asarray(m, np.float32), s, interpolation=cv2.INTER_LINEAR) for m in (pool.truth[i], pool.targets["teacher"][i], pool.targets["box"][i])]
        for c, (p, t) in enumerate(zip(panels, ("image + boxes", "truth", "teacher", "filled boxes"))):
            axes[r][c].imshow(p, cmap=None if p.ndim == 3 else "gray", vmin=0, vmax=1 if p.ndim == 2 else None)
            axes[r][c].set_title(t, fontsize=8)
            axes[r][c].axis("off")
    fig.tight_layout()
    return fig

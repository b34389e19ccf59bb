"""Box-prompted teachers: turn coarse boxes into pseudo-masks for the BoxPromptIML student.

Every teacher is a callable ``teacher(rgb, boxes) -> float32 (H, W) soft mask in [0, 1]``: the
union (pixel-wise max) of one mask per box. ``rgb`` is uint8 (H, W, 3); boxes follow
:mod:`webiml.boxes` (partly outside boxes are clipped, empty ones dropped, with warnings).

- :class:`BoxTeacher`: the filled boxes (the lower bound).
- :class:`GrabCutTeacher`: OpenCV GrabCut initialised with each box (the offline default).
- :class:`SamTeacher`: Segment Anything prompted with each box. SAM weights are not shipped: it
  needs a user-supplied checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import torch

from .. import boxes as B
from ..device import resolve
from ..evaluate.metrics import mean_scores, pixel_scores
from ..geometry import long_side_scale, resize_by
from .checkpoint import CheckpointError, read_state

Teacher = Callable[[np.ndarray, list[B.Box]], np.ndarray]
SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
SAM_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"


def _prepare(rgb: np.ndarray, boxes: Iterable[Sequence[float]]) -> tuple[np.ndarray, list[B.Box]]:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"teacher input must be uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
    return rgb, B.check_boxes(boxes, (rgb.shape[1], rgb.shape[0]), on_bad="clip")


class BoxTeacher:
    """The filled boxes."""

    name = "box"

    def __call__(self, rgb: np.ndarray, boxes: Iterable[Sequence[float]]) -> np.ndarray:
        rgb, bx = _prepare(rgb, boxes)
        return B.boxes_to_mask(bx, (rgb.shape[1], rgb.shape[0])).astype(np.float32)


class GrabCutTeacher:
    """GrabCut (``GC_INIT_WITH_RECT``) inside each box, on a crop around it: the box plus
    ``context`` of its size on each side supplies the background model. Crops whose long side
    exceeds ``max_side`` are downscaled, and the mask upsampled back (bilinear, hence soft edges).
    A box GrabCut cannot use (fewer than ``min_side`` pixels across, or no background around it,
    e.g. covering the whole image) falls back to the filled box. OpenCV's RNG (GrabCut's k-means
    initialisation) is reseeded with ``seed`` before each box, so masks do not depend on call history."""

    name = "grabcut"

    def __init__(self, iterations: int = 5, max_side: int = 512, context: float = 0.5, min_side: int = 4, seed: int = 0):
        if iterations < 1 or max_side < 16 or context <= 0:
            raise ValueError(f"GrabCutTeacher needs iterations >= 1, max_side >= 16, context > 0; got {iterations}, {max_side}, {context}")
        self.iterations, self.max_side, self.context, self.min_side, self.seed = iterations, max_side, context, min_side, seed

    def __call__(self, rgb: np.ndarray, boxes: Iterable[Sequence[float]]) -> np.ndarray:
        rgb, bx = _prepare(rgb, boxes)
        out = np.zeros(rgb.shape[:2], np.float32)
        for box in bx:
            np.maximum(out, self._one(rgb, box), out=out)
        return out

    def _one(self, rgb: np.ndarray, box: B.Box) -> np.ndarray:
        h, w = rgb.shape[:2]
        full = B.boxes_to_mask([box], (w, h)).astype(np.float32)
        x0, y0, x1, y1 = box
        mx, my = self.context * (x1 - x0), self.context * (y1 - y0)
        cx0, cy0 = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
        cx1, cy1 = min(w, int(np.ceil(x1 + mx))), min(h, int(np.ceil(y1 + my)))
        crop = rgb[cy0:cy1, cx0:cx1]
        s = long_side_scale(*crop.shape[:2], self.max_side, max_scale=1.0)
        if s < 1.0:
            crop = resize_by(crop, s)
        ch, cw = crop.shape[:2]
        rx0, ry0 = int(round((x0 - cx0) * s)), int(round((y0 - cy0) * s))
        rx1, ry1 = min(cw, int(round((x1 - cx0) * s))), min(ch, int(round((y1 - cy0) * s)))
        if rx1 - rx0 < self.min_side or ry1 - ry0 < self.min_side or (rx0 == 0 and ry0 == 0 and rx1 == cw and ry1 == ch):
            return full
        gc = np.zeros((ch, cw), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        try:
            cv2.grabCut(np.ascontiguousarray(crop), gc, (rx0, ry0, rx1 - rx0, ry1 - ry0), bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
        except cv2.error:  # e.g. too few pixels for the colour models
            return full
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.float32)
        if not fg.any():
            return full  # GrabCut gave up on the object: the box is a better guess than nothing
        if s < 1.0:
            fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR)
        out = np.zeros((h, w), np.float32)
        out[cy0:cy1, cx0:cx1] = fg
        return np.clip(out, 0.0, 1.0) * full  # nothing outside the box


class SamTeacher:
    """Segment Anything prompted with each box (``multimask_output=True``; the candidate with the
    highest predicted IoU is kept, as a sigmoid of its logits). The image is encoded once per call.

    ``checkpoint`` is a SAM state dict (``sam_vit_b_01ec64.pth`` etc.) matching ``model_type``.
    """

    name = "sam"

    def __init__(self, checkpoint: str | Path | None, model_type: str = "vit_b", device: str = "auto"):
        if model_type not in SAM_MODEL_TYPES:
            raise ValueError(f"unknown SAM model_type {model_type!r}; use one of {', '.join(SAM_MODEL_TYPES)}")
        if checkpoint is None or not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"SAM checkpoint not found: {checkpoint}. SAM weights are not shipped with webiml (no network "
                f"here); download the {model_type} checkpoint from {SAM_URL}, put it e.g. under models/sam/, and "
                "pass its path (train_boxprompt.sam_checkpoint in params.yaml), or use the 'grabcut' teacher."
            )
        from segment_anything import SamPredictor, sam_model_registry

        state = read_state(checkpoint, what="SAM checkpoint")  # as data: a crafted file runs nothing
        if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
            raise CheckpointError(f"{checkpoint}: not a SAM checkpoint (no state dict of tensors in it)")
        sam = sam_model_registry[model_type](checkpoint=None)  # built empty; segment-anything never reads the file
        try:
            sam.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{checkpoint}: not a SAM {model_type} checkpoint "
                                  f"({' '.join(str(e).split())[:200]}); is --sam-model-type right?") from None
        self.predictor = SamPredictor(sam.to(resolve(device)).eval())
        self.checkpoint, self.model_type = Path(checkpoint), model_type

    def __call__(self, rgb: np.ndarray, boxes: Iterable[Sequence[float]]) -> np.ndarray:
        import torch

        rgb, bx = _prepare(rgb, boxes)
        out = np.zeros(rgb.shape[:2], np.float32)
        if not bx:
            return out
        with torch.no_grad():
            self.predictor.set_image(rgb, image_format="RGB")
            for box in bx:
                logits, iou, _ = self.predictor.predict(box=np.asarray(box, np.float32), multimask_output=True, return_logits=True)
                best = logits[int(np.argmax(iou))].astype(np.float32)
                np.maximum(out, 1.0 / (1.0 + np.exp(-np.clip(best, -50, 50))), out=out)
        self.predictor.reset_image()
        return out


TEACHERS = {"box": BoxTeacher, "grabcut": GrabCutTeacher, "sam": SamTeacher}


def make_teacher(name: str, **kw) -> BoxTeacher | GrabCutTeacher | SamTeacher:
    """A teacher by name (``box``, ``grabcut`` or ``sam``); ``kw`` go to its constructor."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; choose one of {', '.join(TEACHERS)}")
    return TEACHERS[name](**kw)


def teacher_quality(
    teacher: Teacher,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator | int = 0,
    looseness: tuple[float, float] = (0.0, 0.15),
    jitter: float = 0.05,
) -> dict[str, float]:
    """Mean pixel IoU/F1/precision/recall (``n`` images) of the teacher's pseudo-masks (> 0.5)
    against the truth, with boxes simulated from the truth by :func:`webiml.boxes.boxes_from_mask`.
    ``samples`` are ``(rgb, truth)`` pairs; images with an empty truth (or no box) are skipped."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    scores = []
    for rgb, truth in samples:
        t = np.asarray(truth) > 0.5
        if not t.any():
            continue
        bx = B.boxes_from_mask(t, rng, looseness=looseness, jitter=jitter)
        if bx:
            scores.append(pixel_scores(teacher(rgb, bx) > 0.5, t))
    return mean_scores(scores)


def pseudo_mask_dataset(
    boxes_file: str | Path,
    images_dir: str | Path,
    out: str | Path,
    teacher: Teacher,
    on_bad: str = "clip",
    progress: bool = True,
) -> dict:
    """User boxes → the teacher's pseudo-masks as a dataset: ``out/masks/<stem>.png`` (soft, 0–255;
    ``sub/x.png`` gives ``sub__x.png``, and a name already taken keeps its extension, ``a.jpg.png``),
    ``out/index.json`` (BenCo; images the boxes file lists without boxes are ``Negative``),
    ``out/rejected.jsonl`` (unreadable images, boxes that are all unusable, images with a box row
    that cannot be read: ``bad-row``) and ``out/report.json``.
    Image paths in the boxes file are relative to ``images_dir``; images are never copied or modified."""
    import stat
    import warnings

    from tqdm import tqdm

    from .. import io, paths

    out, images_dir = Path(out), Path(images_dir)
    if not stat.S_ISDIR(io.check_path(images_dir, "images folder").st_mode):
        raise ValueError(f"images folder {images_dir} is not a folder")
    bad: dict[str, str] = {}
    per_image = B.read_boxes(boxes_file, bad=bad)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    entries, n_boxes, n_warnings = [], 0, 0
    rejected = [{"image": name, "reason": "bad-row", "detail": detail} for name, detail in bad.items()]
    taken: set[str] = set()
    for name, bx in tqdm(per_image.items(), desc=f"pseudo-masks ({getattr(teacher, 'name', 'teacher')})", disable=not progress):
        path = images_dir / name
        try:
            path = paths.inside(images_dir, paths.check_relpath(name, "image name"), "image name")
        except paths.UnsafePath as e:  # a name in a stranger's boxes file must not read outside --images
            rejected.append({"image": name, "reason": "unsafe-path", "detail": str(e)})
            continue
        except (RuntimeError, OSError):  # a link loop, a name too long: the reader below says which
            pass
        try:
            rgb, _ = io.read_image(path)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                good = B.check_boxes(bx, (rgb.shape[1], rgb.shape[0]), on_bad=on_bad, name=name)
            n_warnings += len(caught)
            if bx and not good:
                raise io.Rejected("bad-boxes", "; ".join(str(w.message) for w in caught), path)
        except (io.Rejected, ValueError) as e:
            rejected.append({"image": name, "reason": getattr(e, "reason", "bad-boxes"), "detail": str(e)})
            continue
        if not good:
            entries.append((path, None))
            continue
        stem = io.unique_name(Path(name).with_suffix("").as_posix().replace("/", "__"), taken,  # a.png, a.jpg:
                              alt=Path(name).as_posix().replace("/", "__"))  # distinct names, as sub/x.png, sub__x.png
        mask_path = out / "masks" / f"{stem}.png"
        io.write_soft_mask(mask_path, teacher(rgb, good))
        entries.append((path, mask_path))
        n_boxes += len(good)
    io.write_benco_index(out / "index.json", entries)
    io.write_jsonl(out / "rejected.jsonl", rejected)
    report = {"teacher": getattr(teacher, "name", type(teacher).__name__), "n_listed": len(per_image) + len(bad),
              "n_masks": sum(m is not None for _, m in entries), "n_negative": sum(m is None for _, m in entries),
              "n_boxes": n_boxes, "n_box_warnings": n_warnings, "n_rejected": len(rejected),
              "rejected_by_reason": {r: sum(x["reason"] == r for x in rejected) for r in sorted({x["reason"] for x in rejected})}}
    io.write_json(out / "report.json", report)
    return report

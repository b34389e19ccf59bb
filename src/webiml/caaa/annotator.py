"""CAAAv2 and the unified baseline as corpus annotators (see :mod:`webiml.caaa.annotate`).

CAAAv2: the pair classifier picks the category; SPG pairs go to DASS (on the authentic image
registered to the forged frame, or simply resized when collect could not register it), SDG pairs
go to Corr-DINO-lite (on the authentic image as collected). The unified baseline runs one
9-channel model on every pair, whatever its category.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import io
from ..device import model_device, place, resolve, to
from ..geometry import resize_by, scaled_size
from ..models.checkpoint import load_checkpoint
from .annotate import ALIGNED_STATUSES, AnnotationResult, PairInputs, iter_jsonl
from .models import NETWORKS, to_tensor
from .views import native_scale, registered_view

MODEL_FILES = {"classifier": "classifier.pt", "dass": "dass.pt", "corr": "corr.pt", "unified": "unified.pt"}
DEFAULT_MODELS_DIR = Path("models/annotators")


def model_path(models_dir: str | Path, name: str) -> Path:
    p = Path(models_dir) / MODEL_FILES[name]
    if not p.is_file():
        raise FileNotFoundError(
            f"{p} not found: train the annotators first (`dvc repro train_annotators`, or pass --models DIR)"
        )
    return p


COLOUR_GATE = 3.0  # median |forged − registered| (grey levels, max over channels) above which colours are matched


def _median_difference(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    return float(np.median(np.abs(a[valid].astype(np.int16) - b[valid]).max(axis=-1))) if valid.any() else 0.0


def match_colours(registered: np.ndarray, forged: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``registered`` with each channel mapped onto ``forged``'s distribution over ``valid`` (histogram
    matching), when their median difference shows a global colour change (:data:`COLOUR_GATE`) and the
    match lowers it; else ``registered`` itself.

    A web copy of a forgery often has a colour cast or another tone curve than its source: every
    pixel then differs, and a difference-reading annotator marks the whole image. The median ignores
    the edit as long as it covers less than half the overlap; a pair without a global change (median
    0 outside the edit) is left exactly as it was.
    """
    valid = np.ones(forged.shape[:2], bool) if valid is None else valid
    before = _median_difference(forged, registered, valid)
    if before <= COLOUR_GATE or valid.sum() < 64:
        return registered
    q = np.linspace(0.0, 1.0, 257)
    out = np.empty_like(registered)
    for c in range(3):
        src = np.quantile(registered[..., c][valid], q) + q * 1e-3  # strictly increasing for the interpolation
        out[..., c] = np.clip(np.rint(np.interp(registered[..., c], src, np.quantile(forged[..., c][valid], q))), 0, 255)
    return out if _median_difference(forged, out, valid) < before else registered


def _spg_view(p: PairInputs) -> np.ndarray:
    """The authentic image in the forged frame, its colours matched to the forged image's
    (:func:`match_colours`); uncovered pixels take the forged values."""
    if p.registered is None:
        return registered_view(p.forged, p.authentic, None)
    reg = match_colours(p.registered, p.forged, p.overlap)
    if p.overlap is None:
        return reg
    reg = reg.copy() if reg is p.registered else reg
    reg[~p.overlap] = p.forged[~p.overlap]
    return reg


def _load(models_dir: str | Path, name: str, device: torch.device) -> torch.nn.Module:
    return place(load_checkpoint(model_path(models_dir, name), NETWORKS)[0], device).eval()


@torch.no_grad()
def dass_native(model, forged: np.ndarray, authentic_view: np.ndarray, tta: bool = True) -> np.ndarray:
    """Run a DASS-type model at the scale it was trained at (:func:`~webiml.caaa.views.native_scale`,
    padded to a multiple of 32); return the probability at the forged image's size."""
    h, w = forged.shape[:2]
    s = native_scale(h, w, model.cfg.max_side, model.cfg.min_side)
    nw, nh = scaled_size(h, w, s, min_side=32)
    ph, pw = (-nh) % 32, (-nw) % 32

    def prep(img: np.ndarray) -> torch.Tensor:
        if (nh, nw) != (h, w):
            img = resize_by(img, s, min_side=32)
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        return to(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0, model_device(model))

    f, a = prep(forged), prep(authentic_view)
    p = model.predict_tta(f, a) if tta else torch.sigmoid(model(f, a)["logits"])
    return _to_forged_size(p[0, 0, :nh, :nw], (h, w))


def _to_forged_size(prob: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    out = F.interpolate(prob[None, None].float(), size=shape, mode="bilinear", align_corners=False)[0, 0]
    return out.clamp(0, 1).cpu().numpy()


class CAAAnnotator:
    """Category-aware annotation: classifier → DASS (SPG) or Corr-DINO-lite (SDG)."""

    name = "caaa"

    ROUTES = ("auto", "classifier", "registration")

    def __init__(self, models_dir: str | Path = DEFAULT_MODELS_DIR, route: str = "auto", tta: bool = True,
                 reuse: str | Path | None = None, device: str = "auto"):
        """``reuse``: an annotation folder written by CAAAv2 with the same models and ``tta``
        (another route); pairs it sent to DASS and this route sends to DASS too take its mask
        instead of running DASS again. ``device``: see :mod:`webiml.device`."""
        if route not in self.ROUTES:
            raise ValueError(f"route must be one of {self.ROUTES}")
        dev = resolve(device)
        self.classifier = _load(models_dir, "classifier", dev) if route != "registration" else None
        self.dass = _load(models_dir, "dass", dev)
        self.corr = _load(models_dir, "corr", dev)
        self.route, self.tta = route, tta
        self.reused = reusable_dass_masks(reuse) if reuse is not None else {}

    @torch.no_grad()
    def classify(self, pairs: list[PairInputs]) -> list[tuple[str, float, bool]]:
        """(category, confidence, aligned) per pair.

        ``classifier``: the pair classifier alone. ``registration``: collect's registration status
        (registered/identity → SPG, unregistered → SDG). ``auto``: the registration status where
        it is decisive, the classifier elsewhere (no registration result)."""
        by_reg = {"identity": "spg", "registered": "spg", "unregistered": "sdg"}
        if self.route == "registration":
            return [(by_reg.get(p.status, "sdg"), 1.0, p.status in ALIGNED_STATUSES) for p in pairs]
        res = self._classifier(pairs)
        if self.route == "auto":
            res = [(by_reg[p.status], 1.0, r[2]) if p.status in by_reg else r for p, r in zip(pairs, res)]
        return res

    def _classifier(self, pairs: list[PairInputs]) -> list[tuple[str, float, bool]]:
        s = self.classifier.cfg.size
        dev = model_device(self.classifier)
        f = to(torch.stack([to_tensor(p.forged, s) for p in pairs]), dev)
        a = to(torch.stack([to_tensor(p.authentic, s) for p in pairs]), dev)
        out = self.classifier(f, a)
        pc = out["category"].softmax(1)
        al = out["aligned"].argmax(1)
        res = []
        for k in range(len(pairs)):
            c = int(pc[k].argmax())
            res.append((("spg", "sdg")[c], float(pc[k, c]), bool(al[k])))
        return res

    def _reused(self, p: PairInputs) -> np.ndarray | None:
        path = self.reused.get(p.id)
        if path is None or not path.is_file():
            return None
        m = io.read_soft_mask(path)
        return m.astype(np.float32) / 255.0 if m.shape == p.forged.shape[:2] else None

    @torch.no_grad()
    def annotate_batch(self, pairs: list[PairInputs]) -> list[AnnotationResult]:
        cats = self.classify(pairs)
        probs: list[np.ndarray | None] = [None] * len(pairs)
        spg = [i for i, c in enumerate(cats) if c[0] == "spg"]
        sdg = [i for i, c in enumerate(cats) if c[0] == "sdg"]
        for i in spg:  # at each image's own scale: small edits and text survive
            probs[i] = self._reused(pairs[i])
            if probs[i] is None:
                probs[i] = dass_native(self.dass, pairs[i].forged, _spg_view(pairs[i]), self.tta)
        if sdg:
            s = self.corr.cfg.size
            dev = model_device(self.corr)
            f = to(torch.stack([to_tensor(pairs[i].forged, s) for i in sdg]), dev)
            a = to(torch.stack([to_tensor(pairs[i].authentic, s) for i in sdg]), dev)
            p = torch.sigmoid(self.corr(f, a)["logits"])
            for k, i in enumerate(sdg):
                probs[i] = _to_forged_size(p[k, 0], pairs[i].forged.shape[:2])
        return [
            AnnotationResult(probs[i], cats[i][0], cats[i][1], cats[i][2], "dass" if cats[i][0] == "spg" else "corr")
            for i in range(len(pairs))
        ]


def reusable_dass_masks(folder: str | Path) -> dict[str, Path]:
    """Pair id → soft mask of the pairs DASS annotated in a CAAAv2 annotation folder."""
    folder = Path(folder)
    return {r["id"]: folder / r["mask"] for _, r in iter_jsonl(folder / "annotations.jsonl") if r.get("annotator") == "dass"}


class UnifiedAnnotator:
    """The unified baseline: one CIML model (DASS architecture trained on both categories)."""

    name = "unified"

    def __init__(self, models_dir: str | Path = DEFAULT_MODELS_DIR, tta: bool = True, device: str = "auto"):
        self.model = _load(models_dir, "unified", resolve(device))
        self.tta = tta

    @torch.no_grad()
    def annotate_batch(self, pairs: list[PairInputs]) -> list[AnnotationResult]:
        return [
            AnnotationResult(dass_native(self.model, p.forged, _spg_view(p), self.tta), "spg", 0.5,
                             p.status in ALIGNED_STATUSES, "unified")
            for p in pairs
        ]
